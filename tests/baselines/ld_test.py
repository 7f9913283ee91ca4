import keras
import numpy as np
import pytest

from diverse_distill.baselines import LogitDistillation
from tests.baselines.baseline_helpers import (
    clone_student,
    make_data,
    make_student,
    make_teachers,
    np_forward,
)
from tests.test_case import TestCase


class LogitDistillationTest(TestCase):
    def test_losses_match_numpy(self):
        student, (teacher,) = make_student(), make_teachers(num=1)
        model = LogitDistillation(student, [teacher], alpha=0.7)
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse", run_eagerly=True)
        x, y = make_data()
        _, y_s = np_forward(student, x)
        _, y_t = np_forward(teacher.model, x)
        task = ((y_s - y) ** 2).mean()
        distill = ((y_s - y_t) ** 2).mean()
        logs = model.train_on_batch(x, y, return_dict=True)
        self.assertEqual(sorted(logs), ["distill_loss", "loss", "task_loss"])
        self.assertAllClose(logs["task_loss"], task, rtol=1e-5)
        self.assertAllClose(logs["distill_loss"], distill, rtol=1e-5)
        self.assertAllClose(logs["loss"], task + 0.7 * distill, rtol=1e-5)

    def test_step_equals_plain_step_on_the_combined_loss(self):
        # With SGD the update is -lr * grad(task + alpha * mse(y_s, y_t)); a
        # plain student trained on the target (y + alpha * y_t) / (1 + alpha)
        # with loss weight (1 + alpha) follows the same gradient.
        student, (teacher,) = make_student(), make_teachers(num=1)
        plain = clone_student(student)
        alpha = 0.5
        model = LogitDistillation(student, teacher, alpha=alpha)
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
        x, y = make_data()
        y_t = np.array(teacher(x))
        plain.compile(optimizer=keras.optimizers.SGD(0.05 * (1 + alpha)), loss="mse")
        model.train_on_batch(x, y)
        plain.train_on_batch(x, (y + alpha * y_t) / (1 + alpha))
        for a, b in zip(student.get_weights(), plain.get_weights()):
            self.assertAllClose(a, b, atol=1e-6, rtol=0)

    def test_evaluate_is_the_student_alone(self):
        model = LogitDistillation(make_student(), make_teachers(num=1))
        model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
        x, y = make_data()
        result = model.evaluate(x, y, verbose=0, return_dict=True)
        y_s = np.array(model.student(x))
        self.assertEqual(sorted(result), ["loss", "mae", "task_loss"])
        self.assertAllClose(result["loss"], ((y_s - y) ** 2).mean(), rtol=1e-5)
        self.assertAllClose(result["mae"], np.abs(y_s - y).mean(), rtol=1e-5)

    def test_single_teacher_only(self):
        student, teachers = make_student(), make_teachers(num=2)
        with pytest.raises(ValueError, match="single teacher.*teacher_index"):
            LogitDistillation(student, teachers)
        model = LogitDistillation(student, teachers, teacher_index=1)
        self.assertIs(model.teacher, teachers[1])
        self.assertEqual(model.teacher_names, ["mlp_l"])
        with pytest.raises(ValueError, match="out of range"):
            LogitDistillation(student, teachers, teacher_index=2)
        with pytest.raises(ValueError, match="`alpha` must be >= 0"):
            LogitDistillation(student, teachers[:1], alpha=-1)
        with pytest.raises(ValueError, match="task `loss`"):
            LogitDistillation(student, teachers[:1]).compile(optimizer="sgd", loss=None)
