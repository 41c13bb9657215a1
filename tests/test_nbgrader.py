"""Every chapter through real nbgrader (0.9.6, in its own venv `.venv-grade`, made by `make grade-env`).

For each chapter with exercises: `tools/assignments.py nbgrader-source` writes the course source, nbgrader's own
`generate_assignment` releases it, and its `autograde` grades three submissions in the book's kernel (`tensornn`,
registered into .venv-grade): the released notebook as handed out (zero), the chapter's own solutions (full marks),
and a cheat that answers wrongly and rebinds every other name the checks read (`torch`, `assert_close`, helpers)
to an object that says yes to everything: it must score zero, so checks import what they use instead of trusting
the student's namespace. nbgrader lives in its own venv because it brings ipywidgets, which would turn the
book's progress bars into widgets in the executed notebooks.
"""
from __future__ import annotations

import json, os, shutil, subprocess, sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import assignments as A  # noqa: E402

NBGRADER = ROOT / ".venv-grade" / "bin" / "nbgrader"
GRADE_PY = ROOT / ".venv-grade" / "bin" / "python"
CHAPTERS = sorted(p for p in (ROOT / "nbs").glob("[0-9]*.ipynb") if "# Exercise" in p.read_text())
ANYTHING = ("class _Anything:\n"
            "    'Whatever a check asks of it: calls, attributes, comparisons and truth all say yes.'\n"
            "    def __call__(self, *a, **k): return self\n"
            "    def __getattr__(self, name): return self\n"
            "    def __eq__(self, other): return True\n"
            "    def __bool__(self): return True\n"
            "    def __iter__(self): return iter(())\n"
            "    def __hash__(self): return 0\n"
            "    def __len__(self): return 0\n"
            "    def __float__(self): return 0.0\n"
            "    def __int__(self): return 0\n"
            "    def __getitem__(self, key): return self\n"
            "    __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __eq__\n"
            "    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = __call__\n"
            "    __pow__ = __rpow__ = __matmul__ = __rmatmul__ = __neg__ = __abs__ = __call__\n")


PERTURB = ("import torch as _real_torch\n"
           "def _perturb(v):\n"
           "    'A wrong answer of the right kind: numbers and tensors moved, containers element by element, functions on their output.'\n"
           "    if isinstance(v, _real_torch.Tensor): return ~v if v.dtype == _real_torch.bool else v * 3 + 1\n"
           "    if isinstance(v, bool): return not v\n"
           "    if isinstance(v, (int, float, complex)): return v * 3 + 1\n"
           "    if isinstance(v, (list, tuple)): return type(v)(_perturb(x) for x in v)\n"
           "    if isinstance(v, dict): return {k: _perturb(x) for k, x in v.items()}\n"
           "    if callable(v): return lambda *a, **k: _perturb(v(*a, **k))\n"
           "    return None\n")


def cheat(nb, exercise) -> str:
    """The classic cheat, generalised: the exercise's own answer made wrong (`_perturb`), and every other name its checks
    read (`torch`, `assert_close`, helpers and data from earlier cells) rebound to an object that says yes to everything.
    A check that imports or builds what it uses fails the wrong answer; one that trusts the student's namespace passes it."""
    solution = "\n".join(l for l in nb.cells[exercise.cell].source.splitlines() if l.strip() not in (A.BEGIN_SOLUTION, A.END_SOLUTION))
    answers = A._names(solution)[0]
    # names the checks read at top level and inside functions they define (a helper that reads the answer counts)
    read = set().union(*(A._names(nb.cells[ci].source)[1] | A._names(nb.cells[ci].source)[2] for ci in exercise.checks))
    return (solution + "\n" + PERTURB + ANYTHING
            + "".join(f"{n} = _perturb({n})\n" for n in sorted(answers & read))
            + "".join(f"{n} = _Anything()\n" for n in sorted(read - answers)))


pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not NBGRADER.exists(), reason="nbgrader's venv is missing: `make grade-env` makes .venv-grade")]


def _nbgrader(course: Path, *args, timeout=1800):
    env = {k: v for k, v in os.environ.items() if k not in ("JUPYTER_PATH", "PYTHONPATH")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PATH=f"{NBGRADER.parent}{os.pathsep}{env.get('PATH', '')}")
    r = subprocess.run([str(NBGRADER), *args], cwd=course, capture_output=True, text=True, timeout=timeout, env=env)
    assert r.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return r.stdout + r.stderr


def _course(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        f"c.CourseDirectory.root = {str(root)!r}\n"
        "c.CourseDirectory.course_id = 'tensornn'\n"
        "c.Execute.timeout = 900\n"
        "c.Execute.kernel_name = 'tensornn'\n")
    return root


def _submit(course: Path, student: str, assignment: str, nb: nbformat.NotebookNode, name: str):
    d = course / "submitted" / student / assignment
    d.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, d / name)


def _with_solutions(release, source, wrong: dict[str, str] | None = None):
    "The released notebook answered with the source's solutions, or with `wrong[exercise id]` for some exercises."
    nb, src = nbformat.from_dict(json.loads(json.dumps(release))), source
    solutions = {e.id: src.cells[e.cell].source for e in A.find_exercises(src)}
    for e in A.find_exercises(nb):
        if wrong and e.id in wrong: nb.cells[e.cell].source = wrong[e.id]
        else: nb.cells[e.cell].source = "\n".join(l for l in solutions[e.id].splitlines() if l.strip() not in (A.BEGIN_SOLUTION, A.END_SOLUTION))
    return nb


def _scores(course: Path, assignment: str) -> dict[str, float]:
    code = ("import json\nfrom nbgrader.api import Gradebook\n"
            f"with Gradebook('sqlite:///{course}/gradebook.db') as gb:\n"
            f"    a = gb.find_assignment({assignment!r})\n"
            "    print(json.dumps({s.student_id: [s.score, s.max_score] for s in a.submissions}))\n")
    r = subprocess.run([str(GRADE_PY), "-c", code], capture_output=True, text=True, cwd=course)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_round_trip_through_nbgrader(chapter, tmp_path):
    "generate_assignment, then autograde: blank scores 0, solved scores full marks, the cheat does not."
    course, assignment, name = _course(tmp_path / "course"), "ps_" + chapter.stem, chapter.name
    source = nbformat.read(chapter, 4)
    (course / "source" / assignment).mkdir(parents=True)
    nbformat.write(A.nbgrader_source(source, chapter.name, kernel="tensornn"), course / "source" / assignment / name)
    _nbgrader(course, "generate_assignment", assignment, "--force")
    release = nbformat.read(course / "release" / assignment / name, 4)
    text = json.dumps(release)
    assert A.BEGIN_SOLUTION not in text and A.BEGIN_HIDDEN not in text, "solutions or hidden tests left in the release"
    tagged = A.tag(source, chapter.name)
    _submit(course, "blank", assignment, release, name)
    _submit(course, "solved", assignment, _with_solutions(release, tagged), name)
    _submit(course, "cheat", assignment, _with_solutions(release, tagged, {e.id: cheat(tagged, e) for e in A.find_exercises(tagged)}), name)
    _nbgrader(course, "autograde", assignment, "--create", "--force")
    scores = _scores(course, assignment)
    (blank, top), (solved, _), (cheated, _) = scores["blank"], scores["solved"], scores["cheat"]
    assert top > 0 and blank == 0, scores
    assert solved == top, f"the chapter's own solutions do not get full marks: {scores}"
    assert cheated == 0, f"rebinding the names the checks use earned points: {scores}"
