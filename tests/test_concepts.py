"""The teaching cells: every method notebook states its concepts before its code, every notebook opens with a box,
and every link from a Concept cell or docs/concepts.md reaches a file that defines the function it names."""

from __future__ import annotations

import json
import re

import pytest

from rlxf.paths import REPO_ROOT

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
METHOD_NOTEBOOKS = {"02", "03", "04", "05", "06", "07", "08"}
LINK = re.compile(r"\[([^\]]+)\]\(\.\./([^)#]+)[^)]*\)")


def _markdown(path):
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "markdown"]


def _check_links(text: str, where: str) -> int:
    """Each link's file exists; each `name` in the link text is defined there (def, class or a field)."""
    checked = 0
    for label, target in LINK.findall(text):
        path = REPO_ROOT / target  # every link here is written from a folder one below the root
        assert path.exists(), f"{where}: the link to {target} points at nothing"
        if path.suffix == ".py":
            source = path.read_text()
            for name in re.findall(r"`([A-Za-z_][\w.]*)`", label):
                last = name.split(".")[-1]
                assert re.search(rf"^\s*(def|class) {last}\b|^\s*{last}\s*[:=]", source, re.M), \
                    f"{where}: {target} defines no {name}"
                checked += 1
    return checked


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_opening_box_and_concepts(path):
    cells = _markdown(path)
    assert cells[1].startswith("> **What you will learn**"), f"{path.name}: the opening box must follow the title"
    for part in ("**Prerequisites:**", "**Time on the demo profile:**", "**Known limitations"):
        assert part in cells[1], f"{path.name}: the opening box has no {part}"
    concepts = [c for c in cells if c.startswith("### Concept")]
    if path.name[:2] in METHOD_NOTEBOOKS:
        assert concepts, f"{path.name}: a method notebook needs a Concept cell"
        assert all("$" in c for c in concepts), f"{path.name}: a Concept cell without an equation"
        assert sum(_check_links(c, path.name) for c in concepts) > 0, \
            f"{path.name}: no Concept cell links a function in rlxf/"
    assert not re.search(r"AIRL study|lecture's", "".join(cells)), f"{path.name}: an unexplained study reference"


def test_concepts_table_links_resolve():
    text = (REPO_ROOT / "docs" / "concepts.md").read_text()
    assert _check_links(text, "docs/concepts.md") == 0  # link labels are paths, names follow
    for row in text.splitlines():
        for target, names in re.findall(r"\]\(\.\./(rlxf/[\w/]+\.py)\): ([^;|]+)", row):
            source = (REPO_ROOT / target).read_text()
            for name in re.findall(r"`([A-Za-z_][\w.]*)`", names.split("(")[0]):
                assert re.search(rf"^\s*(def|class) {name.split('.')[-1]}\b|^\s*{name.split('.')[-1]}\s*[:=]",
                                 source, re.M), f"docs/concepts.md: {target} defines no {name}"
    linked = set(re.findall(r"\]\(\.\./notebooks/(\d\d)_", text))
    assert METHOD_NOTEBOOKS <= linked, f"docs/concepts.md names no concept of {sorted(METHOD_NOTEBOOKS - linked)}"
