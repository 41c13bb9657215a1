"""Fail when nbdev-clean, nbdev-export or the README generator would change a tracked file.

Runs each tool (nbdev-clean followed by tools/number_cells.py, which restores run-order execution
counts), compares file hashes before and after, and names what changed (the change is left in place
so it can be reviewed and committed).
"""
import hashlib, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _snapshot(*globs):
    files = sorted({p for g in globs for p in ROOT.glob(g) if p.is_file() and "__pycache__" not in p.parts})
    return {p.relative_to(ROOT): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _changed(before, after):
    return sorted(str(k) for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def _check(label, cmds, *globs):
    before = _snapshot(*globs)
    for cmd in cmds: subprocess.run(cmd, cwd=ROOT, check=True)
    changed = _changed(before, _snapshot(*globs))
    if changed: print(f"{label} changed: {', '.join(changed)}")
    return changed


def main():
    bad = []
    # nbdev-clean blanks execution counts; number_cells restores the ones a top-to-bottom run gives
    bad += _check("nbdev-clean", [[str(BIN / "nbdev-clean")], [sys.executable, "tools/number_cells.py"]], "nbs/*.ipynb")
    bad += _check("nbdev-export", [[str(BIN / "nbdev-export")]], "tensornn/**/*.py")
    bad += _check("make_readme", [[sys.executable, "tools/make_readme.py"]], "README.md")
    if bad: sys.exit("Generated files were not current (see above): review and commit them.")
    print("generated files are current: notebooks clean, library exported, README.md from index.ipynb")


if __name__ == "__main__": main()
