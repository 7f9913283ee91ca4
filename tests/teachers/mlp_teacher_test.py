import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from diverse_distill import MLPRecommender, MLPTeacher
from tests.test_case import TestCase

FEATURES = {"user_id": 5, "item_id": 9}


class MLPTeacherTest(TestCase):
    def setUp(self):
        super().setUp()
        self.model = MLPRecommender(
            FEATURES, embedding_dims={"user_id": 3, "item_id": 4},
            numeric_features={"genres": 2}, hidden_units=(6, 5), dropout=0.5,
        )
        self.x = {
            "user_id": np.array([0, 1, 4], "int32"),
            "item_id": np.array([8, 2, 3], "int32"),
            "genres": np.array([[1, 0], [0, 1], [1, 1]], "float32"),
        }

    def test_dims(self):
        teacher = MLPTeacher(self.model, name="mlp")
        self.assertEqual(teacher.injection_dim, 3 + 4 + 2)
        self.assertEqual(teacher.answer_dim, 5)

    def test_split_equals_unsplit(self):
        teacher = MLPTeacher(self.model, name="mlp")
        context = teacher.prefix(self.x)
        self.assertIsNone(context)
        hidden, prediction = teacher.suffix(teacher.native_question(self.x, context), context)
        self.assertAllClose(prediction, self.model(self.x), atol=1e-6)
        self.assertAllClose(teacher(self.x), self.model(self.x), atol=1e-6)
        self.assertAllClose(hidden, self.model.hidden(self.x), atol=1e-6)

    def test_other_question_changes_answer_and_gradient_reaches_question(self):
        teacher = MLPTeacher(self.model, name="mlp").freeze()
        self.assertEmpty(teacher.trainable_variables)
        question = tf.Variable(np.random.default_rng(0).normal(size=(3, 9)).astype("float32"))
        with tf.GradientTape() as tape:
            hidden, prediction = teacher.suffix(question, None)
            loss = tf.reduce_sum(prediction)
        grad = tape.gradient(loss, question)
        self.assertGreater(float(tf.reduce_max(tf.abs(grad))), 0.0)
        self.assertNotAllClose(prediction, self.model(self.x))

    def test_dropout_never_runs_in_the_suffix(self):
        teacher = MLPTeacher(self.model, name="mlp")
        q = np.ones((3, 9), "float32")
        self.assertAllClose(teacher.suffix(q, None)[0], teacher.suffix(q, None)[0])
        self.assertAllClose(teacher(self.x, training=True), self.model(self.x))

    def test_serialization(self):
        teacher = MLPTeacher(self.model, name="mlp")
        config = json.loads(json.dumps(keras.saving.serialize_keras_object(teacher)))
        revived = keras.saving.deserialize_keras_object(config)
        self.assertEqual(revived.injection_dim, teacher.injection_dim)
        self.assertEqual(revived.model.get_config(), self.model.get_config())

    def test_rejects_other_models(self):
        with pytest.raises(ValueError, match="MLPRecommender"):
            MLPTeacher(keras.Sequential([keras.layers.Dense(1)]))
