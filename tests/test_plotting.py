"""The shared figure conventions: party colours, the neutral band, figure names."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from rlxf.analysis.plotting import (
    MIN_FONT_PT,
    PARTY_COLOURS,
    count_range,
    draw_neutral_band,
    moving_average,
    party_colour,
    plural,
    save_figure,
)
from rlxf.data.political import PARTIES
from rlxf.paths import REPO_ROOT
from rlxf.selfplay import SelfPlaySettings


def test_one_colour_per_party_in_either_spelling():
    assert set(PARTY_COLOURS) == set(PARTIES)
    assert party_colour("Democrat") == party_colour("democrat") == PARTY_COLOURS["Democrat"]
    assert party_colour("republican") == PARTY_COLOURS["Republican"] != PARTY_COLOURS["Democrat"]
    with pytest.raises(KeyError, match="no colour for party 'green'"):
        party_colour("green")


def test_neutral_band_comes_from_the_settings():
    settings = SelfPlaySettings(neutral_low=40.0, neutral_high=60.0)
    fig, ax = plt.subplots()
    band = draw_neutral_band(ax, settings.neutral_low, settings.neutral_high)
    assert (band.get_y(), band.get_y() + band.get_height()) == (40.0, 60.0)
    assert band.get_label() == "neutral band 40-60"
    with pytest.raises(ValueError, match="low"):
        draw_neutral_band(ax, 60, 40)
    plt.close(fig)


def test_save_figure_checks_the_name(tmp_path):
    fig, _ = plt.subplots()
    assert save_figure(fig, tmp_path, "05_band").name == "05_band.png"
    with pytest.raises(ValueError, match="NN_lowercase_words"):
        save_figure(fig, tmp_path, "band.png")
    plt.close(fig)


def test_save_figure_refuses_text_too_small_to_read(tmp_path):
    fig, ax = plt.subplots()
    ax.set_title("readable")
    ax.text(0.5, 0.5, "tiny note", fontsize=MIN_FONT_PT - 1)
    with pytest.raises(ValueError, match=r"05_small: 1 text\(s\) smaller than 9 pt: 'tiny note' at 8 pt"):
        save_figure(fig, tmp_path, "05_small")
    assert not (tmp_path / "05_small.png").exists()
    ax.tick_params(labelsize=7)  # tick labels count too, once drawn
    with pytest.raises(ValueError, match="smaller than 9 pt"):
        save_figure(fig, tmp_path, "05_small")
    plt.close(fig)


def test_figure_text_helpers():
    assert plural(1, "debate") == "1 debate"
    assert plural(2, "debate") == "2 debates"
    assert plural(0, "reply", "replies") == "0 replies"
    assert count_range([4, 4, 4]) == "4"
    assert count_range(np.array([[2, 4], [3, 4]])) == "2-4"
    with pytest.raises(ValueError, match="no counts"):
        count_range([])


def test_moving_average_is_trailing_and_shorter_at_the_start():
    assert moving_average([1, 3, 5, 7], 2).tolist() == [1.0, 2.0, 4.0, 6.0]
    assert moving_average([2, 4, 9], 5).tolist() == [2.0, 3.0, 5.0]
    assert moving_average([1, 2], 1).tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="window must be >= 1"):
        moving_average([1, 2], 0)


def test_save_figure_shows_the_saved_png_in_a_notebook(tmp_path):
    """The backend is Agg (headless): a notebook shows a figure because save_figure displays the PNG it wrote, so the
    executed notebooks carry their figures."""
    import base64

    from nbclient import NotebookClient
    from nbformat.v4 import new_code_cell, new_notebook

    code = ("from rlxf.analysis.plotting import plt, save_figure\nfig, ax = plt.subplots()\nax.plot([0, 1])\n"
            f"save_figure(fig, {str(tmp_path)!r}, '01_line');")
    nb = new_notebook(cells=[new_code_cell(code)])
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(REPO_ROOT)}}).execute()
    shown = [o["data"]["image/png"] for o in nb.cells[0].outputs if "image/png" in o.get("data", {})]
    assert len(shown) == 1, f"expected the figure once under the cell, got {nb.cells[0].outputs}"
    assert base64.b64decode(shown[0]) == (tmp_path / "01_line.png").read_bytes()
