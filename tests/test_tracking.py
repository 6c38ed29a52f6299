"""The one `report_to` setting: every trainer's settings take it, check it, and name the package it needs."""

from __future__ import annotations

import importlib.util

import pytest

from rlxf.algos.ppo import PPOSettings
from rlxf.algos.sft import SFTSettings, _training_kwargs
from rlxf.algos.trl_online import TRLSettings, trl_config
from rlxf.infra.tracking import REPORT_TO, check_report_to
from rlxf.rewards import ClassifierSettings, PreferenceSettings
from rlxf.selfplay.trainer import SelfPlaySettings

TRAINER_SETTINGS = [SFTSettings, ClassifierSettings, PreferenceSettings, TRLSettings]


def test_report_to_names_the_choices():
    assert REPORT_TO == ("none", "tensorboard", "trackio", "wandb")
    with pytest.raises(ValueError, match=r"X.report_to must be one of none, tensorboard, trackio, wandb; got 'tb'"):
        check_report_to("tb", "X.report_to")


@pytest.mark.parametrize("settings_class", TRAINER_SETTINGS, ids=lambda c: c.__name__)
def test_every_trainer_settings_checks_report_to(settings_class):
    assert settings_class().report_to == "none"
    with pytest.raises(ValueError, match=rf"{settings_class.__name__}.report_to must be one of"):
        settings_class(report_to="mlflow")


@pytest.mark.parametrize("tracker", ["tensorboard", "trackio", "wandb"])
def test_a_missing_tracker_package_says_how_to_install_it(tracker, monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ImportError, match=rf"report_to='{tracker}' needs the {tracker} package.*pip install"):
        TRLSettings(report_to=tracker)
    if tracker == "tensorboard":
        with pytest.raises(ImportError, match=r"pip install '\.\[tensorboard\]'"):
            check_report_to(tracker, "x")


def test_report_to_reaches_the_transformers_arguments(monkeypatch, tmp_path):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())  # as if tensorboard were installed
    args = trl_config("grpo", TRLSettings(report_to="tensorboard", output_dir=str(tmp_path)))
    assert args.report_to == ["tensorboard"] and args.disable_tqdm is False
    assert _training_kwargs(SFTSettings(report_to="tensorboard"), has_eval=False)["report_to"] == "tensorboard"


def test_ppo_and_selfplay_settings_carry_report_to():
    assert PPOSettings().report_to == "none" and SelfPlaySettings().report_to == "none"
