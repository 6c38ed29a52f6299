"""The control of self-play: rewards that carry no information about the reply (`SelfPlaySettings.reward_mode`).

"The bots move apart" means something only beside what the same training does without the rating's signal. A control
run plays the same debates with the same rater, seeds and PPO, and records the same ratings; only the reward that PPO
sees changes:

  rating    the other bot's normalised rating of the reply (the trained run)
  shuffled  each bot's ratings of the round, deranged over its replies: the same reward values (so the same reward
            mean, variance and value-head targets), but no reply is rewarded with its own rating
  constant  every reply gets the neutral midpoint rating (reward 0): what moves the weights is the value head's
            errors and the KL penalty (whitened advantages are never exactly 0), not the rating
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from rlxf.selfplay.rating_parse import RATING_MAX, RATING_MIN

REWARD_MODES = ("rating", "shuffled", "constant")
"""what a self-play run's PPO reward is (`SelfPlaySettings.reward_mode`)"""

CONSTANT_RATING = (RATING_MIN + RATING_MAX) / 2
"""the rating a `constant` control gives every reply: the midpoint 50.5, which normalises to a reward of exactly 0"""


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly drawn permutation of range(n) with no fixed point (rejection sampling; n >= 2)."""
    if n < 2:
        raise ValueError(f"derangement: n must be >= 2 (one item cannot move), got {n}")
    while True:
        order = rng.permutation(n)
        if not np.any(order == np.arange(n)):
            return order


def control_ratings(ratings: Sequence[float], speakers: Sequence[str], mode: str, seed: Sequence[int]) -> list[float]:
    """The ratings PPO is given for one round's replies, in order -> list (the same as `ratings` for "rating").

    `speakers[i]` is who wrote reply i; "shuffled" deranges each speaker's ratings over that speaker's replies with a
    generator seeded by `seed` (e.g. [run seed, round]), "constant" gives every reply `CONSTANT_RATING`.
    """
    if mode not in REWARD_MODES:
        raise ValueError(f"reward_mode must be one of {REWARD_MODES}, got {mode!r}")
    if len(ratings) != len(speakers):
        raise ValueError(f"control_ratings: {len(ratings)} ratings but {len(speakers)} speakers")
    ratings = [float(r) for r in ratings]
    if mode == "rating":
        return ratings
    if mode == "constant":
        return [CONSTANT_RATING] * len(ratings)
    rng, out = np.random.default_rng(list(seed)), list(ratings)
    for speaker in dict.fromkeys(speakers):
        index = [i for i, s in enumerate(speakers) if s == speaker]
        if len(index) < 2:
            raise ValueError(f"reward_mode='shuffled' needs at least 2 replies of {speaker!r} per round, got "
                             f"{len(index)}: raise debates_per_round or max_exchanges")
        for target, source in zip(index, derangement(len(index), rng), strict=True):
            out[target] = ratings[index[source]]
    return out


def paired_differences(trained: Mapping[int, dict], control: Mapping[int, dict],
                       names: Sequence[str]) -> dict[int, dict[str, float]]:
    """Per seed, trained minus control of `run_convergence`'s numbers -> {seed: {"ΔW relative change": d,
    "<bot>: rating slope": d per bot, "rating slope, both bots": d of the bots' mean slope}}.

    `trained` and `control`: {seed: run_convergence(...) result}; only seeds in both are paired (the pairing is by
    seed: the same debate issues and PPO seed, the same SFT start)."""
    paired = sorted(set(trained) & set(control))
    if not paired:
        raise ValueError(f"paired_differences: no seed in both the trained runs {sorted(trained)} and the control "
                         f"runs {sorted(control)}")
    out = {}
    for seed in paired:
        slope_t, slope_c = trained[seed]["rating slope per round"], control[seed]["rating slope per round"]
        row = {"ΔW relative change": trained[seed]["ΔW relative change"] - control[seed]["ΔW relative change"]}
        row.update({f"{name}: rating slope": slope_t[name] - slope_c[name] for name in names})
        both = np.mean([slope_t[name] for name in names]) - np.mean([slope_c[name] for name in names])
        row["rating slope, both bots"] = float(both)
        out[seed] = row
    return out
