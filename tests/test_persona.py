"""Socrates evaluators that discriminate: the speaker classifier split by dialogue, the judge's verdict
log-probabilities, the saturation share, the choice of the evaluator PPO optimises and its reloading."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rlxf.lm.models import load_causal_lm
from rlxf.rewards.linear import LinearSettings
from rlxf.rewards.persona import (
    CLASSIFIER_DIR,
    VerdictLogprobs,
    answer_ids,
    choose_evaluator,
    cross_fitted_scores,
    dialogue_folds,
    evaluation_turns,
    fit_persona,
    load_socrates_reward,
    most_common_share,
    rank_row,
    save_choice,
    training_turns,
)

FAST = LinearSettings(c_grid=(1.0,), cv_folds=2)


def plato_like(n_dialogues: int = 4, turns_each: int = 40) -> pd.DataFrame:
    """Socrates asks questions about virtue; the others agree at length. Every 5th Socrates turn is held out."""
    rows = []
    for d in range(n_dialogues):
        for t in range(turns_each):
            socrates = t % 2 == 0
            text = (f"And what then is virtue, my friend, number {t}? Is it not knowledge of the good {d}?" if socrates
                    else f"Yes, Socrates, that is certainly true, I agree with you entirely {d} {t}.")
            split = ("test" if t % 10 == 0 else "train") if socrates else None
            rows.append({"dialogue": f"D{d}", "utterance": text, "is_socrates": socrates, "split": split})
    return pd.DataFrame(rows)


def test_evaluation_turns_are_held_out_and_the_training_turns_exclude_them():
    turns = plato_like()
    genuine, others = evaluation_turns(turns, 3, seed=0)
    assert len(genuine) == len(others) == 3
    assert genuine.is_socrates.all() and (genuine.split == "test").all() and not others.is_socrates.any()
    train = training_turns(turns)
    assert not set(genuine.index) & set(train.index)
    with pytest.raises(ValueError, match="columns"):
        evaluation_turns(turns.drop(columns="split"), 3, seed=0)


def test_dialogue_folds_and_cross_fitting_never_train_on_the_scored_dialogue():
    folds = dialogue_folds(["a", "b", "c", "a"], 2, seed=1)
    assert set(folds) == {"a", "b", "c"} and set(folds.values()) == {0, 1}
    with pytest.raises(ValueError, match="n_folds"):
        dialogue_folds(["a", "b"], 3, seed=0)
    turns = plato_like()
    genuine, others = evaluation_turns(turns, 8, seed=0)
    texts = genuine.utterance.tolist() + others.utterance.tolist()
    scores = cross_fitted_scores(turns, texts, genuine.dialogue.tolist() + others.dialogue.tolist(), n_folds=2,
                                 settings=FAST)
    assert np.isfinite(scores).all()
    assert rank_row(scores[:8], scores[8:])["rank_accuracy"] > 0.9  # the style carries over to unseen dialogues
    model = fit_persona(training_turns(turns), FAST)
    assert model.label_names == ("other", "socrates")


def test_verdict_logprobs_one_forward_per_criterion_and_few_shot():
    model, tokenizer = load_causal_lm("tiny-llama", device="cpu")
    criteria = {"socratic": "Is this spoken by Socrates?", "questions": "Does it ask a question?"}
    reward = VerdictLogprobs(model, tokenizer, criteria, batch_size=2)
    replies = ["What is justice?", "No.", "A long reply that goes on and on about many things at length."]
    scores = np.asarray(reward([""] * 3, replies))
    assert scores.shape == (3,) and np.isfinite(scores).all()
    assert list(reward.last_details.columns) == list(criteria)
    np.testing.assert_allclose(reward.last_details.mean(axis=1), scores, rtol=1e-5)
    # batching and padding do not change a score
    alone = np.asarray(VerdictLogprobs(model, tokenizer, criteria, batch_size=1)([""], [replies[2]]))
    np.testing.assert_allclose(alone, scores[2:], atol=1e-4)
    shots = VerdictLogprobs(model, tokenizer, criteria, examples=[("What is virtue?", "Yes")])
    assert "Answer: Yes" in shots.message("x", "q?")
    assert answer_ids(tokenizer, "Yes")
    with pytest.raises(ValueError, match="few-shot"):
        VerdictLogprobs(model, tokenizer, criteria, examples=[("x", "maybe")])


def test_saturation_share_and_the_choice_needs_enough_turns(tmp_path):
    assert most_common_share([1, 1, 1, -1]) == 0.75
    table = pd.DataFrame({"ci_low": [0.7, 0.6, 0.9], "n_genuine": [64, 64, 8], "n_other": [64, 64, 8]},
                         index=["classifier", "logprob", "generated"])
    assert choose_evaluator(table, ["classifier", "logprob", "generated"]) == "classifier"
    with pytest.raises(ValueError, match=">= 64"):
        choose_evaluator(table, ["generated"])
    with pytest.raises(ValueError, match="kind"):
        save_choice(tmp_path, {"kind": "generated"})


def test_the_chosen_classifier_reloads_as_a_reward(tmp_path):
    turns = plato_like()
    fit_persona(training_turns(turns), FAST).save(tmp_path / CLASSIFIER_DIR)
    save_choice(tmp_path, {"kind": "classifier", "name": "speaker classifier"})
    reward, choice = load_socrates_reward(tmp_path)
    assert choice["kind"] == "classifier"
    socratic, agreeing = reward(["", ""], ["What then is virtue, my friend?", "Yes, Socrates, I agree entirely."])
    assert socratic > agreeing
    save_choice(tmp_path, {"kind": "logprob", "criteria": {"q": "Does it ask?"}})
    with pytest.raises(ValueError, match="load_judge"):
        load_socrates_reward(tmp_path)
    reward, _ = load_socrates_reward(tmp_path, lambda: load_causal_lm("tiny-llama", device="cpu"))
    assert isinstance(reward, VerdictLogprobs) and list(reward.criteria) == ["q"]
    with pytest.raises(FileNotFoundError, match="run 03 first"):
        load_socrates_reward(tmp_path / "missing")
