import keras
import numpy as np
import tensorflow as tf

from diverse_distill import MLPTeacher
from diverse_distill.baselines import StochasticTeacherDistillation
from tests.baselines.baseline_helpers import (
    constant_teacher,
    make_data,
    make_student,
    make_teachers,
    np_forward,
    np_softmax,
)
from tests.test_case import TestCase


class CountingTeacher(MLPTeacher):
    """Counts its forward passes (run eagerly)."""

    def __init__(self, model, **kwargs):
        super().__init__(model, **kwargs)
        self.calls = 0

    def call(self, x, training=False):
        self.calls += 1
        return super().call(x, training=training)


def expected_index(logits, seed, iteration):
    draw = tf.random.stateless_categorical(
        tf.constant(logits, tf.float32)[None], 1, seed=tf.constant([seed, iteration], tf.int64)
    )
    return int(draw[0, 0])


class AutoSKDTest(TestCase):
    def test_one_teacher_per_step_drawn_from_the_seeded_distribution(self):
        teachers = [CountingTeacher(t.model, name=t.name) for t in make_teachers(num=3)]
        model = StochasticTeacherDistillation(
            make_student(), teachers, alpha=0.5, seed=7, initial_logits=[0.0, 1.0, -1.0]
        )
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse", run_eagerly=True)
        x, y = make_data()
        drawn = []
        for step in range(6):
            logits = np.array(model.policy_logits)
            index = expected_index(logits, 7, step)
            _, y_s = np_forward(model.student, x)
            y_t = np_forward(model.teachers[index].model, x)[1]
            counts = [t.calls for t in teachers]
            model.reset_metrics()
            logs = model.train_on_batch(x, y, return_dict=True)
            ran = [t.calls - c for t, c in zip(teachers, counts)]
            self.assertEqual(ran, [1 if k == index else 0 for k in range(3)])
            selected = [logs[f"selected_{n}"] for n in model.teacher_names]
            self.assertEqual(selected, [1.0 if k == index else 0.0 for k in range(3)])
            self.assertAllClose(logs["distill_loss"], ((y_s - y_t) ** 2).mean(), rtol=1e-5)
            drawn.append(index)
        self.assertGreater(len(set(drawn)), 1)  # the draw depends on the step

    def _step_by_hand(self, teachers, alpha, lr=0.05, eta=2.0, momentum=0.9):
        model = StochasticTeacherDistillation(
            make_student(), teachers, alpha=alpha, policy_learning_rate=eta,
            baseline_momentum=momentum, seed=0,
        )
        model.compile(optimizer=keras.optimizers.SGD(lr), loss="mse", run_eagerly=True)
        x, y = make_data()
        logits = np.array(model.policy_logits)
        index = expected_index(logits, 0, 0)
        before = ((np_forward(model.student, x)[1] - y) ** 2).mean()
        logs = model.train_on_batch(x, y, return_dict=True)
        after = ((np_forward(model.student, x)[1] - y) ** 2).mean()
        reward = before - after
        # θ ← θ + η (r − b) (onehot(k) − π) with b = 0 before the first step.
        expected = logits + eta * reward * (np.eye(len(teachers))[index] - np_softmax(logits))
        self.assertAllClose(logs["reward"], reward, rtol=1e-4)
        self.assertAllClose(model.policy_logits, expected, rtol=1e-4, atol=1e-7)
        self.assertAllClose(model.reward_baseline, (1 - momentum) * reward, rtol=1e-4)
        probabilities = np_softmax(expected)
        for k, name in enumerate(model.teacher_names):
            self.assertAllClose(logs[f"teacher_weight_{name}"], probabilities[k], rtol=1e-5)
        return reward, index, np_softmax(logits), probabilities

    def test_helpful_step_raises_the_sampled_teachers_probability(self):
        # alpha = 0: the step is a plain task step, so the task loss falls.
        reward, k, before, after = self._step_by_hand(make_teachers(num=2), alpha=0.0)
        self.assertGreater(reward, 0.0)
        self.assertGreater(after[k], before[k])

    def test_harmful_step_lowers_the_sampled_teachers_probability(self):
        # Teachers far below every label: distilling from them raises the task loss.
        teachers = [constant_teacher(-20.0, "low"), constant_teacher(-30.0, "lower", seed=1)]
        reward, k, before, after = self._step_by_hand(teachers, alpha=5.0, lr=0.01)
        self.assertLess(reward, 0.0)
        self.assertLess(after[k], before[k])
