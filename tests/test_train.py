"""`python -m rlxf.train`: YAML configs parsed into ScriptArguments + the method's settings, and tiny runs."""

from __future__ import annotations

import json

import pytest
import yaml

from rlxf import train
from rlxf.algos.ppo import PPOSettings
from rlxf.algos.sft import SFTSettings
from rlxf.algos.trl_online import TRLSettings
from rlxf.paths import REPO_ROOT

CONFIGS = REPO_ROOT / "configs" / "train"


def _config(tmp_path, name: str, **changes) -> str:
    values = {**yaml.safe_load((CONFIGS / name).read_text()), "output_dir": str(tmp_path / "out"), **changes}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(values))
    return str(path)


def test_shipped_configs_parse_into_the_settings_dataclasses():
    script, settings = train.parse_config("ppo", CONFIGS / "ppo_tiny.yaml")
    assert isinstance(settings, PPOSettings) and settings.batch_size == 2 and settings.dtype == "fp32"
    assert script.model == "tiny-llama" and settings.output_dir == "artifacts/train/ppo_tiny/run"
    assert isinstance(train.parse_config("sft", CONFIGS / "sft_tiny.yaml")[1], SFTSettings)
    assert isinstance(train.parse_config("grpo", CONFIGS / "grpo_smollm2.yaml")[1], TRLSettings)
    for name in ("multi_gpu", "deepspeed_zero2", "deepspeed_zero3", "fsdp2"):
        assert "distributed_type" in yaml.safe_load((REPO_ROOT / "configs" / "accelerate" / f"{name}.yaml").read_text())


def test_unknown_keys_and_methods_are_errors_naming_them(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['kl_coef'\] for ppo"):
        train.parse_config("ppo", _config(tmp_path, "ppo_tiny.yaml", kl_coef=0.1))
    assert train.main(["ppo", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_ppo_tiny_runs_in_one_process_and_saves_a_hub_ready_adapter(tmp_path):
    assert train.main(["ppo", "--config", _config(tmp_path, "ppo_tiny.yaml", steps=1)]) == 0
    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 1 and summary["method"] == "ppo"
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"] == "tiny-llama"
    assert (out / "adapter" / "README.md").is_file() and (out / "run" / "metrics.jsonl").is_file()


def test_sft_tiny_hydrates_the_fixtures_and_trains(tmp_path):
    assert train.main(["sft", "--config", _config(tmp_path, "sft_tiny.yaml")]) == 0
    out = tmp_path / "out"
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"] == "tiny-llama"
    assert (out / "data" / "political.parquet").is_file()
