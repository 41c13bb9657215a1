"""Give every code cell of the notebooks the execution count a top-to-bottom run gives it.

nbdev-clean blanks execution counts; readers (and our checks) want executed notebooks to say so.
The notebooks are always executed top to bottom by tools/run_notebooks.py, so after cleaning, the
count of the k-th non-empty code cell is k. Usage: python tools/number_cells.py [nbs | notebook.ipynb ...]
"""
import json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def number(path: Path) -> bool:
    "Renumber `path` in place; returns whether anything changed."
    text = path.read_text()
    nb, count = json.loads(text), 0
    for cell in nb["cells"]:
        if cell["cell_type"] != "code": continue
        has_source = bool("".join(cell["source"]).strip())
        count += has_source
        n = count if has_source else None
        cell["execution_count"] = n
        for out in cell.get("outputs", []):
            if "execution_count" in out: out["execution_count"] = n
    new = json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n"
    if new != text: path.write_text(new)
    return new != text


def main(args):
    targets = [Path(a) for a in args] or [ROOT / "nbs"]
    for p in sorted(q for t in targets for q in ([t] if t.suffix == ".ipynb" else t.glob("*.ipynb"))):
        number(p)


if __name__ == "__main__": main(sys.argv[1:])
