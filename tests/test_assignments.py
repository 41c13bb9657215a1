"""The assignment tools (tools/assignments.py): student versions and grading, nbgrader's conventions.

A small fixture chapter (tests/fixtures/assignment.ipynb) and the real background chapter, when it
has exercises, go through the round trip: the solved notebook grades full marks, the student version
as handed out grades zero, and a deliberately wrong answer fails with a readable message.
"""
from __future__ import annotations

import json, os, re, subprocess, sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "assignments.py"
FIXTURE = ROOT / "tests" / "fixtures" / "assignment.ipynb"
CHAPTER = ROOT / "nbs" / "01_background.ipynb"
sys.path.insert(0, str(ROOT / "tools"))
import assignments as A  # noqa: E402


def _run(*args, timeout=900):
    r = subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(map(str, args))} failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout


def _student(src: Path, tmp: Path) -> Path:
    out = tmp / f"student_{src.name}"
    _run("student", src, "-o", out)
    return out


def _answer(student: Path, source: Path, out: Path, overrides: dict[str, str] | None = None) -> Path:
    "What a student hands in: the stubs replaced by the source's solutions, or by `overrides[exercise id]`."
    st, src = nbformat.read(student, 4), nbformat.read(source, 4)
    solutions = {e.id: src.cells[e.cell].source for e in A.find_exercises(src)}
    for e in A.find_exercises(st):
        code = solutions[e.id]
        if overrides and e.id in overrides:
            lines, keep, indent = [], True, ""
            for line in code.splitlines():
                if line.strip() == A.BEGIN_SOLUTION:
                    indent = line[: len(line) - len(line.lstrip())]
                    lines += [indent + l for l in overrides[e.id].splitlines()]; keep = False
                elif line.strip() == A.END_SOLUTION: keep = True
                elif keep: lines.append(line)
            code = "\n".join(lines)
        else:
            code = "\n".join(l for l in code.splitlines() if l.strip() not in (A.BEGIN_SOLUTION, A.END_SOLUTION))
        st.cells[e.cell].source = code
    nbformat.write(st, out)
    return out


def _grade(nb: Path, source: Path, *extra) -> tuple[dict, str]:
    js = nb.with_suffix(".json")
    out = _run("grade", nb, "--source", source, "--json", js, *extra)
    return json.loads(js.read_text()), out


# ---------------------------------------------------------------- the student version
def test_student_version_follows_nbgrader():
    src = nbformat.read(FIXTURE, 4)
    st = A.student_version(src, "tests/fixtures/assignment.ipynb")
    text = "\n".join(c.source for c in st.cells)
    assert "BEGIN SOLUTION" not in text and "math.sqrt" not in text and "HIDDEN" not in text
    assert "norm2(data) == 13.0" not in text, "hidden checks must be removed"
    assert text.count("raise NotImplementedError()") == 2 and "# YOUR CODE HERE" in text
    assert 'assert norm2([3.0, 4.0]) == 5.0' in text, "visible checks stay"
    ex = A.find_exercises(st)
    assert [e.id for e in ex] == ["ex1", "ex2"] and [len(e.checks) for e in ex] == [1, 2]
    meta = st.cells[ex[0].cell].metadata["nbgrader"]
    assert meta["solution"] and not meta["grade"] and meta["grade_id"] == "ex1" and meta["schema_version"] == 3
    check = st.cells[ex[0].checks[0]].metadata["nbgrader"]
    assert check["grade"] and check["locked"] and check["points"] == 1 and check["grade_id"] == "ex1-check"
    assert all(c.get("outputs", []) == [] for c in st.cells if c.cell_type == "code")
    # the stub keeps the indentation of the solution it replaces (inside the function body)
    assert "    # YOUR CODE HERE\n    raise NotImplementedError()" in st.cells[ex[0].cell].source


@pytest.mark.parametrize("src, msg", [
    ("# Exercise 1: x\n### BEGIN SOLUTION\nx = 1\n", "never closed"),
    ("# Exercise 1: x\nx = 1\n### END SOLUTION\n", "without"),
    ("# Exercise 1: x\nx = 1\n", "no '### BEGIN SOLUTION'"),
])
def test_malformed_exercises_are_reported(src, msg):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src), nbformat.v4.new_code_cell("assert x == 1")])
    with pytest.raises(ValueError, match=msg): A.student_version(nb, "bad.ipynb")


def test_exercise_without_check_is_reported():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("# Exercise 1: x\n### BEGIN SOLUTION\nx = 1\n### END SOLUTION")])
    with pytest.raises(ValueError, match="no check cell"): A.student_version(nb, "bad.ipynb")


# ---------------------------------------------------------------- grading the fixture chapter
def test_fixture_round_trip(tmp_path):
    student = _student(FIXTURE, tmp_path)
    stub, out = _grade(student, FIXTURE)
    assert stub["score"] == 0 and stub["max_score"] == 3, out
    assert all(not e["passed"] and e["message"].startswith("not answered: NotImplementedError") for e in stub["exercises"]), out
    assert re.search(r"^ex1\s+Euclidean norm\s+0/1\s+0/1\s+FAIL", out, re.M), out

    solved, out = _grade(_answer(student, FIXTURE, tmp_path / "solved.ipynb"), FIXTURE)
    assert solved["score"] == solved["max_score"] == 3, out
    assert all(e["passed"] for e in solved["exercises"]), out
    assert re.search(r"^total\s+2/2 exercises\s+3/3", out, re.M), out


def test_wrong_answer_fails_with_readable_message(tmp_path):
    student = _student(FIXTURE, tmp_path)
    # passes the visible check (3,4 -> 5) but not the hidden one (3,4,12 -> 13)
    wrong = _answer(student, FIXTURE, tmp_path / "wrong.ipynb", {"ex1": "return 5.0 if len(xs) == 2 else 12.0"})
    res, out = _grade(wrong, FIXTURE)
    ex1, ex2 = res["exercises"]
    assert not ex1["passed"] and ex1["points"] == 0
    assert ex1["message"] == "AssertionError: norm2([3, 4, 12]) should be 13  (at: assert norm2(data) == 13.0, \"norm2([3, 4, 12]) should be 13\")", ex1
    assert "norm2([3, 4, 12]) should be 13" in out
    assert not ex2["passed"], "exercise 2 uses norm2, so it fails too"


def test_edited_checks_are_restored(tmp_path):
    "A student who deletes the asserts in a check cell gets them back (and the hidden ones) at grading."
    student = _student(FIXTURE, tmp_path)
    wrong = _answer(student, FIXTURE, tmp_path / "cheat.ipynb", {"ex2": "unit = [1.0, 0.0, 0.0]"})
    nb = nbformat.read(wrong, 4)
    for ci in A.find_exercises(nb)[1].checks: nb.cells[ci].source = "assert True"
    nbformat.write(nb, wrong)
    res, out = _grade(wrong, FIXTURE)
    ex1, ex2 = res["exercises"]
    assert ex1["passed"] and not ex2["passed"], out
    assert ex2["checks_passed"] == 1 and ex2["checks"] == 2 and ex2["points"] == 1, ex2
    assert "normalising keeps the signs" in ex2["message"] or "norm 1" in ex2["message"], ex2


def test_source_is_found_from_the_student_notebook(tmp_path):
    "The student version records its source; `grade` without --source uses it, hidden checks included."
    student = _student(FIXTURE, tmp_path)
    wrong = _answer(student, FIXTURE, tmp_path / "wrong.ipynb", {"ex1": "return 5.0 if len(xs) == 2 else 12.0"})
    out = _run("grade", wrong, "--json", tmp_path / "r.json")
    assert "against tests/fixtures/assignment.ipynb" in out
    assert json.loads((tmp_path / "r.json").read_text())["exercises"][0]["passed"] is False


# ---------------------------------------------------------------- the real chapters
def _has_exercises(path: Path) -> bool:
    return path.exists() and bool(A.find_exercises(nbformat.read(path, 4)))


CHAPTERS = sorted(p for p in (ROOT / "nbs").glob("[0-9]*.ipynb") if "# Exercise" in p.read_text())


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_every_chapter_makes_a_student_version(chapter):
    "Each exercise has a closed solution region and a check; the student version has no solution or hidden check left."
    nb = nbformat.read(chapter, 4)
    exercises = A.find_exercises(nb)
    assert exercises, f"{chapter.name}: '# Exercise' appears but no exercise cell was found"
    st = A.student_version(nb, chapter.name)
    for e in A.find_exercises(st):
        assert "raise NotImplementedError()" in st.cells[e.cell].source, f"{chapter.name} {e.id}: no stub"
        assert e.checks, f"{chapter.name} {e.id}: no check cell"
    lines = {l.strip() for c in st.cells for l in c.source.splitlines()}  # prose may name the markers inline
    assert A.BEGIN_SOLUTION not in lines and A.BEGIN_HIDDEN not in lines


def _grade_all(jobs: dict[str, tuple[Path, Path]], *extra) -> dict[str, tuple[dict, str]]:
    "Grade several notebooks at once (one kernel each), to keep a chapter's three runs within one run's time."
    procs, env = {}, {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # no oversubscription
    for name, (nb, source) in jobs.items():
        js = nb.with_suffix(".json")
        procs[name] = (js, subprocess.Popen([sys.executable, str(TOOL), "grade", str(nb), "--source", str(source), "--json", str(js), *map(str, extra)],
                                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=env))
    out = {}
    for name, (js, p) in procs.items():
        text, _ = p.communicate(timeout=1200)
        assert p.returncode == 0, f"grading {name} failed:\n{text}"
        out[name] = (json.loads(js.read_text()), text)
    return out


@pytest.mark.slow
@pytest.mark.skipif(not _has_exercises(CHAPTER), reason="nbs/01_background.ipynb has no exercises yet")
def test_background_chapter_round_trip(tmp_path):
    "Solved: full marks. Stubbed: zero. Exercise 1 answered with a classic mistake: it fails with its check's message."
    student = _student(CHAPTER, tmp_path)
    n = len(A.find_exercises(nbformat.read(student, 4)))
    body = "mode1_by_hand = [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]"   # reshaped without the mode permutation
    res = _grade_all({"stub": (student, CHAPTER),
                      "solved": (_answer(student, CHAPTER, tmp_path / "solved.ipynb"), CHAPTER),
                      "wrong": (_answer(student, CHAPTER, tmp_path / "wrong.ipynb", {"ex1": body}), CHAPTER)},
                     "--skip-slow", "--cwd", CHAPTER.parent)
    (stub, out_stub), (solved, out_solved), (wrong, out_wrong) = res["stub"], res["solved"], res["wrong"]
    assert stub["score"] == 0 and all(e["message"] for e in stub["exercises"]), out_stub
    assert solved["score"] == solved["max_score"] > 0 and len(solved["exercises"]) == n, out_solved
    ex1 = wrong["exercises"][0]
    assert not ex1["passed"] and ex1["points"] == 0 and "is not the mode-1 unfolding" in ex1["message"], out_wrong
    assert wrong["score"] < solved["score"], out_wrong
