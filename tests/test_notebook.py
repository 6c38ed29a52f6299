"""The notebooks' setup call: seeding, the data banner, hydration once, and the paths it hands back."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from rlxf.data import TABLES
from rlxf.run.notebook import record_headline, setup


def test_setup_seeds_locates_and_hydrates(tmp_path, capsys):
    torch.manual_seed(123)
    expected = torch.rand(3)
    nb = setup(seed=123, data_dir="fixtures", artifacts_dir=str(tmp_path / "artifacts"))
    assert torch.equal(torch.rand(3), expected), "setup must seed torch exactly as torch.manual_seed(seed)"
    assert nb.artifacts == tmp_path / "artifacts"
    assert nb.tables == tmp_path / "artifacts" / "data"
    assert nb.data_path == (tmp_path / "artifacts" / "fixture-data").resolve()
    assert nb.data_source == "fixtures"
    assert sorted(path.name for path in nb.tables.iterdir()) == sorted([*TABLES.values(), "manifest.json"])
    assert "DATA: FIXTURE CORPORA (asked for)" in capsys.readouterr().out
    with pytest.raises(dataclasses.FrozenInstanceError):
        nb.tables = tmp_path
    again = setup(seed=123, data_dir="fixtures", artifacts_dir=tmp_path / "artifacts")
    assert again == nb
    assert "up to date" in capsys.readouterr().out


def test_setup_without_hydration(tmp_path, capsys):
    nb = setup(seed=0, data_dir="fixtures", artifacts_dir=tmp_path, hydrate=False, dtype="fp32")
    assert nb.data_source == "fixtures"
    assert not nb.tables.exists()
    out = capsys.readouterr().out
    assert "hydrate:" not in out
    assert nb.precision.name == "fp32" and "precision fp32 on " in out  # what was chosen and why, one line


def test_record_headline_writes_plain_json_and_names_bad_values(tmp_path):
    path = record_headline(tmp_path, "04", {"sentiment": {"ppo": {"gain": 1.25, "ci": [0.5, 2.0]}, "met": True}})
    assert path == tmp_path / "headline" / "04.json"
    assert json.loads(path.read_text()) == {"sentiment": {"ppo": {"gain": 1.25, "ci": [0.5, 2.0]}, "met": True}}
    record_headline(tmp_path, "04", {"sentiment": {"n": 3}})  # a re-run replaces the notebook's numbers
    assert json.loads(path.read_text()) == {"sentiment": {"n": 3}}
    with pytest.raises(ValueError, match=r"headline value 04.sentiment.ci\[1\] is nan"):
        record_headline(tmp_path, "04", {"sentiment": {"ci": [0.1, float("nan")]}})
    with pytest.raises(TypeError, match="headline value 04.x is a ndarray"):
        import numpy as np

        record_headline(tmp_path, "04", {"x": np.zeros(2)})
    with pytest.raises(ValueError, match="non-empty dict"):
        record_headline(tmp_path, "04", {})
