"""TeacherOutputCache: a frozen teacher's outputs computed once, read by the baselines."""

import keras
import numpy as np
import pytest

from diverse_distill.baselines import (
    FeatureDistillation,
    LogitDistillation,
    MultiTeacherDistillation,
)
from diverse_distill.distill.prefix_cache import PrefixCache
from diverse_distill.distill.teacher_output_cache import TeacherOutputCache
from diverse_distill.teachers.bert_teacher import BertTeacher
from tests.baselines.baseline_helpers import make_data, make_student, make_teachers
from tests.test_case import TestCase


def _bert(seed=0):
    keras.utils.set_random_seed(seed)
    return BertTeacher.tiny(num_layers=2, dropout=0.0, name="bert").freeze()


def _tokens(n=12, length=8, seed=0):
    rng = np.random.default_rng(seed)
    mask = np.ones((n, length), "int32")
    mask[:, length - 2:] = rng.integers(0, 2, (n, 2))  # some padding
    return {"bert_token_ids": rng.integers(1, 64, (n, length)).astype("int32"),
            "bert_padding_mask": mask}


def _with_tokens(x, n):
    return {**x, **_tokens(n)}


class TeacherOutputCacheTest(TestCase):
    def test_outputs_equal_the_teachers_own_forward_pass(self):
        teacher = _bert()
        x = _tokens()
        cache = TeacherOutputCache(teacher).build(x, batch_size=5)
        hidden, prediction = cache.outputs({**x, **cache.features()})
        context = teacher.prefix(x)
        want_hidden, want_prediction = teacher.suffix(teacher.native_question(x, context), context)
        self.assertAllClose(hidden, want_hidden, atol=1e-5, rtol=0)
        self.assertAllClose(prediction, want_prediction, atol=1e-5, rtol=0)
        self.assertAllClose(prediction, teacher(x), atol=1e-5, rtol=0)  # the unsplit model
        self.assertEqual(cache.keys, ["bert/output/0", "bert/output/1"])

    def test_built_from_a_prefix_cache_without_running_the_prefix(self):
        teacher = _bert()
        x = _tokens()
        prefix_cache = PrefixCache(teacher, storage_dtype="float32").build(x)
        reference = TeacherOutputCache(teacher).build(x)
        calls = []
        original = teacher.prefix
        teacher.prefix = lambda *a, **k: calls.append(1) or original(*a, **k)
        cache = TeacherOutputCache(teacher, prefix_cache=prefix_cache)
        cache.build({**x, **prefix_cache.features()}, batch_size=4)
        self.assertEqual(calls, [])
        for got, want in zip(cache.leaves, reference.leaves):
            self.assertAllClose(got, want, atol=1e-5, rtol=0)

    def test_disk_cache_is_reopened_not_rebuilt(self):
        teacher = _bert()
        x = _tokens()
        directory = self.get_temp_dir()
        first = TeacherOutputCache(teacher, directory=directory).open_or_build(x)
        self.assertGreater(first.seconds, 0.0)
        again = TeacherOutputCache(teacher, directory=directory).open_or_build(x)
        self.assertEqual(again.seconds, 0.0)
        for a, b in zip(first.leaves, again.leaves):
            np.testing.assert_array_equal(a, b)

    def test_needs_a_split_teacher(self):
        with pytest.raises(ValueError, match="split teacher"):
            TeacherOutputCache(keras.Sequential([keras.layers.Dense(1)]))


class BaselinesReadTheCacheTest(TestCase):
    """With the cache, a baseline's step equals the uncached one and never runs the teacher."""

    def _pair(self, cls, **kwargs):
        """(uncached, cached) models with identical weights, and a batch carrying the cache."""
        teachers = [*make_teachers(num=1), _bert()]
        x, y = make_data(n=12)
        x = _with_tokens(x, 12)
        cache = TeacherOutputCache(teachers[1]).build(x)
        models = []
        for caches in (None, [cache]):
            model = cls(make_student(), teachers, output_caches=caches, **kwargs)
            model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
            models.append(model)
        return models, {**x, **cache.features()}, y, teachers[1]

    def _check(self, cls, **kwargs):
        (plain, cached), x, y, lm = self._pair(cls, **kwargs)
        want = plain.train_on_batch(x, y, return_dict=True)
        lm.prefix = lm.suffix = lm.call = _forbidden  # any run of the teacher fails
        got = cached.train_on_batch(x, y, return_dict=True)
        for name in ("loss", "task_loss", "distill_loss"):
            self.assertAllClose(got[name], want[name], atol=1e-5, rtol=1e-5)
        for a, b in zip(cached.student.get_weights(), plain.student.get_weights()):
            self.assertAllClose(a, b, atol=1e-5, rtol=1e-5)

    def test_prediction_distillation(self):
        self._check(LogitDistillation, teacher_index=1)

    def test_feature_distillation(self):
        self._check(FeatureDistillation, teacher_index=1)

    def test_multi_teacher_average(self):
        self._check(MultiTeacherDistillation)

    def test_the_forbidden_teacher_fails_when_it_runs(self):
        # The check `_check` relies on: a model that does run the teacher fails.
        (plain, _), x, y, lm = self._pair(LogitDistillation, teacher_index=1)
        lm.prefix = lm.suffix = lm.call = _forbidden
        with pytest.raises(AssertionError, match="outputs are cached"):
            plain.train_on_batch(x, y)

    def test_a_batch_without_the_cache_runs_the_teacher(self):
        (plain, cached), x, y, _ = self._pair(LogitDistillation, teacher_index=1)
        bare = {k: v for k, v in x.items() if "/output/" not in k}
        want = plain.train_on_batch(bare, y, return_dict=True)
        got = cached.train_on_batch(bare, y, return_dict=True)
        self.assertAllClose(got["distill_loss"], want["distill_loss"], atol=1e-6, rtol=1e-6)

    def test_a_cache_of_no_teacher_is_an_error(self):
        cache = TeacherOutputCache(_bert()).build(_tokens())
        with pytest.raises(ValueError, match="match no teacher"):
            LogitDistillation(make_student(), make_teachers(num=1), output_caches=[cache])


def _forbidden(*args, **kwargs):
    raise AssertionError("the teacher ran although its outputs are cached")
