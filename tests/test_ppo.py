"""LoRA-PPO: the loss pieces against hand-computed values, adapters and references, learning, resume, bad rewards."""

from __future__ import annotations

import json
import math

import pytest
import torch

from rlxf.algos.ppo import (
    AdaptiveKLController,
    FixedKLController,
    PPOSettings,
    PPOTrainer,
    gae,
    kl_k1,
    kl_k3,
    masked_mean,
    masked_whiten,
    policy_loss,
    value_loss,
)
from rlxf.infra.checkpoint import RunMismatch
from rlxf.lm.generation import collate, truncate_after_eos
from rlxf.lm.models import load_causal_lm

PROMPTS = ["What is justice?", "How are you today?", "The movie was", "I think the government"]

# LoRA on lm_head, which tiny-llama ties to the embeddings: peft warns, and the test wants exactly that.
pytestmark = [pytest.mark.filterwarnings("ignore:Model has `tie_word_embeddings=True`:UserWarning"),
              pytest.mark.usefixtures("one_thread")]  # one_thread: tests/conftest.py




def tiny_lm():
    """A fresh tiny-llama (random 2-layer Llama, ChatML tokenizer, left padding), identical on every call."""
    return load_causal_lm("tiny-llama", device="cpu")


def tiny_settings(**overrides) -> PPOSettings:
    # lm_head gets LoRA too: a freshly initialised tiny model has logits too small for attention LoRA alone to move.
    settings = dict(learning_rate=5e-3, batch_size=4, max_new_tokens=6, lora_target_modules=("q_proj", "v_proj",
                    "lm_head"), adaptive_kl=False, init_kl_coef=0.01, progress_bar=False)
    return PPOSettings(**{**settings, **overrides})


def target_fraction(tokenizer, every: int = 8):
    """Toy reward: the fraction of the reply's tokens that are "targets" (non-special ids divisible by `every`)."""
    special = set(tokenizer.all_special_ids)

    def reward_fn(prompts: list[str], completions: list[str]) -> list[float]:
        ids = [tokenizer(c, add_special_tokens=False)["input_ids"] for c in completions]
        return [sum(i % every == 0 and i not in special for i in row) / max(len(row), 1) for row in ids]

    return reward_fn


def with_sft_adapters(model, names, scale: float = 0.5):
    """A PeftModel holding non-zero ("SFT-trained") LoRA adapters `names`."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "lm_head"], task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, lora, adapter_name=names[0])
    for name in names[1:]:
        peft_model.add_adapter(name, lora)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param_name, param in peft_model.named_parameters():
            if "lora_B" in param_name:
                param.copy_(torch.randn(param.shape, generator=generator) * scale)
    return peft_model


def snapshot(trainer: PPOTrainer) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in trainer.model.named_parameters()}


# --- the pure pieces, by hand ---------------------------------------------------------------------------------


def test_masked_mean_and_whiten_by_hand():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert masked_mean(x, torch.tensor([[1.0, 0.0], [1.0, 1.0]])).item() == pytest.approx(8 / 3)
    assert masked_mean(x, torch.tensor([[1.0, 0.0], [1.0, 1.0]]), dim=1).tolist() == pytest.approx([1.0, 3.5])
    whitened = masked_whiten(torch.tensor([[1.0, 2.0, 3.0, 100.0]]), torch.tensor([[1.0, 1.0, 1.0, 0.0]]))
    assert whitened.tolist()[0] == pytest.approx([-1.0, 0.0, 1.0, 0.0], abs=1e-6)  # mean 2, unbiased var 1


def test_gae_by_hand():
    # gamma 1, lam 0.5: deltas -2, 1, 1 from the end -> A2 = -2, A1 = 1 + 0.5 * -2 = 0, A0 = 1 + 0 = 1
    adv, ret = gae(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[0.0, 0.0, 1.0]]), torch.ones(1, 3), 1.0, 0.5)
    assert adv.tolist()[0] == pytest.approx([1.0, 0.0, -2.0])
    assert ret.tolist()[0] == pytest.approx([2.0, 2.0, 1.0])
    # the padded third token is ignored: its value does not bootstrap; gamma 0.9, lam 1
    adv, ret = gae(torch.tensor([[1.0, 2.0, 9.0]]), torch.tensor([[0.0, 1.0, 5.0]]),
                   torch.tensor([[1.0, 1.0, 0.0]]), 0.9, 1.0)
    assert adv.tolist()[0] == pytest.approx([-0.1, -1.0, 0.0])  # A1 = 1 - 2; A0 = 0.9 * 2 - 1 + 0.9 * A1
    assert ret.tolist()[0] == pytest.approx([0.9, 1.0, 0.0])


def test_policy_loss_by_hand():
    old = torch.zeros(1, 4)
    new = torch.log(torch.tensor([[1.5, 0.5, 1.0, 7.0]]))  # ratios 1.5, 0.5, 1, 7 (the last is padding)
    adv = torch.tensor([[1.0, 1.0, -2.0, 5.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    loss, clipfrac, approx_kl = policy_loss(new, old, adv, mask, cliprange=0.2)
    # per token max(-A r, -A clip(r)): -1.2 (clipped), -0.5, 2.0
    assert loss.item() == pytest.approx((-1.2 - 0.5 + 2.0) / 3)
    assert clipfrac.item() == pytest.approx(1 / 3)
    assert approx_kl.item() == pytest.approx(((0.5 - math.log(1.5)) + (-0.5 - math.log(0.5)) + 0.0) / 3)


def test_value_loss_by_hand():
    values, old = torch.tensor([[0.5, -0.1]]), torch.zeros(1, 2)
    loss, clipfrac = value_loss(values, old, torch.ones(1, 2), torch.ones(1, 2), cliprange_value=0.2)
    # token 0: clipped to 0.2 -> max(0.25, 0.64); token 1: inside the clip -> 1.21
    assert loss.item() == pytest.approx(0.5 * (0.64 + 1.21) / 2)
    assert clipfrac.item() == pytest.approx(0.5)


def test_kl_estimators_by_hand_and_unbiased():
    logp, ref = torch.log(torch.tensor([0.5])), torch.log(torch.tensor([0.25]))
    assert kl_k1(logp, ref).item() == pytest.approx(math.log(2))
    assert kl_k3(logp, ref).item() == pytest.approx(0.5 - 1 + math.log(2))
    # over a whole distribution both estimators average to the exact KL(p || q); k3 is never negative
    p, q = torch.tensor([0.7, 0.2, 0.1]), torch.tensor([0.2, 0.5, 0.3])
    exact = (p * (p / q).log()).sum()
    assert (p * kl_k1(p.log(), q.log())).sum().item() == pytest.approx(exact.item())
    assert (p * kl_k3(p.log(), q.log())).sum().item() == pytest.approx(exact.item())
    assert (kl_k3(p.log(), q.log()) >= 0).all()


def test_kl_controllers_by_hand():
    ctl = AdaptiveKLController(init_kl_coef=0.2, target=6.0, horizon=10_000)
    ctl.update(current_kl=9.0, n_steps=100)  # error clipped to +0.2 -> x 1.002
    assert ctl.value == pytest.approx(0.2 * 1.002)
    ctl.update(current_kl=6.6, n_steps=100)  # error 0.1 -> x 1.001
    assert ctl.value == pytest.approx(0.2 * 1.002 * 1.001)
    ctl.update(current_kl=0.0, n_steps=100)  # error clipped to -0.2 -> x 0.998
    assert ctl.value == pytest.approx(0.2 * 1.002 * 1.001 * 0.998)
    fixed = FixedKLController(0.05)
    fixed.update(100.0, 100)
    assert fixed.value == 0.05


def test_config_rejects_bad_values_naming_the_field():
    with pytest.raises(ValueError, match="kl_estimator"):
        PPOSettings(kl_estimator="k2")
    with pytest.raises(ValueError, match="cliprange"):
        PPOSettings(cliprange=0.0)
    with pytest.raises(ValueError, match="lam"):
        PPOSettings(lam=1.5)


def test_collate_pads_queries_left_and_responses_right():
    batch = collate([torch.tensor([5, 6, 7]), torch.tensor([8])], [torch.tensor([9]), torch.tensor([10, 2])], 0)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 9, 0], [0, 0, 8, 10, 2]]
    assert batch["response_mask"].tolist() == [[1.0, 0.0], [1.0, 1.0]]
    assert batch["position_ids"][1, 2:].tolist() == [0, 1, 2]
    assert truncate_after_eos(torch.tensor([4, 2, 5, 2]), {2}).tolist() == [4, 2]
    assert truncate_after_eos(torch.tensor([4, 5]), {2}).tolist() == [4, 5]


# --- the trainer ------------------------------------------------------------------------------------------------


def test_generate_returns_replies_that_stop_at_eos():
    model, tokenizer = tiny_lm()
    trainer = PPOTrainer(model, tokenizer, tiny_settings(max_new_tokens=12))
    queries, responses, texts = trainer.generate(PROMPTS)
    assert len(queries) == len(responses) == len(texts) == 4
    for prompt, query, response in zip(PROMPTS, queries, responses, strict=True):
        assert query.tolist() == tokenizer(prompt)["input_ids"]
        assert 1 <= len(response) <= 12
        assert tokenizer.eos_token_id not in response[:-1].tolist()  # nothing after the first EOS


def test_kl_to_reference_is_zero_before_first_update_from_base():
    model, tokenizer = tiny_lm()
    trainer = PPOTrainer(model, tokenizer, tiny_settings())
    assert trainer.ref_adapter is None  # a new LoRA starts at zero: the base is the exact reference
    queries, responses, texts = trainer.generate(PROMPTS)
    first = trainer.step(queries, responses, [0.0, 1.0, 0.5, 0.2])
    assert first["objective/kl"] == pytest.approx(0.0, abs=1e-6)
    assert first["objective/kl_k3"] == pytest.approx(0.0, abs=1e-6)
    second = trainer.step(queries, responses, [0.0, 1.0, 0.5, 0.2])
    assert abs(second["objective/kl"]) > 1e-4  # the update moved the policy away from the reference


def test_reference_is_a_frozen_copy_of_the_starting_sft_adapter():
    model, tokenizer = tiny_lm()
    trainer = PPOTrainer(with_sft_adapters(model, ["sft"]), tokenizer, tiny_settings(), adapter_name="sft")
    assert trainer.ref_adapter == "sft_ref"
    ref_before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if ".sft_ref." in n}
    queries, responses, _ = trainer.generate(PROMPTS)
    metrics = trainer.step(queries, responses, [1.0, 0.0, 0.0, 1.0])
    assert metrics["objective/kl"] == pytest.approx(0.0, abs=1e-6)
    # the SFT adapter really differs from the bare base, so "adapters disabled" would be the wrong reference
    with pytest.warns(UserWarning, match="trl#495"):
        base_ref = PPOTrainer(with_sft_adapters(tiny_lm()[0], ["sft"]), tokenizer, tiny_settings(), adapter_name="sft",
                              ref_adapter=None)
    assert base_ref.step(queries, responses, [1.0, 0.0, 0.0, 1.0])["objective/kl_k3"] > 1e-3
    # the reference stays put while the policy moves
    after = dict(trainer.model.named_parameters())
    assert all(torch.equal(after[n], p) for n, p in ref_before.items())
    assert not all(torch.equal(after[n.replace(".sft_ref.", ".sft.")], p) for n, p in ref_before.items())


def test_only_the_acting_adapter_and_its_value_head_change_with_two_bots_on_one_base():
    model, tokenizer = tiny_lm()
    shared = with_sft_adapters(model, ["bot_a", "bot_b"])
    bot_a = PPOTrainer(shared, tokenizer, tiny_settings(), adapter_name="bot_a")
    bot_b = PPOTrainer(shared, tokenizer, tiny_settings(), adapter_name="bot_b")
    assert bot_b.model is bot_a.model  # one base, four adapters: bot_a, bot_a_ref, bot_b, bot_b_ref
    assert set(shared.peft_config) == {"bot_a", "bot_a_ref", "bot_b", "bot_b_ref"}

    for acting, idle, name in ((bot_a, bot_b, "bot_a"), (bot_b, bot_a, "bot_b"), (bot_a, bot_b, "bot_a")):
        before, heads = snapshot(acting), (acting.value_head.weight.clone(), idle.value_head.weight.clone())
        queries, responses, _ = acting.generate(PROMPTS)
        acting.step(queries, responses, [1.0, 0.0, 0.5, 0.0])
        changed = {n for n, p in acting.model.named_parameters() if not torch.equal(p, before[n])}
        own = {n for n, _ in acting.model.named_parameters() if f".{name}." in n}
        assert changed and changed <= own, f"{name}: parameters outside the adapter changed: {changed - own}"
        assert not torch.equal(acting.value_head.weight, heads[0])
        assert torch.equal(idle.value_head.weight, heads[1])


def test_mean_reward_rises_on_a_toy_task():
    model, tokenizer = tiny_lm()
    chats = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                           add_generation_prompt=True) for p in PROMPTS]
    trainer = PPOTrainer(model, tokenizer, tiny_settings(batch_size=16, max_new_tokens=8, seed=3))
    history = trainer.train(chats, target_fraction(tokenizer), steps=30)
    rewards = [m["env/reward_mean"] for m in history]
    assert len(history) == 30 and [m["step"] for m in history] == list(range(1, 31))
    # about 1 token in 8 is a target by chance; PPO should make targets the usual reply
    assert sum(rewards[:3]) / 3 < 0.15, rewards
    assert sum(rewards[-5:]) / 5 > 0.4, rewards


def test_resume_gives_the_same_history_as_an_uninterrupted_run(tmp_path):
    def trainer(output_dir):
        model, tokenizer = tiny_lm()
        settings = tiny_settings(output_dir=str(output_dir), checkpoint_every=2, adaptive_kl=True, init_kl_coef=0.1,
                          target_kl=0.5, horizon=20, seed=7)
        return PPOTrainer(model, tokenizer, settings), target_fraction(tokenizer)

    straight, reward_fn = trainer(tmp_path / "straight")
    expected = straight.train(PROMPTS, reward_fn, steps=4)

    first, reward_fn = trainer(tmp_path / "interrupted")
    first.train(PROMPTS, reward_fn, steps=2)
    assert (tmp_path / "interrupted" / "checkpoint-2" / "trainer_state.json").is_file()
    resumed, reward_fn = trainer(tmp_path / "interrupted")
    got = resumed.train(PROMPTS, reward_fn, steps=4, resume=True)

    assert len(got) == len(expected) == 4
    for want, have in zip(expected, got, strict=True):
        for key, value in want.items():
            if not key.startswith("time/"):
                assert have[key] == pytest.approx(value, rel=1e-5, abs=1e-7, nan_ok=True), (want["step"], key)
    assert expected[-1]["objective/kl_coef"] != expected[0]["objective/kl_coef"]  # the controller state mattered
    lines = (tmp_path / "interrupted" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3, 4]
    weights = {n: p for n, p in straight.model.named_parameters() if p.requires_grad}
    for name, param in resumed.model.named_parameters():
        if name in weights:
            torch.testing.assert_close(param, weights[name])


def test_nan_reward_stops_naming_the_step_and_keeps_the_last_checkpoint(tmp_path):
    model, tokenizer = tiny_lm()
    trainer = PPOTrainer(model, tokenizer, tiny_settings(output_dir=str(tmp_path), checkpoint_every=2))
    calls = []

    def reward_fn(prompts, completions):
        calls.append(1)
        return [float("nan") if len(calls) == 3 else 0.5] * len(completions)

    with pytest.raises(ValueError, match=r"step 3: non-finite reward nan for sample 0 from reward_fn.*checkpoint-2"):
        trainer.train(PROMPTS, reward_fn, steps=5)
    assert (tmp_path / "checkpoint-2" / "adapters" / "default" / "adapter_model.safetensors").is_file()
    assert not (tmp_path / "checkpoint-3").exists()
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2


class CountingReward:
    """A reward that reports on every batch it scored (as the judge evaluator does) through `pop_stats`."""

    def __init__(self):
        self.batches = 0

    def __call__(self, prompts, completions):
        self.batches += 1
        return [0.5] * len(completions)

    def pop_stats(self):
        return {"batch": self.batches, "fallbacks": 0}


def test_a_rewards_pop_stats_join_each_steps_metrics_row(tmp_path):
    model, tokenizer = tiny_lm()
    trainer = PPOTrainer(model, tokenizer, tiny_settings(output_dir=str(tmp_path), max_new_tokens=2))
    history = trainer.train(PROMPTS, CountingReward(), steps=2)
    assert [(row["reward/batch"], row["reward/fallbacks"]) for row in history] == [(1.0, 0.0), (2.0, 0.0)]
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [row["reward/batch"] for row in logged] == [1.0, 2.0]
    assert not any(key.startswith("reward/") for key in trainer.train(PROMPTS, target_fraction(tokenizer),
                                                                       steps=3)[-1])
    broken = CountingReward()
    broken.pop_stats = lambda: {"fallbacks": "none"}
    with pytest.raises(ValueError, match=r"step 4: CountingReward.pop_stats\(\) must return a dict of str -> number"):
        trainer.train(PROMPTS, broken, steps=4)


def test_non_finite_loss_stops_naming_the_step():
    model, tokenizer = tiny_lm()
    trainer = PPOTrainer(model, tokenizer, tiny_settings())
    with pytest.raises(FloatingPointError, match="step 1: non-finite loss"):
        trainer.step(["a b"], ["c d"], [3e38])  # finite reward, but its squared value error overflows


def test_step_api_takes_strings_and_plain_float_rewards(tmp_path):
    model, tokenizer = tiny_lm()
    trainer = PPOTrainer(model, tokenizer, tiny_settings(output_dir=str(tmp_path), checkpoint_every=0))
    replies = ["the movie" + tokenizer.eos_token, "yes"]  # the first ends with EOS, the second does not
    lengths = [len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in replies]
    metrics = trainer.step(["What is justice?", "Hi"], replies, [1.0, 0])
    documented = {"step", "env/reward_mean", "env/reward_std", "env/response_length_mean", "objective/kl",
                  "objective/kl_k3", "objective/kl_coef", "objective/entropy", "policy/clipfrac", "policy/approxkl",
                  "loss/policy", "loss/value", "val/explained_variance", "time/update_s", "time/tokens_per_s"}
    assert documented <= set(metrics)
    assert metrics["step"] == 1 and metrics["env/reward_mean"] == pytest.approx(0.5)
    assert metrics["env/response_length_mean"] == pytest.approx(sum(lengths) / 2)
    assert metrics["env/missing_eos_frac"] == pytest.approx(0.5)
    assert all(math.isfinite(v) for k, v in metrics.items() if k != "val/explained_variance")
    assert json.loads((tmp_path / "metrics.jsonl").read_text())["step"] == 1
    with pytest.raises(ValueError, match=r"step 2: step\(rewards=...\) has 1 rewards for 2 responses"):
        trainer.step(["a", "b"], ["c", "d"], [1.0])
    with pytest.raises(ValueError, match=r"responses\[0\]"):
        trainer.step(["a"], [""], [1.0])


def test_train_with_timings_and_missing_eos_penalty():
    model, tokenizer = tiny_lm()
    trainer = PPOTrainer(model, tokenizer, tiny_settings(missing_eos_penalty=1.0, max_new_tokens=2))
    history = trainer.train(PROMPTS, lambda prompts, completions: [0.0] * len(completions), steps=1)
    metrics = history[0]
    assert metrics["time/generation_s"] > 0 and metrics["time/scoring_s"] >= 0
    assert metrics["env/reward_mean"] == pytest.approx(-metrics["env/missing_eos_frac"])
    parts = [metrics[f"time/{name}_s"] for name in ("rollout_policy", "rollout_ref", "optimise")]
    assert all(part > 0 for part in parts) and sum(parts) <= metrics["time/update_s"]  # the step's parts, disjoint


def test_resume_errors_name_what_is_missing(tmp_path):
    model, tokenizer = tiny_lm()
    trainer = PPOTrainer(model, tokenizer, tiny_settings(output_dir=str(tmp_path / "run")))
    with pytest.raises(FileNotFoundError, match="no checkpoint-<step> directory"):
        trainer.train(PROMPTS, target_fraction(tokenizer), steps=2, resume=True)
    trainer.train(PROMPTS, target_fraction(tokenizer), steps=1)  # writes checkpoint-1 at the end
    other = PPOTrainer(tiny_lm()[0], tokenizer, tiny_settings(output_dir=str(tmp_path / "run")), adapter_name="bot")
    mismatch = r"belongs to another PPO run: adapter.name: 'default' \(checkpoint\) vs 'bot'"
    with pytest.raises(RunMismatch, match=mismatch):
        other.load_checkpoint()
    with pytest.warns(UserWarning, match=r"held an earlier PPO run; moved it to .*run\.old-\d{8}-\d{6}"):
        PPOTrainer(tiny_lm()[0], tokenizer, tiny_settings(output_dir=str(tmp_path / "run"))).train(
            PROMPTS, target_fraction(tokenizer), steps=1)
    (old,) = tmp_path.glob("run.old-*")
    assert (old / "checkpoint-1" / "trainer_state.json").is_file()  # the earlier run is kept, not overwritten


def test_auto_resume_continues_only_a_run_with_the_same_settings(tmp_path):
    model, tokenizer = tiny_lm()
    first = PPOTrainer(model, tokenizer, tiny_settings(output_dir=str(tmp_path)))
    first.train(PROMPTS, target_fraction(tokenizer), steps=2)
    again = PPOTrainer(tiny_lm()[0], tokenizer, tiny_settings(output_dir=str(tmp_path)))
    history = again.train(PROMPTS, target_fraction(tokenizer), steps=3, resume="auto")
    assert [m["step"] for m in history] == [1, 2, 3] and again.store.last_checkpoint.name == "checkpoint-3"
    changed = PPOTrainer(tiny_lm()[0], tokenizer, tiny_settings(output_dir=str(tmp_path), learning_rate=3e-3))
    with pytest.warns(UserWarning, match=r"another PPO run \(settings.learning_rate: 0.005 \(checkpoint\) vs 0.003"):
        history = changed.train(PROMPTS, target_fraction(tokenizer), steps=1, resume="auto")
    assert [m["step"] for m in history] == [1]
    (old,) = tmp_path.parent.glob(f"{tmp_path.name}.old-*")  # the other run moved aside, all its checkpoints kept
    assert [p.name for p in sorted(old.glob("checkpoint-*"))] == ["checkpoint-2", "checkpoint-3"]


def test_tensorboard_logging_or_a_clear_error(tmp_path):
    model, tokenizer = tiny_lm()
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"PPOSettings.report_to='tensorboard'.*pip install"):
            PPOTrainer(model, tokenizer, tiny_settings(output_dir=str(tmp_path), report_to="tensorboard"))
    else:
        trainer = PPOTrainer(model, tokenizer, tiny_settings(output_dir=str(tmp_path), report_to="tensorboard"))
        trainer.train(PROMPTS, target_fraction(tokenizer), steps=1)
        assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_report_to_a_wandb_style_tracker_gets_every_step(tmp_path, monkeypatch):
    """trackio and wandb share init / log / finish: one run per train(), every metrics row logged at its step."""
    import importlib.util
    import sys
    import types

    calls = []
    fake = types.ModuleType("trackio")
    fake.init = lambda **kwargs: calls.append(("init", kwargs))
    fake.log = lambda metrics, step: calls.append(("log", step, sorted(metrics)))
    fake.finish = lambda: calls.append(("finish",))
    monkeypatch.setitem(sys.modules, "trackio", fake)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "trackio"
                        else real_find_spec(name, *a))
    model, tokenizer = tiny_lm()
    trainer = PPOTrainer(model, tokenizer, tiny_settings(output_dir=str(tmp_path / "run"), report_to="trackio"))
    trainer.train(PROMPTS, target_fraction(tokenizer), steps=2)
    assert [c[0] for c in calls] == ["init", "log", "log", "finish"]
    assert calls[0][1]["project"] == "rlxf" and calls[0][1]["name"].endswith("/run")
    assert [c[1] for c in calls[1:3]] == [1, 2] and "objective/kl" in calls[1][2] and "step" not in calls[1][2]
