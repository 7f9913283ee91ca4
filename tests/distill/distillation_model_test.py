import os
import tempfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import shared_mirrored_strategy

from diverse_distill import (
    DistillationModel,
    MLPRecommender,
    MLPStudent,
    MLPTeacher,
    QuestionAugmenter,
)
from tests.test_case import TestCase

FEATURES = {"user_id": 7, "item_id": 11}


def make_data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    x = {
        "user_id": rng.integers(0, 7, n).astype("int32"),
        "item_id": rng.integers(0, 11, n).astype("int32"),
    }
    y = rng.uniform(1, 5, size=(n, 1)).astype("float32")
    return x, y


def make_committee(seed=0):
    keras.utils.set_random_seed(seed)
    student = MLPStudent(FEATURES, embedding_dims=3, hidden_units=(5, 4), name="student")
    teachers = [
        MLPTeacher(MLPRecommender(FEATURES, embedding_dims=4, hidden_units=(6,)), name="mlp_m"),
        MLPTeacher(MLPRecommender(FEATURES, embedding_dims=2, hidden_units=(9, 3)), name="mlp_l"),
    ]
    return student, teachers


def make_model(seed=0, **kwargs):
    student, teachers = make_committee(seed)
    kwargs.setdefault("embedding_dim", 5)
    kwargs.setdefault("num_components", 2)
    kwargs.setdefault("intermediate_dim", 0)
    # The hand-computed losses below are the paper's (tests/distill/variants_test.py: the rest).
    kwargs.setdefault("variant", "paper")
    return DistillationModel(student, teachers, **kwargs)


def np_mlp(model, representation):
    h = representation
    for dense in model.tower:
        h = np.maximum(h @ np.array(dense.kernel) + np.array(dense.bias), 0)
    return h, h @ np.array(model.head.kernel) + np.array(model.head.bias)


def np_representation(model, x):
    return np.concatenate(
        [np.array(model.embeddings[n].embeddings)[x[n]] for n in model.categorical_features], -1
    )


def np_keep(w, threshold, threshold_on="importance"):
    """Which (row, teacher) pairs run: `w >= τ`, or `K·w/Σw >= τ` for `"share"`."""
    if threshold is None:
        return np.ones_like(w)
    score = w if threshold_on == "importance" else w.shape[1] * w / w.sum(1, keepdims=True)
    return (score >= threshold).astype("float32")


def np_top_keep(w, fraction):
    """Fixed-size skipping: per teacher, 1.0 on the ceil(fraction * rows) largest w."""
    count = int(np.ceil(fraction * len(w)))
    keep = np.zeros_like(w)
    for k in range(w.shape[1]):
        keep[np.argsort(-w[:, k])[:count], k] = 1.0
    return keep


def np_losses(model, x, y, threshold=None, normalization="sum", threshold_on="importance",
              keep_fraction=None):
    """METHOD.md Eq. 1-3, computed by hand with numpy."""
    student = model.student
    s = np_representation(student, x)
    h_s, y_s = np_mlp(student, s)
    task = ((y_s - y) ** 2)[:, 0]
    questions, w = model.question_augmenter(s)
    w = np.array(w)
    keep = (np_keep(w, threshold, threshold_on) if keep_fraction is None
            else np_top_keep(w, keep_fraction))
    weights = w * keep
    if normalization == "sum":
        weights = weights / np.maximum(weights.sum(1, keepdims=True), 1e-12)
    distill = np.zeros(len(y))
    reg = np.zeros(len(y))
    for k, teacher in enumerate(model.teachers):
        hidden, pred = np_mlp(teacher.model, np.array(questions[k]))
        a = np.array(model.answer_augmenter.project(k, hidden))
        head_a = a @ np.array(student.head.kernel) + np.array(student.head.bias)
        distill += keep[:, k] * w[:, k] * ((a - h_s) ** 2).mean(-1)
        reg += weights[:, k] * (((pred - y) ** 2)[:, 0] + ((head_a - y) ** 2)[:, 0])
    return task.mean(), distill.mean(), reg.mean(), keep


def weights_of(layers):
    return [np.array(v) for layer in layers for v in layer.weights]


class DistillationModelLossTest(TestCase):
    def _check_logged_losses(self, threshold, normalization, alpha=0.7, beta=1.3,
                             threshold_on="importance"):
        model = make_model(
            importance_threshold=threshold, importance_normalization=normalization,
            alpha=alpha, beta=beta, threshold_on=threshold_on,
        )
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
        x, y = make_data()
        task, distill, reg, keep = np_losses(model, x, y, threshold, normalization, threshold_on)
        logs = model.train_on_batch(x, y, return_dict=True)
        self.assertAllClose(logs["task_loss"], task, rtol=1e-5)
        self.assertAllClose(logs["distill_loss"], distill, rtol=1e-5)
        self.assertAllClose(logs["reg_loss"], reg, rtol=1e-5)
        self.assertAllClose(logs["loss"], task + alpha * distill + beta * reg, rtol=1e-5)
        for k, name in enumerate(model.teacher_names):
            self.assertAllClose(logs[f"pass_fraction_{name}"], keep[:, k].mean())
        return keep

    def test_losses_match_numpy_all_teachers(self):
        self._check_logged_losses(threshold=None, normalization="sum")

    def test_losses_match_numpy_raw_importance(self):
        self._check_logged_losses(threshold=None, normalization="none")

    def test_losses_match_numpy_with_skipping(self):
        model = make_model()
        x, _ = make_data()
        _, w = model.question_augmenter(np_representation(model.student, x))
        threshold = float(np.median(np.array(w)))  # about half the pairs run
        keep = self._check_logged_losses(threshold=threshold, normalization="sum")
        self.assertGreater(keep.mean(), 0.0)
        self.assertLess(keep.mean(), 1.0)

    def test_losses_match_numpy_with_share_skipping(self):
        model = make_model()
        x, _ = make_data()
        _, w = model.question_augmenter(np_representation(model.student, x))
        w = np.array(w)
        share = 2 * w / w.sum(1, keepdims=True)  # K = 2 teachers; equal importances give 1
        threshold = float(np.median(share))
        keep = self._check_logged_losses(threshold=threshold, normalization="sum",
                                         threshold_on="share")
        self.assertAllClose(keep, (share >= threshold).astype("float32"))
        self.assertGreater(keep.mean(), 0.0)
        self.assertLess(keep.mean(), 1.0)
        # The share is scale-free: halving every importance keeps the same pairs.
        sharing = make_model(importance_threshold=threshold, threshold_on="share")
        self.assertAllClose(np.asarray(sharing.kept(w)), keep)
        self.assertAllClose(np.asarray(sharing.kept(w / 2)), keep)

    def test_evaluate_reports_the_student_alone(self):
        model = make_model()
        model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
        x, y = make_data()
        result = model.evaluate(x, y, verbose=0, return_dict=True)
        y_s = np.array(model.student(x))
        self.assertAllClose(result["loss"], ((y_s - y) ** 2).mean(), rtol=1e-5)
        self.assertAllClose(result["mae"], np.abs(y_s - y).mean(), rtol=1e-5)
        self.assertNotIn("distill_loss", result)
        self.assertAllClose(model.predict(x, verbose=0), y_s)


class GradientRoutingTest(TestCase):
    def test_teachers_frozen_bit_for_bit(self):
        model = make_model(alpha=1.0, beta=1.0)
        model.compile(optimizer=keras.optimizers.Adagrad(0.5), loss="mse")
        for teacher in model.teachers:
            self.assertEmpty(teacher.trainable_variables)
        before = weights_of(model.teachers)
        x, y = make_data()
        model.fit(x, y, batch_size=8, epochs=2, verbose=0)
        for b, a in zip(before, weights_of(model.teachers)):
            self.assertAllEqual(b, a)

    def test_alpha_zero_equals_plain_student_step(self):
        model = make_model(alpha=0.0, beta=2.0)
        plain = MLPStudent.from_config(model.student.get_config())
        plain.set_weights(model.student.get_weights())
        model.compile(optimizer=keras.optimizers.Adagrad(0.3), loss="mse")
        plain.compile(optimizer=keras.optimizers.Adagrad(0.3), loss="mse")
        module_before = weights_of([model.question_augmenter, model.answer_augmenter])
        x, y = make_data()
        for _ in range(3):
            model.train_on_batch(x, y)
            plain.train_on_batch(x, y)
        for a, b in zip(model.student.get_weights(), plain.get_weights()):
            self.assertAllClose(a, b, atol=1e-6, rtol=0)
        module_after = weights_of([model.question_augmenter, model.answer_augmenter])
        self.assertTrue(any(not np.array_equal(b, a) for b, a in zip(module_before, module_after)))

    def test_beta_zero_leaves_module_unchanged(self):
        model = make_model(alpha=1.0, beta=0.0)
        model.compile(optimizer=keras.optimizers.Adagrad(0.3), loss="mse")
        module_before = weights_of([model.question_augmenter, model.answer_augmenter])
        student_before = model.student.get_weights()
        x, y = make_data()
        model.fit(x, y, batch_size=8, epochs=1, verbose=0)
        for b, a in zip(module_before, weights_of([model.question_augmenter, model.answer_augmenter])):
            self.assertAllEqual(b, a)
        self.assertTrue(
            any(not np.array_equal(b, a) for b, a in zip(student_before, model.student.get_weights()))
        )

    def test_distillation_changes_the_student_step(self):
        # alpha > 0 must move the student differently from a plain step.
        model = make_model(alpha=5.0, beta=1.0)
        plain = MLPStudent.from_config(model.student.get_config())
        plain.set_weights(model.student.get_weights())
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        plain.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        x, y = make_data()
        model.train_on_batch(x, y)
        plain.train_on_batch(x, y)
        tower = [np.array(w) for w in model.student.tower[0].weights]
        plain_tower = [np.array(w) for w in plain.tower[0].weights]
        self.assertGreater(np.abs(tower[0] - plain_tower[0]).max(), 1e-6)

    def test_optimizers_hold_their_own_variables(self):
        model = make_model()
        model.compile(optimizer="adagrad", loss="mse")
        self.assertIsNot(model.optimizer, model.module_optimizer)
        self.assertEqual(model.module_optimizer.get_config()["learning_rate"],
                         model.optimizer.get_config()["learning_rate"])
        student_ids = {id(v) for v in model.student.trainable_variables}
        module_ids = {id(v) for v in model.module_variables}
        self.assertEmpty(student_ids & module_ids)
        self.assertLen(model.optimizer._trainable_variables, len(student_ids))
        self.assertLen(model.module_optimizer._trainable_variables, len(module_ids))


class CountingTeacher(MLPTeacher):
    """Records how many rows each suffix call receives (run eagerly)."""

    def __init__(self, model, **kwargs):
        super().__init__(model, **kwargs)
        self.rows_seen = []

    def suffix(self, question, context):
        self.rows_seen.append(int(question.shape[0]))
        return super().suffix(question, context)


class SkippingTest(TestCase):
    def _model(self, threshold):
        student, teachers = make_committee()
        counting = [CountingTeacher(t.model, name=t.name) for t in teachers]
        model = DistillationModel(
            student, counting, importance_threshold=threshold,
            embedding_dim=5, num_components=2, intermediate_dim=0,
        )
        model.compile(optimizer="sgd", loss="mse", run_eagerly=True)
        return model

    def test_rows_counted_per_teacher(self):
        x, y = make_data(n=40)
        probe = self._model(None)
        _, w = probe.question_augmenter(np_representation(probe.student, x))
        threshold = float(np.quantile(np.array(w), 0.4))
        model = self._model(threshold)
        _, w = model.question_augmenter(np_representation(model.student, x))
        expected = (np.array(w) >= threshold).sum(0)
        model.train_on_batch(x, y)
        self.assertEqual([t.rows_seen for t in model.teachers], [[int(e)] for e in expected])
        self.assertLess(sum(expected), 2 * 40)

    def test_share_threshold_never_skips_a_lone_teacher(self):
        student, teachers = make_committee()
        lone = CountingTeacher(teachers[0].model, name="mlp_m")
        model = DistillationModel(student, [lone], importance_threshold=1.0, threshold_on="share",
                                  embedding_dim=5, num_components=2, intermediate_dim=0)
        model.compile(optimizer="sgd", loss="mse", run_eagerly=True)
        x, y = make_data(n=24)
        _, w = model.question_augmenter(np_representation(model.student, x))
        self.assertLess(float(np.max(w)), 1.0)  # the raw threshold would skip every row
        logs = model.train_on_batch(x, y, return_dict=True)
        self.assertEqual(lone.rows_seen, [24])
        self.assertAllClose(logs["pass_fraction_mlp_m"], 1.0)

    def test_threshold_zero_runs_every_row(self):
        x, y = make_data(n=24)
        model = self._model(0.0)
        model.train_on_batch(x, y)
        self.assertEqual([t.rows_seen for t in model.teachers], [[24], [24]])

    def test_threshold_one_adds_nothing_and_is_the_plain_student(self):
        x, y = make_data(n=24)
        model = self._model(1.0)
        plain = MLPStudent.from_config(model.student.get_config())
        plain.set_weights(model.student.get_weights())
        plain.compile(optimizer="sgd", loss="mse")
        logs = model.train_on_batch(x, y, return_dict=True)
        plain.train_on_batch(x, y)
        # No row kept: each teacher runs on one stand-in row, at zero weight.
        self.assertEqual([t.rows_seen for t in model.teachers], [[1], [1]])
        self.assertEqual(logs["distill_loss"], 0.0)
        self.assertEqual(logs["reg_loss"], 0.0)
        for a, b in zip(model.student.get_weights(), plain.get_weights()):
            self.assertAllClose(a, b, atol=1e-7, rtol=0)

    def test_warmup_runs_every_row_before_skipping_starts(self):
        x, y = make_data(n=16)
        student, teachers = make_committee()
        counting = [CountingTeacher(t.model, name=t.name) for t in teachers]
        model = DistillationModel(
            student, counting, importance_threshold=1.0, importance_warmup_steps=2,
            embedding_dim=5, num_components=2, intermediate_dim=0,
        )
        model.compile(optimizer="sgd", loss="mse", run_eagerly=True)
        for _ in range(3):
            model.train_on_batch(x, y)
        # Step 3 keeps no row: one stand-in row at zero weight.
        self.assertEqual([t.rows_seen for t in model.teachers], [[16, 16, 1], [16, 16, 1]])
        with pytest.raises(ValueError, match="importance_warmup_steps"):
            DistillationModel(student, teachers, importance_warmup_steps=-1)

    def test_a_batch_with_no_kept_row_trains_and_adds_nothing_in_graph_mode(self):
        from diverse_distill.teachers.t5_teacher import T5Teacher

        x, y = make_data(n=8)
        rng = np.random.default_rng(0)
        x["t5_token_ids"] = rng.integers(2, 90, (8, 6)).astype("int32")
        x["t5_padding_mask"] = np.ones((8, 6), "int32")
        student, _ = make_committee()
        model = DistillationModel(student, [T5Teacher.tiny(num_layers=2, name="t5")],
                                  importance_threshold=1.0, embedding_dim=5,
                                  num_components=2, intermediate_dim=0)
        model.compile(optimizer="sgd", loss="mse")  # a tf.function, no run_eagerly
        logs = model.train_on_batch(x, y, return_dict=True)
        self.assertEqual(logs["pass_fraction_t5"], 0.0)
        self.assertEqual(logs["reg_loss"], 0.0)
        self.assertEqual(logs["distill_loss"], 0.0)  # the stand-in row has zero weight

    def test_fixed_size_skipping_runs_the_top_rows_and_matches_numpy(self):
        x, y = make_data(n=40)
        student, teachers = make_committee()
        counting = [CountingTeacher(t.model, name=t.name) for t in teachers]
        model = DistillationModel(student, counting, keep_fraction=0.3, variant="paper",
                                  embedding_dim=5, num_components=2, intermediate_dim=0)
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse", run_eagerly=True)
        task, distill, reg, keep = np_losses(model, x, y, keep_fraction=0.3)
        self.assertAllClose(keep.sum(0), [12, 12])  # ceil(0.3 * 40) rows per teacher
        self.assertAllClose(np.asarray(model.kept(model.question_augmenter(
            np_representation(model.student, x))[1])), keep)
        logs = model.train_on_batch(x, y, return_dict=True)
        self.assertEqual([t.rows_seen for t in model.teachers], [[12], [12]])
        self.assertAllClose(logs["distill_loss"], distill, rtol=1e-5)
        self.assertAllClose(logs["reg_loss"], reg, rtol=1e-5)
        self.assertAllClose(logs["pass_fraction_mlp_m"], 0.3)

    def test_fixed_size_skipping_compiles_under_xla_to_the_same_step(self):
        x, y = make_data(n=32)
        results = []
        for jit_compile in (False, True):
            model = make_model(keep_fraction=0.5)
            model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse",
                          jit_compile=jit_compile)
            logs = model.train_on_batch(x, y, return_dict=True)
            results.append((logs, model.student.get_weights()))
        (plain, plain_weights), (xla, xla_weights) = results
        for key in ("task_loss", "distill_loss", "reg_loss", "pass_fraction_mlp_l"):
            self.assertAllClose(plain[key], xla[key], rtol=1e-5, atol=1e-6)
        for a, b in zip(plain_weights, xla_weights):
            self.assertAllClose(a, b, rtol=1e-5, atol=1e-6)

    def test_fixed_size_skipping_refuses_bad_fractions_and_a_second_rule(self):
        for kwargs in ({"keep_fraction": 0.0}, {"keep_fraction": 1.5},
                       {"keep_fraction": 0.5, "importance_threshold": 0.5},
                       {"keep_fraction": 0.5, "importance_warmup_steps": 10}):
            with pytest.raises(ValueError, match="keep_fraction"):
                make_model(**kwargs)

    def test_skipping_refuses_xla(self):
        model = make_model(importance_threshold=0.5)
        with pytest.raises(ValueError, match="XLA"):
            model.compile(optimizer="sgd", loss="mse", jit_compile=True)


class ExportTest(TestCase):
    def test_export_round_trip_holds_only_the_student(self):
        model = make_model()
        model.compile(optimizer="adagrad", loss="mse")
        x, y = make_data()
        model.fit(x, y, batch_size=8, epochs=1, verbose=0)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "student")
            model.export_student(path)
            reloaded = tf.saved_model.load(path)
            served = reloaded.serve({k: tf.constant(v) for k, v in x.items()})
            signature = reloaded.signatures["serving_default"]
            by_signature = signature(**{k: tf.constant(v) for k, v in x.items()})
        self.assertLessEqual(np.abs(np.array(served) - np.array(model.student(x))).max(), 1e-6)
        self.assertAllClose(list(by_signature.values())[0], served, atol=1e-6)
        student_shapes = sorted(tuple(v.shape) for v in model.student.variables)
        self.assertEqual(sorted(tuple(v.shape) for v in reloaded.variables), student_shapes)
        self.assertLen(reloaded.variables, len(model.student.variables))
        for v in reloaded.variables:
            self.assertNotRegex(v.name, "mlp_m|mlp_l|augmenter|teacher|importance|question")


class DistributionTest(TestCase):
    def _run(self, strategy, threshold):
        x, y = make_data(n=32, seed=3)
        with strategy.scope():
            model = make_model(seed=5, importance_threshold=threshold, alpha=0.5, beta=1.0)
            model.compile(optimizer=keras.optimizers.Adagrad(0.1), loss="mse")
        ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
        history = model.fit(ds, epochs=3, verbose=0).history
        return history, model.student.get_weights()

    def test_mirrored_equals_one_device(self):
        devices = tf.config.list_logical_devices("CPU")
        self.assertGreaterEqual(len(devices), 2, "conftest should create 2 logical CPUs")
        for threshold in (None, 0.5):
            one, one_weights = self._run(tf.distribute.OneDeviceStrategy("/cpu:0"), threshold)
            two, two_weights = self._run(
                shared_mirrored_strategy(), threshold
            )
            for key in ("loss", "task_loss", "distill_loss", "reg_loss"):
                self.assertAllClose(one[key], two[key], atol=1e-5, rtol=0, msg=key)
            for a, b in zip(one_weights, two_weights):
                self.assertAllClose(a, b, atol=1e-5, rtol=0)


class BadInputTest(TestCase):
    def test_clear_errors(self):
        student, teachers = make_committee()
        with pytest.raises(ValueError, match="`teachers` is empty"):
            DistillationModel(student, [])
        with pytest.raises(ValueError, match="`alpha` must be >= 0"):
            DistillationModel(student, teachers, alpha=-0.1)
        with pytest.raises(ValueError, match="`beta` must be >= 0"):
            DistillationModel(student, teachers, beta=-1)
        with pytest.raises(ValueError, match=r"importance_threshold.*\[0, 1\]"):
            DistillationModel(student, teachers, importance_threshold=1.5)
        with pytest.raises(ValueError, match=r"importance_threshold.*\[0, 2\]"):
            DistillationModel(student, teachers, importance_threshold=2.5, threshold_on="share")
        DistillationModel(student, teachers, importance_threshold=1.5, threshold_on="share")
        with pytest.raises(ValueError, match="threshold_on"):
            DistillationModel(student, teachers, threshold_on="ratio")
        with pytest.raises(ValueError, match="importance_normalization"):
            DistillationModel(student, teachers, importance_normalization="softmax")
        plain = keras.Sequential([keras.layers.Dense(1)])
        with pytest.raises(ValueError, match="representation"):
            DistillationModel(plain, teachers)
        wrong_q = QuestionAugmenter(injection_dims=[8, 99])
        with pytest.raises(ValueError, match="injection widths"):
            DistillationModel(student, teachers, question_augmenter=wrong_q)
        with pytest.raises(ValueError, match="unique"):
            DistillationModel(student, [teachers[0], teachers[0]])
        with pytest.raises(ValueError, match="split-teacher contract"):
            DistillationModel(student, [keras.Sequential([keras.layers.Dense(1)])])
        model = DistillationModel(student, teachers)
        with pytest.raises(ValueError, match="task `loss`"):
            model.compile(optimizer="sgd", loss=None)
