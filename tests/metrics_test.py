import numpy as np
import pytest

from diverse_distill import gap_recovery_rate, regression_metrics


def test_grr_reproduces_paper_table_4():
    # MSE: S0 0.8760, best teacher MLP-L 0.8210, MLP-L+T5 0.8132 -> 114.2 %.
    assert round(100 * gap_recovery_rate(0.8132, 0.8760, 0.8210), 1) == 114.2
    # MLP-L alone 0.8358 -> 73.1 %; T5 alone 0.8546 -> 38.9 %.
    assert round(100 * gap_recovery_rate(0.8358, 0.8760, 0.8210), 1) == 73.1
    assert round(100 * gap_recovery_rate(0.8546, 0.8760, 0.8210), 1) == 38.9


def test_grr_higher_is_better_metric():
    # CIFAR-10 accuracy: S0 0.9771, ViT-L 0.9851, DD 0.9837 -> 82.5 %.
    assert round(100 * gap_recovery_rate(0.9837, 0.9771, 0.9851), 1) == 82.5


def test_grr_zero_gap():
    with pytest.raises(ValueError, match="gap is 0"):
        gap_recovery_rate(1.0, 0.9, 0.9)


def test_regression_metrics():
    m = regression_metrics([1, 2, 3, 4], [1, 3, 3, 2])
    assert m["mse"] == pytest.approx((0 + 1 + 0 + 4) / 4)
    assert m["rmse"] == pytest.approx(np.sqrt(1.25))
    assert m["mae"] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="Shapes differ"):
        regression_metrics([1, 2], [1])


def test_grr_refuses_a_teacher_that_does_not_beat_s0():
    with pytest.raises(ValueError, match="does not beat"):
        gap_recovery_rate(0.80, 0.81, 0.82, higher_is_better=False)
    with pytest.raises(ValueError, match="does not beat"):
        gap_recovery_rate(0.95, 0.97, 0.96, higher_is_better=True)
    assert gap_recovery_rate(0.8132, 0.8760, 0.8210, higher_is_better=False) == pytest.approx(
        (0.8132 - 0.8760) / (0.8210 - 0.8760))


def test_paper_numbers_reproduce_the_papers_own_grr():
    """The GRR the paper prints follows from its MSEs by Eq. 5 (METHOD.md's check)."""
    from diverse_distill import paper_results

    for committee, (mse, grr) in paper_results.TABLE_4.items():
        if grr is None or "mlp_l" not in committee:  # GRR against MLP-L, the best teacher
            continue
        expected = gap_recovery_rate(mse, paper_results.S0_MSE, paper_results.BEST_TEACHER_MSE,
                                     higher_is_better=False)
        assert abs(100 * expected - grr) < 0.15, (committee, 100 * expected, grr)
    assert paper_results.paper_mse("mt", ("mlp_l", "lm")) == (0.8429, None)
    assert paper_results.paper_mse("fd", ("mlp_l",)) is None
