import keras
import numpy as np

from diverse_distill import MLPRecommender
from diverse_distill.baselines import MultiTeacherDistillation
from tests.baselines.baseline_helpers import (
    FEATURES,
    make_data,
    make_student,
    make_teachers,
    np_forward,
)
from tests.test_case import TestCase


class MultiTeacherDistillationTest(TestCase):
    def test_target_is_the_teacher_mean_and_losses_match_numpy(self):
        student, teachers = make_student(), make_teachers(num=3)
        model = MultiTeacherDistillation(student, teachers, alpha=0.3)
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse", run_eagerly=True)
        x, y = make_data()
        _, y_s = np_forward(student, x)
        mean = np.mean([np_forward(t.model, x)[1] for t in teachers], axis=0)
        self.assertAllClose(model.soft_target(x), mean, rtol=1e-5)
        task = ((y_s - y) ** 2).mean()
        distill = ((y_s - mean) ** 2).mean()
        logs = model.train_on_batch(x, y, return_dict=True)
        self.assertEqual(sorted(logs), ["distill_loss", "loss", "task_loss"])
        self.assertAllClose(logs["task_loss"], task, rtol=1e-5)
        self.assertAllClose(logs["distill_loss"], distill, rtol=1e-5)
        self.assertAllClose(logs["loss"], task + 0.3 * distill, rtol=1e-5)

    def test_sample_weight_reduces_per_global_batch(self):
        student, teachers = make_student(), make_teachers(num=2)
        model = MultiTeacherDistillation(student, teachers)
        model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse", run_eagerly=True)
        x, y = make_data()
        w = np.linspace(0.0, 2.0, len(y)).astype("float32")
        _, y_s = np_forward(student, x)
        mean = np.mean([np_forward(t.model, x)[1] for t in teachers], axis=0)
        logs = model.train_on_batch(x, y, sample_weight=w, return_dict=True)
        self.assertAllClose(logs["task_loss"], (w * ((y_s - y) ** 2)[:, 0]).mean(), rtol=1e-5)
        self.assertAllClose(
            logs["distill_loss"], (w * ((y_s - mean) ** 2)[:, 0]).mean(), rtol=1e-5
        )

    def test_unsplit_keras_models_are_teachers_too(self):
        # Prediction-only methods call `teacher(x)` alone: any frozen model works.
        teachers = [
            MLPRecommender(FEATURES, embedding_dims=2, hidden_units=(3,), name=f"plain_{k}")
            for k in range(2)
        ]
        model = MultiTeacherDistillation(make_student(), teachers)
        self.assertTrue(all(not t.trainable for t in teachers))
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse", run_eagerly=True)
        x, y = make_data()
        before = [np.array(w) for t in teachers for w in t.weights]
        logs = model.train_on_batch(x, y, return_dict=True)
        mean = np.mean([np_forward(t, x)[1] for t in teachers], axis=0)
        self.assertAllClose(model.soft_target(x), mean, rtol=1e-5)
        self.assertTrue(np.isfinite(logs["distill_loss"]))
        for b, a in zip(before, [np.array(w) for t in teachers for w in t.weights]):
            self.assertAllEqual(b, a)
