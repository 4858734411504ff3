"""Paired statistics of the paper's Table 2, and mean +- SD summaries of every measure.

The question per tissue: is the synthetic image's volume closer to the real non-contrast scan's
than the ce scan's was? Test: paired t-test (scipy.stats.ttest_rel, two-sided) of
|V_real - V_ce| against |V_real - V_synthetic| over sessions, then Bonferroni over the tissues
(p x number of tissues, capped at 1). With fewer than 2 pairs no test is computed and the reason
is returned instead of a number.
"""
import numpy as np
from scipy import stats

MINIMUM_PAIRS = 2


def mean_sd(values) -> tuple:
    """(mean, sample SD with ddof=1; SD is nan for one value); (nan, nan) when empty."""
    values = np.asarray([v for v in values if v is not None and np.isfinite(v)], np.float64)
    if values.size == 0:
        return float("nan"), float("nan")
    sd = float(values.std(ddof=1)) if values.size > 1 else float("nan")
    return float(values.mean()), sd


def bonferroni(p_values) -> list:
    count = len(p_values)
    return [None if p is None else min(1.0, p * count) for p in p_values]


def paired_tests(baseline_errors: dict, synthetic_errors: dict) -> list:
    """One row per measure (e.g. tissue): baseline vs synthetic errors of the same sessions.

    baseline_errors / synthetic_errors: {measure: [error per session]} in the same session order.
    """
    rows = []
    for measure in baseline_errors:
        baseline = np.asarray(baseline_errors[measure], np.float64)
        synthetic = np.asarray(synthetic_errors[measure], np.float64)
        if baseline.shape != synthetic.shape:
            raise ValueError(f"{measure}: {baseline.size} baseline vs {synthetic.size} synthetic")
        row = {"measure": measure, "n": int(baseline.size),
               "baseline_mean": mean_sd(baseline)[0], "baseline_sd": mean_sd(baseline)[1],
               "synthetic_mean": mean_sd(synthetic)[0], "synthetic_sd": mean_sd(synthetic)[1],
               "t": None, "p": None, "p_bonferroni": None, "note": ""}
        if baseline.size < MINIMUM_PAIRS:
            row["note"] = (f"not computed: {baseline.size} pair(s), a paired t-test needs at "
                           f"least {MINIMUM_PAIRS}")
        elif np.allclose(baseline - synthetic, (baseline - synthetic)[0]):
            row["note"] = "not computed: the paired differences have zero variance"
        else:
            result = stats.ttest_rel(baseline, synthetic)
            row["t"], row["p"] = float(result.statistic), float(result.pvalue)
        rows.append(row)
    for row, corrected in zip(rows, bonferroni([r["p"] for r in rows])):
        row["p_bonferroni"] = corrected
    return rows
