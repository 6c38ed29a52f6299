# Sphinx configuration of the book (`make book`: python -m rlxf.run.book stages the sources next to a copy of this file).
#
# Why Sphinx + MyST-NB + sphinx-book-theme: all three are pure-Python packages on PyPI, well kept (the Executable
# Books project and Sphinx), and build offline; MyST-NB renders executed notebooks without running them
# (nb_execution_mode "off") and reads the README and docs/ as MyST Markdown. Jupyter Book 2 is built on mystmd, a
# Node.js application that fetches its theme at build time; MkDocs + mkdocs-jupyter converts through nbconvert and
# needs a MathJax from a CDN as well. MathJax here is the copy jupyter-server-mathjax ships (MathJax 2.7, STIX-Web
# fonts), copied into the site so that no CDN is needed. Known gap: in headless Chromium its HTML-CSS output stalls
# at "Loading .../STIX-Web/fontdata.js" and equations show as TeX source; the renderer needs fixing.
from pathlib import Path

import jupyter_server_mathjax

project = "rlxf"
author = "rlxf contributors"
extensions = ["myst_nb"]
nb_execution_mode = "off"                       # the notebooks were executed by `make demo`; never re-run them here
nb_output_stderr = "show"
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3                        # the README's links to its own sections
suppress_warnings = ["myst.xref_missing", "misc.highlighting_failure", "mystnb.unknown_mime_type"]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]

html_theme = "sphinx_book_theme"
html_title = "rlxf: RL fine-tuning of language models"
html_static_path = [str(Path(jupyter_server_mathjax.__file__).parent / "static")]
html_theme_options = {"show_toc_level": 2}
html_copy_source = False                        # the site shows the pages; the notebooks live in the repository
# html_static_path copies MathJax's files to _static/ itself: MathJax.js, config/, jax/, fonts/, extensions/.
mathjax_path = "MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"
mathjax2_config = {
    "tex2jax": {"inlineMath": [["\\(", "\\)"]], "displayMath": [["\\[", "\\]"]], "processEscapes": True,
                "processEnvironments": True},
    "HTML-CSS": {"availableFonts": [], "imageFont": None, "preferredFont": None, "webFont": "STIX-Web"},
}
