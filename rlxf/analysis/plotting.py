"""Figure conventions shared by the notebooks: one way to save figures (`figures/NN_what.png`, fixed dpi, no
timestamps in the file), one colour per party, one way to draw the neutral rating band."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless under papermill; notebooks still display the figure they return
import matplotlib.pyplot as plt  # noqa: E402

from rlxf.paths import output_path  # noqa: E402

DPI = 110
_FIGURE_NAME = re.compile(r"^\d\d_[a-z0-9_]+$")

PARTY_COLOURS = {"Democrat": "#3b6fb6", "Republican": "#c0392b"}
"""one colour per party in every figure, keyed as `rlxf.data.political.PARTIES` spells them"""
NEUTRAL_BAND_COLOUR = "grey"


def save_figure(fig: plt.Figure, figures_dir: str | Path, name: str) -> Path:
    """Save `fig` as `<figures_dir>/<name>.png`; `name` must look like `01_class_balance`."""
    if not _FIGURE_NAME.match(name):
        raise ValueError(f"figure name {name!r} must be NN_lowercase_words (e.g. '01_class_balance'), without .png")
    out = output_path(figures_dir, "figures_dir") / f"{name}.png"  # "" (an unset $VAR) is an error, not the cwd
    out.parent.mkdir(parents=True, exist_ok=True)
    # metadata={"Software": None} drops the matplotlib version stamp so re-runs give identical files.
    fig.savefig(out, dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    return out


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
