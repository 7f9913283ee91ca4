"""DistillationModel's options beyond the paper (`variant`, docs/method.md), by hand."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from diverse_distill.distill.distillation_model import VARIANTS, DistillationModel
from diverse_distill.layers.question_augmenter import QuestionAugmenter
from diverse_distill.students.mlp_student import MLPStudent
from tests.distill.distillation_model_test import (
    make_committee,
    make_data,
    make_model,
    np_mlp,
    np_representation,
)
from tests.test_case import TestCase


def np_variant_losses(model, x, y, distance="mean", injection="replace", answer_target="label",
                      importance_objective="weighted"):
    """task, distill, prediction and reg losses (batch means) computed with numpy."""
    student = model.student
    s = np_representation(student, x)
    h_s, y_s = np_mlp(student, s)
    task = ((y_s - y) ** 2)[:, 0]
    questions, w = model.question_augmenter(s)
    w = np.array(w, dtype=np.float64)
    weights = w if importance_objective == "relative" else w / w.sum(1, keepdims=True)
    distill, prediction, reg = (np.zeros(len(y)) for _ in range(3))
    for k, teacher in enumerate(model.teachers):
        q = np.array(questions[k])
        if injection == "add":
            q = q + np.array(teacher.model.representation(x))
        hidden, pred = np_mlp(teacher.model, q)
        a = np.array(model.answer_augmenter.project(k, hidden))
        head_a = a @ np.array(student.head.kernel) + np.array(student.head.bias)
        squared = ((a - h_s) ** 2).sum(-1)
        d = {"mean": squared / a.shape[-1], "sum": squared, "l2": np.sqrt(squared)}[distance]
        distill += w[:, k] * d
        prediction += w[:, k] * ((head_a - y_s) ** 2)[:, 0]
        teacher_loss = ((pred - y) ** 2)[:, 0]
        answer_loss = {"label": ((head_a - y) ** 2)[:, 0],
                       "teacher": ((head_a - pred) ** 2)[:, 0]}
        answer_loss["both"] = answer_loss["label"] + answer_loss["teacher"]
        reg += weights[:, k] * (teacher_loss + answer_loss[answer_target])
        if importance_objective == "relative":
            reg += w[:, k] * (teacher_loss - teacher_loss.mean())
    return task.mean(), distill.mean(), prediction.mean(), reg.mean()


def make_variant_model(variant="paper", **options):
    return make_model(variant=variant, intermediate_dim=3, **options)


class VariantLossTest(TestCase):
    def _check(self, alpha=0.7, beta=1.3, prediction_weight=0.4, **options):
        model = make_variant_model(alpha=alpha, beta=beta, prediction_weight=prediction_weight,
                                   **options)
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
        x, y = make_data()
        task, distill, prediction, reg = np_variant_losses(model, x, y, **options)
        logs = model.train_on_batch(x, y, return_dict=True)
        self.assertAllClose(logs["task_loss"], task, rtol=1e-5)
        self.assertAllClose(logs["distill_loss"], distill, rtol=1e-5)
        self.assertAllClose(logs["prediction_loss"], prediction, rtol=1e-5)
        self.assertAllClose(logs["reg_loss"], reg, rtol=1e-5, atol=1e-6)
        self.assertAllClose(
            logs["loss"], task + alpha * distill + prediction_weight * prediction + beta * reg,
            rtol=1e-5,
        )

    def test_distances(self):
        for distance in ("mean", "sum", "l2"):
            self._check(distance=distance)

    def test_residual_injection(self):
        self._check(injection="add")

    def test_answer_targets(self):
        for target in ("label", "teacher", "both"):
            self._check(injection="add", answer_target=target)

    def test_relative_importance(self):
        self._check(importance_objective="relative", injection="add")

    def test_paper_variant_is_the_published_method(self):
        model = make_model(variant="paper")
        for key, value in VARIANTS["paper"].items():
            self.assertEqual(getattr(model, key) if key != "alignment"
                             else model.question_augmenter.alignment, value)
        self.assertEqual(model.prediction_weight, 0.0)
        self.assertEqual(model.injection, "replace")

    def test_explicit_argument_beats_the_variant(self):
        model = make_model(variant="paper", injection="add", distance="l2")
        self.assertEqual((model.injection, model.distance), ("add", "l2"))
        self.assertEqual(model.answer_target, VARIANTS["paper"]["answer_target"])

    def test_bad_options_fail_with_the_allowed_values(self):
        student, teachers = make_committee()
        for kwargs, needle in (({"variant": "best"}, "variant"), ({"distance": "l1"}, "distance"),
                               ({"injection": "mix"}, "injection"),
                               ({"answer_target": "y"}, "answer_target"),
                               ({"importance_objective": "x"}, "importance_objective"),
                               ({"prediction_weight": -1.0}, "prediction_weight"),
                               ({"module_warmup_steps": -2}, "module_warmup_steps")):
            with self.assertRaisesRegex(ValueError, needle):
                DistillationModel(student, teachers, **kwargs)


class ResidualInjectionTest(TestCase):
    def test_every_teacher_answers_its_real_input_at_step_zero(self):
        model = make_variant_model(injection="add")
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
        x, _ = make_data()
        s = np_representation(model.student, x)
        questions, _ = model.question_augmenter(s)
        for k, teacher in enumerate(model.teachers):
            np.testing.assert_array_equal(np.array(questions[k]), 0.0)  # zero-initialised g_k
            _, real = np_mlp(teacher.model, np.array(teacher.model.representation(x)))
            answer = model._teacher_terms(k, teacher, x, np.zeros((len(s), 1)), questions[k])
            # regulariser's first term: the real prediction's loss against y = 0
            self.assertAllClose(np.array(answer[2]), real[:, 0] ** 2, rtol=1e-5)

    def test_question_path_gets_gradient_from_the_first_step(self):
        model = make_variant_model(injection="add", answer_target="teacher")
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
        x, y = make_data()
        variables = model.question_augmenter.trainable_variables
        with tf.GradientTape() as tape:
            losses = model.compute_losses(x, y)
        grads = dict(zip([v.path for v in variables], tape.gradient(losses["reg_loss"], variables)))
        outputs = [g for path, g in grads.items() if "question_0_output" in path and "kernel" in path]
        self.assertLen(outputs, 1)
        self.assertGreater(float(tf.reduce_max(tf.abs(outputs[0]))), 1e-4)


class PredictionTermTest(TestCase):
    def test_alpha_and_prediction_weight_zero_equal_a_plain_student_step(self):
        model = make_variant_model(alpha=0.0, prediction_weight=0.0, beta=2.0)
        plain = MLPStudent.from_config(model.student.get_config())
        plain.set_weights(model.student.get_weights())
        model.compile(optimizer=keras.optimizers.SGD(0.3), loss="mse")
        plain.compile(optimizer=keras.optimizers.SGD(0.3), loss="mse")
        x, y = make_data()
        for _ in range(3):
            model.train_on_batch(x, y)
            plain.train_on_batch(x, y)
        for a, b in zip(model.student.get_weights(), plain.get_weights()):
            self.assertAllClose(a, b, atol=1e-6, rtol=0)

    def test_prediction_term_moves_the_student_towards_the_answers(self):
        # With only the prediction term (alpha = 0, beta = 0) an SGD step's change of the
        # student's prediction has the sign of mean_k w_k (head_S(a_k) - y_S) on a
        # one-row batch, to first order.
        model = make_variant_model(alpha=0.0, beta=0.0, prediction_weight=1.0, injection="add")
        model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")
        x, y = make_data()
        x1 = {k: v[:1] for k, v in x.items()}
        losses = model.compute_losses(x1, y[:1])
        y_before = float(np.array(losses["y_pred"])[0, 0])
        s = np_representation(model.student, x1)
        questions, w = model.question_augmenter(s)
        heads = []
        for k, teacher in enumerate(model.teachers):
            hidden, _ = np_mlp(teacher.model, np.array(questions[k])
                               + np.array(teacher.model.representation(x1)))
            a = np.array(model.answer_augmenter.project(k, hidden))
            heads.append(float((a @ np.array(model.student.head.kernel)
                                + np.array(model.student.head.bias))[0, 0]))
        direction = np.sign(sum(float(np.array(w)[0, k]) * (heads[k] - y_before)
                                for k in range(len(heads))))
        # The task term pulls towards y; make it vanish by taking y = y_S.
        model.train_on_batch(x1, np.array([[y_before]], "float32"))
        y_after = float(np.array(model.student(x1))[0, 0])
        self.assertEqual(np.sign(y_after - y_before), direction)


class ModuleWarmupTest(TestCase):
    def test_ramp_is_zero_then_linear_then_one(self):
        model = make_variant_model(module_warmup_steps=4)
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
        ramps = []
        for step in (0, 3, 4, 6, 8, 20):
            model.optimizer.iterations.assign(step)
            ramps.append(float(model.distill_ramp()))
        self.assertAllClose(ramps, [0.0, 0.0, 0.0, 0.5, 1.0, 1.0])

    def test_warmup_steps_are_plain_student_steps(self):
        model = make_variant_model(module_warmup_steps=10, alpha=3.0, prediction_weight=2.0)
        plain = MLPStudent.from_config(model.student.get_config())
        plain.set_weights(model.student.get_weights())
        model.compile(optimizer=keras.optimizers.SGD(0.3), loss="mse")
        plain.compile(optimizer=keras.optimizers.SGD(0.3), loss="mse")
        x, y = make_data()
        for _ in range(3):
            model.train_on_batch(x, y)
            plain.train_on_batch(x, y)
        for a, b in zip(model.student.get_weights(), plain.get_weights()):
            self.assertAllClose(a, b, atol=1e-6, rtol=0)


class NormalizedAlignmentTest(TestCase):
    def test_alignment_is_a_cosine(self):
        layer = QuestionAugmenter([3, 4], embedding_dim=5, num_components=2,
                                  alignment="normalized")
        s = np.random.default_rng(0).normal(size=(6, 7)).astype("float32")
        layer(s)
        e = np.array(layer.teacher_embeddings)
        p = np.einsum("bs,sme->bme", s, np.array(layer.question_projection))
        cos = np.einsum("ke,bme->bkm", e / np.linalg.norm(e, axis=-1, keepdims=True),
                        p / np.linalg.norm(p, axis=-1, keepdims=True))
        expected = np.einsum("bkm,bme->bke", cos, p)
        self.assertAllClose(np.array(layer.question_representations(s)), expected, rtol=1e-5,
                            atol=1e-6)
        # Linear in the scale of s (the dot alignment is cubic).
        self.assertAllClose(np.array(layer.question_representations(10 * s)), 10 * expected,
                            rtol=1e-4, atol=1e-5)

    def test_config_round_trip(self):
        layer = QuestionAugmenter([3], embedding_dim=4, alignment="normalized",
                                  output_initializer="zeros")
        clone = QuestionAugmenter.from_config(layer.get_config())
        self.assertEqual(clone.alignment, "normalized")
        clone.build((None, 5))
        out = clone.question_mlps[0][-1]
        np.testing.assert_array_equal(np.array(out.kernel), 0.0)


@pytest.mark.parametrize("threshold", [0.5])
def test_relative_importance_with_skipping_runs(threshold):
    model = make_variant_model(importance_objective="relative", importance_threshold=threshold)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    x, y = make_data()
    logs = model.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["reg_loss"])
