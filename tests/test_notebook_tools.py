"""The notebook tools in tools/: progress bars stored in their final state, directives read by fastcore,
the README free of links that break outside a clone, and the cells grading needs."""
from __future__ import annotations

import json, re, sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import assignments as A  # noqa: E402
import make_readme  # noqa: E402
import number_cells  # noqa: E402

NOTEBOOKS = sorted((ROOT / "nbs").glob("*.ipynb"))


def _stream(name, text): return {"output_type": "stream", "name": name, "text": [text]}


def test_progress_bar_redraws_collapse_to_the_final_state():
    outs = [_stream("stderr", "\r  0%|   | 0/3"), _stream("stderr", "\r 33%|#  | 1/3"), _stream("stderr", "\r100%|###| 3/3\n"),
            _stream("stdout", "done\n"), _stream("stdout", "a\rb\n")]
    got = number_cells.collapse_streams(outs)
    assert [o["name"] for o in got] == ["stderr", "stdout"]
    assert "".join(got[0]["text"]) == "100%|###| 3/3\n"
    assert "".join(got[1]["text"]) == "done\nb\n"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebooks_store_progress_bars_once(path):
    "No stored stream output holds a carriage-return redraw, and no two consecutive ones share a stream."
    for i, cell in enumerate(json.loads(path.read_text())["cells"]):
        streams = [(o["name"], "".join(o["text"])) for o in cell.get("outputs", []) if o["output_type"] == "stream"]
        assert not any(re.search(r"\r(?!\n|$)", t) for _, t in streams), f"{path.name} cell {i}: a progress bar's redraws are stored"
        outs = cell.get("outputs", [])
        for a, b in zip(outs, outs[1:]):
            assert not (a["output_type"] == b["output_type"] == "stream" and a["name"] == b["name"]), \
                f"{path.name} cell {i}: consecutive {a['name']} outputs (run tools/number_cells.py)"


def test_directives_are_read_by_fastcore():
    "Spacing variants nbdev accepts are understood the same way by the README maker and the site builder."
    sys.path.insert(0, str(ROOT / "tools" / "site"))
    import build
    for src in ("#|hide\nx = 1", "#| hide\nx = 1", "#|  hide\nx = 1"):
        assert "hide" in make_readme._directives(src)
        assert build._directives(src) == ({"hide": True}, "x = 1")
    assert build._directives("#| echo: false\n#| output: asis\nshow()")[0] == {"echo": "false", "output": "asis"}


def test_readme_has_no_relative_links():
    "A relative link breaks on a package index or a mirror; the README names notebooks instead."
    text = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)]+)\)", text)
    assert all(re.match(r"https?:|#", u) for u in links), [u for u in links if not re.match(r"https?:|#", u)]


def _notebook(*sources):
    "A notebook of code cells with these sources."
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in sources])


def test_grading_runs_only_the_cells_the_exercises_need():
    "A definition the exercise reads is kept, through a function body defined before it; an unrelated experiment is not."
    nb = _notebook(
        "import math\nimport time",
        "def area(r): return math.pi * square(r)",
        "def square(r): return r * r",
        "#| slow\ntime.sleep(100)\nslow_result = 1",
        "x = 2\nx = x + 1",
        "# Exercise 1: area\ndef answer(r):\n    ### BEGIN SOLUTION\n    return area(r)\n    ### END SOLUTION",
        "assert abs(answer(x) - 9 * math.pi) < 1e-12",
    )
    assert A.needed_cells(nb) == {0, 1, 2, 4, 5, 6}
    assert A._names("y = [n * k for n in range(k)]")[:2] == ({"y"}, {"k"})


def test_grading_keeps_cells_that_change_a_needed_object_in_place():
    "A method attached after its class (nbdev's pattern, and `_attach`) or an item set in place is kept with the object."
    nb = _notebook(
        "class C:\n    pass",
        "def _make(cls): return cls()\nC.make = classmethod(_make)",
        "def _size(self): return 3\n_attach(C, 'size', _size)",
        "table = {}\ntable['k'] = 2",
        "unrelated = [1]\nunrelated[0] = 5",
        "# Exercise 1: use C\ndef answer():\n    ### BEGIN SOLUTION\n    return C.make().size()\n    ### END SOLUTION",
        "assert answer() == 3 and table['k'] == 2",
    )
    assert A.needed_cells(nb) == {0, 1, 2, 3, 5, 6}
    assert A._names("C.m = f")[:2] == ({"C"}, {"C", "f"})


def test_a_function_body_sees_the_binding_made_before_the_exercises():
    "A name read inside a function body is looked up when it is called: the binder before the exercises is kept."
    nb = _notebook(
        "def helper(): return 2",
        "def twice(): return 2 * helper()",
        "value = twice()",
        "# Exercise 1: value\ndef answer():\n    ### BEGIN SOLUTION\n    return value\n    ### END SOLUTION",
        "from somewhere import helper\nassert answer() == 4",
    )
    assert 0 in A.needed_cells(nb)

