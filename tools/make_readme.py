"""Make README.md from nbs/index.ipynb without Quarto (nbdev-readme needs it).

Uses nbconvert's Markdown exporter after dropping what nbdev hides: cells marked `#| hide`
or `#| include: false`, the `#|` directive lines themselves, and outputs of `#| output: false` cells.
`--check` only reports whether README.md is current.
"""
import argparse, copy, re, sys
from pathlib import Path

import nbformat
from fastcore.nbio import mk_cell
from nbconvert import MarkdownExporter
from nbconvert.preprocessors import TagRemovePreprocessor

ROOT = Path(__file__).resolve().parents[1]
HIDING = {"hide", "exporti", "export", "default_exp"}


def _directives(src) -> dict:
    "The cell's `#|` directives as fastcore (nbdev's own parser) reads them: `{'echo': 'false', 'hide': ''}`."
    return mk_cell(src).directives


def _visible(cell):
    if cell.cell_type != "code": return True
    d = _directives(cell.source)
    return not (set(d) & HIDING) and d.get("include") != "false"


def _strip(cell):
    cell = copy.deepcopy(cell)
    if cell.cell_type == "code":
        parsed = mk_cell(cell.source)
        d = parsed.directives
        parsed.directives = {}
        cell.source = parsed.source.strip()
        if d.get("output") == "false": cell.outputs = []
        if d.get("echo") == "false": cell.metadata.setdefault("tags", []).append("remove_input")
    return cell


def _name_notebooks(markdown):
    "A relative link breaks wherever the README is read outside a clone (a package index, a mirror): name the notebook instead."
    return re.sub(r"\[([^\]]+)\]\((?!https?:|#|/)([\w./-]+\.ipynb)\)", r"\1 (`nbs/\2`)", markdown)


def render(nb_path):
    nb = nbformat.read(nb_path, as_version=4)
    nb.cells = [_strip(c) for c in nb.cells if _visible(c)]
    exporter = MarkdownExporter(exclude_input_prompt=True, exclude_output_prompt=True)
    exporter.register_preprocessor(TagRemovePreprocessor(remove_input_tags={"remove_input"}), enabled=True)
    body, _ = exporter.from_notebook_node(nb)
    body = _name_notebooks(body)
    header = "<!-- Generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook, not this file. -->\n\n"
    return header + body.strip() + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--check", action="store_true", help="exit 1 if README.md is not current")
    args = ap.parse_args()
    text, readme = render(ROOT / "nbs" / "index.ipynb"), ROOT / "README.md"
    if args.check:
        if not readme.exists() or readme.read_text() != text:
            sys.exit("README.md is not current: run `make readme` (or `make book`) and commit it.")
        return
    readme.write_text(text)


if __name__ == "__main__": main()
