"""Give every code cell of the notebooks the execution count a top-to-bottom run gives it, and store
progress bars in their final state.

nbdev-clean blanks execution counts; readers (and our checks) want executed notebooks to say so.
The notebooks are always executed top to bottom by tools/run_notebooks.py, so after cleaning, the
count of the k-th non-empty code cell is k. A text progress bar (tqdm) redraws itself with carriage
returns, one stream output per redraw; only what a terminal would finally show is kept: consecutive
stream outputs of one name are joined and each line keeps the text after its last carriage return.
Usage: python tools/number_cells.py [nbs | notebook.ipynb ...]
"""
import json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _final_text(text: str) -> str:
    "What a terminal shows after printing `text`: each line keeps what follows its last carriage return."
    lines = text.split("\n")
    return "\n".join(re.sub(r"^.*\r(?=.)", "", l.rstrip("\r")) for l in lines)


def collapse_streams(outputs: list) -> list:
    "Join consecutive stream outputs of one name (stdout, stderr) and keep their final state."
    out = []
    for o in outputs:
        if o.get("output_type") == "stream" and out and out[-1].get("output_type") == "stream" and out[-1]["name"] == o["name"]:
            out[-1] = {**out[-1], "text": "".join(out[-1]["text"]) + "".join(o["text"])}
        else: out.append(dict(o))
    for o in out:
        if o.get("output_type") == "stream":
            o["text"] = _final_text("".join(o["text"])).splitlines(keepends=True)
    return out


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
        cell["outputs"] = collapse_streams(cell.get("outputs", []))
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
