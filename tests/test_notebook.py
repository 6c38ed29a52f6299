"""The notebooks' setup call: seeding, the data banner, hydration once, and the paths it hands back."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from rlxf.data import TABLES
from rlxf.notebook import setup


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
