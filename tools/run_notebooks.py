"""Execute notebooks in place at full size (every cell, `#| slow` ones included).

Cells flagged `#| gpu` run only when CUDA is available; otherwise they keep their stored outputs.
Usage: python tools/run_notebooks.py [nbs | notebook.ipynb ...]
"""
import sys, time
from pathlib import Path

import nbformat
from fastcore.nbio import mk_cell
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def _is_gpu_cell(cell):
    "A `#| gpu` cell, by fastcore's directive parser (nbdev's own)."
    return cell.cell_type == "code" and "gpu" in mk_cell(cell.source).directives


def _cuda_available():
    try:
        import torch
        return torch.cuda.is_available()
    except ImportError: return False


def run(path, cuda):
    nb = nbformat.read(path, as_version=4)
    skipped = {}
    if not cuda:
        for i, c in enumerate(nb.cells):
            if _is_gpu_cell(c): skipped[i], nb.cells[i] = c, nbformat.v4.new_raw_cell("")
    NotebookClient(nb, timeout=-1, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    for i, c in skipped.items(): nb.cells[i] = c
    nbformat.write(nb, path)


def main(args):
    targets = [Path(a) for a in args] or [ROOT / "nbs"]
    nbs = sorted(p for t in targets for p in ([t] if t.suffix == ".ipynb" else t.glob("*.ipynb")))
    cuda = _cuda_available()
    for p in nbs:
        t = time.time()
        print(f"executing {p} ...", flush=True)
        run(p, cuda)
        print(f"  done in {time.time() - t:.0f}s", flush=True)


if __name__ == "__main__": main(sys.argv[1:])
