"""The paired t-test of the result tables, against known values (no SciPy needed)."""

import math

import numpy as np
import pytest

from diverse_distill.stats import (
    linear_fit,
    paired_t_test,
    regularized_incomplete_beta,
    t_two_sided_p_value,
)


@pytest.mark.parametrize("t,df,expected", [
    (2.0, 4, 0.1161165235),    # the textbook value
    (0.0, 4, 1.0),
    (2.776445105, 4, 0.05),    # t_{0.975, 4}
    (12.70620474, 1, 0.05),    # t_{0.975, 1}
    (2.228138852, 10, 0.05),   # t_{0.975, 10}
    (3.169272667, 10, 0.01),   # t_{0.995, 10}
    (1.959963985, 1e7, 0.05),  # the normal limit
])
def test_p_value_known_values(t, df, expected):
    assert t_two_sided_p_value(t, df) == pytest.approx(expected, rel=1e-6, abs=1e-12)
    assert t_two_sided_p_value(-t, df) == pytest.approx(expected, rel=1e-6, abs=1e-12)


@pytest.mark.parametrize("t", [0.1, 0.7, 1.0, 3.0, 25.0])
def test_p_value_closed_forms(t):
    # df = 1 is the Cauchy distribution; df = 2 has a closed form too.
    assert t_two_sided_p_value(t, 1) == pytest.approx(1 - 2 / math.pi * math.atan(t), rel=1e-10)
    assert t_two_sided_p_value(t, 2) == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-10)


def test_p_value_edges():
    assert t_two_sided_p_value(math.inf, 3) == 0.0
    assert math.isnan(t_two_sided_p_value(math.nan, 3))
    with pytest.raises(ValueError):
        t_two_sided_p_value(1.0, 0)


def test_incomplete_beta_known_values():
    assert regularized_incomplete_beta(1.0, 1.0, 0.3) == pytest.approx(0.3)
    assert regularized_incomplete_beta(2.0, 3.0, 0.4) == pytest.approx(0.5248)  # polynomial
    assert regularized_incomplete_beta(0.5, 0.5, 0.5) == pytest.approx(0.5)
    # I_x(a, 1) = x^a and I_x(1, b) = 1 - (1 - x)^b.
    assert regularized_incomplete_beta(3.5, 1.0, 0.7) == pytest.approx(0.7 ** 3.5)
    assert regularized_incomplete_beta(1.0, 4.5, 0.2) == pytest.approx(1 - 0.8 ** 4.5)
    assert regularized_incomplete_beta(2.0, 2.0, 0.0) == 0.0
    assert regularized_incomplete_beta(2.0, 2.0, 1.0) == 1.0


def test_matches_scipy_when_installed():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(2, 12))
        a, b = rng.normal(size=n), rng.normal(size=n)
        ours, theirs = paired_t_test(a, b), stats.ttest_rel(a, b)
        assert ours["t"] == pytest.approx(theirs.statistic, rel=1e-10)
        assert ours["p_value"] == pytest.approx(theirs.pvalue, rel=1e-8)


def test_paired_t_test():
    result = paired_t_test([1.0, 2.0, 3.0], [1.5, 2.0, 2.0])
    d = np.array([-0.5, 0.0, 1.0])
    assert result["t"] == pytest.approx(d.mean() / (d.std(ddof=1) / math.sqrt(3)))
    assert result["df"] == 2 and result["n"] == 3
    assert 0.0 <= result["p_value"] <= 1.0
    assert paired_t_test([1, 2], [1, 2])["p_value"] == 1.0  # identical: no difference
    assert paired_t_test([2, 3], [1, 2])["p_value"] == 0.0  # a constant shift
    single = paired_t_test([1.0], [2.0])
    assert single["p_value"] is None and single["t"] is None
    with pytest.raises(ValueError, match="pairs"):
        paired_t_test([1, 2], [1])


def test_linear_fit_matches_the_hand_computed_least_squares_line():
    # mean x 2.5, mean y 4.75, Sxx 5, Sxy 9.5: slope 1.9, intercept 0; residuals
    # 0.1, 0.2, -0.7, 0.4 (SSR 0.70) against SST 18.75.
    intercept, slope, r2 = linear_fit([1, 2, 3, 4], [2, 4, 5, 8])
    assert slope == pytest.approx(1.9)
    assert intercept == pytest.approx(0.0, abs=1e-12)
    assert r2 == pytest.approx(1 - 0.70 / 18.75)
    with pytest.raises(ValueError, match="two different x"):
        linear_fit([1, 1], [2, 3])
