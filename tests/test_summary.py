"""The numbers notebooks write into their JSON summaries, and the standard error behind their error bars."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from rlxf.analysis.stats import compare_paired, standard_error
from rlxf.analysis.summary import ci_bounds, diff_and_ci, rounded


def test_rounded_gives_plain_floats_and_none_for_what_is_not_finite():
    assert rounded(np.float32(0.123456)) == 0.123 and type(rounded(np.float32(0.123456))) is float
    assert rounded(2.71828, 1) == 2.7 and rounded(np.int64(3), 0) == 3.0
    assert rounded(float("nan")) is None and rounded(np.inf) is None
    assert json.dumps([rounded(v) for v in (0.5, float("nan"))]) == "[0.5, null]"  # never the non-JSON NaN
    with pytest.raises(ValueError, match="expected a number, got 'x'"):
        rounded("x")
    with pytest.raises(ValueError, match="digits must be an int >= 0"):
        rounded(1.0, -1)


def test_ci_bounds_and_diff_and_ci_read_a_comparison():
    test = compare_paired([1.0, 2.0, 3.0, 4.0], [0.5, 1.0, 2.5, 2.0], seed=0)
    assert ci_bounds(test) == [round(test["diff_low"], 3), round(test["diff_high"], 3)]
    assert diff_and_ci(test, 2) == [round(test["diff"], 2), round(test["diff_low"], 2), round(test["diff_high"], 2)]
    assert diff_and_ci({"diff": 0.25, "diff_low": 0.1, "diff_high": 0.4}, 1) == [0.2, 0.1, 0.4]
    with pytest.raises(KeyError, match="no 'diff_low'"):
        ci_bounds({"low": 0.0, "high": 1.0})


def test_standard_error_matches_the_formula_and_skips_nan():
    values = [1.0, 2.0, 4.0]
    assert standard_error(values) == pytest.approx(np.std(values, ddof=1) / math.sqrt(3))
    column = pd.Series([1.0, 2.0, 4.0, np.nan])
    assert standard_error(column) == pytest.approx(column.sem())  # pandas leaves the NaN out too
    assert math.isnan(standard_error([5.0])) and math.isnan(standard_error([]))
    with pytest.raises(ValueError, match="infinite"):
        standard_error([1.0, np.inf])
