"""`make book`: the static site built from executed notebooks (not re-executed) shows each notebook with its figures
and its equations, with MathJax from the site itself (offline)."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

pytest.importorskip("sphinx", reason="the book needs the extra 'book' (pip install -e '.[book]'; make test does it)")
pytest.importorskip("myst_nb", reason="the book needs the extra 'book' (pip install -e '.[book]'; make test does it)")

from rlxf.run.book import build_book, bundle_mathjax  # noqa: E402
from rlxf.run.runlog import RunnerError  # noqa: E402

PLOT = "import matplotlib.pyplot as plt\nfig, ax = plt.subplots(figsize=(3, 2))\nax.plot([0, 1], [{a}, {b}]);"


def _executed_notebooks(folder: Path) -> list[str]:
    """Two tiny notebooks, each with an equation and a figure, executed the way papermill executes (nbclient)."""
    from nbclient import NotebookClient

    folder.mkdir(parents=True)
    names = []
    for number, (a, b) in (("01", (0, 1)), ("02", (1, 0))):
        nb = new_notebook(cells=[new_markdown_cell(f"# {number} · A page\n\nThe loss $L = -\\log \\sigma(r_w - r_l)$."),
                                 new_code_cell(PLOT.format(a=a, b=b))])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        NotebookClient(nb, timeout=120, kernel_name="python3").execute()
        assert any("image/png" in o.get("data", {}) for o in nb.cells[1].outputs), "the plot made no PNG"
        nbformat.write(nb, folder / f"{number}_page_{number}.ipynb")
        names.append(f"{number}_page_{number}")
    return names


def test_the_book_shows_every_notebook_with_its_figures(tmp_path):
    names = _executed_notebooks(tmp_path / "executed")
    index = build_book(tmp_path / "executed", tmp_path / "book")
    html = index.parent
    assert index.is_file() and (html / "README.html").is_file()
    for name in names:
        page = html / "notebooks" / f"{name}.html"
        assert page.is_file(), f"no page for {name}"
        text = page.read_text()
        images = re.findall(r'<img[^>]+src="([^"]+)"', text)
        assert images, f"{name}: no figure on its page"
        for src in images:
            assert (page.parent / src).is_file(), f"{name}: the image {src} does not exist"
        assert "L = -\\log \\sigma(r_w - r_l)" in text, f"{name}: the equation is not on the page for MathJax"
        assert f'href="notebooks/{name}.html"' in index.read_text(), f"the index does not link {name}"
        _assert_local_mathjax(page)


def _assert_local_mathjax(page: Path) -> None:
    """The page loads MathJax 3 from the site itself (a file that exists, with its fonts), never from a URL."""
    text = page.read_text()
    scripts = re.findall(r'<script[^>]+src="([^"?]*tex-mml-chtml\.js)[^"]*"', text)
    assert scripts, f"{page.name}: no <script> loads MathJax's tex-mml-chtml.js"
    for src in scripts:
        assert "://" not in src, f"{page.name}: MathJax comes from {src}, not from the site"
        mathjax = (page.parent / src).resolve()
        assert mathjax.is_file(), f"{page.name}: the MathJax file {src} does not exist in the build"
        fonts = mathjax.parent / "output" / "chtml" / "fonts" / "woff-v2"
        assert (fonts / "MathJax_Main-Regular.woff").is_file(), f"no MathJax fonts in {fonts}"
    urls = [url for url in re.findall(r'(?:src|href)="(https?://[^"]+)"', text) if "mathjax" in url.lower()]
    assert not urls, f"{page.name}: MathJax from the network: {urls}"


def test_an_incomplete_mathjax_is_named(tmp_path, monkeypatch):
    es5 = tmp_path / "mathjax" / "static" / "mathjax" / "es5"
    es5.mkdir(parents=True)
    (es5 / "tex-mml-chtml.js").write_text("")
    fake = types.ModuleType("mathjax")
    fake.__file__ = str(tmp_path / "mathjax" / "__init__.py")
    monkeypatch.setitem(sys.modules, "mathjax", fake)
    with pytest.raises(RunnerError, match=r"MathJax 3 is incomplete in .*es5: no output/chtml, input"):
        bundle_mathjax(tmp_path / "static")


def test_the_book_needs_executed_notebooks(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunnerError, match=r"no executed notebooks NN_name.ipynb in .*empty: run `make demo`"):
        build_book(tmp_path / "empty", tmp_path / "book")
