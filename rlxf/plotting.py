"""One way to save figures: `figures/NN_what.png`, fixed size and dpi, no timestamps in the file."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless under papermill; notebooks still display the figure they return
import matplotlib.pyplot as plt  # noqa: E402

DPI = 110
_FIGURE_NAME = re.compile(r"^\d\d_[a-z0-9_]+$")


def save_figure(fig: plt.Figure, figures_dir: str | Path, name: str) -> Path:
    """Save `fig` as `<figures_dir>/<name>.png`; `name` must look like `01_class_balance`."""
    if not _FIGURE_NAME.match(name):
        raise ValueError(f"figure name {name!r} must be NN_lowercase_words (e.g. '01_class_balance'), without .png")
    out = Path(figures_dir) / f"{name}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    # metadata={"Software": None} drops the matplotlib version stamp so re-runs give identical files.
    fig.savefig(out, dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    return out
