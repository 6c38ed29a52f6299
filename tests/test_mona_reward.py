"""The MONA reward's structured fields (one-hot columns read back from the model text) and the paired AUC
difference that compares it with its baseline."""

from __future__ import annotations

import numpy as np
import pytest

from rlxf.analysis.stats import auc_ci, auc_difference_ci
from rlxf.rewards.classifiers import load_saved_classifier
from rlxf.rewards.fields import FieldOneHot, read_field
from rlxf.rewards.linear import LinearSettings, LinearTextClassifier

TEXT = ("Type: prior action. Country: AFGHANISTAN,ISLAMIC REPUBLIC OF. Arrangement: PRGF. Classification: 1.8. Budget "
        "preparation (e.g., submission or approval). Condition: Submit the budget. Then approve it.")


def test_fields_are_read_back_from_the_model_text():
    assert read_field(TEXT, "Type") == "prior action"
    assert read_field(TEXT, "Arrangement") == "PRGF"
    assert read_field(TEXT, "Classification") == "1.8. Budget preparation (e.g., submission or approval)"
    assert read_field(TEXT, "Condition") == "Submit the budget. Then approve it"
    assert read_field("Country: X. Condition: y", "Type") == ""
    with pytest.raises(ValueError, match="capitalised word"):
        read_field(TEXT, "type:")


def test_one_hot_columns_and_an_unknown_or_missing_field_gives_zeros():
    encoder = FieldOneHot(("Type", "Arrangement")).fit([TEXT, "Type: structural benchmark. Arrangement: SBA. X: y"])
    assert list(encoder.get_feature_names_out()) == ["Type=prior action", "Type=structural benchmark",
                                                     "Arrangement=PRGF", "Arrangement=SBA"]
    matrix = encoder.transform([TEXT, "Arrangement: EFF. Condition: q", "Condition: q"]).toarray()
    np.testing.assert_array_equal(matrix, [[1, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]])


def test_a_field_the_words_cannot_show_is_learned_and_survives_save_and_load(tmp_path):
    # the same words with either label: only the one-hot Type column separates the classes
    texts = [f"Type: {kind}. Condition: adopt the law" for kind in ("prior action", "structural benchmark")] * 6
    labels = [1, 0] * 6
    model = LinearTextClassifier(("Non-MET", "MET"), LinearSettings(fields=("Type",), c_grid=(10.0,))).fit(
        texts, labels)
    words_only = LinearTextClassifier(("Non-MET", "MET"), LinearSettings(c_grid=(10.0,))).fit(
        [t.split(". ", 1)[1] for t in texts], labels)
    assert model.predict_proba(texts[:2])[:, 1].tolist() == pytest.approx([1, 0], abs=0.3)
    assert words_only.predict_proba(["Condition: adopt the law"])[0, 1] == pytest.approx(0.5, abs=0.01)
    model.save(tmp_path / "mona")
    loaded, _ = load_saved_classifier(tmp_path / "mona")
    assert loaded.settings.fields == ("Type",) and "fields ['Type']" in repr(loaded)
    np.testing.assert_allclose(loaded.predict_proba(texts[:2]), model.predict_proba(texts[:2]))
    with pytest.raises(ValueError, match="capitalised word"):
        LinearSettings(fields=("type:",))


def test_auc_difference_is_paired_and_matches_the_two_aucs():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    shared = rng.normal(size=400)  # what both models see: pairing cancels it
    better, worse = labels + shared + 0.5 * rng.normal(size=400), labels + shared + 1.5 * rng.normal(size=400)
    d = auc_difference_ci(better, worse, labels, seed=0)
    assert d["diff"] == pytest.approx(auc_ci(better, labels)["auc"] - auc_ci(worse, labels)["auc"])
    assert 0 < d["low"] < d["diff"] < d["high"]
    same = auc_difference_ci(better, better, labels)
    assert same["diff"] == same["low"] == same["high"] == 0
    with pytest.raises(ValueError, match="one score of each model"):
        auc_difference_ci(better, worse[:10], labels)
