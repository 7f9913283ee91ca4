"""AEKD: teacher weights from the minimum-norm point of their gradients."""

import itertools

import numpy as np
import tensorflow as tf

from diverse_distill.baselines.baseline_distiller import (
    BaselineDistiller,
    all_reduce_sum,
)
from diverse_distill.baselines.registry import register_method
from diverse_distill.distill.losses import global_mean

MAX_TEACHERS = 10


def project_to_capped_simplex(v, cap):
    """Euclidean projection of `v` (K,) onto `{λ : Σ λ = 1, 0 ≤ λ ≤ cap}`.

    Exact: the projection is `clip(v − τ, 0, cap)` for the `τ` where the
    clipped mass `s(τ)` equals 1. `s` is piecewise linear and non-increasing
    with breakpoints `v_i` and `v_i − cap`, so `τ` is found by evaluating `s`
    at all `2K` breakpoints and interpolating in the bracketing segment (no
    iteration). Needs `K · cap ≥ 1` (a non-empty set).

    Example:
    ```python
    project_to_capped_simplex(np.array([2.0, 0.0, 0.0]), 0.5).numpy()  # [0.5, 0.25, 0.25]
    ```
    """
    v = tf.convert_to_tensor(v, tf.float32)
    cap = tf.cast(cap, tf.float32)
    num = v.shape[0]
    breakpoints = tf.sort(tf.concat([v, v - cap], axis=0))
    mass = tf.reduce_sum(
        tf.clip_by_value(v[None, :] - breakpoints[:, None], 0.0, cap), axis=1
    )  # s(breakpoint), non-increasing
    j = tf.reduce_sum(tf.cast(mass >= 1.0, tf.int32)) - 1
    j = tf.clip_by_value(j, 0, 2 * num - 2)
    lo, hi = breakpoints[j], breakpoints[j + 1]
    mass_lo, mass_hi = mass[j], mass[j + 1]
    fraction = tf.math.divide_no_nan(mass_lo - 1.0, mass_lo - mass_hi)
    tau = lo + tf.clip_by_value(fraction, 0.0, 1.0) * (hi - lo)
    return tf.clip_by_value(v - tau, 0.0, cap)


def _solve_small_systems(matrices, rhs):
    """Solves a batch of small systems `A x = b`: (P, n, n), (P, n) -> (P, n).

    Gauss-Jordan elimination with partial pivoting, unrolled over the static
    size `n`, so it compiles under XLA and never raises: a singular system
    gives a non-finite (or meaningless) solution, which the caller's
    feasibility check discards.
    """
    n = matrices.shape[-1]
    rows = tf.range(n)[None, :]
    augmented = tf.concat([matrices, rhs[..., None]], axis=-1)  # (P, n, n + 1)
    for col in range(n):
        pivot_row = tf.argmax(tf.abs(augmented[:, col:, col]), axis=1, output_type=tf.int32) + col
        order = tf.where(
            rows == col,
            pivot_row[:, None],
            tf.where(rows == pivot_row[:, None], col, rows),
        )
        augmented = tf.gather(augmented, order, batch_dims=1)
        factors = augmented[:, :, col] / augmented[:, col : col + 1, col]
        factors = tf.where(rows == col, tf.zeros_like(factors), factors)
        augmented = augmented - factors[:, :, None] * augmented[:, col : col + 1, :]
    return augmented[:, :, n] / tf.linalg.diag_part(augmented[:, :, :n])


def capped_simplex_min_norm(gram, cap=1.0, tolerance=1e-5):
    """Weights `λ` minimising `‖Σ_k λ_k g_k‖²` over the capped simplex.

    Given the Gram matrix `G_kl = <g_k, g_l>` (K, K), solves the convex QP
    `min_λ λᵀ G λ` s.t. `Σ λ = 1, 0 ≤ λ ≤ cap` exactly, by enumerating its
    active sets: every coordinate is either at 0, at `cap` or free, and for
    each of the `3^K` patterns the KKT system of the free coordinates
    (`2 (G λ)_i = μ` for free `i`, `Σ λ = 1`) is solved in one batch. Among
    the solutions that are feasible (within `tolerance`) the one with the
    smallest objective wins; a final exact projection onto the set removes
    the tolerance. A convex QP always has an optimum at some pattern whose
    system is non-singular, so this finds it; singular or infeasible
    patterns are just discarded. `G` is scaled by its trace first (the
    minimiser does not change). Cost grows as `3^K` (27 systems of size 4
    for three teachers), so `K` is limited to 10.

    Args:
        gram: (K, K) positive semi-definite matrix.
        cap: float in `[1/K, 1]`. The upper bound `C` on every weight.
            Defaults to `1.0`.
        tolerance: float. Feasibility tolerance. Defaults to `1e-5`.

    Returns:
        `λ`, a float32 tensor of shape (K,).

    Example:
    ```python
    gram = np.array([[1.0, -1.0], [-1.0, 1.0]])  # two opposite gradients
    capped_simplex_min_norm(gram, cap=1.0).numpy()  # [0.5, 0.5]
    ```
    """
    gram = tf.convert_to_tensor(gram, tf.float32)
    cap = tf.cast(cap, tf.float32)
    num = gram.shape[0]
    if num is None or num > MAX_TEACHERS:
        raise ValueError(f"capped_simplex_min_norm handles 1 to {MAX_TEACHERS} weights, got {num}.")
    gram = gram / tf.maximum(tf.linalg.trace(gram), 1e-30)
    gram = 0.5 * (gram + tf.transpose(gram))

    patterns = np.array(list(itertools.product((0, 1, 2), repeat=num)))  # 0/free/cap
    free = tf.constant(patterns == 1, tf.float32)  # (P, K)
    fixed_values = tf.constant(patterns == 2, tf.float32) * cap  # (P, K)
    any_free = tf.reduce_max(free, axis=1, keepdims=True)  # (P, 1)
    # Unknowns (λ, μ). Free row i: 2 (G λ)_i − μ = 0; fixed row i: λ_i = value.
    free_rows = tf.concat([2.0 * gram, -tf.ones([num, 1])], axis=1)
    fixed_rows = tf.concat([tf.eye(num), tf.zeros([num, 1])], axis=1)
    rows = free[:, :, None] * free_rows + (1.0 - free)[:, :, None] * fixed_rows
    # Last row: Σ λ = 1, or μ = 0 when nothing is free (then Σ λ is checked).
    sum_row = tf.concat([tf.ones([num]), [0.0]], axis=0)
    mu_row = tf.concat([tf.zeros([num]), [1.0]], axis=0)
    last_row = any_free * sum_row + (1.0 - any_free) * mu_row
    matrices = tf.concat([rows, last_row[:, None, :]], axis=1)
    rhs = tf.concat([fixed_values * (1.0 - free), any_free], axis=1)
    candidates = _solve_small_systems(matrices, rhs)[:, :num]

    feasible = (
        tf.reduce_all(tf.math.is_finite(candidates), axis=1)
        & tf.reduce_all(candidates >= -tolerance, axis=1)
        & tf.reduce_all(candidates <= cap + tolerance, axis=1)
        & (tf.abs(tf.reduce_sum(candidates, axis=1) - 1.0) <= tolerance)
    )
    candidates = tf.where(feasible[:, None], candidates, tf.zeros_like(candidates))
    objective = tf.reduce_sum(candidates * tf.linalg.matvec(gram, candidates), axis=1)
    objective = tf.where(feasible, objective, tf.fill(tf.shape(objective), np.inf))
    best = tf.gather(candidates, tf.argmin(objective, output_type=tf.int32))
    return project_to_capped_simplex(best, cap)


@register_method("aekd")
class AdaptiveEnsembleDistillation(BaselineDistiller):
    """Adaptive Ensemble Knowledge Distillation (AEKD) in gradient space.

    Each teacher k defines a distillation loss
    `L_k = mean((ŷ_S − sg(ŷ_k))²)` with `ŷ_k = teacher_k(x)`. Every step,
    the gradients of these losses with respect to the student's *output*,
    `g_k = ∂L_k/∂ŷ_S` over the whole (global) batch, are weighed by the
    minimum-norm point of their convex hull with each weight capped at
    `max_weight = C`:

    `λ = argmin ‖Σ_k λ_k g_k‖²  s.t.  Σ_k λ_k = 1, 0 ≤ λ_k ≤ C`

    (a K-dimensional QP on the Gram matrix `<g_k, g_l>`, all-reduced over
    replicas, solved exactly in the graph by `capped_simplex_min_norm`).
    `λ` is held fixed (stop-gradient) and the student minimises

    `L = ℓ(y, ŷ_S) + alpha · Σ_k λ_k L_k`.

    The minimum-norm point is the ensemble direction on which the teachers
    agree (the pulls of conflicting teachers cancel in it); the cap keeps
    any single teacher from taking all the weight. The original
    (Du et al., NeurIPS 2020) is for classification, with KL losses on
    softened logits and an additional feature-level term; here the KL is
    replaced by the mean squared error on the predictions and the feature
    term is left out. With `C = 1` it reduces to the plain minimum-norm
    (MGDA) weighting.

    Logged metrics: `loss`, `task_loss`, `distill_loss` (`Σ_k λ_k L_k`) and
    per teacher `teacher_weight_<name>` (its weight `λ_k`, averaged over
    steps).

    Args:
        student: a student (`diverse_distill.students.Student` contract).
        teachers: list of teachers with unique names; any frozen Keras
            models mapping `x` to a prediction.
        alpha: float >= 0. Weight of the distillation term. Defaults to `1.0`.
        max_weight: float in `[1/K, 1]`. The cap `C` on every weight.
            Defaults to `1.0` (no cap beyond the simplex).
        **kwargs: passed to `keras.Model`.

    Example:
    ```python
    features = {"user_id": 10, "item_id": 20}
    student = MLPStudent(features, embedding_dims=4, hidden_units=(8,))
    teachers = [
        MLPTeacher(MLPRecommender(features, embedding_dims=8, hidden_units=(16,)),
                   name="mlp_l"),
        MLPTeacher(MLPRecommender(features, embedding_dims=6, hidden_units=(12,)),
                   name="mlp_m"),
    ]
    model = AdaptiveEnsembleDistillation(student, teachers, max_weight=0.8)
    model.compile(optimizer=keras.optimizers.Adagrad(0.06), loss="mse")
    x = {"user_id": np.arange(8) % 10, "item_id": np.arange(8)}
    history = model.fit(x, np.ones((8, 1)), epochs=1, verbose=0)
    weights = [history.history[f"teacher_weight_{n}"][0] for n in ("mlp_l", "mlp_m")]
    ```

    Reference:
    - Du, You, Li, Wu, Wang, Qian & Zhang, "Agree to Disagree: Adaptive
      Ensemble Knowledge Distillation in Gradient Space", NeurIPS 2020.
    """

    def __init__(self, student, teachers, alpha=1.0, max_weight=1.0, **kwargs):
        super().__init__(student, teachers, alpha=alpha, **kwargs)
        num = len(self.teachers)
        if max_weight is None or not 0.0 < float(max_weight) <= 1.0:
            raise ValueError(f"`max_weight` must lie in (0, 1], got {max_weight}.")
        if float(max_weight) * num < 1.0 - 1e-6:
            raise ValueError(
                f"`max_weight`={max_weight} with {num} teachers leaves no feasible "
                f"weights: it must be at least 1/{num}."
            )
        if num > MAX_TEACHERS:
            raise ValueError(
                f"AEKD's exact weight solver handles at most {MAX_TEACHERS} teachers, got {num}."
            )
        self.max_weight = float(max_weight)

    def stat_names(self):
        return [f"teacher_weight_{name}" for name in self.teacher_names]

    def ensemble_weights(self, prediction, targets, sample_weight=None):
        """`λ` (K,) for a batch: the capped min-norm point of the output gradients."""
        output = tf.stop_gradient(prediction)
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(output)
            losses = [global_mean(self.soft_target_fn(t, output), sample_weight) for t in targets]
        gradients = tf.stack([tf.reshape(tape.gradient(l, output), [-1]) for l in losses])
        del tape
        gram = all_reduce_sum(tf.matmul(gradients, gradients, transpose_b=True))
        return tf.stop_gradient(capped_simplex_min_norm(gram, self.max_weight))

    def distillation_terms(self, x, y, student, sample_weight=None, training=True):
        prediction = student["prediction"]
        targets = [self.teacher_prediction(t, x, like=prediction) for t in self.teachers]
        weights = self.ensemble_weights(prediction, targets, sample_weight)
        distill = tf.add_n(
            [weights[k] * self.soft_target_fn(t, prediction) for k, t in enumerate(targets)]
        )
        stats = {f"teacher_weight_{name}": weights[k] for k, name in enumerate(self.teacher_names)}
        return distill, {}, stats
