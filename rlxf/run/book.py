"""`make book`: a static HTML site from the executed notebooks of a published run (not re-executed), the README and
docs/, built with Sphinx, MyST-NB and sphinx-book-theme (why these: book/conf.py).

    python -m rlxf.run.book [--notebooks results/demo/notebooks] [--out build/book]

The sources are staged in `<out>/src` in the repository's layout (README.md, docs/, figures/, the notebooks under
their path in the repository), so the README's links to the executed notebooks and its inline figures resolve; the
site is `<out>/html/index.html`. MathJax 3 goes with the sources (`<out>/src/_static/mathjax/`), so equations render
with no network. Needs the optional extra `book` (`pip install -e '.[book]'`; `make book` does it).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from rlxf.paths import REPO_ROOT
from rlxf.run.runlog import RunnerError
from rlxf.run.runner import _NOTEBOOK_NAME

DEFAULT_NOTEBOOKS = REPO_ROOT / "results" / "demo" / "notebooks"
CONF = REPO_ROOT / "book" / "conf.py"
# What the site takes from MathJax 3's es5/ folder (django-static-mathjax ships it; why this MathJax: book/conf.py):
# the combined TeX + MathML input, CommonHTML output component that book/conf.py's mathjax_path names, the CommonHTML
# fonts (woff-v2) and the pieces it loads on demand (TeX extensions, the menu, the accessibility tools and their
# speech rules). Not the other combined components nor the SVG output.
MATHJAX_PARTS = ("tex-mml-chtml.js", "output/chtml", "input", "ui", "a11y", "sre")


def _staged_path(notebooks_dir: Path) -> Path:
    """Where the notebooks go in the staged sources: their path in the repository (results/demo/notebooks), else
    `notebooks/`."""
    resolved = notebooks_dir.resolve()
    return resolved.relative_to(REPO_ROOT) if resolved.is_relative_to(REPO_ROOT) else Path("notebooks")


def bundle_mathjax(static: Path) -> Path:
    """Copy MathJax 3 (MATHJAX_PARTS and its licence) from the package django-static-mathjax into `static/mathjax`;
    return its entry script."""
    try:
        import mathjax
    except ImportError:
        raise RunnerError("the book needs django-static-mathjax (MathJax 3 for offline equations), in the extra "
                          "'book': pip install -e '.[book]'") from None
    es5 = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    missing = [part for part in MATHJAX_PARTS if not (es5 / part).exists()]
    if missing:
        raise RunnerError(f"MathJax 3 is incomplete in {es5}: no {', '.join(missing)} (expected the files of "
                          "django-static-mathjax==3.2.2.1; reinstall it)")
    target = Path(static) / "mathjax"
    for part in MATHJAX_PARTS:
        if (es5 / part).is_dir():
            shutil.copytree(es5 / part, target / part, dirs_exist_ok=True)
        else:
            (target / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(es5 / part, target / part)
    shutil.copy2(es5.parent / "LICENSE", target / "LICENSE")   # Apache 2.0: the licence travels with the copy
    return target / MATHJAX_PARTS[0]


def stage(notebooks_dir: Path, src: Path) -> list[str]:
    """Copy the book's sources into `src` (replacing it) and write its index; return the notebook pages' names."""
    notebooks = sorted(p for p in Path(notebooks_dir).glob("*.ipynb") if _NOTEBOOK_NAME.match(p.name))
    if not notebooks:
        raise RunnerError(f"no executed notebooks NN_name.ipynb in {notebooks_dir}: run `make demo` (it publishes them "
                          "there) or name another folder with --notebooks")
    if src.exists():
        shutil.rmtree(src)
    where = src / _staged_path(Path(notebooks_dir))
    where.mkdir(parents=True)
    for notebook in notebooks:
        shutil.copy2(notebook, where / notebook.name)
    shutil.copy2(CONF, src / "conf.py")
    bundle_mathjax(src / "_static")
    shutil.copy2(REPO_ROOT / "README.md", src / "README.md")
    if (REPO_ROOT / "figures").is_dir():
        shutil.copytree(REPO_ROOT / "figures", src / "figures", ignore=shutil.ignore_patterns("gpu"))
    docs = sorted((REPO_ROOT / "docs").glob("*.md"))
    (src / "docs").mkdir(exist_ok=True)
    for doc in docs:
        shutil.copy2(doc, src / "docs" / doc.name)
    pages = [str((where / notebook.stem).relative_to(src)) for notebook in notebooks]
    index = ["# rlxf", "", "RL fine-tuning of language models from feedback that is not a human click: the README, "
             "the executed notebooks of the last published run (outputs as that run left them, not re-executed) and "
             "the docs.", ""]
    for caption, entries in (("Overview", ["README"]), ("Notebooks", pages),
                             ("Docs", [f"docs/{doc.stem}" for doc in docs])):
        if entries:
            index += ["```{toctree}", ":maxdepth: 1", f":caption: {caption}", "", *entries, "```", ""]
    (src / "index.md").write_text("\n".join(index))
    return pages


def build_book(notebooks_dir: Path = DEFAULT_NOTEBOOKS, out: Path = REPO_ROOT / "build" / "book") -> Path:
    """Stage the sources in `<out>/src` and build the site into `<out>/html`; return the site's index.html."""
    try:
        from sphinx.cmd.build import build_main
    except ImportError:
        raise RunnerError("the book needs the extra 'book': pip install -e '.[book]' (make book installs it)") from None
    out = Path(out)
    stage(Path(notebooks_dir), out / "src")
    html = out / "html"
    if build_main(["-b", "html", "-q", "-j", "1", str(out / "src"), str(html)]) != 0:
        raise RunnerError(f"sphinx-build failed on {out / 'src'} (its messages are above)")
    return html / "index.html"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rlxf.run.book", description=__doc__.splitlines()[0])
    parser.add_argument("--notebooks", type=Path, default=DEFAULT_NOTEBOOKS, help="the executed notebooks' folder")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "build" / "book", help="src/ and html/ go here")
    args = parser.parse_args(argv)
    try:
        index = build_book(args.notebooks, args.out)
    except RunnerError as err:
        print(f"[rlxf.run.book] error: {err}", file=sys.stderr)
        return 1
    print(f"[rlxf.run.book] the book: {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
