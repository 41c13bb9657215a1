"""Every chapter draws its figures in the book's style and checks their axis labels (tensornn.plotting)."""
import re
from pathlib import Path

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import nbformat
import pytest

from tensornn.plotting import check_labels, unlabelled_axes

CHAPTERS = sorted((Path(__file__).resolve().parents[1] / "nbs").glob("[0-9][0-9]_*.ipynb"))
MAKES_FIGURE = re.compile(r"plt\.(subplots|figure)\(")


def _code_cells(path):
    return [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_uses_book_style_and_checks_labels(path):
    cells = _code_cells(path)
    figure_cells = [s for s in cells if MAKES_FIGURE.search(s)]
    if not figure_cells: pytest.skip(f"{path.name} draws no figure")
    style = [s for s in cells if "use_book_style()" in s]
    assert style and not any(s.lstrip().startswith("#| slow") for s in style[:1]), \
        f"{path.name}: call use_book_style() in a cell that always runs, before the first figure"
    unchecked = [s.splitlines()[0] for s in figure_cells if "check_labels(" not in s]
    assert not unchecked, f"{path.name}: figure cells without check_labels(): {unchecked}"
    # plt.show() closes the figures under the inline backend: a check after it would see none
    late = [s.splitlines()[0] for s in figure_cells if "plt.show()" in s and s.index("check_labels(") > s.index("plt.show()")]
    assert not late, f"{path.name}: check_labels() must come before plt.show() in: {late}"


def test_check_labels_names_the_unlabelled_axes():
    fig, (a, b) = plt.subplots(1, 2)
    a.plot([0, 1]); a.set(xlabel="x", ylabel="y")
    b.plot([0, 1]); b.set(title="right panel", xlabel="x")
    assert unlabelled_axes(fig) == [f"figure {fig.number}, axes 1 (right panel): no y label"]
    with pytest.raises(ValueError, match=r"^fig: .*right panel"):
        check_labels(fig)
    b.set_ylabel("y")
    check_labels(fig)
    plt.close(fig)


def test_colorbars_and_hidden_axes_are_exempt():
    fig, (a, b) = plt.subplots(1, 2)
    im = a.imshow([[0, 1], [1, 0]]); a.set(xlabel="column", ylabel="row")
    fig.colorbar(im, ax=a)
    b.imshow([[1, 0], [0, 1]]); b.axis("off")
    assert unlabelled_axes(fig) == []
    plt.close(fig)
