"""Artifacts that round-trip through the hub: one adapter per directory, its base model named, a hub model card,
and an upload through `huggingface_hub` (a stand-in API here: the hub is not reachable from the tests)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from huggingface_hub import ModelCard
from peft import PeftModel

from rlxf.algos.ppo import PPOSettings
from rlxf.lm.adapters import attach_policy, push_adapter, push_adapters, save_adapter
from rlxf.lm.models import SMOLLM2, SMOLLM2_HUB_ID, base_model_reference, load_causal_lm


@pytest.fixture(scope="module")
def two_adapters():
    model, tokenizer = load_causal_lm("tiny-llama", device="cpu", dtype=torch.float32)
    torch.manual_seed(0)
    model, _ = attach_policy(model, "democrat", PPOSettings())
    model, _ = attach_policy(model, "republican", PPOSettings())
    return model, tokenizer


def test_each_saved_directory_holds_one_adapter_naming_its_base(two_adapters, tmp_path):
    model, _ = two_adapters
    for name in ("democrat", "republican"):
        save_adapter(model, name, tmp_path / name, card={"party": name}, method="ppo", title=f"{name} (PPO)")
    for name in ("democrat", "republican"):
        directory = tmp_path / name
        assert sorted(path.name for path in directory.iterdir()) == [
            "README.md", "adapter_config.json", "adapter_model.safetensors"]
        config = json.loads((directory / "adapter_config.json").read_text())
        assert config["base_model_name_or_path"] == "tiny-llama" and config["inference_mode"] is True
        card = ModelCard.load(directory / "README.md")
        assert card.data.base_model == "tiny-llama" and card.data.library_name == "peft"
        assert "ppo" in card.data.tags and f"| party | {name} |" in card.text
    # the directory loads as a plain PEFT adapter onto a fresh base, with this adapter's weights
    fresh, _ = load_causal_lm(json.loads((tmp_path / "republican" / "adapter_config.json").read_text())[
        "base_model_name_or_path"], device="cpu", dtype=torch.float32)
    loaded = PeftModel.from_pretrained(fresh, str(tmp_path / "republican"), adapter_name="republican")
    want = {k: v for k, v in model.state_dict().items() if ".republican." in k and "lora_" in k}
    got = loaded.state_dict()
    assert want and all(torch.equal(got[k], v) for k, v in want.items())


def test_save_adapter_refuses_an_unknown_adapter(two_adapters, tmp_path):
    with pytest.raises(ValueError, match="'socrates' is not on this model"):
        save_adapter(two_adapters[0], "socrates", tmp_path / "x")


def test_the_gguf_base_is_named_by_its_hub_id():
    converted = SimpleNamespace(rlxf_name=SMOLLM2, config=SimpleNamespace(_name_or_path="/cache/smollm2-135m-instruct"))
    hub_id, weights = base_model_reference(converted)
    assert hub_id == SMOLLM2_HUB_ID == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert "Q4_1 GGUF" in weights and "dequantised" in weights
    hub = SimpleNamespace(config=SimpleNamespace(_name_or_path="owner/some-model"))
    assert base_model_reference(hub)[0] == "owner/some-model"


class FakeHubApi:
    """Records the calls `push_adapter` makes to `huggingface_hub.HfApi`."""

    def __init__(self):
        self.calls = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))
        return SimpleNamespace(url=f"https://huggingface.co/{repo_id}")

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs["repo_id"], kwargs))


def test_push_adapter_uploads_the_directory_through_huggingface_hub(two_adapters, tmp_path, monkeypatch):
    directory = save_adapter(two_adapters[0], "democrat", tmp_path / "democrat", card={})
    fake = FakeHubApi()
    monkeypatch.setattr("huggingface_hub.HfApi", lambda: fake)  # the default path: HfApi() inside push_adapter
    url = push_adapter(directory, "someone/rlxf-democrat")
    assert url == "https://huggingface.co/someone/rlxf-democrat"
    (_, repo, create), (_, _, upload) = fake.calls
    assert repo == "someone/rlxf-democrat" and create["private"] and create["exist_ok"]
    assert upload["folder_path"] == str(directory) and upload["repo_type"] == "model"
    with pytest.raises(ValueError, match="owner/name"):
        push_adapter(directory, "no-owner", api=fake)
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        push_adapter(tmp_path, "someone/x", api=fake)


def test_push_adapters_names_one_repo_per_adapter(two_adapters, tmp_path):
    for name in ("democrat", "republican"):
        save_adapter(two_adapters[0], name, tmp_path / name)
    fake = FakeHubApi()
    urls = push_adapters(tmp_path, ["democrat", "republican"], "someone/rlxf", api=fake)
    assert urls == {n: f"https://huggingface.co/someone/rlxf-{n}" for n in ("democrat", "republican")}
    assert [call[1] for call in fake.calls if call[0] == "upload_folder"] == ["someone/rlxf-democrat",
                                                                             "someone/rlxf-republican"]
    with pytest.raises(ValueError, match="hub_repo_id"):
        push_adapters(tmp_path, ["democrat"], "", api=fake)
