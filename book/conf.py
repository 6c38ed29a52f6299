# Sphinx configuration of the book (`make book`: python -m rlxf.run.book stages the sources next to a copy of this file).
#
# Why Sphinx + MyST-NB + sphinx-book-theme: all three are pure-Python packages on PyPI, well kept (the Executable
# Books project and Sphinx), and build offline; MyST-NB renders executed notebooks without running them
# (nb_execution_mode "off") and reads the README and docs/ as MyST Markdown. Jupyter Book 2 is built on mystmd, a
# Node.js application that fetches its theme at build time; MkDocs + mkdocs-jupyter converts through nbconvert and
# needs a MathJax from a CDN as well.
#
# Equations: MathJax 3.2.2 with CommonHTML output and its own woff-v2 fonts, from the PyPI package
# django-static-mathjax (it ships MathJax's files and depends on nothing; the Django app around them is not used).
# rlxf.run.book copies the files the site needs into _static/mathjax/, so the browser loads nothing from a network.
# Not MathJax 2.7 from jupyter-server-mathjax: in headless Chromium its HTML-CSS output stalls at
# "Loading .../STIX-Web/fontdata.js" and the equations stay TeX source.
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
html_static_path = ["_static"]                  # rlxf.run.book puts MathJax there (_static/mathjax/)
html_theme_options = {"show_toc_level": 2}
html_copy_source = False                        # the site shows the pages; the notebooks live in the repository
mathjax_path = "mathjax/tex-mml-chtml.js"       # relative, so under _static/: the local copy, never a CDN
mathjax3_config = {                             # the delimiters Sphinx writes around math
    "tex": {"inlineMath": [["\\(", "\\)"]], "displayMath": [["\\[", "\\]"]], "processEscapes": True,
            "processEnvironments": True},
}
