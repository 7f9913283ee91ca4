import keras
import numpy as np
import pytest

from diverse_distill.baselines import FeatureDistillation
from tests.baselines.baseline_helpers import (
    make_data,
    make_student,
    make_teachers,
    np_dense,
    np_forward,
)
from tests.test_case import TestCase


class FeatureDistillationTest(TestCase):
    def _model(self, alpha=0.6):
        student, teachers = make_student(), make_teachers(num=2)
        model = FeatureDistillation(student, teachers, alpha=alpha, teacher_index=1)
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse", run_eagerly=True)
        return model

    def test_losses_match_numpy(self):
        model = self._model()
        teacher = model.teacher
        self.assertEqual(model.projector.kernel.shape, (4, teacher.answer_dim))
        x, y = make_data()
        h_s, y_s = np_forward(model.student, x)
        h_t, _ = np_forward(teacher.model, x)  # the teacher's own last hidden state
        task = ((y_s - y) ** 2).mean()
        distill = ((np_dense(model.projector, h_s) - h_t) ** 2).mean()
        logs = model.train_on_batch(x, y, return_dict=True)
        self.assertAllClose(logs["task_loss"], task, rtol=1e-5)
        self.assertAllClose(logs["distill_loss"], distill, rtol=1e-5)
        self.assertAllClose(logs["loss"], task + 0.6 * distill, rtol=1e-5)

    def test_projector_trains_with_the_student(self):
        model = self._model()
        self.assertLen(model.optimizer._trainable_variables, len(model.trained_variables))
        x, y = make_data()
        h_s, _ = np_forward(model.student, x)
        h_t, _ = np_forward(model.teacher.model, x)
        kernel, bias = np.array(model.projector.kernel), np.array(model.projector.bias)
        # d/dP of alpha * mean((h_s P + b - h_t)^2) over batch and width, by hand.
        residual = h_s @ kernel + bias - h_t
        scale = 0.6 * 2.0 / residual.size
        expected_kernel = kernel - 0.05 * scale * h_s.T @ residual
        expected_bias = bias - 0.05 * scale * residual.sum(0)
        model.train_on_batch(x, y)
        self.assertAllClose(model.projector.kernel, expected_kernel, atol=1e-6, rtol=0)
        self.assertAllClose(model.projector.bias, expected_bias, atol=1e-6, rtol=0)

    def test_needs_a_split_teacher(self):
        plain = keras.Sequential([keras.layers.Dense(1)], name="plain")
        with pytest.raises(ValueError, match="split-teacher contract"):
            FeatureDistillation(make_student(), [plain])
