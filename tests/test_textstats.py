"""Word statistics: the Fightin' Words z-scores, lexicons and lexicon shares on hand-made corpora."""

import numpy as np
import pytest

from rlxf.analysis.textstats import distinctive_words, lexicon, lexicon_share, words


def test_words_drop_stop_words_and_case():
    assert words("The Reform of the TAX code, and it's done") == ["reform", "tax", "code", "it's", "done"]


def test_distinctive_words_matches_the_formula_worked_by_hand():
    # A: "tax" x3, "bank" x1; B: "bank" x3, "tax" x1 -> symmetric, so z(tax) = -z(bank) and both follow the formula
    table = distinctive_words(["tax tax tax bank"], ["bank bank bank tax"], top_k=1, min_count=1)
    ya, yb, prior, total = 3.0, 1.0, 4.0, 8.0
    delta = np.log((ya + prior) / (4 + total - ya - prior)) - np.log((yb + prior) / (4 + total - yb - prior))
    z = delta / np.sqrt(1 / (ya + prior) + 1 / (yb + prior))
    by_word = table.set_index("word")
    assert by_word.loc["tax", "z"] == pytest.approx(z)
    assert by_word.loc["bank", "z"] == pytest.approx(-z)
    assert by_word.loc["tax", "side"] == "a" and by_word.loc["bank", "side"] == "b"


def test_distinctive_words_without_a_common_word_is_an_error():
    with pytest.raises(ValueError, match="min_count=5"):
        distinctive_words(["tax"], ["bank"], min_count=5)


def test_lexicon_keeps_only_words_of_corpus_a():
    assert lexicon(["tax tax tax bank"], ["bank bank bank tax"], top_k=5, min_count=1) == ["tax"]


def test_lexicon_share_counts_words_in_the_vocabulary():
    shares = lexicon_share(["tax reform now", "the bank", "", "of the"], ["tax", "bank"])
    np.testing.assert_allclose(shares, [1 / 2, 1.0, 0.0, 0.0])  # "now" is a stop word; no words -> 0
