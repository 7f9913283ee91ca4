"""Task metrics and the Gap Recovery Rate (METHOD.md Eq. 5)."""

import numpy as np


def gap_recovery_rate(distilled, undistilled, best_teacher, higher_is_better=None):
    """GRR = (M(S_distilled) - M(S_0)) / (M(T_best) - M(S_0)).

    Works for metrics where higher or lower is better: the sign of the gap
    carries the direction. 1.0 means the student closed the whole gap; more
    than 1.0 means it beat its best teacher. GRR only means something when
    the teacher beats S_0: pass `higher_is_better` and a teacher that does
    not (for MSE, `best_teacher >= undistilled`) raises a `ValueError`
    instead of returning a number whose sign is flipped.

    Args:
        distilled: float. Metric of the distilled student.
        undistilled: float. Metric of the same student trained without
            distillation (S_0).
        best_teacher: float. Metric of the best single teacher.
        higher_is_better: bool or `None`. The metric's direction, checked
            against the gap when given. Defaults to `None` (not checked).

    Returns:
        float (a fraction, not a percentage).

    Example:
    ```python
    gap_recovery_rate(0.8132, 0.8760, 0.8210)  # 1.1418... (paper Table 4)
    ```
    """
    gap = best_teacher - undistilled
    if higher_is_better is not None and (gap > 0) != bool(higher_is_better) and gap != 0:
        raise ValueError(
            f"The best teacher ({best_teacher:.4f}) does not beat the undistilled student "
            f"({undistilled:.4f}): there is no gap to recover and GRR is undefined."
        )
    if gap == 0:
        raise ValueError(
            "The best teacher scores the same as the undistilled student: the gap is 0 "
            "and GRR is undefined."
        )
    return (distilled - undistilled) / gap


def regression_metrics(y_true, y_pred):
    """MSE, RMSE and MAE of rating predictions (numpy)."""
    y_true = np.asarray(y_true, dtype=np.float64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"Shapes differ: {y_true.shape} vs {y_pred.shape}.")
    err = y_pred - y_true
    mse = float(np.mean(err**2))
    return {"mse": mse, "rmse": float(np.sqrt(mse)), "mae": float(np.mean(np.abs(err)))}


def classification_metrics(labels, logits):
    """Accuracy and mean cross-entropy of class logits (numpy, float64).

    Args:
        labels: int array `(n,)`, the true classes.
        logits: float array `(n, num_classes)`.

    Returns:
        `{"accuracy": float, "cross_entropy": float}` (the natural-log
        cross-entropy of the softmax of `logits`).

    Example:
    ```python
    classification_metrics([0, 1], [[2.0, 0.0], [3.0, 0.0]])
    # {'accuracy': 0.5, 'cross_entropy': 1.5877...}
    ```
    """
    labels = np.asarray(labels).reshape(-1)
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[0] != labels.shape[0]:
        raise ValueError(f"logits must be (n, num_classes) with n = {labels.shape[0]} labels, "
                         f"got shape {logits.shape}.")
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return {"accuracy": float(np.mean(logits.argmax(axis=1) == labels)),
            "cross_entropy": float(-np.mean(log_probs[np.arange(len(labels)), labels]))}
