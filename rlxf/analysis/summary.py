"""Numbers for a notebook's JSON summary: plain rounded floats (`rounded`), a comparison's CI (`ci_bounds`) or its
difference with the CI (`diff_and_ci`), from the dicts of `rlxf.analysis.stats.compare_paired` / `compare`.

A value that is not a finite number becomes None (JSON `null`): `json.dumps` would otherwise write `NaN`, which is
not JSON and which strict readers reject.
"""

from __future__ import annotations

import math
from collections.abc import Mapping


def rounded(value, digits: int = 3) -> float | None:
    """`value` as a plain float rounded to `digits` decimals; None where it is not a finite number."""
    if isinstance(digits, bool) or not isinstance(digits, int) or digits < 0:
        raise ValueError(f"rounded: digits must be an int >= 0, got {digits!r}")
    try:
        number = float(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"rounded: expected a number, got {value!r} ({type(value).__name__})") from error
    return round(number, digits) if math.isfinite(number) else None


def _bound(test: Mapping, key: str) -> float:
    if key not in test:
        raise KeyError(f"the comparison has no {key!r} (keys: {sorted(test)}); expected a dict of "
                       "rlxf.analysis.stats.compare_paired or compare")
    return test[key]


def ci_bounds(test: Mapping, digits: int = 3) -> list[float | None]:
    """[low, high]: the 95 % CI of a comparison's difference (`diff_low`, `diff_high`), rounded."""
    return [rounded(_bound(test, "diff_low"), digits), rounded(_bound(test, "diff_high"), digits)]


def diff_and_ci(test: Mapping, digits: int = 3) -> list[float | None]:
    """[diff, low, high]: a comparison's difference and its 95 % CI, rounded."""
    return [rounded(_bound(test, "diff"), digits), *ci_bounds(test, digits)]
