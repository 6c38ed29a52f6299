"""Executed notebooks made fit to commit (rlxf.run.executed): widgets, redraws and machine paths gone; a size guard."""

from __future__ import annotations

import json

import pytest

from rlxf.paths import REPO_ROOT
from rlxf.run.executed import clean_notebook, publish_notebooks, scrub_paths
from rlxf.run.runlog import RunnerError


def _executed(tmp_path, name="01_a.ipynb", png="iVBORw0KGgo=", extra_outputs=()):
    notebook = {
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"widgets": {"application/vnd.jupyter.widget-state+json": {"state": {"m": {}}}},
                     "papermill": {"input_path": f"{REPO_ROOT}/notebooks/{name}"}},
        "cells": [{"cell_type": "code", "id": "a", "metadata": {}, "execution_count": 1,
                   "source": f'artifacts_dir = "{REPO_ROOT}/artifacts/demo"',
                   "outputs": [
                       {"output_type": "display_data", "metadata": {},
                        "data": {"text/plain": "HBox()",
                                 "application/vnd.jupyter.widget-view+json": {"model_id": "m"}}},
                       {"output_type": "stream", "name": "stderr", "text": " 10%|#  | 1/10\r100%|###| 10/10\ndone\n"},
                       {"output_type": "display_data", "metadata": {},
                        "data": {"image/png": png, "image/svg+xml": "<svg/>", "text/plain": "<Figure>"}},
                       *extra_outputs]}]}
    path = tmp_path / name
    path.write_text(json.dumps(notebook))
    return path


def test_a_clean_notebook_keeps_outputs_and_pngs_but_no_widgets_redraws_or_paths(tmp_path):
    cleaned = clean_notebook(json.loads(_executed(tmp_path).read_text()))
    assert "widgets" not in cleaned["metadata"]
    outputs = cleaned["cells"][0]["outputs"]
    assert [o["output_type"] for o in outputs] == ["stream", "display_data"], "the widget view is dropped"
    assert outputs[0]["text"] == "100%|###| 10/10\ndone\n", "a progress bar keeps its last redraw only"
    assert set(outputs[1]["data"]) == {"image/png", "text/plain"}
    text = json.dumps(cleaned)
    assert str(REPO_ROOT) not in text
    assert cleaned["cells"][0]["source"] == 'artifacts_dir = "../artifacts/demo"', "relative to notebooks/"


def test_scrub_paths_replaces_whole_path_prefixes_only():
    pairs = [("/home/u/repo", ".."), ("/home/u", "~")]
    assert scrub_paths("/home/u/repo/artifacts and /home/u/repository", pairs) == "../artifacts and ~/repository"
    assert scrub_paths('"/home/u/repo"', pairs) == '".."'


def test_publishing_refuses_notebooks_over_the_size_limit(tmp_path):
    small = _executed(tmp_path, "01_a.ipynb")
    big = _executed(tmp_path, "02_b.ipynb", png="A" * 50_000)
    target = tmp_path / "results" / "notebooks"
    target.mkdir(parents=True)
    (target / "09_old.ipynb").write_text("{}")
    with pytest.raises(RunnerError, match=r"more than the 0 MB .*02_b.ipynb 0.0 MB.*nothing was published"):
        publish_notebooks([small, big], target, max_bytes=40_000)
    assert sorted(p.name for p in target.iterdir()) == ["09_old.ipynb"], "a refused publish writes nothing"
    written = publish_notebooks([small, big], target, max_bytes=80_000)
    assert sorted(p.name for p in target.iterdir()) == ["01_a.ipynb", "02_b.ipynb"] == [p.name for p in written]
    assert json.loads((target / "01_a.ipynb").read_text())["cells"][0]["outputs"], "outputs are kept"
