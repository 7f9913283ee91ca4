import keras
import numpy as np
import pytest
import tensorflow as tf

from diverse_distill.baselines import AdaptiveMultiTeacherMultiLevelDistillation
from tests.baselines.baseline_helpers import (
    make_data,
    make_student,
    make_teachers,
    np_dense,
    np_forward,
    np_softmax,
)
from tests.test_case import TestCase


class AMTMLTest(TestCase):
    def _model(self, **kwargs):
        model = AdaptiveMultiTeacherMultiLevelDistillation(
            make_student(), make_teachers(num=3), **kwargs
        )
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse", run_eagerly=True)
        return model

    def test_weights_sum_to_one_per_sample(self):
        model = self._model()
        x, y = make_data()
        model.teacher_weighting.kernel.assign(
            np.random.default_rng(0).normal(size=model.teacher_weighting.kernel.shape) * 3
        )
        weights = np.array(model.teacher_weights(x))
        self.assertEqual(weights.shape, (32, 3))
        self.assertAllClose(weights.sum(1), np.ones(32), atol=1e-6)
        self.assertTrue((weights > 0).all())
        self.assertGreater(weights.std(0).max(), 1e-2)  # per-sample, not one global weighting
        h_s, _ = np_forward(model.student, x)
        self.assertAllClose(weights, np_softmax(np_dense(model.teacher_weighting, h_s)), atol=1e-6)

    def test_losses_match_numpy(self):
        alpha, beta = 0.5, 0.3
        model = self._model(alpha=alpha, beta=beta)
        x, y = make_data()
        h_s, y_s = np_forward(model.student, x)
        w = np_softmax(np_dense(model.teacher_weighting, h_s))
        outputs = [np_forward(t.model, x) for t in model.teachers]
        target = sum(w[:, k : k + 1] * y_t for k, (_, y_t) in enumerate(outputs))
        hint = sum(
            w[:, k] * ((np_dense(model.hint_projectors[k], h_s) - h_t) ** 2).mean(-1)
            for k, (h_t, _) in enumerate(outputs)
        )
        task = ((y_s - y) ** 2).mean()
        logit = ((y_s - target) ** 2).mean()
        logs = model.train_on_batch(x, y, return_dict=True)
        self.assertAllClose(logs["task_loss"], task, rtol=1e-5)
        self.assertAllClose(logs["logit_loss"], logit, rtol=1e-5)
        self.assertAllClose(logs["hint_loss"], hint.mean(), rtol=1e-5)
        self.assertAllClose(logs["distill_loss"], logit + beta * hint.mean(), rtol=1e-5)
        self.assertAllClose(logs["loss"], task + alpha * (logit + beta * hint.mean()), rtol=1e-5)
        for k, name in enumerate(model.teacher_names):
            self.assertAllClose(logs[f"teacher_weight_{name}"], w[:, k].mean(), rtol=1e-5)

    def test_weighting_and_projectors_train(self):
        model = self._model()
        self.assertLen(model.optimizer._trainable_variables, len(model.trained_variables))
        layers = [model.teacher_weighting, *model.hint_projectors]
        before = [np.array(v) for layer in layers for v in layer.weights]
        x, y = make_data()
        model.train_on_batch(x, y)
        after = [np.array(v) for layer in layers for v in layer.weights]
        self.assertTrue(all(not np.array_equal(b, a) for b, a in zip(before, after)))

    def test_detached_features(self):
        x, y = make_data()
        for detach in (True, False):
            model = self._model(detach_features=detach)
            with tf.GradientTape() as tape:
                weights = model.teacher_weights(x)
                spread = tf.reduce_sum(tf.square(weights[:, 0]))
            gradients = tape.gradient(spread, model.student.trainable_variables)
            self.assertEqual(all(g is None for g in gradients), detach)

    def test_beta_must_be_non_negative(self):
        with pytest.raises(ValueError, match="`beta` must be >= 0"):
            AdaptiveMultiTeacherMultiLevelDistillation(make_student(), make_teachers(), beta=-1)
