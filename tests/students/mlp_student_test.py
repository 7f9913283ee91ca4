import os
import tempfile

import keras
import numpy as np
import pytest

from diverse_distill import MLPStudent
from diverse_distill.students import validate_student
from tests.test_case import TestCase


class MLPStudentTest(TestCase):
    def test_read_outs_compose_to_the_prediction(self):
        student = MLPStudent({"u": 4, "i": 6}, embedding_dims=2, hidden_units=(5, 3))
        x = {"u": np.array([0, 3]), "i": np.array([5, 1])}
        s, h = student.features(x)
        self.assertEqual(tuple(s.shape), (2, student.representation_dim))
        self.assertEqual(student.representation_dim, 4)
        self.assertEqual(student.hidden_dim, 3)
        expected_s = np.concatenate(
            [np.array(student.embeddings["u"].embeddings)[x["u"]],
             np.array(student.embeddings["i"].embeddings)[x["i"]]], -1)
        self.assertAllClose(s, expected_s)
        self.assertAllClose(student(x), student.head(h))
        self.assertAllClose(h, student.hidden(x))
        validate_student(student)

    def test_paper_parameter_counts(self):
        # MovieLens-100K: 943 users, 1682 movies, 768-wide id embeddings.
        counts = {}
        for name, units in {"S": (128, 64), "M": (512, 256), "L": (1024, 512)}.items():
            model = MLPStudent({"user_id": 944, "movie_id": 1683}, embedding_dims=768,
                               hidden_units=units)
            counts[name] = model.count_params()
        self.assertAllInRange([counts["S"] / 1e6], 1.9, 2.4)
        self.assertAllInRange([counts["M"] / 1e6], 2.8, 3.3)
        self.assertAllInRange([counts["L"] / 1e6], 3.8, 4.4)

    def test_keras_save_load(self):
        student = MLPStudent({"u": 4}, embedding_dims=2, numeric_features={"g": 3},
                             hidden_units=(4,))
        x = {"u": np.array([1, 2]), "g": np.ones((2, 3), "float32")}
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "s.keras")
            student.save(path)
            reloaded = keras.saving.load_model(path)
        self.assertAllClose(reloaded(x), student(x))

    def test_bad_config(self):
        with pytest.raises(ValueError, match="at least one feature"):
            MLPStudent({}, embedding_dims=2)
        with pytest.raises(ValueError, match="hidden_units"):
            MLPStudent({"u": 3}, embedding_dims=2, hidden_units=())
