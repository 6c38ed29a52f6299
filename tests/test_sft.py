"""LoRA SFT (both methods), completion-only masking, perplexity, adapter round trip, model card, generation."""

from __future__ import annotations

import copy
import json
import math

import pandas as pd
import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM

from rlxf.algos.sft import (
    IGNORE_INDEX,
    METHODS,
    CausalLMCollator,
    SFTSettings,
    build_trainer,
    completion_perplexity,
    perplexity,
    tokenize_pairs,
    train_lora_sft,
)
from rlxf.data.prompts import SOCRATES_PROMPTS
from rlxf.lm.adapters import load_adapter
from rlxf.lm.generation import chat_prompt, generate
from rlxf.lm.models import load_causal_lm

TEXTS = [
    "We will fight for working families and lower costs.",
    "Cut taxes and secure the border now.",
    "Health care is a right, not a privilege.",
    "Small businesses need relief from red tape.",
    "Climate action creates good jobs.",
    "Stand with our police and our veterans.",
]
QUESTIONS = ["What is justice?", "And what is beauty?", "Who rules best?", "Is virtue taught?"]
REPLIES = ["Giving each his due.", "That which we love.", "The wise, I think.", "Let us inquire together."]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(model, tokenizer, base_dir): the base saved to disk so a test can load a fresh copy of it."""
    model, tokenizer = load_causal_lm("tiny-llama", device="cpu", dtype=torch.float32)
    base_dir = tmp_path_factory.mktemp("base")
    model.save_pretrained(base_dir)
    return model, tokenizer, base_dir


def _pairs(tokenizer) -> list[tuple[str, str]]:
    return [(chat_prompt(tokenizer, q), r) for q, r in zip(QUESTIONS, REPLIES, strict=True)]


def _settings(tmp_path, method: str, **overrides) -> SFTSettings:
    # A large learning rate so that two steps move the adapter visibly.
    values = dict(method=method, max_steps=2, batch_size=2, learning_rate=1e-2, lora_dropout=0.0, logging_steps=1,
                  output_dir=str(tmp_path / method))
    return SFTSettings(**{**values, **overrides})


def _data(tokenizer, kind: str) -> dict:
    return {"train_texts": TEXTS} if kind == "texts" else {"train_pairs": _pairs(tokenizer)}


@pytest.fixture(scope="module")
def runs(tiny, tmp_path_factory):
    """train_lora_sft for every (method, kind), with the same settings, seed and data."""
    model, tokenizer, _ = tiny
    root = tmp_path_factory.mktemp("adapters")
    results = {}
    for method in METHODS:
        for kind in ("texts", "pairs"):
            settings = _settings(root / kind, method, eval_fraction=0.25)
            card = {"data": f"fixture {kind}", "metrics": {"test_perplexity": 12.5}}
            results[method, kind] = train_lora_sft(model, tokenizer, **_data(tokenizer, kind), settings=settings,
                                                   model_card=card)
    return results


# ------------------------------------------------------------------------------------------------------ training
@pytest.mark.parametrize("kind", ["texts", "pairs"])
@pytest.mark.parametrize("method", METHODS)
def test_two_steps_change_lora_weights_and_not_the_base(tiny, tmp_path, method, kind):
    model, tokenizer, _ = tiny
    base_before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer = build_trainer(model, tokenizer, **_data(tokenizer, kind), settings=_settings(tmp_path, method))
    peft_model = trainer.model
    assert isinstance(peft_model, PeftModel)
    trainable = {name: p.detach().clone() for name, p in peft_model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable), "only LoRA weights may be trainable"
    frozen = {name: p.detach().clone() for name, p in peft_model.named_parameters() if not p.requires_grad}

    trainer.train()

    after = dict(peft_model.named_parameters())
    for name, before in trainable.items():
        assert not torch.equal(after[name].detach(), before), f"{name} did not change"
    for name, before in frozen.items():
        assert torch.equal(after[name].detach(), before), f"frozen {name} changed"
    for name, p in model.named_parameters():  # the caller's base model is untouched (training ran on a copy)
        assert torch.equal(p, base_before[name]), name
    assert not any("lora_" in name for name, _ in model.named_parameters())


def test_both_methods_see_the_same_data_and_give_the_same_losses(runs):
    for kind in ("texts", "pairs"):
        plain, trl = runs["trainer", kind].history, runs["sft_trainer", kind].history
        assert [row["step"] for row in plain] == [1, 2] == [row["step"] for row in trl]
        assert all("loss" in row and "eval_loss" in row for row in plain + trl)
        # Same batches in the same order: the first training loss agrees to 1e-6. The two eval collators differ in
        # float rounding (~1e-4 relative on this tiny model, already at step 1), which one step at lr 1e-2 carries on.
        assert plain[0]["loss"] == pytest.approx(trl[0]["loss"], rel=1e-6)
        for a, b in zip(plain, trl, strict=True):
            assert a["loss"] == pytest.approx(b["loss"], rel=3e-4) and a["eval_loss"] == pytest.approx(
                b["eval_loss"], rel=3e-4)


def test_result_holds_a_saved_unmerged_adapter(runs):
    for (method, _), result in runs.items():
        files = {path.name for path in result.adapter_dir.iterdir()}
        assert {"adapter_model.safetensors", "adapter_config.json", "README.md", "tokenizer.json"} <= files, method
        assert result.adapter_bytes == (result.adapter_dir / "adapter_model.safetensors").stat().st_size > 0
        assert isinstance(result.model, PeftModel) and not result.model.training
        assert any("lora_B" in name for name, _ in result.model.named_parameters()), "adapter must not be merged"
        lora = sum(p.numel() for name, p in result.model.named_parameters() if "lora_" in name)
        assert result.trainable_params == lora > 0
        assert result.train_seconds > 0
        config = json.loads((result.adapter_dir / "adapter_config.json").read_text())
        assert config["base_model_name_or_path"] == "tiny-llama", method  # the name the base loads by
        assert not [path for path in result.adapter_dir.iterdir() if path.is_dir()], "one adapter per directory"


def test_model_card_has_the_given_and_the_training_fields(runs):
    result = runs["sft_trainer", "pairs"]
    card = (result.adapter_dir / "README.md").read_text()
    assert card.startswith("---\nbase_model: tiny-llama\n")  # huggingface_hub.ModelCard front matter
    assert "| data | fixture pairs |" in card
    assert "| metrics.test_perplexity | 12.5 |" in card
    assert "| steps | 2 |" in card and "| method | sft_trainer |" in card and "| lora_r | 8 |" in card
    assert f"| final_train_loss | {result.history[-1]['loss']:.6g} |" in card
    assert result.card["data"] == "fixture pairs"


# ------------------------------------------------------------------------------------------------------ masking
def test_completion_only_masking_labels_prompt_tokens_minus_100(tiny, tmp_path):
    model, tokenizer, _ = tiny
    pairs = _pairs(tokenizer)
    examples = tokenize_pairs(tokenizer, pairs, max_length=128)
    for (prompt, reply), example in zip(pairs, examples, strict=True):
        n_prompt = len(tokenizer(prompt)["input_ids"])
        assert example["labels"][:n_prompt] == [IGNORE_INDEX] * n_prompt
        assert example["labels"][n_prompt:] == example["input_ids"][n_prompt:]
        assert tokenizer.decode(example["input_ids"][n_prompt:]) == reply + tokenizer.eos_token

    batch = CausalLMCollator(tokenizer.pad_token_id)(examples[:2])
    assert (batch["labels"][batch["attention_mask"] == 0] == IGNORE_INDEX).all(), "padding must not be trained"

    # TRL's SFTTrainer masks exactly the same tokens from the same prompt/completion columns.
    trl = build_trainer(model, tokenizer, train_pairs=pairs, settings=_settings(tmp_path, "sft_trainer"))
    assert [row["labels"] for row in trl.train_dataset] == [example["labels"] for example in examples]

    # A prompt that fills max_length leaves nothing to learn: the example is dropped.
    n_first = len(tokenizer(pairs[0][0])["input_ids"])
    assert len(tokenize_pairs(tokenizer, pairs[:1], max_length=n_first)) == 0


# ------------------------------------------------------------------------------------------------------ perplexity
def _manual_mean_nll(model, token_lists: list[list[int]], first_scored: list[int]) -> float:
    """One sequence at a time, no padding: -log p(token | prefix) summed over positions >= first_scored."""
    total, count = 0.0, 0
    with torch.no_grad():
        for ids, start in zip(token_lists, first_scored, strict=True):
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), dim=-1)
            for position in range(max(start, 1), len(ids)):
                total -= float(logp[position - 1, ids[position]])
                count += 1
    return total / count


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size(tiny):
    model, tokenizer, _ = tiny
    uniform = copy.deepcopy(model)
    torch.nn.init.zeros_(uniform.lm_head.weight)  # all logits 0: every token has probability 1/V
    assert perplexity(uniform, tokenizer, TEXTS) == pytest.approx(model.config.vocab_size, rel=1e-5)


def test_perplexity_matches_a_manual_nll_and_ignores_batching_and_padding(tiny):
    model, tokenizer, _ = tiny
    ids = [tokenizer(text + tokenizer.eos_token)["input_ids"] for text in TEXTS]
    expected = math.exp(_manual_mean_nll(model, ids, [0] * len(ids)))
    fp32 = dict(dtype="fp32")  # as the manual NLL (the default "auto" is bf16 where the CPU has it)
    by_batch = [perplexity(model, tokenizer, TEXTS, batch_size=size, **fp32) for size in (1, 2, 4, 6)]
    assert by_batch == pytest.approx([expected] * 4, rel=1e-5)
    assert perplexity(model, tokenizer, TEXTS[::-1], batch_size=4, **fp32) == pytest.approx(expected, rel=1e-5)
    assert perplexity(model, tokenizer, TEXTS, batch_size=4, **fp32) == by_batch[2], "must be deterministic"
    assert perplexity(model, tokenizer, pd.Series(TEXTS), batch_size=4, **fp32) == by_batch[2], "a column works"


def test_completion_perplexity_scores_only_the_completion(tiny):
    model, tokenizer, _ = tiny
    pairs = _pairs(tokenizer)
    ids = [tokenizer(p + c + tokenizer.eos_token)["input_ids"] for p, c in pairs]
    starts = [len(tokenizer(p)["input_ids"]) for p, _ in pairs]
    expected = math.exp(_manual_mean_nll(model, ids, starts))
    for size in (3, 1):
        assert completion_perplexity(model, tokenizer, pairs, batch_size=size, dtype="fp32") == pytest.approx(
            expected, rel=1e-5)
    whole = math.exp(_manual_mean_nll(model, ids, [0] * len(ids)))
    assert not math.isclose(expected, whole, rel_tol=1e-3), "the prompt tokens must not count"


# ------------------------------------------------------------------------------------------------------ adapters
def test_adapter_round_trip_and_stacking_on_one_base(tiny, runs):
    model, tokenizer, base_dir = tiny
    batch = tokenizer(TEXTS[:2], return_tensors="pt", padding=True)
    with torch.no_grad():
        base_logits = model(**batch).logits
        party = runs["trainer", "texts"]
        socrates = runs["sft_trainer", "pairs"]
        expected_party, expected_socrates = party.model(**batch).logits, socrates.model(**batch).logits

        loaded = load_adapter(AutoModelForCausalLM.from_pretrained(base_dir), party.adapter_dir, "party")
        assert torch.allclose(loaded(**batch).logits, expected_party, atol=1e-5)
        assert not torch.allclose(expected_party, base_logits, atol=1e-4), "the adapter must change the logits"

        assert load_adapter(loaded, socrates.adapter_dir, "socrates") is loaded
        assert loaded.active_adapter == "socrates"
        assert torch.allclose(loaded(**batch).logits, expected_socrates, atol=1e-5)
        loaded.set_adapter("party")
        assert torch.allclose(loaded(**batch).logits, expected_party, atol=1e-5)
        with loaded.disable_adapter():
            assert torch.allclose(loaded(**batch).logits, base_logits, atol=1e-5)

    for peft_model in (loaded, socrates.model):  # generation works through PEFT and TRL's patched forward
        assert len(generate(peft_model, tokenizer, QUESTIONS[:2], max_new_tokens=4)) == 2
    with pytest.raises(ValueError, match="already loaded"):
        load_adapter(loaded, party.adapter_dir, "party")
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        load_adapter(model, base_dir, "nothing")


# ------------------------------------------------------------------------------------------------------ bad input
def test_bad_input_gets_a_clear_error(tiny, tmp_path):
    model, tokenizer, _ = tiny
    settings = _settings(tmp_path, "trainer")
    with pytest.raises(ValueError, match="method must be one of"):
        SFTSettings(method="ppo")
    with pytest.raises(ValueError, match="lora_r must be an integer >= 1"):
        SFTSettings(lora_r=0)
    with pytest.raises(ValueError, match="train_texts is empty"):
        train_lora_sft(model, tokenizer, [], settings=settings)
    with pytest.raises(ValueError, match=r"train_texts\[1\] must be a str, got int"):
        train_lora_sft(model, tokenizer, ["fine", 3], settings=settings)
    with pytest.raises(ValueError, match="exactly one of train_texts"):
        train_lora_sft(model, tokenizer, TEXTS, train_pairs=_pairs(tokenizer), settings=settings)
    with pytest.raises(ValueError, match="exactly one of train_texts"):
        train_lora_sft(model, tokenizer, settings=settings)
    with pytest.raises(ValueError, match=r"train_pairs\[0\] must be a \(prompt, completion\) pair"):
        train_lora_sft(model, tokenizer, train_pairs=[("only a prompt",)], settings=settings)
    with pytest.raises(ValueError, match="eval_texts given with train_pairs"):
        train_lora_sft(model, tokenizer, train_pairs=_pairs(tokenizer), eval_texts=TEXTS, settings=settings)
    with pytest.raises(ValueError, match="bare base model"):
        train_lora_sft(get_peft_model(copy.deepcopy(model), LoraConfig()), tokenizer, TEXTS, settings=settings)
    with pytest.raises(ValueError, match="texts is empty"):
        perplexity(model, tokenizer, [])
    with pytest.raises(ValueError, match="texts must be a list of strings, got str"):
        perplexity(model, tokenizer, "one text")
    with pytest.raises(ValueError, match="prompts must be a list"):
        generate(model, tokenizer, "What is justice?")
    assert not (tmp_path / "trainer").exists(), "nothing may be written for bad input"


# ------------------------------------------------------------------------------------------------------ generation
def test_chat_prompt_uses_the_template_or_plain_text(tiny):
    _, tokenizer, _ = tiny
    assert chat_prompt(tokenizer, "Hi") == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert chat_prompt(tokenizer, "Hi", system="Be brief.").startswith("<|im_start|>system\nBe brief.<|im_end|>\n")
    plain = copy.deepcopy(tokenizer)
    plain.chat_template = None
    assert chat_prompt(plain, "Hi") == "Hi\n"


@pytest.fixture(scope="module")
def lively(tiny):
    """tiny-llama with large random weights: its greedy replies vary (the small-init model just repeats a newline)."""
    model = copy.deepcopy(tiny[0])
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.5, generator=generator)
    return model


def test_generate_batched_greedy_equals_one_prompt_at_a_time(tiny, lively):
    _, tokenizer, _ = tiny
    prompts = [*SOCRATES_PROMPTS, "Tell me, Meno, can virtue be taught or is it acquired by practice?"]
    # fp32: the padding logic is what is tested; bf16 rounding differs with the padded shape and can flip a greedy tie.
    for chat in (True, False):
        batched = generate(lively, tokenizer, prompts, max_new_tokens=12, batch_size=4, chat=chat, dtype="fp32")
        assert len(batched) == len(prompts) and all(isinstance(reply, str) for reply in batched)
        assert len(set(batched)) == len(prompts), "distinct prompts should get distinct replies here"
        singles = [generate(lively, tokenizer, [p], max_new_tokens=12, chat=chat, dtype="fp32")[0] for p in prompts]
        assert batched == singles


def test_generate_returns_only_the_new_text(tiny, lively):
    _, tokenizer, _ = tiny
    (reply,) = generate(lively, tokenizer, ["What is justice?"], max_new_tokens=12, dtype="fp32")  # as the plain call
    batch = tokenizer([chat_prompt(tokenizer, "What is justice?")], return_tensors="pt")
    with torch.no_grad():
        full = lively.generate(**batch, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    new = tokenizer.decode(full[0, batch["input_ids"].shape[1] :], skip_special_tokens=True).strip()
    assert reply == new and "What is justice?" not in reply


def test_sampling_is_seeded_and_leaves_the_global_rng_alone(tiny, lively):
    _, tokenizer, _ = tiny
    state = torch.get_rng_state()
    first = generate(lively, tokenizer, QUESTIONS, do_sample=True, temperature=1.0, top_p=0.95, seed=1,
                     max_new_tokens=16)
    assert torch.equal(torch.get_rng_state(), state)
    assert first == generate(lively, tokenizer, QUESTIONS, do_sample=True, top_p=0.95, seed=1, max_new_tokens=16)
    assert first != generate(lively, tokenizer, QUESTIONS, do_sample=True, top_p=0.95, seed=2, max_new_tokens=16)
