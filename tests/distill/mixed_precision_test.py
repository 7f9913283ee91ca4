"""DistillationModel under `mixed_bfloat16`: float32 losses, close to a float32 step."""

import keras
import numpy as np

from diverse_distill import DistillationModel, MLPStudent
from diverse_distill.distill.prefix_cache import PrefixCache
from diverse_distill.models.mlp_recommender import MLPRecommender
from diverse_distill.teachers.bert_teacher import BertTeacher
from diverse_distill.teachers.mlp_teacher import MLPTeacher
from diverse_distill.teachers.t5_teacher import T5Teacher
from tests.test_case import TestCase

N, L = 16, 10
LOSSES = ("task_loss", "distill_loss", "reg_loss", "loss")
# bfloat16 keeps 8 significant bits (relative rounding 2^-9 per op); through the
# tiny teachers, the augmenters and the squared errors the losses of one step
# stay within 1 % of float32 (measured: at most 0.2 %, the all-bf16 distill loss).
RTOL = 1e-2


def make_inputs():
    rng = np.random.default_rng(0)
    x = {
        "user_id": rng.integers(0, 6, N).astype("int32"),
        "item_id": rng.integers(0, 9, N).astype("int32"),
        "t5_token_ids": rng.integers(2, 90, (N, L)).astype("int32"),
        "t5_padding_mask": np.ones((N, L), "int32"),
        "bert_token_ids": rng.integers(2, 60, (N, L)).astype("int32"),
        "bert_padding_mask": np.ones((N, L), "int32"),
    }
    return x, rng.uniform(1, 5, (N, 1)).astype("float32")


def build(teacher_policy, student_policy=None, threshold=None, weights=None, use_cache=False):
    """A tiny committee; teachers built under `teacher_policy`, the rest under `student_policy`."""
    try:
        keras.utils.set_random_seed(0)
        keras.mixed_precision.set_global_policy(student_policy or teacher_policy)
        vocab = {"user_id": 6, "item_id": 9}
        student = MLPStudent(vocab, embedding_dims=4, hidden_units=(8, 4))
        keras.mixed_precision.set_global_policy(teacher_policy)
        teachers = [
            MLPTeacher(MLPRecommender(vocab, embedding_dims=6, hidden_units=(16, 8)), name="mlp"),
            T5Teacher.tiny(num_layers=2, name="t5", initial_prediction=3.0),
            BertTeacher.tiny(num_layers=2, suffix_mode="query_token", name="bert",
                             initial_prediction=3.0),
        ]
        keras.mixed_precision.set_global_policy(student_policy or teacher_policy)
        model = DistillationModel(student, teachers, importance_threshold=threshold,
                                  embedding_dim=8, num_components=2, intermediate_dim=16)
        model.compile(optimizer=keras.optimizers.Adagrad(0.05), loss="mse")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    if weights is not None:
        model.set_weights(weights)
    x, y = make_inputs()
    if use_cache:
        caches = [PrefixCache(t, storage_dtype="float16").build(x) for t in model.teachers[1:]]
        model.prefix_caches = {c.name: c for c in caches}
        for cache in caches:
            x.update(cache.features())
    return model, x, y


class MixedPrecisionTest(TestCase):
    def tearDown(self):
        keras.mixed_precision.set_global_policy("float32")
        super().tearDown()

    def test_bf16_losses_are_float32_and_close_to_float32(self):
        exact, x, y = build("float32")
        weights = exact.get_weights()
        # All in bf16, and bf16 teachers with a float32 student (what --mixed_precision=bf16 runs).
        for student_policy in ("mixed_bfloat16", "float32"):
            mixed, _, _ = build("mixed_bfloat16", student_policy, weights=weights)
            self.assertEqual(mixed.teachers[1].backbone.compute_dtype, "bfloat16")
            self.assertEqual(mixed.student.compute_dtype, student_policy.replace("mixed_", ""))
            losses = mixed.compute_losses(x, y)
            for key in ("y_pred", "task_loss", "distill_loss", "reg_loss", "importance"):
                self.assertEqual(losses[key].dtype.name, "float32", key)
            logs_exact = exact.compute_losses(x, y)
            for key in ("task_loss", "distill_loss", "reg_loss"):
                value = float(losses[key])
                self.assertTrue(np.isfinite(value), key)
                self.assertAllClose(value, float(logs_exact[key]), rtol=RTOL, atol=1e-4,
                                    msg=f"{key} ({student_policy} student)")
            logs = mixed.train_on_batch(x, y, return_dict=True)
            for key in LOSSES:
                self.assertTrue(np.isfinite(logs[key]), key)

    def test_bf16_with_skipping_and_prefix_cache_is_finite(self):
        model, x, y = build("mixed_bfloat16", threshold=0.5, use_cache=True)
        for cache in model.prefix_caches.values():  # bfloat16 prefixes stored as float16
            self.assertTrue(all(leaf.dtype != np.dtype("float32") for leaf in cache.leaves))
            self.assertIn(np.dtype("float16"), [leaf.dtype for leaf in cache.leaves])
        # Spread the importances so that about half of the rows of each teacher are skipped.
        rng = np.random.default_rng(1)
        for readout in model.question_augmenter.importance_readouts:
            readout.kernel.assign(rng.normal(0, 2.0, readout.kernel.shape).astype("float32"))
            readout.bias.assign(np.zeros(readout.bias.shape, "float32"))
        logs = model.train_on_batch(x, y, return_dict=True)
        fractions = [logs[f"pass_fraction_{n}"] for n in model.teacher_names]
        self.assertTrue(any(0 < f < 1 for f in fractions), fractions)
        for key in LOSSES:
            self.assertTrue(np.isfinite(logs[key]), key)
