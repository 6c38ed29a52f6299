"""Statistics (every CI a BCa bootstrap, scipy.stats.bootstrap): `bootstrap_ci` (of the mean), `compare` (independent
samples: difference of means with its CI, Welch's t-test and the Mann-Whitney U test), `compare_paired` (the same
units measured twice, e.g. one reply per held-out prompt before and after training: paired CI, paired t,
Wilcoxon signed-rank, win rate, and the smallest effect the comparison could have detected), `expected_reward_table`
(several policies against one reference, paired when they answered the same prompts), `auc_ci` / `rater_auc` (how
well scores rank two classes: ROC AUC with its CI), `auc_difference_ci` (two models' AUCs on the same items,
paired). For a handful of independent runs (e.g. one value per seed) `t_interval` gives the mean with a Student-t
CI instead: with n = 3 a bootstrap has only 10 distinct resamples and
its interval is too narrow. `standard_error` is the s.e. of a mean (error bars); `least_squares_slope` the trend
of a series (e.g. a rating per round).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats


def _as_sample(values, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=float).ravel()
    if array.size < 2:
        raise ValueError(f"{what} needs at least 2 values, got {array.size}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what} has {int((~np.isfinite(array)).sum())} non-finite values")
    return array


def _bca_ci(samples: tuple[np.ndarray, ...], statistic, *, level: float, n_resamples: int,
            seed: int) -> tuple[float, float]:
    """BCa bootstrap CI (scipy.stats.bootstrap) of `statistic(*samples, axis=...)` over independent `samples`.

    Where the bootstrap distribution is degenerate (no spread in any sample, or every resample giving the same value,
    e.g. perfectly separated scores for an AUC) BCa is undefined, and the CI is the statistic itself.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    value = float(statistic(*samples))
    if all(np.ptp(sample) == 0 for sample in samples):
        return value, value
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)  # handled below
        result = stats.bootstrap(samples, lambda *xs, axis=-1: statistic(*xs, axis=axis), confidence_level=level,
                                 n_resamples=n_resamples, method="BCa", vectorized=True,
                                 rng=np.random.default_rng(seed))
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return (low, high) if np.isfinite(low) and np.isfinite(high) else (value, value)


def _mean(x, axis=-1):
    return np.mean(x, axis=axis)


def _mean_difference(x, y, axis=-1):
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)


def bootstrap_ci(values, *, level: float = 0.95, n_resamples: int = 5000, seed: int = 0) -> tuple[float, float]:
    """BCa bootstrap confidence interval of the mean (scipy.stats.bootstrap)."""
    array = _as_sample(values, "bootstrap_ci")
    return _bca_ci((array,), _mean, level=level, n_resamples=n_resamples, seed=seed)


def compare(a, b, *, level: float = 0.95, n_resamples: int = 5000, seed: int = 0) -> dict:
    """a vs b (independent samples): means, difference a - b with a BCa bootstrap CI, Welch's t and Mann-Whitney U."""
    a, b = _as_sample(a, "compare(a)"), _as_sample(b, "compare(b)")
    low, high = _bca_ci((a, b), _mean_difference, level=level, n_resamples=n_resamples, seed=seed)
    welch = stats.ttest_ind(a, b, equal_var=False)
    mann_whitney = stats.mannwhitneyu(a, b, alternative="two-sided")
    return {"mean_a": float(a.mean()), "mean_b": float(b.mean()), "diff": float(a.mean() - b.mean()),
            "diff_low": low, "diff_high": high,
            "welch_t": float(welch.statistic), "welch_p": float(welch.pvalue),
            "mannwhitney_u": float(mann_whitney.statistic), "mannwhitney_p": float(mann_whitney.pvalue),
            "n_a": int(a.size), "n_b": int(b.size)}


def t_interval(values, *, level: float = 0.95) -> dict:
    """Mean of a few independent values (e.g. one per seed) with its Student-t confidence interval.

    mean ± t_(1-alpha/2, n-1) · sd / sqrt(n), sd with ddof=1 (t_(0.975, 2) = 4.30: three seeds give a wide interval,
    as they should). Returns mean, low, high, sd, n; every value equal gives low = high = mean.
    """
    if not 0 < level < 1:
        raise ValueError(f"t_interval: level must be in (0, 1), got {level}")
    array = _as_sample(values, "t_interval")
    mean, sd = float(array.mean()), float(array.std(ddof=1))
    half = float(stats.t.ppf(1 - (1 - level) / 2, array.size - 1)) * sd / np.sqrt(array.size)
    return {"mean": mean, "low": mean - half, "high": mean + half, "sd": sd, "n": int(array.size)}


def standard_error(values) -> float:
    """Standard error of a mean, sd (ddof=1) / sqrt(n), over the values that are not NaN (as pandas' `sem`); NaN
    with fewer than two of them."""
    array = np.asarray(values, dtype=float).ravel()
    array = array[~np.isnan(array)]
    if np.isinf(array).any():
        raise ValueError(f"standard_error: {int(np.isinf(array).sum())} of the values are infinite")
    return float(array.std(ddof=1) / np.sqrt(array.size)) if array.size > 1 else float("nan")


def least_squares_slope(x, y) -> float:
    """Slope of the least-squares line through the points (x[i], y[i]): the change of y per unit of x."""
    x, y = _as_sample(x, "least_squares_slope(x)"), _as_sample(y, "least_squares_slope(y)")
    if x.size != y.size:
        raise ValueError(f"least_squares_slope needs one y per x: got {x.size} x and {y.size} y values")
    if np.ptp(x) == 0:
        raise ValueError(f"least_squares_slope: every x is {x[0]:g}; a slope needs at least two different x")
    dx = x - x.mean()
    return float(dx @ (y - y.mean()) / (dx @ dx))


def minimum_detectable_effect(sd: float, n: int, *, level: float = 0.95, power: float = 0.8) -> float:
    """The smallest true mean difference a two-sided test at `level` detects with probability `power`.

    Normal approximation, (z_(1-alpha/2) + z_power) * sd / sqrt(n): `sd` is the standard deviation of the paired
    differences (or sqrt(sd_a^2 + sd_b^2) for two independent samples of n each). A null result is only as strong
    as this number is small.
    """
    if n < 2 or not np.isfinite(sd) or sd < 0:
        raise ValueError(f"minimum_detectable_effect needs n >= 2 and a finite sd >= 0, got n={n}, sd={sd}")
    z = stats.norm.ppf(1 - (1 - level) / 2) + stats.norm.ppf(power)
    return float(z * sd / np.sqrt(n))


def compare_paired(a, b, *, level: float = 0.95, n_resamples: int = 5000, seed: int = 0) -> dict:
    """a vs b measured on the same units (a[i] and b[i] belong together) -> paired statistics.

    Keys: mean_a, mean_b, diff (mean of a - b), diff_low / diff_high (BCa bootstrap CI of that mean over
    units), t / t_p (paired t-test), wilcoxon_p (signed-rank test; 1.0 when every difference is 0), win_rate (share
    of units with a > b, ties counting half), mde (the smallest mean difference detectable with 80 % power at
    `level`), n.
    """
    a, b = _as_sample(a, "compare_paired(a)"), _as_sample(b, "compare_paired(b)")
    if a.size != b.size:
        raise ValueError(f"compare_paired needs one a and one b per unit: got {a.size} and {b.size} values")
    d = a - b
    low, high = _bca_ci((d,), _mean, level=level, n_resamples=n_resamples, seed=seed)
    if np.all(d == 0):
        t, t_p, wilcoxon_p = 0.0, 1.0, 1.0
    else:
        paired_t = stats.ttest_rel(a, b)
        t, t_p = float(paired_t.statistic), float(paired_t.pvalue)
        wilcoxon_p = float(stats.wilcoxon(a, b, zero_method="zsplit").pvalue)
    return {"mean_a": float(a.mean()), "mean_b": float(b.mean()), "diff": float(d.mean()),
            "diff_low": low, "diff_high": high,
            "t": t, "t_p": t_p, "wilcoxon_p": wilcoxon_p,
            "win_rate": float(np.mean(np.sign(d) + 1) / 2),
            "mde": minimum_detectable_effect(float(d.std(ddof=1)), d.size, level=level), "n": int(d.size)}


def expected_reward_table(scores: Mapping[str, Sequence[float]], reference: str, *, level: float = 0.95,
                          seed: int = 0, paired: bool = False) -> pd.DataFrame:
    """One row per policy: n, mean reward with a bootstrap CI, and the difference to `reference` with its tests.

    `paired=True` when every policy answered the same prompts in the same order (scores[name][i] is prompt i):
    the difference gets `compare_paired`'s CI, paired t and Wilcoxon tests and win rate; else `compare`'s Welch and
    Mann-Whitney tests. Either way the row has `mde`, the smallest difference detectable with 80 % power.
    """
    if reference not in scores:
        raise ValueError(f"reference {reference!r} is not one of the policies {list(scores)}")
    rows = []
    for name, values in scores.items():
        low, high = bootstrap_ci(values, level=level, seed=seed)
        row = {"policy": name, "n": len(values), "mean": float(np.mean(values)), "ci_low": low, "ci_high": high}
        if name != reference:
            if paired:
                test = compare_paired(values, scores[reference], level=level, seed=seed)
                tests = {"paired_t_p": test["t_p"], "wilcoxon_p": test["wilcoxon_p"], "win_rate": test["win_rate"]}
                mde = test["mde"]
            else:
                test = compare(values, scores[reference], level=level, seed=seed)
                tests = {"welch_p": test["welch_p"], "mannwhitney_p": test["mannwhitney_p"]}
                spread = np.sqrt(np.var(values, ddof=1) + np.var(scores[reference], ddof=1))
                mde = minimum_detectable_effect(float(spread), min(len(values), len(scores[reference])), level=level)
            row |= {f"diff_vs_{reference}": test["diff"], "diff_ci_low": test["diff_low"],
                    "diff_ci_high": test["diff_high"], **tests, "mde": mde}
        rows.append(row)
    return pd.DataFrame(rows).set_index("policy")


def _auc_from_samples(positive: np.ndarray, negative: np.ndarray, axis: int = -1) -> np.ndarray:
    """P(a positive scores above a negative), ties counting half (Mann-Whitney U / (n_pos n_neg)), along `axis`."""
    positive, negative = np.moveaxis(positive, axis, -1), np.moveaxis(negative, axis, -1)
    n_pos, n_neg = positive.shape[-1], negative.shape[-1]
    lead = np.broadcast_shapes(positive.shape[:-1], negative.shape[:-1])  # the bootstrap's jackknife broadcasts
    both = np.concatenate([np.broadcast_to(positive, (*lead, n_pos)), np.broadcast_to(negative, (*lead, n_neg))], -1)
    ranks = stats.rankdata(both, axis=-1)
    return (ranks[..., :n_pos].sum(axis=-1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def auc_ci(scores, labels, *, level: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> dict:
    """ROC AUC of `scores` for the binary `labels` (1: should score high) with a BCa bootstrap confidence interval.

    AUC = P(score of a label-1 item > score of a label-0 item), ties counting half. The bootstrap
    (scipy.stats.bootstrap, BCa) resamples the two classes separately, so every resample keeps both class sizes.
    Where every resample gives the same AUC (e.g. perfectly separated scores) the interval is that value.
    Keys: auc, low, high, n_pos, n_neg.
    """
    scores, labels = np.asarray(scores, dtype=float).ravel(), np.asarray(labels).ravel()
    if scores.size != labels.size:
        raise ValueError(f"auc_ci needs one label per score: got {scores.size} scores and {labels.size} labels")
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"auc_ci: {int((~np.isfinite(scores)).sum())} of the scores are not finite")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"auc_ci: labels must be 0 or 1, got the values {sorted(set(labels.tolist()))}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    positive, negative = scores[labels == 1], scores[labels == 0]
    if positive.size < 2 or negative.size < 2:
        raise ValueError(f"auc_ci needs at least 2 items of each class, got {positive.size} with label 1 and "
                         f"{negative.size} with label 0")
    value = float(_auc_from_samples(positive, negative))
    low, high = _bca_ci((positive, negative), _auc_from_samples, level=level, n_resamples=n_resamples, seed=seed)
    return {"auc": value, "low": low, "high": high, "n_pos": int(positive.size), "n_neg": int(negative.size)}


def rater_auc(score_fn: Callable[[list[str]], Sequence[float]], texts: Sequence[str], labels: Sequence[int], *,
              level: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> dict:
    """How well a rater ranks texts: `auc_ci` of `score_fn(texts)` (one score per text) against `labels`.

    For a party bot's rater, label 1 marks its own party's texts: AUC 0.5 is no signal, 1.0 every own-party text
    rated above every other-party text.
    """
    texts = list(texts)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError("rater_auc: texts must be a non-empty list of strings")
    scores = np.asarray(score_fn(texts), dtype=float).ravel()
    if scores.size != len(texts):
        raise ValueError(f"rater_auc: score_fn returned {scores.size} scores for {len(texts)} texts")
    return auc_ci(scores, labels, level=level, n_resamples=n_resamples, seed=seed)


def auc_difference_ci(scores_a, scores_b, labels, *, level: float = 0.95, n_resamples: int = 2000,
                      seed: int = 0) -> dict:
    """AUC(scores_a) - AUC(scores_b) on the same labelled items, with a paired BCa bootstrap CI.

    Paired: every resample draws items (positives and negatives separately, as `auc_ci`) and scores both models on
    the same draw, so what the two share (the items' difficulty) cancels. Keys: auc_a, auc_b, diff, low, high, n.
    """
    scores_a, scores_b = np.asarray(scores_a, dtype=float).ravel(), np.asarray(scores_b, dtype=float).ravel()
    if scores_a.size != scores_b.size:
        raise ValueError(f"auc_difference_ci: {scores_a.size} scores_a and {scores_b.size} scores_b; expected one "
                         "score of each model per item")
    first, second = auc_ci(scores_a, labels, n_resamples=2), auc_ci(scores_b, labels, n_resamples=2)  # checks input
    labels = np.asarray(labels).ravel()
    pos_a, pos_b = scores_a[labels == 1], scores_b[labels == 1]
    neg_a, neg_b = scores_a[labels == 0], scores_b[labels == 0]

    def difference(pos_index, neg_index, axis=-1):
        pos_index, neg_index = pos_index.astype(int), neg_index.astype(int)
        return (_auc_from_samples(pos_a[pos_index], neg_a[neg_index], axis)
                - _auc_from_samples(pos_b[pos_index], neg_b[neg_index], axis))

    low, high = _bca_ci((np.arange(pos_a.size, dtype=float), np.arange(neg_a.size, dtype=float)), difference,
                        level=level, n_resamples=n_resamples, seed=seed)
    return {"auc_a": first["auc"], "auc_b": second["auc"], "diff": first["auc"] - second["auc"], "low": low,
            "high": high, "n": int(scores_a.size)}
