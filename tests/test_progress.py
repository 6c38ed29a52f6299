"""Progress bars of the long loops: on for more than one item, off for one, off everywhere with RLXF_PROGRESS=0."""

from __future__ import annotations

import pytest

from rlxf import progress as progress_module
from rlxf.lm.models import load_causal_lm, load_classifier
from rlxf.progress import progress


def test_a_bar_shows_for_many_items_and_not_for_one(monkeypatch):
    monkeypatch.delenv("RLXF_PROGRESS", raising=False)
    assert not progress(range(5), desc="x").disable
    assert progress(range(1), desc="x").disable
    assert not progress(range(1), desc="x", show=True).disable
    monkeypatch.setenv("RLXF_PROGRESS", "0")
    assert progress(range(5), desc="x").disable and not progress_module.enabled()


@pytest.fixture
def bars(monkeypatch):
    """The desc of every bar rlxf opens (through the modules that import `progress`)."""
    opened = []

    def recording(*args, desc, **kwargs):
        opened.append(desc)
        return progress(*args, desc=desc, **kwargs)

    import rlxf.eval.policy
    import rlxf.lm.generation
    import rlxf.rewards.classifiers

    for module in (rlxf.lm.generation, rlxf.eval.policy, rlxf.rewards.classifiers):
        monkeypatch.setattr(module, "progress", recording)
    return opened


def test_generation_evaluation_and_prediction_have_bars(bars):
    from rlxf.eval.policy import policy_report
    from rlxf.lm.generation import generate
    from rlxf.rewards.classifiers import predict_logits

    model, tokenizer = load_causal_lm("tiny-llama")
    generate(model, tokenizer, ["a", "b", "c"], max_new_tokens=2, batch_size=2)
    policy_report(model, tokenizer, ["a", "b"], None, adapter=None, max_new_tokens=2)
    classifier, classifier_tokenizer = load_classifier("tiny-bert")
    predict_logits(classifier, classifier_tokenizer, ["a b", "c d", "e"], batch_size=2)
    assert bars == ["generate", "policy_report base", "classify"]


def test_steps_counts_on_from_initial_and_follows_the_thread_budget_before_every_step(monkeypatch):
    monkeypatch.delenv("RLXF_PROGRESS", raising=False)
    calls = []
    monkeypatch.setattr(progress_module, "follow_thread_budget", lambda: calls.append("budget"))
    loop = progress_module.steps(4, initial=1, desc="x")
    assert not loop.bar.disable and loop.bar.n == 1
    for step in loop:
        calls.append(step)
    assert calls == ["budget", 2, "budget", 3, "budget", 4]
    assert list(progress_module.steps(2, initial=2, desc="x")) == []  # a finished run takes no step
    assert progress_module.steps(3, desc="x", show=False).bar.disable  # a trainer's progress_bar=False
    monkeypatch.setenv("RLXF_PROGRESS", "0")
    assert progress_module.steps(3, desc="x").bar.disable


def test_rlxf_progress_0_silences_the_ppo_and_selfplay_loops(monkeypatch):
    from rlxf.algos.ppo import PPOSettings, PPOTrainer
    from tests.test_selfplay import selfplay_trainer

    opened = []

    def recording(*args, desc, **kwargs):
        loop = progress_module.Steps(*args, desc=desc, **kwargs)
        opened.append((desc, loop.bar.disable))
        return loop

    monkeypatch.setattr(progress_module, "steps", recording)
    monkeypatch.setenv("RLXF_PROGRESS", "0")
    model, tokenizer = load_causal_lm("tiny-llama")
    settings = PPOSettings(batch_size=2, ppo_epochs=1, max_new_tokens=2, progress_bar=True)
    PPOTrainer(model, tokenizer, settings).train(["a", "b"], lambda prompts, completions: [0.0] * 2, steps=1)
    selfplay_trainer(rounds=1, progress_bar=True).train()
    assert opened == [("ppo", True), ("self-play", True)]
