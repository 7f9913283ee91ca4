"""DistillationModel's ablation options: `importance="uniform"` and `question="native"`."""

import keras
import numpy as np
import pytest

from tests.distill.distillation_model_test import (
    make_data,
    make_model,
    np_mlp,
    np_representation,
)
from tests.test_case import TestCase


def np_losses(model, x, y, importance="learned", question="augmented", normalization="sum"):
    """METHOD.md Eq. 1-3 by hand, with the ablations' importances and questions."""
    student = model.student
    s = np_representation(student, x)
    h_s, y_s = np_mlp(student, s)
    task = ((y_s - y) ** 2)[:, 0]
    questions, w = model.question_augmenter(s)
    w = np.ones_like(np.array(w)) if importance == "uniform" else np.array(w)
    weights = w / w.sum(1, keepdims=True) if normalization == "sum" else w
    distill, reg = np.zeros(len(y)), np.zeros(len(y))
    for k, teacher in enumerate(model.teachers):
        q = np.array(questions[k])
        if question == "native":
            q = np.array(teacher.model.representation(x))
        hidden, pred = np_mlp(teacher.model, q)
        a = np.array(model.answer_augmenter.project(k, hidden))
        head_a = a @ np.array(student.head.kernel) + np.array(student.head.bias)
        distill += w[:, k] * ((a - h_s) ** 2).mean(-1)
        reg += weights[:, k] * (((pred - y) ** 2)[:, 0] + ((head_a - y) ** 2)[:, 0])
    return task.mean(), distill.mean(), reg.mean()


class AblationOptionsTest(TestCase):
    def _check(self, alpha=0.7, beta=1.3, **options):
        model = make_model(alpha=alpha, beta=beta, **options)
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
        x, y = make_data()
        normalization = options.get("importance_normalization", "sum")
        task, distill, reg = np_losses(
            model, x, y, options.get("importance", "learned"),
            options.get("question", "augmented"), normalization,
        )
        logs = model.train_on_batch(x, y, return_dict=True)
        self.assertAllClose(logs["task_loss"], task, rtol=1e-5)
        self.assertAllClose(logs["distill_loss"], distill, rtol=1e-5)
        self.assertAllClose(logs["reg_loss"], reg, rtol=1e-5)
        self.assertAllClose(logs["loss"], task + alpha * distill + beta * reg, rtol=1e-5)
        return model, logs

    def test_uniform_importance_is_one_and_losses_match_numpy(self):
        for normalization in ("sum", "none"):
            model, logs = self._check(importance="uniform", importance_normalization=normalization)
            for name in model.teacher_names:
                self.assertAllClose(logs[f"importance_{name}"], 1.0)
                self.assertAllClose(logs[f"pass_fraction_{name}"], 1.0)

    def test_uniform_importance_passes_every_threshold(self):
        model = make_model(importance="uniform", importance_threshold=1.0)
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
        x, y = make_data()
        losses = model.compute_losses(x, y, training=False)
        np.testing.assert_array_equal(np.array(losses["importance"]), 1.0)
        np.testing.assert_array_equal(np.array(losses["keep"]), 1.0)

    def test_uniform_importance_leaves_the_readouts_unchanged(self):
        model = make_model(importance="uniform")
        model.compile(optimizer=keras.optimizers.Adagrad(0.5), loss="mse")
        readouts = model.question_augmenter.importance_readouts
        before = [np.array(v) for r in readouts for v in r.weights]
        x, y = make_data()
        model.train_on_batch(x, y)
        after = [np.array(v) for r in readouts for v in r.weights]
        for b, a in zip(before, after):
            np.testing.assert_array_equal(a, b)

    def test_native_question_losses_match_numpy(self):
        self._check(question="native")

    def test_default_is_the_method(self):
        model = make_model()
        self.assertEqual((model.importance, model.question), ("learned", "augmented"))

    def test_bad_options_fail_clearly(self):
        with pytest.raises(ValueError, match="`importance` must be one of"):
            make_model(importance="none")
        with pytest.raises(ValueError, match="`question` must be one of"):
            make_model(question="fixed")
