"""Simulated annotators with a hidden context (Siththaranjan, Laidlaw and Hadfield-Menell 2023, "Distributional
Preference Learning"): whose preferences does a Bradley-Terry reward model learn when the labellers differ?

Each annotator belongs to one side, the majority (share `majority_share`) or the minority, and the side is never shown
to the learner. Annotator of side s values a text x at

    u_s(x) = shared_weight * shared(x) + sign_s * lean(x)        (sign: -1 majority, +1 minority)

where `lean` is how far the party classifier puts the text toward the minority's party (standardised logit) and
`shared` a quality both sides value alike (e.g. the sentiment classifier's positivity, standardised). A label on the
pair (a, b) comes from an annotator drawn at random, who prefers a with probability sigmoid((u_s(a) - u_s(b)) /
noise). A pair is *contested* when the two sides' noiseless utilities order it differently. The paper shows that BT
on such labels aggregates like the Borda count (`borda_scores`) of the population's preferences.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

SIDES = ("majority", "minority")


def check_rate(value: float, name: str, *, low: float = 0.0, high: float = 1.0, high_open: bool = False) -> float:
    """`value` if it lies in [low, high] ([low, high) with `high_open`); an error naming the parameter otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if value < low or value > high or (high_open and value == high):
        interval = f"[{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return float(value)


def annotator_sides(n_annotators: int, majority_share: float, seed: int) -> np.ndarray:
    """The pool's hidden sides: exactly round(majority_share * n) annotators are "majority", in seeded random order."""
    if n_annotators < 2:
        raise ValueError(f"n_annotators must be >= 2 (a majority and a minority), got {n_annotators}")
    share = check_rate(majority_share, "majority_share", low=0.5, high=1.0, high_open=True)
    n_majority = int(round(share * n_annotators))
    if not 0 < n_majority < n_annotators:
        raise ValueError(f"majority_share={share} of {n_annotators} annotators leaves one side empty")
    sides = np.array(["majority"] * n_majority + ["minority"] * (n_annotators - n_majority))
    return sides[np.random.default_rng(seed).permutation(n_annotators)]


def utility(lean, shared, side: str, shared_weight: float) -> np.ndarray:
    """u_side(x) = shared_weight * shared(x) + sign * lean(x), sign -1 for the majority, +1 for the minority."""
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    sign = -1.0 if side == "majority" else 1.0
    return shared_weight * np.asarray(shared, dtype=float) + sign * np.asarray(lean, dtype=float)


def standardise(values) -> np.ndarray:
    """(values - median) / standard deviation (1 where there is no spread)."""
    values = np.asarray(values, dtype=float)
    spread = values.std()
    return (values - np.median(values)) / (spread if spread > 0 else 1.0)


def simulate_labels(pairs: pd.DataFrame, lean: np.ndarray, shared: np.ndarray, *, sides: np.ndarray,
                    labels_per_pair: int, shared_weight: float, noise: float, seed: int) -> pd.DataFrame:
    """One row per label: pair, a, b (item indices), annotator, side, prefers_a.

    `pairs` has integer columns `a` and `b` indexing `lean` and `shared` (one value per item).
    """
    if labels_per_pair < 1:
        raise ValueError(f"labels_per_pair must be >= 1, got {labels_per_pair}")
    if not (isinstance(noise, (int, float)) and math.isfinite(noise) and noise > 0):
        raise ValueError(f"noise (the annotators' temperature) must be a number > 0, got {noise!r}")
    rng = np.random.default_rng(seed)
    a = np.repeat(pairs["a"].to_numpy(), labels_per_pair)
    b = np.repeat(pairs["b"].to_numpy(), labels_per_pair)
    annotator = rng.integers(0, len(sides), size=a.size)
    side = sides[annotator]
    utilities = {s: utility(lean, shared, s, shared_weight) for s in SIDES}
    diff = np.where(side == "majority", utilities["majority"][a] - utilities["majority"][b],
                    utilities["minority"][a] - utilities["minority"][b])
    prefers_a = rng.random(a.size) < 1.0 / (1.0 + np.exp(-diff / noise))
    return pd.DataFrame({"pair": np.repeat(np.arange(len(pairs)), labels_per_pair), "a": a, "b": b,
                         "annotator": annotator, "side": side, "prefers_a": prefers_a})


def contested(pairs: pd.DataFrame, lean, shared, shared_weight: float) -> np.ndarray:
    """Per pair: do the majority's and the minority's noiseless utilities order a and b differently?"""
    a, b = pairs["a"].to_numpy(), pairs["b"].to_numpy()
    signs = [np.sign(u[a] - u[b]) for u in (utility(lean, shared, s, shared_weight) for s in SIDES)]
    return signs[0] * signs[1] < 0


def borda_scores(lean, shared, *, majority_share: float, shared_weight: float, noise: float) -> np.ndarray:
    """Each item's expected Borda count over all items: mean over others of P(a random annotator prefers it)."""
    share = check_rate(majority_share, "majority_share", low=0.0, high=1.0)
    preference = 0.0
    for side, weight in zip(SIDES, (share, 1 - share), strict=True):
        u = utility(lean, shared, side, shared_weight)
        preference = preference + weight / (1.0 + np.exp(-(u[:, None] - u[None, :]) / noise))
    n = len(np.asarray(lean))
    return (preference.sum(axis=1) - 0.5) / max(n - 1, 1)  # the diagonal (an item against itself) is 1/2
