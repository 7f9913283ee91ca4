import keras
import numpy as np
import pytest
import tensorflow as tf

from diverse_distill import DistillationModel, MLPStudent
from diverse_distill.distill.prefix_cache import PrefixCache
from diverse_distill.teachers.bert_teacher import BertTeacher
from diverse_distill.teachers.t5_teacher import T5Teacher
from tests.test_case import TestCase

N, L = 24, 10


def make_inputs(seed=0):
    rng = np.random.default_rng(seed)
    mask = np.ones((N, L), "int32")
    mask[:, 7:] = rng.integers(0, 2, (N, 3)).cumprod(1)  # some padding at the end
    x = {
        "user_id": rng.integers(0, 6, N).astype("int32"),
        "item_id": rng.integers(0, 9, N).astype("int32"),
        "bert_token_ids": (rng.integers(2, 60, (N, L)) * mask).astype("int32"),
        "bert_padding_mask": mask,
        "t5_token_ids": (rng.integers(2, 90, (N, L)) * mask).astype("int32"),
        "t5_padding_mask": mask,
    }
    return x, rng.uniform(1, 5, (N, 1)).astype("float32")


def make_teachers():
    keras.utils.set_random_seed(3)
    return [
        BertTeacher.tiny(num_layers=4, suffix_mode="query_token", name="bert"),
        T5Teacher.tiny(num_layers=3, name="t5"),
    ]


class PrefixCacheTest(TestCase):
    def test_cached_context_equals_prefix(self):
        x, _ = make_inputs()
        for teacher in make_teachers():
            cache = PrefixCache(teacher, storage_dtype="float32").build(x, batch_size=7)
            self.assertEqual(len(cache.features()[cache.key(0)]), N)
            cached = cache.context({**x, **cache.features()})
            for a, b in zip(tf.nest.flatten(cached), tf.nest.flatten(teacher.prefix(x))):
                self.assertAllClose(a, b, atol=1e-6)
            q = np.random.default_rng(1).normal(size=(N, teacher.injection_dim)).astype("float32")
            h_cached, p_cached = teacher.suffix(q, cached)
            h, p = teacher.suffix(q, teacher.prefix(x))
            self.assertLessEqual(float(np.abs(h_cached - h).max()), 1e-5)
            self.assertLessEqual(float(np.abs(p_cached - p).max()), 1e-5)

    def test_float16_storage_halves_memory_with_small_error(self):
        x, _ = make_inputs()
        teacher = make_teachers()[0]
        exact = PrefixCache(teacher, storage_dtype="float32").build(x)
        half = PrefixCache(teacher, storage_dtype="float16").build(x)
        self.assertLess(half.nbytes, 0.6 * exact.nbytes)
        q = np.ones((N, teacher.injection_dim), "float32")
        h_exact, _ = teacher.suffix(q, exact.context({**x, **exact.features()}))
        h_half, _ = teacher.suffix(q, half.context({**x, **half.features()}))
        self.assertLessEqual(float(np.abs(h_exact - h_half).max()), 1e-2)

    def test_distillation_with_cache_equals_without(self):
        x, y = make_inputs()

        def build(use_cache, threshold):
            keras.utils.set_random_seed(0)
            student = MLPStudent({"user_id": 6, "item_id": 9}, embedding_dims=3, hidden_units=(4,))
            teachers = make_teachers()
            caches = [PrefixCache(t, storage_dtype="float32").build(x) for t in teachers]
            model = DistillationModel(
                student, teachers, importance_threshold=threshold,
                prefix_caches=caches if use_cache else None,
                embedding_dim=4, num_components=2, intermediate_dim=8,
            )
            # Eager: the values are what is compared (graph-mode skipping: SkippingTest),
            # and tracing four tiny-T5/BERT models cost ~20 s.
            model.compile(optimizer=keras.optimizers.Adagrad(0.1), loss="mse", run_eagerly=True)
            features = dict(x)
            if use_cache:
                for cache in caches:
                    features.update(cache.features())
            return model, features

        for threshold in (None, 0.5):
            logs = []
            for use_cache in (False, True):
                model, features = build(use_cache, threshold)
                logs.append(model.train_on_batch(features, y, return_dict=True))
                logs.append(model.train_on_batch(features, y, return_dict=True))
            for key in ("distill_loss", "reg_loss", "task_loss"):
                self.assertAllClose(logs[1][key], logs[3][key], atol=1e-5, msg=key)

    def test_memmapped_lookup_serves_the_right_rows(self):
        x, y = make_inputs()
        teacher = make_teachers()[0]
        cache = PrefixCache(teacher, storage_dtype="float32",
                            directory=self.get_temp_dir()).build(x)
        self.assertIsInstance(cache.leaves[0], np.memmap)
        ds = tf.data.Dataset.from_tensor_slices(({**x, "__row__": np.arange(N)}, y))
        ds = ds.shuffle(N, seed=1).batch(5).map(cache.dataset_lookup())
        reference = teacher.prefix(x)
        for batch, _ in ds:
            rows = batch["__row__"].numpy()
            context = cache.context(batch)
            for a, b in zip(tf.nest.flatten(context), tf.nest.flatten(reference)):
                self.assertAllClose(a, tf.gather(b, rows), atol=1e-6)

    def test_cache_for_unknown_teacher_is_rejected(self):
        x, _ = make_inputs()
        teachers = make_teachers()
        cache = PrefixCache(teachers[0]).build(x)
        student = MLPStudent({"user_id": 6, "item_id": 9}, embedding_dims=3, hidden_units=(4,))
        with pytest.raises(ValueError, match="not a teacher"):
            DistillationModel(student, teachers[1:], prefix_caches=[cache])
