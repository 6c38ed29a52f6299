"""Notebook hygiene (the house style, ../shared/STYLE.md).

Stored without outputs, one literal parameters cell, a title, a summary.
"""

from __future__ import annotations

import ast

import nbformat
import pytest

from rlxf.run.runner import COMMON_PARAMS, NOTEBOOKS_DIR, discover_notebooks

NOTEBOOKS = sorted(discover_notebooks().values())


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no numbered notebooks in {NOTEBOOKS_DIR}"


def _is_literal(node: ast.expr) -> bool:
    """A constant or a list of constants (papermill and -p key=[...] pass both)."""
    return isinstance(node, ast.Constant) or (
        isinstance(node, ast.List) and all(isinstance(item, ast.Constant) for item in node.elts))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_anatomy(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not [i for i, c in enumerate(code) if c.outputs or c.execution_count], f"{path.name} has stored outputs"
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, f"{path.name}: {len(params)} cells tagged 'parameters', expected 1"
    tree = ast.parse(params[0].source)
    names = []
    for node in tree.body:
        assert isinstance(node, ast.Assign) and _is_literal(node.value), (
            f"{path.name}: the parameters cell holds only literal assignments, found {ast.unparse(node)!r}"
        )
        names.append(node.targets[0].id)
    assert set(COMMON_PARAMS) <= set(names), f"{path.name} must declare {COMMON_PARAMS}"
    import papermill

    seen_by_papermill = set(papermill.inspect_notebook(str(path)))
    assert seen_by_papermill == set(names), (
        f"{path.name}: papermill cannot parse the parameter line(s) of {sorted(set(names) - seen_by_papermill)} "
        "(an '=' inside the comment confuses it)"
    )
    for line in params[0].source.splitlines():
        assert "#" in line, f"{path.name}: every parameter gets a comment, not {line!r}"
    number = path.name[:2]
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith(f"# {number} · ")
    assert any(c.cell_type == "markdown" and c.source.startswith("## Summary") for c in nb.cells)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_the_profile_gives_every_value(path):
    """One source of parameters: the parameters cell names the demo profile and leaves every other parameter None;
    the cell after it fills them from configs/<profile>.yaml (so a notebook opened by hand runs the demo values)."""
    import papermill

    declared = papermill.inspect_notebook(str(path))
    assert declared["profile"]["default"] == '"demo"', f"{path.name}: the parameters cell must name profile = \"demo\""
    valued = sorted(name for name, info in declared.items() if name != "profile" and info["default"] != "None")
    assert not valued, f"{path.name} sets {valued} itself; set them in configs/*.yaml and leave them None"
    nb = nbformat.read(path, as_version=4)
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    call = f'globals().update(profile_params(profile, "{path.name[:2]}", globals()))'
    assert call in nb.cells[at + 1].source, f"{path.name}: the cell after the parameters must be {call}"


def _summary_cells(nb) -> list:
    """The cells from the '## Summary' heading to the next '## ' heading."""
    start = next(i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and c.source.startswith("## Summary"))
    cells = [nb.cells[start]]
    for cell in nb.cells[start + 1:]:
        if cell.cell_type == "markdown" and cell.source.startswith("## "):
            break
        cells.append(cell)
    return cells


def typed_in_numbers(source: str) -> list[str]:
    """Numeric literals that stand as a result in summary code: a dict value, a list/tuple element, an assigned
    value, a printed argument. Rounding digits, indices, unit conversions (`/ 2**20`) and arithmetic are fine."""
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and type(node.value) in (int, float)):
            continue
        parent = parents.get(node)
        if isinstance(parent, ast.UnaryOp):
            node, parent = parent, parents.get(parent)
        as_result = (isinstance(parent, ast.Dict) and node in parent.values
                     or isinstance(parent, ast.List | ast.Tuple | ast.Set)
                     and not isinstance(parents.get(parent), ast.Subscript)
                     or isinstance(parent, ast.Assign)
                     or isinstance(parent, ast.Call) and getattr(parent.func, "id", "") in ("print", "display"))
        if as_result:
            found.append(ast.unparse(node))
    return found


def test_typed_in_numbers_are_found():
    assert typed_in_numbers('summary = {"accuracy": 0.82, "n": len(x)}') == ["0.82"]
    assert typed_in_numbers("print(12)\nx = [1, -2]") == ["12", "1", "-2"]
    assert typed_in_numbers('s = {"mb": round(b / 2**20, 2), "first": h.iloc[0], "k": v[-1], "p": t[[0, 1]]}') == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_summary_numbers_are_computed_not_typed(path):
    """A Summary reports what the run measured: no number in its text, no numeric literal as a result in its code."""
    for cell in _summary_cells(nbformat.read(path, as_version=4)):
        if cell.cell_type == "markdown":
            body = cell.source.removeprefix("## Summary")
            assert not any(ch.isdigit() for ch in body), f"{path.name}: Summary text holds a number: {body!r}"
        else:
            typed = typed_in_numbers(cell.source)
            assert not typed, f"{path.name}: Summary code types in {typed}"
