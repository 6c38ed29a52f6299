"""Figure conventions shared by the notebooks: one way to save figures (`figures/NN_what.png`, fixed dpi, no
timestamps in the file, no text under MIN_FONT_PT), one colour per party, one way to draw the neutral rating band, and
the small pieces of figure text and smoothing that several notebooks need."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")  # headless under papermill; save_figure shows the saved PNG in a notebook
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from rlxf.paths import output_path  # noqa: E402

DPI = 110
MIN_FONT_PT = 9
"""the smallest figure text, in points at the saved size (save_figure refuses smaller)"""
_FIGURE_NAME = re.compile(r"^\d\d_[a-z0-9_]+$")

PARTY_COLOURS = {"Democrat": "#3b6fb6", "Republican": "#c0392b"}
"""one colour per party in every figure, keyed as `rlxf.data.political.PARTIES` spells them"""
NEUTRAL_BAND_COLOUR = "grey"


def save_figure(fig: plt.Figure, figures_dir: str | Path, name: str) -> Path:
    """Save `fig` as `<figures_dir>/<name>.png`; `name` must look like `01_class_balance`."""
    if not _FIGURE_NAME.match(name):
        raise ValueError(f"figure name {name!r} must be NN_lowercase_words (e.g. '01_class_balance'), without .png")
    check_text_size(fig, name)
    out = output_path(figures_dir, "figures_dir") / f"{name}.png"  # "" (an unset $VAR) is an error, not the cwd
    out.parent.mkdir(parents=True, exist_ok=True)
    # metadata={"Software": None} drops the matplotlib version stamp so re-runs give identical files.
    fig.savefig(out, dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    _show_in_notebook(out)
    return out


def check_text_size(fig: plt.Figure, name: str = "figure") -> None:
    """Raise if any visible text of `fig` is smaller than MIN_FONT_PT points (readable at the saved size)."""
    fig.canvas.draw()  # tick labels exist only once the figure is drawn
    small = sorted({(round(t.get_fontsize(), 1), t.get_text()) for t in fig.findobj(Text)
                    if t.get_visible() and t.get_text().strip() and t.get_fontsize() < MIN_FONT_PT})
    if small:
        shown = "; ".join(f"{text[:40]!r} at {size:g} pt" for size, text in small[:5])
        more = f" (and {len(small) - 5} more)" if len(small) > 5 else ""
        raise ValueError(f"{name}: {len(small)} text(s) smaller than {MIN_FONT_PT} pt: {shown}{more}; "
                         f"use fontsize >= {MIN_FONT_PT} or a smaller figure")


def _show_in_notebook(png: Path) -> None:
    """In a Jupyter kernel, show the saved PNG under the cell: the Agg backend shows nothing itself, and the executed
    notebooks (results/<profile>/notebooks/) must carry their figures."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None or type(shell).__name__ != "ZMQInteractiveShell":
        return
    from IPython.display import Image, display

    display(Image(filename=str(png)))


def party_colour(party: str) -> str:
    """The colour of `party`, spelled as in the data ("Democrat") or as a bot's name ("democrat")."""
    for name, colour in PARTY_COLOURS.items():
        if party.lower() == name.lower():
            return colour
    raise KeyError(f"no colour for party {party!r}; expected one of {sorted(PARTY_COLOURS)} (any case)")


def draw_neutral_band(ax: plt.Axes, low: float, high: float):
    """Shade the ratings in [low, high] that count as neutral (e.g. `SelfPlaySettings.neutral_low/high`)."""
    if not low <= high:
        raise ValueError(f"neutral band: low ({low}) must not exceed high ({high})")
    return ax.axhspan(low, high, color=NEUTRAL_BAND_COLOUR, alpha=0.15, label=f"neutral band {low:g}-{high:g}")


def plural(n: int, noun: str, plural_form: str | None = None) -> str:
    """`n` and `noun`, plural unless n == 1: plural(1, "debate") -> "1 debate", plural(2, "debate") -> "2 debates"."""
    return f"{n:,} {noun if n == 1 else (plural_form or noun + 's')}"


def count_range(counts: Sequence[int] | np.ndarray) -> str:
    """The range of sample sizes for a figure's "n = ...": "4" when all are equal, else "2-4"."""
    values = [int(c) for c in np.asarray(counts).ravel()]
    if not values:
        raise ValueError("count_range: no counts given")
    low, high = min(values), max(values)
    return f"{low}" if low == high else f"{low}-{high}"


def moving_average(values: Sequence[float] | np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over the last `window` values (fewer at the start), drawn beside a noisy raw curve."""
    if window < 1:
        raise ValueError(f"moving_average: window must be >= 1, got {window}")
    values = np.asarray(values, dtype=float)
    sums = np.cumsum(np.insert(values, 0, 0.0))
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(ends - window, 0)
    return (sums[ends] - sums[starts]) / (ends - starts)
