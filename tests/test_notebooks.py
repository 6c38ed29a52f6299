"""Notebook hygiene (the house style, ../shared/STYLE.md).

Stored without outputs, one literal parameters cell, a title, a summary.
"""

from __future__ import annotations

import ast

import nbformat
import pytest

from rlxf.run import COMMON_PARAMS, NOTEBOOKS_DIR, discover_notebooks

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


def test_parameters_shared_by_notebooks_have_equal_defaults():
    """A name declared by several notebooks (e.g. the party classifier's settings) means one thing: same default."""
    import papermill

    seen: dict[str, tuple[str, object]] = {}
    for path in NOTEBOOKS:
        for name, info in papermill.inspect_notebook(str(path)).items():
            if name in COMMON_PARAMS:
                continue
            default = ast.literal_eval(info["default"])
            if name in seen:
                first, value = seen[name]
                assert value == default, f"{name}: {first} says {value!r}, {path.name} says {default!r}"
            else:
                seen[name] = (path.name, default)
