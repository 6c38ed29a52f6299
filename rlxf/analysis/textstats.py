"""Small text statistics for notebooks: word counts and the words that distinguish two corpora."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

import numpy as np
import pandas as pd

_WORD = re.compile(r"[a-z][a-z'\-]+")
# A short English stop list: frequent function words carry no party signal and crowd the top of raw counts.
STOPWORDS = frozenset(
    "a about after all also am an and any are as at be been before being but by can could did do does for from had has "
    "have he her here him his how i if in into is it its just let me more most my no not now of on one only or our out "
    "over she so some than that the their them then there these they this those through to too up us very was we were "
    "what when where which while who why will with would you your amp rt".split()
)


def words(text: str) -> list[str]:
    """Lower-cased word tokens without stop words (hashtags keep their word, URLs should be removed before)."""
    return [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS]


def word_count(texts: Iterable[str]) -> np.ndarray:
    """Whitespace word count of each text."""
    return np.array([len(t.split()) for t in texts])


def distinctive_words(
    texts_a: Iterable[str], texts_b: Iterable[str], top_k: int = 15, min_count: int = 5
) -> pd.DataFrame:
    """Words most associated with corpus A vs B by the log-odds ratio with an informative Dirichlet prior.

    Monroe, Colaresi & Quinn (2008), "Fightin' Words": the z-score of the log-odds difference, with the pooled
    counts as the prior, so rare words do not dominate the way they do with a raw frequency ratio.
    Returns `top_k` rows for each side: word, z, count_a, count_b, side ('a' or 'b').
    """
    count_a, count_b = Counter(), Counter()
    for t in texts_a:
        count_a.update(words(t))
    for t in texts_b:
        count_b.update(words(t))
    # sorted: ties in z must break the same way whatever PYTHONHASHSEED is (a set's order is not)
    vocab = sorted(w for w in set(count_a) | set(count_b) if count_a[w] + count_b[w] >= min_count)
    if not vocab:
        raise ValueError(f"no word occurs at least min_count={min_count} times in the two corpora")
    ya = np.array([count_a[w] for w in vocab], dtype=float)
    yb = np.array([count_b[w] for w in vocab], dtype=float)
    prior = ya + yb
    na, nb, a0 = ya.sum(), yb.sum(), prior.sum()
    delta = np.log((ya + prior) / (na + a0 - ya - prior)) - np.log((yb + prior) / (nb + a0 - yb - prior))
    z = delta / np.sqrt(1.0 / (ya + prior) + 1.0 / (yb + prior))
    table = pd.DataFrame({"word": vocab, "z": z, "count_a": ya.astype(int), "count_b": yb.astype(int)})
    top_a = table.nlargest(top_k, "z").assign(side="a")
    top_b = table.nsmallest(top_k, "z").assign(side="b")
    return pd.concat([top_a, top_b], ignore_index=True)


def lexicon(texts_a: Iterable[str], texts_b: Iterable[str], top_k: int = 25, min_count: int = 5) -> list[str]:
    """The `top_k` words most distinctive of corpus A against B (`distinctive_words`, positive z only)."""
    table = distinctive_words(texts_a, texts_b, top_k=top_k, min_count=min_count)
    return table[(table.side == "a") & (table.z > 0)].word.tolist()


def lexicon_share(texts: Iterable[str], vocabulary: Iterable[str]) -> np.ndarray:
    """Share of each text's words (`words`: lower-cased, no stop words) that are in `vocabulary`; 0 for no words."""
    wanted = set(vocabulary)
    shares = []
    for text in texts:
        tokens = words(text)
        shares.append(sum(token in wanted for token in tokens) / len(tokens) if tokens else 0.0)
    return np.asarray(shares, dtype=float)
