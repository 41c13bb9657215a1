"""Chapters as course assignments, with nbgrader's conventions.

An exercise is a code cell that starts with `# Exercise N: title` and holds its solution between
`### BEGIN SOLUTION` and `### END SOLUTION`; the code cells after it that contain `assert`s (up to
the next exercise) are its checks (an `assert`, or a call such as `assert_close(...)`), which may hold hidden checks between `### BEGIN HIDDEN TESTS`
and `### END HIDDEN TESTS`. The committed chapter runs with the solutions in place.

    python tools/assignments.py student nbs/01_background.ipynb -o assignments/01_background.ipynb
        the student version: each solution region replaced by nbgrader's stub
        (`# YOUR CODE HERE` / `raise NotImplementedError()`), hidden checks removed, outputs
        cleared, nbgrader cell metadata added (so the file also imports into an nbgrader course)
    python tools/assignments.py grade assignments/01_background.ipynb --source nbs/01_background.ipynb
        runs a completed student notebook with nbclient, checks cells restored from the source
        (hidden checks included, edits to checks undone), and prints a pass/fail table per exercise;
        `--json FILE` writes the result (default: next to the notebook, `.grade.json`)
    python tools/assignments.py nbgrader-source nbs/01_background.ipynb -o course/source/ps1/01_background.ipynb
        the solved chapter with nbgrader metadata, for `nbgrader generate_assignment` in a course
    python tools/assignments.py list nbs/01_background.ipynb

Why not nbgrader itself: it installs and runs offline, but it brings ipywidgets into the kernel's
environment, which turns every `tqdm.auto` bar of the book into a widget whose final state is not
stored in the executed notebooks, and it needs a course folder and a gradebook database. This tool
keeps its conventions and metadata (schema 3) so either can be used on the same notebooks.
"""
from __future__ import annotations

import argparse, copy, json, re, sys, time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat
from fastcore.nbio import mk_cell

ROOT = Path(__file__).resolve().parents[1]
EXERCISE = re.compile(r"^\s*#\s*Exercise\s+(\w+)\s*[:.\-–—]?\s*(.*?)\s*$", re.I)
BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
CODE_STUB = ["# YOUR CODE HERE", "raise NotImplementedError()"]  # nbgrader's default stub for Python
TEXT_STUB = "YOUR ANSWER HERE"
# a check: an assert statement, or a call of an assertion helper (assert_close, np.testing.assert_allclose, test_eq...)
ASSERT = re.compile(r"^\s*(assert\b|[\w.]*\bassert\w*\s*\(|test_\w+\s*\()", re.M)
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
META_KEY = "tensornn_assignment"


# ---------------------------------------------------------------- finding exercises
def _header(src: str):
    "The `# Exercise N: title` line of a cell (nbdev `#|` directives may come first)."
    cell = mk_cell(src)
    cell.directives = {}
    for line in cell.source.splitlines():
        if not line.strip(): continue
        m = EXERCISE.match(line)
        return (m.group(1), m.group(2)) if m else None
    return None


def _is_check(src: str) -> bool: return bool(ASSERT.search(src)) or BEGIN_HIDDEN in src


@dataclass
class Exercise:
    number: str
    title: str
    cell: int  # index of the exercise cell
    checks: list[int] = field(default_factory=list)  # indices of its check cells

    @property
    def id(self) -> str: return f"ex{self.number}"


def find_exercises(nb) -> list[Exercise]:
    "Exercises in notebook order; nbgrader metadata (grade_id) wins over the comment convention when present."
    exercises, current = [], None
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code": continue
        gid = cell.metadata.get("nbgrader", {}).get("grade_id", "")
        head = _header(cell.source)
        if head or (gid.startswith("ex") and not gid.endswith("-check") and cell.metadata["nbgrader"].get("solution")):
            number, title = head if head else (gid[2:], "")
            if gid.startswith("ex") and not gid.endswith("-check"): number = gid[2:]
            current = Exercise(number, title, i)
            exercises.append(current)
        elif current is not None and (_is_check(cell.source) or gid.endswith("-check")):
            current.checks.append(i)
    seen = set()
    for e in exercises:
        if e.id in seen: raise ValueError(f"exercise number {e.number} appears twice: number the exercises 1, 2, ...")
        seen.add(e.id)
    return exercises


# ---------------------------------------------------------------- nbgrader's region rules
def _replace_regions(src: str, begin: str, end: str, stub: list[str] | None, where: str) -> tuple[str, int]:
    "Replace each begin/end region (markers included) by `stub` indented like the begin marker (None: delete)."
    out, inside, n, indent = [], False, 0, ""
    for line in src.splitlines():
        s = line.strip()
        if s == begin:
            if inside: raise ValueError(f"{where}: nested '{begin}'")
            inside, n, indent = True, n + 1, line[: len(line) - len(line.lstrip())]
            if stub is not None: out += [indent + l for l in stub]
        elif s == end:
            if not inside: raise ValueError(f"{where}: '{end}' without '{begin}'")
            inside = False
        elif not inside: out.append(line)
    if inside: raise ValueError(f"{where}: '{begin}' is never closed by '{end}'")
    return "\n".join(out), n


def _nbgrader_meta(grade_id: str, *, solution: bool, grade: bool, points: float = 0, locked: bool = False) -> dict:
    m = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3, "solution": solution, "task": False}
    if grade: m["points"] = points
    return m


def tag(nb, source_name: str = ""):
    "A copy of `nb` with nbgrader metadata on every exercise and check cell."
    nb = copy.deepcopy(nb)
    exercises = find_exercises(nb)
    if not exercises: raise ValueError(f"{source_name or 'notebook'}: no exercise cells (a code cell starting with '# Exercise N: title')")
    for e in exercises:
        cell = nb.cells[e.cell]
        _, n = _replace_regions(cell.source, BEGIN_SOLUTION, END_SOLUTION, None, f"{source_name} exercise {e.number}")
        if not n:
            raise ValueError(f"{source_name}: exercise {e.number} has no '{BEGIN_SOLUTION}' ... '{END_SOLUTION}' region")
        if not e.checks: raise ValueError(f"{source_name}: exercise {e.number} has no check cell with an assert after it")
        cell.metadata["nbgrader"] = _nbgrader_meta(e.id, solution=True, grade=False)
        for k, ci in enumerate(e.checks):
            old = nb.cells[ci].metadata.get("nbgrader", {})
            gid = f"{e.id}-check" + (f"-{k + 1}" if k else "")
            nb.cells[ci].metadata["nbgrader"] = _nbgrader_meta(gid, solution=False, grade=True, points=old.get("points", 1), locked=True)
    nb.metadata[META_KEY] = {"source": source_name, "exercises": {e.id: e.title for e in exercises}}
    return nb


def student_version(nb, source_name: str = "", *, keep_outputs: bool = True):
    "Solutions replaced by stubs, hidden checks removed; exercise and check outputs cleared, the chapter's figures kept."
    nb = tag(nb, source_name)
    for i, cell in enumerate(nb.cells):
        where = f"{source_name} cell {i}"
        if cell.cell_type == "code":
            cell.source, _ = _replace_regions(cell.source, BEGIN_SOLUTION, END_SOLUTION, CODE_STUB, where)
            cell.source, _ = _replace_regions(cell.source, BEGIN_HIDDEN, END_HIDDEN, None, where)
            if not keep_outputs or cell.metadata.get("nbgrader"):
                cell.outputs, cell.execution_count = [], None
        elif cell.cell_type == "markdown":
            cell.source, n = _replace_regions(cell.source, BEGIN_SOLUTION, END_SOLUTION, [TEXT_STUB], where)
    return nb


# ---------------------------------------------------------------- grading
@dataclass
class Result:
    exercise: str
    title: str
    passed: bool
    points: float
    max_points: float
    checks_passed: int
    checks: int
    message: str = ""


def _error_message(outputs) -> str | None:
    for o in outputs:
        if o.get("output_type") == "error":
            tb = [ANSI.sub("", l) for l in o.get("traceback", [])]
            pointed = [m.group(1).strip() for t in tb for l in t.splitlines() if (m := re.match(r"^\s*-+>\s*\d*\s(.*)$", l))]
            where = pointed[-1] if pointed else ""  # the innermost line IPython points at
            msg = f"{o['ename']}: {o['evalue']}" if o.get("evalue") else o["ename"]
            return msg + (f"  (at: {where})" if where and where not in msg else "")
    return None


def nbgrader_source(nb, source_name: str = "", *, kernel: str | None = None):
    """The solved chapter with nbgrader metadata, ready for `nbgrader generate_assignment`. nbgrader's autograde runs
    every code cell, so `#| slow` and `#| gpu` cells the exercises do not need become raw cells (their code stays
    readable, nothing runs); `kernel` names the Jupyter kernel autograde should start."""
    nb = tag(nb, source_name)
    needed = needed_cells(nb)
    for i, c in enumerate(nb.cells):
        if c.cell_type == "code" and i not in needed and ({"slow", "gpu", "notest"} & set(mk_cell(c.source).directives)):
            nb.cells[i] = nbformat.v4.new_raw_cell(c.source, metadata={k: v for k, v in c.metadata.items() if k != "nbgrader"})
    if kernel: nb.metadata["kernelspec"] = {"name": kernel, "display_name": kernel, "language": "python"}
    return nb


def _graded_notebook(student, source):
    "The student's notebook with every check cell restored from the source (hidden checks included)."
    nb = copy.deepcopy(student)
    if source is None: return nb
    src = tag(source)
    src_ex = {e.id: e for e in find_exercises(src)}
    stu_ex = {e.id: e for e in find_exercises(nb)}
    missing = [eid for eid in src_ex if eid not in stu_ex]
    if missing: raise ValueError(f"the student notebook lacks exercise cell(s) {', '.join(missing)}: was it made from this source?")
    inserts = []  # (insert after this cell index, cells in order)
    for eid, e in src_ex.items():
        mine = stu_ex[eid]
        by_gid = {nb.cells[ci].metadata.get("nbgrader", {}).get("grade_id"): ci for ci in mine.checks}
        extra = []
        for k, ci in enumerate(e.checks):
            cell = copy.deepcopy(src.cells[ci]); cell.outputs, cell.execution_count = [], None
            target = by_gid.get(cell.metadata["nbgrader"]["grade_id"])
            if target is None and k < len(mine.checks) and not nb.cells[mine.checks[k]].metadata.get("nbgrader"):
                target = mine.checks[k]  # metadata lost on the way: match the k-th check
            if target is None: extra.append(cell)
            else: nb.cells[target] = cell
        if extra: inserts.append((max([mine.cell, *mine.checks]), extra))
    for after, cells in sorted(inserts, key=lambda t: -t[0]): nb.cells[after + 1:after + 1] = cells
    return nb


_MUTATORS = {"setattr", "_attach"}          # calls that change their first argument in place


def _root_name(node):
    "The name at the root of `x.a[i].b`, or None."
    import ast
    while isinstance(node, (ast.Attribute, ast.Subscript)): node = node.value
    return node.id if isinstance(node, ast.Name) else None


class _Uses:
    """Names a cell binds, the names it reads before binding them (evaluation order: right side before target), and
    the names function and class bodies read, which are looked up later, when they are called (`deferred`). A cell
    that changes an object in place (`C.attr = ...`, `x[i] = ...`, `setattr(C, ...)`, `_attach(C, ...)`) both reads and
    binds its name: a later reader of that name needs the change."""
    def __init__(self): self.bound, self.read, self.deferred = set(), set(), set()

    def _mutates(self, name):
        if name is None: return
        if name not in self.bound: self.read.add(name)
        self.bound.add(name)

    def visit(self, node):
        import ast
        if isinstance(node, (ast.Attribute, ast.Subscript)) and isinstance(node.ctx, (ast.Store, ast.Del)):
            for child in ast.iter_child_nodes(node):
                if child is not node.value and not isinstance(child, ast.expr_context): self.visit(child)
            if isinstance(node.value, (ast.Attribute, ast.Subscript)): self.visit(type(node.value)(**{**vars(node.value), "ctx": ast.Load()}))
            self._mutates(_root_name(node))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _MUTATORS and node.args:
            for child in ast.iter_child_nodes(node): self.visit(child)
            self._mutates(_root_name(node.args[0]))
        elif isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load): (self.read.add(node.id) if node.id not in self.bound else None)
            else: self.bound.add(node.id)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            if isinstance(node, ast.AugAssign): self.visit(ast.Name(node.target.id, ast.Load()) if isinstance(node.target, ast.Name) else node.target)
            if node.value is not None: self.visit(node.value)
            for t in getattr(node, "targets", None) or [node.target]: self.visit(t)
        elif isinstance(node, (ast.For, ast.AsyncFor)):
            self.visit(node.iter); self.visit(node.target)
            for n in node.body + node.orelse: self.visit(n)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            args = getattr(node, "args", None)
            for d in [*getattr(node, "decorator_list", []), *getattr(node, "bases", []), *(k.value for k in getattr(node, "keywords", [])),
                      *(getattr(args, "defaults", None) or []), *(d for d in (getattr(args, "kw_defaults", None) or []) if d is not None)]:
                self.visit(d)
            inner = _Uses()  # the body runs later, with its own locals: what it reads from outside counts as read
            inner.bound = {a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg)} if hasattr(node, "args") else set()
            for n in (node.body if isinstance(node.body, list) else [node.body]): inner.visit(n)
            self.deferred |= inner.read | inner.deferred
            if not isinstance(node, ast.Lambda): self.bound.add(node.name)
        elif isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            inner = _Uses(); inner.bound = set(self.bound)  # its loop variables are its own
            for gen in node.generators:
                inner.visit(gen.iter); inner.visit(gen.target)
                for cond in gen.ifs: inner.visit(cond)
            for part in ([node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]): inner.visit(part)
            self.read |= inner.read; self.deferred |= inner.deferred
        elif isinstance(node, ast.ExceptHandler):
            if node.type is not None: self.visit(node.type)
            if node.name: self.bound.add(node.name)
            for n in node.body: self.visit(n)
        elif isinstance(node, ast.alias): self.bound.add((node.asname or node.name).split(".")[0])
        else:
            for child in ast.iter_child_nodes(node): self.visit(child)


def _names(src: str) -> tuple[set[str], set[str], set[str]]:
    "(names a cell binds, reads before binding, reads in function bodies); a cell that does not parse: nothing."
    import ast, builtins
    cell = mk_cell(src); cell.directives = {}
    code = "\n".join(l for l in cell.source.splitlines() if not l.lstrip().startswith(("%", "!")))
    try: tree = ast.parse(code)
    except SyntaxError: return set(), set(), set()
    uses = _Uses(); uses.visit(tree)
    builtin = set(dir(builtins))
    return uses.bound, uses.read - builtin, uses.deferred - builtin


def needed_cells(nb) -> set[int]:
    """Indices of the code cells the exercises need: the exercise and check cells, every earlier cell that binds a
    name a needed later cell reads before rebinding it (a backward liveness pass), and, for the names functions read
    when called, the last cell before the exercises that binds them; repeated until nothing is added."""
    exercises = find_exercises(nb)
    graded = {i for e in exercises for i in [e.cell, *e.checks]}
    last, first = max(graded, default=-1), min(graded, default=0)
    names = {i: _names(c.source) for i, c in enumerate(nb.cells[:last + 1]) if c.cell_type == "code"}
    needed = set(graded)
    while True:
        added, live = set(needed), set()
        for i in sorted(names, reverse=True):
            bound, read, _ = names[i]
            if i in added or bound & live:
                added.add(i); live = (live - bound) | read
        deferred = set().union(*(names[i][2] for i in added))
        for name in deferred:
            binders = [i for i in names if name in names[i][0]]
            before = [i for i in binders if i < first]       # bound before the exercises: what a call before them sees
            if binders: added.add(max(before or binders))
        if added == needed: return needed
        needed = added


def _import_table(nb) -> dict[str, str]:
    "name -> the statement that binds it: the notebook's own imports, and `from tensornn.<module> import name` for its exports."
    import ast
    table, module = {}, None
    for c in nb.cells:
        if c.cell_type != "code": continue
        d = mk_cell(c.source).directives
        module = d.get("default_exp", module)
        try: tree = ast.parse(re.sub(r"^\s*[%!].*$", "", c.source, flags=re.M))
        except SyntaxError: continue
        for node in tree.body:
            if isinstance(node, ast.Import):
                for a in node.names: table.setdefault((a.asname or a.name).split(".")[0], f"import {a.name}" + (f" as {a.asname}" if a.asname else ""))
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for a in node.names: table.setdefault(a.asname or a.name, f"from {node.module} import {a.name}" + (f" as {a.asname}" if a.asname else ""))
            elif module and "export" in d and isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                table[node.name] = f"from tensornn.{module} import {node.name}"
    return table


def harden_checks(nb) -> tuple[int, dict[str, list[str]]]:
    """Make each check import the names it uses (a student's cell cannot rebind them then): prepend to every check
    cell the import of each name it reads that the notebook imports or exports. Returns (cells changed, names left:
    {exercise id: names a check reads that come from neither the exercise nor an import, to fix by hand})."""
    table, changed, left = _import_table(nb), 0, {}
    for e in find_exercises(nb):
        answer = _names(nb.cells[e.cell].source)[0]
        for ci in e.checks:
            cell = nb.cells[ci]
            read = _names(cell.source)[1]
            imports = sorted({table[n] for n in read - answer if n in table}, key=lambda s: (s.startswith("from"), s))
            missing = sorted(n for n in read - answer if n not in table)
            if missing: left.setdefault(e.id, []).extend(missing)
            if not imports: continue
            parsed = mk_cell(cell.source); dirs = parsed.directives; parsed.directives = {}
            head = "".join(f"#| {k}{': ' + v if v else ''}\n" for k, v in dirs.items())
            cell.source = head + "\n".join(imports) + "\n" + parsed.source
            changed += 1
    return changed, left


def _is_slow(cell) -> bool:
    "A `#| slow` or `#| notest` cell, by fastcore's directive parser (nbdev's own)."
    return cell.cell_type == "code" and bool({"slow", "notest"} & set(mk_cell(cell.source).directives))


def grade(student, source=None, *, cwd: Path | None = None, timeout: int = 600, skip_slow: bool = False,
          full: bool = False, kernel_name: str = "python3") -> tuple[list[Result], dict]:
    """Execute the student's notebook and score each exercise: an exercise passes when all its checks pass.
    Only the exercises and the cells they depend on run (`needed_cells`), unless `full`."""
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError, CellTimeoutError
    nb = _graded_notebook(student, source)
    exercises = find_exercises(nb)
    if not exercises: raise ValueError("no exercises found in the notebook")
    graded = {i for e in exercises for i in [e.cell, *e.checks]}
    keep = set(range(len(nb.cells))) if full else needed_cells(nb)
    skipped = 0
    for i, c in enumerate(nb.cells):
        if c.cell_type != "code" or i in graded: continue
        if i not in keep: c.source, skipped = "# not needed by the exercises: not run when grading", skipped + 1
        elif skip_slow and _is_slow(c): c.source, skipped = "# skipped by grade --skip-slow", skipped + 1
    for c in nb.cells:
        if c.cell_type == "code": c.outputs, c.execution_count = [], None
    t0, fatal = time.time(), None
    client = NotebookClient(nb, timeout=timeout, kernel_name=kernel_name, allow_errors=True,
                            resources={"metadata": {"path": str(cwd or Path.cwd())}})
    try: client.execute()
    except (DeadKernelError, CellTimeoutError) as exc: fatal = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    results = []
    for e in exercises:
        ex_cell = nb.cells[e.cell]
        ex_err = _error_message(ex_cell.get("outputs", []))
        ran = ex_cell.get("execution_count") is not None
        points, max_points, n_ok, errs = 0.0, 0.0, 0, []
        for ci in e.checks:
            c = nb.cells[ci]
            pts = float(c.metadata.get("nbgrader", {}).get("points", 1))
            max_points += pts
            err = _error_message(c.get("outputs", []))
            if err is None and c.get("execution_count") is None: err = fatal or "check cell not run"
            if err is None: points, n_ok = points + pts, n_ok + 1
            else: errs.append(err)
        if ex_err:  # the exercise cell itself failed: that explains its checks' failures best
            msg = ("not answered: " if "NotImplementedError" in ex_err else "the exercise cell failed: ") + ex_err
            points, n_ok = 0.0, 0
        elif not ran: msg, points, n_ok = fatal or "exercise cell not run", 0.0, 0
        else:
            msg = errs[0] if errs else ""
            if msg.startswith("NotImplementedError"): msg = "not answered: " + msg
        results.append(Result(e.id, e.title, not msg, points, max_points, n_ok, len(e.checks), msg))
    other = [(i, _error_message(c.get("outputs", []))) for i, c in enumerate(nb.cells) if c.cell_type == "code" and i not in graded]
    info = {"seconds": round(time.time() - t0, 1), "skipped_cells": skipped, "fatal": fatal,
            "errors_outside_exercises": [{"cell": i, "message": m} for i, m in other if m]}
    info["notebook"] = nb  # the executed notebook, checks restored (for --executed)
    return results, info


def _table(results: list[Result]) -> str:
    rows = [("exercise", "title", "checks", "points", "result", "message")]
    for r in results:
        rows.append((r.exercise, r.title[:40], f"{r.checks_passed}/{r.checks}", f"{r.points:g}/{r.max_points:g}",
                     "pass" if r.passed else "FAIL", r.message.replace("\n", " ")[:160]))
    tot, mx = sum(r.points for r in results), sum(r.max_points for r in results)
    rows.append(("total", "", f"{sum(r.passed for r in results)}/{len(results)} exercises", f"{tot:g}/{mx:g}", "", ""))
    w = [max(len(r[k]) for r in rows) for k in range(5)]
    lines = ["  ".join(c.ljust(w[k]) for k, c in enumerate(r[:5])) + ("  " + r[5] if r[5] else "") for r in rows]
    lines.insert(1, "-" * (sum(w) + 10)); lines.insert(-1, "-" * (sum(w) + 10))
    return "\n".join(l.rstrip() for l in lines)


# ---------------------------------------------------------------- command line
def _read(path) -> "nbformat.NotebookNode": return nbformat.read(str(path), as_version=4)


def _rel(p: Path) -> str:
    try: return p.resolve().relative_to(ROOT).as_posix()
    except ValueError: return str(p)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("student", help="write the student version of a chapter")
    s.add_argument("notebook"); s.add_argument("-o", "--output", help="default: assignments/<name>.ipynb")
    s.add_argument("--clear-outputs", action="store_true", help="clear every output (by default the chapter's figures and results stay)")
    g = sub.add_parser("grade", help="grade a completed student notebook")
    g.add_argument("notebook"); g.add_argument("--source", help="the solved chapter: restores checks, hidden ones included (default: the source recorded in the notebook, when it exists)")
    g.add_argument("--json", help="where to write the result (default: <notebook>.grade.json)")
    g.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    g.add_argument("--skip-slow", action="store_true", help="do not run `#| slow` cells that are not exercises or checks")
    g.add_argument("--full", action="store_true", help="run every cell of the chapter, not only those the exercises need")
    g.add_argument("--cwd", help="working folder of the kernel (default: the notebook's folder)")
    g.add_argument("--executed", help="also write the executed notebook here (the student's feedback)")
    n = sub.add_parser("nbgrader-source", help="the solved chapter with nbgrader metadata, for an nbgrader course")
    n.add_argument("notebook"); n.add_argument("-o", "--output", required=True)
    n.add_argument("--kernel", help="the Jupyter kernel nbgrader's autograde starts (default: the notebook's)")
    h = sub.add_parser("harden", help="make every check cell import the names it uses (in place)")
    h.add_argument("notebook")
    l = sub.add_parser("list", help="list the exercises and their check cells")
    l.add_argument("notebook")
    a = ap.parse_args(argv)
    path = Path(a.notebook)
    nb = _read(path)
    if a.cmd == "student":
        out = Path(a.output or ROOT / "assignments" / path.name)
        out.parent.mkdir(parents=True, exist_ok=True)
        st = student_version(nb, _rel(path), keep_outputs=not a.clear_outputs)
        nbformat.write(st, str(out))
        print(f"wrote {out}: {len(find_exercises(st))} exercise(s), solutions replaced by stubs, hidden checks removed")
    elif a.cmd == "nbgrader-source":
        out = Path(a.output); out.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nbgrader_source(nb, _rel(path), kernel=a.kernel), str(out)); print(f"wrote {out}")
    elif a.cmd == "harden":
        n, left = harden_checks(nb)
        nbformat.write(nb, str(path))
        print(f"{path}: {n} check cell(s) now import what they use")
        for eid, names in left.items(): print(f"  {eid}: the checks read {', '.join(sorted(set(names)))} from cells a student can rebind: define them in the check")
    elif a.cmd == "list":
        for e in find_exercises(nb): print(f"{e.id}: {e.title}  (cell {e.cell}; checks in cells {', '.join(map(str, e.checks)) or 'none'})")
    elif a.cmd == "grade":
        src_path = a.source or nb.metadata.get(META_KEY, {}).get("source")
        if src_path and not Path(src_path).is_absolute() and not Path(src_path).exists(): src_path = str(ROOT / src_path)
        if a.source and not Path(src_path).exists(): sys.exit(f"--source {a.source}: no such notebook")
        source = _read(src_path) if src_path and Path(src_path).exists() else None
        results, info = grade(nb, source, cwd=Path(a.cwd) if a.cwd else path.resolve().parent, timeout=a.timeout,
                              skip_slow=a.skip_slow, full=a.full)
        executed = info.pop("notebook")
        if a.executed: nbformat.write(executed, a.executed)
        print(f"grading {path}" + (f" against {src_path}" if source is not None else " (no source: checks as found, no hidden checks)"))
        print(_table(results))
        report = {"notebook": str(path), "source": src_path if source is not None else None,
                  "score": sum(r.points for r in results), "max_score": sum(r.max_points for r in results),
                  "exercises": [asdict(r) for r in results], **info}
        out = Path(a.json) if a.json else path.with_suffix(".grade.json")
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"score {report['score']:g}/{report['max_score']:g} in {info['seconds']}s; wrote {out}")
        if info["fatal"]: print(f"grading stopped early: {info['fatal']}")
        if info["errors_outside_exercises"]:
            print("note: cells outside the exercises raised errors (the chapter, not the answers):")
            for e in info["errors_outside_exercises"][:5]: print(f"  cell {e['cell']}: {e['message'][:200]}")


if __name__ == "__main__": main()
