import os
import tempfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from diverse_distill import DistillationModel
from diverse_distill.baselines import (
    AdaptiveEnsembleDistillation,
    available_methods,
    get_method,
    register_method,
)
from tests.baselines.baseline_helpers import make_data, make_student, make_teachers, weights_of
from tests.test_case import TestCase

SINGLE_TEACHER = ("ld", "fd", "sckd")
METHODS = ("ld", "fd", "sckd", "mt", "amtml", "autoskd", "aekd", "diverse_distill")
EXTRA_ARGS = {"diverse_distill": {"embedding_dim": 4, "num_components": 2, "intermediate_dim": 0}}


def build(name, teachers=None):
    student = make_student()
    teachers = teachers or make_teachers(num=2)
    if name in SINGLE_TEACHER:
        teachers = teachers[:1]
    return get_method(name)(student, teachers, alpha=0.5, **EXTRA_ARGS.get(name, {}))


class RegistryTest(TestCase):
    def test_every_method_is_registered(self):
        self.assertContainsSubset(METHODS, available_methods())
        self.assertIs(get_method("diverse_distill"), DistillationModel)
        self.assertIs(get_method("AEKD"), AdaptiveEnsembleDistillation)

    def test_unknown_name_lists_the_known_ones(self):
        with pytest.raises(ValueError, match="Unknown distillation method 'kd'") as error:
            get_method("kd")
        for name in METHODS:
            self.assertIn(name, str(error.value))

    def test_a_name_cannot_be_taken_twice(self):
        with pytest.raises(ValueError, match="already registered"):
            register_method("ld")(type("Other", (keras.Model,), {}))

    def test_one_fit_step_per_method_leaves_teachers_bit_identical(self):
        x, y = make_data(n=16)
        for name in METHODS:
            model = build(name)
            model.compile(  # eager: the graph path is covered by the distribution test
                optimizer=keras.optimizers.Adagrad(0.5),
                loss="mse",
                metrics=["mae"],
                run_eagerly=True,
            )
            for teacher in model.teachers:
                self.assertEmpty(teacher.trainable_variables, name)
            teachers_before = weights_of(model.teachers)
            student_before = model.student.get_weights()
            history = model.fit(x, y, batch_size=16, epochs=1, verbose=0).history
            for key in ("loss", "task_loss", "distill_loss", "mae"):
                self.assertTrue(np.isfinite(history[key][0]), (name, key))
            for b, a in zip(teachers_before, weights_of(model.teachers)):
                self.assertAllEqual(b, a, msg=name)
            student_after = model.student.get_weights()
            moved = [not np.array_equal(b, a) for b, a in zip(student_before, student_after)]
            self.assertTrue(any(moved), name)
            result = model.evaluate(x, y, verbose=0, return_dict=True)
            self.assertAllClose(result["loss"], result["task_loss"], msg=name)
            self.assertNotIn("distill_loss", result, name)

    def test_single_teacher_methods_refuse_a_committee(self):
        for name in SINGLE_TEACHER:
            with pytest.raises(ValueError, match="single teacher"):
                get_method(name)(make_student(), make_teachers(num=2))

    def test_export_student(self):
        model = build("aekd")
        model.compile(optimizer="adagrad", loss="mse")
        x, y = make_data(n=16)
        model.fit(x, y, batch_size=16, epochs=1, verbose=0)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "student")
            model.export_student(path)
            reloaded = tf.saved_model.load(path)
            served = reloaded.serve({k: tf.constant(v) for k, v in x.items()})
        self.assertAllClose(served, model.student(x), atol=1e-6)
        self.assertEqual(
            sorted(tuple(v.shape) for v in reloaded.variables),
            sorted(tuple(v.shape) for v in model.student.variables),
        )
