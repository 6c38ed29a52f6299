"""The linear text classifier reward: fitting by cross-validation, save/load through the classifier API, the rewards
on it, and the tasks' typed MONA text and split by tweet author."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rlxf.rewards.classifiers import ClassifierReward, load_saved_classifier, predict_proba
from rlxf.rewards.experience import ExperienceReward
from rlxf.rewards.judge import VerdictSentiment
from rlxf.rewards.linear import LinearSettings, LinearTextClassifier
from rlxf.rewards.tasks import ClassifierTask, fit_linear, mona_task, party_task

GOOD = ["a great film, loved it", "wonderful and great acting", "great fun, wonderful", "loved the great story"]
BAD = ["an awful film, hated it", "terrible and awful acting", "boring, awful mess", "hated the terrible story"]


def _fitted(**settings) -> LinearTextClassifier:
    texts = (GOOD + BAD) * 3
    labels = [1 if t in GOOD else 0 for t in texts]
    return LinearTextClassifier(("negative", "positive"), LinearSettings(**settings)).fit(texts, labels)


def test_fit_chooses_c_by_cross_validation_and_separates_the_classes():
    model = _fitted(c_grid=(0.01, 100.0))
    assert set(model.cv_log_loss) == {"0.01", "100.0"}
    assert model.best_c == 100.0  # separable data: weak regularisation has the lower held-out log-loss
    proba = model.predict_proba(["great wonderful", "awful terrible"])
    assert proba[0, 1] > 0.9 and proba[1, 1] < 0.1
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    logits = model.predict_logits(["great wonderful"])
    np.testing.assert_allclose(np.exp(logits) / np.exp(logits).sum(), proba[:1], rtol=1e-5)


def test_save_load_and_the_classifier_api(tmp_path):
    model = _fitted()
    model.save(tmp_path / "clf")
    loaded, tokenizer = load_saved_classifier(tmp_path / "clf")
    assert tokenizer is None and isinstance(loaded, LinearTextClassifier) and loaded.best_c == model.best_c
    texts = ["great story", "awful mess", ""]
    np.testing.assert_allclose(predict_proba(loaded, None, texts), model.predict_proba(texts), rtol=1e-6)
    reward = ClassifierReward.from_saved(tmp_path / "clf", label="positive", output="log_odds")
    scores = reward(["", ""], ["great story", "awful mess"])
    assert scores[0] > 0 > scores[1]
    assert VerdictSentiment(loaded, None)(["great story"])[0] > 0.5


def test_experience_reward_reads_a_linear_mona_classifier():
    texts = [f"Country: X. Arrangement: ECF. Classification: 1. Budget. Condition: {c}"
             for c in ["adopt the budget", "approve the budget law"] * 4 + ["privatise the bank", "sell the bank"] * 4]
    model = LinearTextClassifier(("Non-MET", "MET")).fit(texts, [1] * 8 + [0] * 8)
    reward = ExperienceReward(model, None)
    scores = reward(["p", "p"], ["adopt the budget", "sell the bank"], country=["X", "X"], arr_type=["ECF", "ECF"],
                    econ_class=["1. Budget", "1. Budget"])
    assert scores[0] > 0.5 > scores[1]


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="single class"):
        LinearTextClassifier(("a", "b")).fit(["x", "y", "z"], [0, 0, 0])
    with pytest.raises(ValueError, match="not fitted"):
        LinearTextClassifier(("a", "b")).predict_logits(["x"])
    with pytest.raises(ValueError, match="groups has 2 entries"):
        LinearTextClassifier(("a", "b")).fit(GOOD + BAD, [1] * 4 + [0] * 4, groups=[0, 1])
    with pytest.raises(ValueError, match="c_grid"):
        LinearSettings(c_grid=(0.0,))
    with pytest.raises(FileNotFoundError, match="no saved linear classifier"):
        LinearTextClassifier.load("/nonexistent/dir")


def test_fit_linear_caches_and_refits_on_changed_settings(tmp_path):
    task = ClassifierTask("toy", ("negative", "positive"), (GOOD + BAD) * 2, np.array(([1] * 4 + [0] * 4) * 2),
                          ["great", "awful"], np.array([1, 0]))
    first = fit_linear(task, LinearSettings(c_grid=(1.0,)), tmp_path / "toy", grouped=False)
    assert not first.loaded and first.report["accuracy"] == 1.0 and first.tokenizer is None
    again = fit_linear(task, LinearSettings(c_grid=(1.0,)), tmp_path / "toy", grouped=False)
    assert again.loaded and again.report == first.report
    other = fit_linear(task, LinearSettings(c_grid=(3.0,)), tmp_path / "toy", grouped=False)
    assert not other.loaded and other.model.best_c == 3.0


def test_typed_mona_text_and_party_split_by_author():
    mona = pd.DataFrame({"text": ["Country: A. Condition: x", "Country: B. Condition: y"], "label": [1, 0],
                         "arr_id": ["1", "2"], "condition_type": ["prior action", "structural benchmark"],
                         "split_random": ["train", "test"]})
    task = mona_task(mona, split="split_random", with_type=True)
    assert task.train_texts == ["Type: prior action. Country: A. Condition: x"]
    assert task.test_texts == ["Type: structural benchmark. Country: B. Condition: y"]
    assert list(task.train_groups) == ["1"]
    handles = [f"member{i}" for i in range(10) for _ in range(3)]
    tweets = pd.DataFrame({"handle": handles, "party": ["Democrat", "Republican"] * 15,
                           "text": [f"tweet {i}" for i in range(30)], "split": ["train"] * 30})
    by_handle = party_task(tweets, by_handle=True)
    test_authors = {h for h, t in zip(handles, tweets.text, strict=True) if t in set(by_handle.test_texts)}
    assert len(test_authors) == 2 and not test_authors & set(by_handle.train_groups)
    assert len(by_handle.test_texts) == 6 and len(by_handle.train_texts) == 24
