"""The paired statistics of the group level: scipy on known numbers, Bonferroni, too-few pairs."""
import math

import numpy as np
import pytest
from scipy import stats

from gado_bids.metrics.statistics import bonferroni, mean_sd, paired_tests


def test_mean_sd_hand_cases():
    assert mean_sd([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0))  # sample SD, ddof 1
    mean, sd = mean_sd([4.0])
    assert mean == 4.0 and math.isnan(sd)
    assert all(math.isnan(v) for v in mean_sd([]))


def test_paired_test_matches_a_hand_computed_t_statistic():
    baseline = {"GM": [10.0, 12.0, 9.0, 14.0]}
    synthetic = {"GM": [4.0, 5.0, 6.0, 3.0]}
    differences = np.array([6.0, 7.0, 3.0, 11.0])
    t_by_hand = differences.mean() / (differences.std(ddof=1) / math.sqrt(4))
    row = paired_tests(baseline, synthetic)[0]
    assert row["t"] == pytest.approx(t_by_hand)
    assert row["p"] == pytest.approx(2 * stats.t.sf(abs(t_by_hand), df=3))
    assert row["n"] == 4
    assert row["baseline_mean"] == pytest.approx(11.25)
    assert row["synthetic_sd"] == pytest.approx(np.std([4, 5, 6, 3], ddof=1))


def test_bonferroni_multiplies_by_the_number_of_tissues_and_caps_at_one():
    rng = np.random.default_rng(3)
    baseline = {t: list(rng.normal(20, 5, 12)) for t in ("CSF", "GM", "WM")}
    synthetic = {t: list(np.array(baseline[t]) - rng.normal(shift, 2, 12))
                 for t, shift in (("CSF", 8.0), ("GM", 0.5), ("WM", 3.0))}
    rows = paired_tests(baseline, synthetic)
    for row in rows:
        expected = stats.ttest_rel(baseline[row["measure"]], synthetic[row["measure"]])
        assert row["p"] == pytest.approx(expected.pvalue)
        assert row["p_bonferroni"] == pytest.approx(min(1.0, 3 * expected.pvalue))
    assert bonferroni([0.01, 0.5, None]) == [0.03, 1.0, None]


def test_fewer_than_two_pairs_are_not_tested_and_say_why():
    row = paired_tests({"GM": [3.0]}, {"GM": [1.0]})[0]
    assert row["t"] is None and row["p"] is None and row["p_bonferroni"] is None
    assert "1 pair" in row["note"] and "at least 2" in row["note"]
    empty = paired_tests({"GM": []}, {"GM": []})[0]
    assert empty["n"] == 0 and empty["p"] is None


def test_mismatched_sessions_are_refused():
    with pytest.raises(ValueError):
        paired_tests({"GM": [1.0, 2.0]}, {"GM": [1.0]})
