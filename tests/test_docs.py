"""Every exported function and class has its own docstring, and its chapter renders it with show_doc."""
import importlib, inspect, re
from pathlib import Path

import nbformat
import pytest

NBS = Path(__file__).resolve().parents[1] / "nbs"


def _exporting_notebooks():
    for path in sorted(NBS.glob("*.ipynb")):
        code = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
        found = [m.group(1) for s in code if (m := re.match(r"#\|\s*default_exp\s+(\S+)", s))]
        if found: yield pytest.param(path, found[0], "\n".join(code), id=path.stem)


def _documented_objects(module):
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.isfunction(obj) or inspect.isclass(obj): yield name, obj


@pytest.mark.parametrize("path, module_name, code", _exporting_notebooks())
def test_exports_have_docstrings_rendered_by_show_doc(path, module_name, code):
    module = importlib.import_module(f"tensornn.{module_name}")
    shown = set(re.findall(r"show_doc\(([\w.]+)", code))
    undocumented = [n for n, obj in _documented_objects(module) if not (obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__)]
    not_shown = [n for n, _ in _documented_objects(module) if n not in shown]
    assert not undocumented, f"{path.name}: exported without a docstring: {undocumented}"
    assert not not_shown, f"{path.name}: exported but never rendered with show_doc: {not_shown}"


def test_no_module_imports_another_modules_private_names():
    "The conventions: a helper another module needs is public in its home module (issue 15/16 clean-up)."
    import ast
    pkg = Path(__file__).resolve().parents[1] / "tensornn"
    bad = []
    for path in sorted(pkg.glob("*.py")):
        if path.name == "_modidx.py": continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").startswith("tensornn")):
                bad += [(path.name, node.module, a.name) for a in node.names if a.name.startswith("_") and a.name != "__version__"]
    assert not bad, bad
