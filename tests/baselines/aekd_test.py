import keras
import numpy as np
import pytest

from diverse_distill.baselines import (
    AdaptiveEnsembleDistillation,
    capped_simplex_min_norm,
    project_to_capped_simplex,
)
from tests.baselines.baseline_helpers import make_data, make_student, make_teachers, np_forward
from tests.test_case import TestCase


def capped_simplex_grid(num, cap, resolution):
    """Every point of a regular grid on {Σ λ = 1, 0 ≤ λ ≤ cap} (num = 2 or 3)."""
    a = np.linspace(0.0, 1.0, resolution + 1)
    if num == 2:
        points = np.stack([a, 1.0 - a], axis=1)
    else:
        u, v = np.meshgrid(a, a)
        points = np.stack([u.ravel(), v.ravel(), 1.0 - u.ravel() - v.ravel()], axis=1)
    inside = (points >= -1e-12).all(1) & (points <= cap + 1e-12).all(1)
    return points[inside]


def grid_min_norm(gram, cap):
    points = capped_simplex_grid(len(gram), cap, 20000 if len(gram) == 2 else 400)
    values = np.einsum("ij,jk,ik->i", points, gram, points)
    return values.min()


def numpy_projection(v, cap):
    """Projection onto the capped simplex by bisection on the shift (float64)."""
    lo, hi = v.min() - cap, v.max()
    for _ in range(200):
        tau = (lo + hi) / 2
        if np.clip(v - tau, 0, cap).sum() > 1:
            lo = tau
        else:
            hi = tau
    return np.clip(v - (lo + hi) / 2, 0, cap)


class CappedSimplexTest(TestCase):
    def test_projection_is_exact(self):
        rng = np.random.default_rng(0)
        for num, cap in [(2, 1.0), (2, 0.6), (3, 0.4), (3, 1 / 3), (4, 0.3), (5, 1.0)]:
            for _ in range(5):
                v = rng.normal(size=num) * rng.choice([0.1, 1.0, 10.0])
                projected = np.array(project_to_capped_simplex(v.astype("float32"), cap))
                self.assertAllClose(projected, numpy_projection(v, cap), atol=1e-5)
                self.assertAllClose(projected.sum(), 1.0, atol=1e-5)

    def test_min_norm_matches_a_grid_search(self):
        rng = np.random.default_rng(1)
        cases = []
        for num, cap in [(2, 1.0), (2, 0.7), (3, 1.0), (3, 0.45)]:
            for _ in range(4):
                g = rng.normal(size=(num, 5)) * rng.uniform(0.01, 10, size=(num, 1))
                cases.append((g, cap))
        g = rng.normal(size=(1, 5))
        cases.append((np.concatenate([g, -2.0 * g]), 1.0))  # opposite: optimum 2/3, 1/3
        cases.append((np.concatenate([g, -2.0 * g]), 0.6))  # ... capped at 0.6
        cases.append((np.concatenate([g, g + 1e-2 * rng.normal(size=(1, 5)), -g]), 0.5))
        for g, cap in cases:
            gram = g @ g.T
            weights = np.array(capped_simplex_min_norm(gram.astype("float32"), cap)).astype(float)
            self.assertAllClose(weights.sum(), 1.0, atol=1e-5)
            self.assertTrue(((weights >= 0) & (weights <= cap + 1e-6)).all(), (weights, cap))
            value = weights @ gram @ weights
            self.assertLessEqual(value, grid_min_norm(gram, cap) + 1e-6 * np.trace(gram))
        for num, cap in [(1, 1.0), (3, 0.5)]:  # one weight; all gradients zero
            weights = np.array(capped_simplex_min_norm(np.zeros((num, num), "float32"), cap))
            self.assertAllClose(weights.sum(), 1.0, atol=1e-6)
            self.assertTrue(((weights >= 0) & (weights <= cap + 1e-6)).all(), weights)
        g = cases[-3][0]
        self.assertAllClose(capped_simplex_min_norm((g @ g.T).astype("float32")), [2 / 3, 1 / 3],
                            atol=1e-5)
        g = cases[-2][0]
        self.assertAllClose(capped_simplex_min_norm((g @ g.T).astype("float32"), 0.6), [0.6, 0.4],
                            atol=1e-5)


class AdaptiveEnsembleDistillationTest(TestCase):
    def _check_step(self, num, cap):
        student, teachers = make_student(), make_teachers(num=num)
        alpha = 0.8
        model = AdaptiveEnsembleDistillation(student, teachers, alpha=alpha, max_weight=cap)
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse", run_eagerly=True)
        x, y = make_data()
        _, y_s = np_forward(student, x)
        y_t = [np_forward(t.model, x)[1] for t in teachers]
        # Gradients of mean((ŷ_S - ŷ_k)²) w.r.t. the student's output, by hand.
        g = np.stack([(2.0 / len(y)) * (y_s - t).ravel() for t in y_t])
        gram = g @ g.T
        logs = model.train_on_batch(x, y, return_dict=True)
        weights = np.array([logs[f"teacher_weight_{n}"] for n in model.teacher_names])
        self.assertAllClose(weights.sum(), 1.0, atol=1e-5)
        self.assertTrue(((weights >= 0) & (weights <= cap + 1e-6)).all(), weights)
        self.assertLessEqual(
            weights @ gram @ weights, grid_min_norm(gram, cap) + 1e-6 * np.trace(gram)
        )
        task = ((y_s - y) ** 2).mean()
        distill = sum(w * ((y_s - t) ** 2).mean() for w, t in zip(weights, y_t))
        self.assertAllClose(logs["task_loss"], task, rtol=1e-5)
        self.assertAllClose(logs["distill_loss"], distill, rtol=1e-5)
        self.assertAllClose(logs["loss"], task + alpha * distill, rtol=1e-5)
        return weights

    def test_two_teachers(self):
        self._check_step(num=2, cap=1.0)

    def test_three_teachers_capped(self):
        weights = self._check_step(num=3, cap=0.4)
        self.assertAllClose(weights.max(), 0.4, atol=1e-5)  # the cap binds here

    def test_clear_errors(self):
        student, teachers = make_student(), make_teachers(num=3)
        with pytest.raises(ValueError, match="at least 1/3"):
            AdaptiveEnsembleDistillation(student, teachers, max_weight=0.3)
        with pytest.raises(ValueError, match=r"\(0, 1\]"):
            AdaptiveEnsembleDistillation(student, teachers, max_weight=1.5)
