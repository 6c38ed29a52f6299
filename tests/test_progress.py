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
