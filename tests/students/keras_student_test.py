import json
import os
import tempfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from diverse_distill import DistillationModel, KerasStudent, KerasTeacher, export_student
from diverse_distill.students import validate_student
from tests.test_case import TestCase

RNG = np.random.default_rng(0)


def dict_input_student():
    """Ids and a numeric feature; the representation is a rank-3 tensor."""
    user = keras.Input((), dtype="int32", name="user_id")
    genres = keras.Input((3,), name="genres")
    user_vec = keras.layers.Embedding(10, 4, name="user_embedding")(user)
    stacked = keras.layers.Reshape((2, 2), name="stacked")(user_vec)
    merged = keras.layers.Concatenate(name="merged")(
        [keras.layers.Flatten(name="flat")(stacked), genres])
    hidden = keras.layers.Dense(5, activation="relu", name="hidden")(merged)
    dropped = keras.layers.Dropout(0.3, name="dropout")(hidden)
    outputs = keras.layers.Dense(1, name="score")(dropped)
    model = keras.Model({"user_id": user, "genres": genres}, outputs, name="student")
    x = {"user_id": RNG.integers(0, 10, 4).astype("int32"),
         "genres": RNG.normal(size=(4, 3)).astype("float32")}
    return model, x


class KerasStudentTest(TestCase):
    def test_read_outs_are_the_models_sub_outputs(self):
        model, x = dict_input_student()
        student = KerasStudent(model, representation_layer="stacked", hidden_layer="hidden")
        validate_student(student)
        self.assertEqual((student.representation_dim, student.hidden_dim), (4, 5))
        s, h = student.features(x)
        read_out = keras.Model(model.inputs, [model.get_layer("stacked").output,
                                              model.get_layer("hidden").output])
        expected_s, expected_h = read_out(x)
        self.assertAllClose(s, np.reshape(expected_s, (4, 4)), atol=1e-6)
        self.assertAllClose(h, expected_h, atol=1e-6)
        self.assertAllClose(student.representation(x), s, atol=1e-6)
        self.assertAllClose(student.hidden(x), h, atol=1e-6)
        self.assertAllClose(student.head(h), model(x), atol=1e-6)
        self.assertAllClose(student(x), model(x), atol=1e-6)
        self.assertEqual(len(student.trainable_variables), len(model.trainable_variables))

    def test_sequential_model(self):
        model = keras.Sequential([
            keras.Input((5,)),
            keras.layers.Dense(6, activation="relu", name="first"),
            keras.layers.Dense(3, activation="relu", name="last"),
            keras.layers.Dense(1, name="score"),
        ])
        student = KerasStudent(model, representation_layer="first", hidden_layer="last")
        x = RNG.normal(size=(2, 5)).astype("float32")
        self.assertAllClose(student.head(student.hidden(x)), model(x), atol=1e-6)

    def test_export_writes_the_plain_model(self):
        model, x = dict_input_student()
        student = KerasStudent(model, representation_layer="stacked", hidden_layer="hidden")
        with tempfile.TemporaryDirectory() as tmp:
            path = export_student(student, os.path.join(tmp, "student"))
            reloaded = tf.saved_model.load(path)
            served = reloaded.serve({k: tf.constant(v) for k, v in x.items()})
        self.assertAllClose(served, model(x), atol=1e-5)

    def test_distillation_trains_the_wrapped_model(self):
        model, x = dict_input_student()
        student = KerasStudent(model, representation_layer="merged", hidden_layer="hidden")
        inputs = keras.Input((), dtype="int32", name="user_id")
        genres = keras.Input((3,), name="genres")
        tower = keras.layers.Dense(8, activation="relu", name="tower")(keras.layers.Concatenate()(
            [keras.layers.Embedding(10, 3)(inputs), genres]))
        answer = keras.layers.Dense(4, activation="relu", name="answer")(tower)
        teacher_model = keras.Model({"user_id": inputs, "genres": genres},
                                    keras.layers.Dense(1)(answer))
        teacher = KerasTeacher(teacher_model, injection_layer="tower", answer_layer="answer")
        distiller = DistillationModel(student, [teacher], intermediate_dim=8)
        distiller.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        y = RNG.uniform(1, 5, (4, 1)).astype("float32")
        before = [np.array(w) for w in model.trainable_weights]
        logs = distiller.train_on_batch(x, y, return_dict=True)
        self.assertTrue(np.isfinite(logs["loss"]))
        self.assertUnmoved(model.trainable_weights, before, [])
        self.assertAllClose(distiller(x), model(x), atol=1e-6)

    def test_serialization(self):
        model, x = dict_input_student()
        student = KerasStudent(model, representation_layer="stacked", hidden_layer="hidden")
        config = json.loads(json.dumps(keras.saving.serialize_keras_object(student)))
        revived = keras.saving.deserialize_keras_object(config)
        self.assertIsInstance(revived, KerasStudent)
        self.assertEqual(revived.hidden_dim, 5)
        revived.model.set_weights(model.get_weights())
        self.assertAllClose(revived(x), model(x), atol=1e-6)

    # --- errors ------------------------------------------------------------

    def test_unknown_layer(self):
        model, _ = dict_input_student()
        with pytest.raises(ValueError, match=r"`hidden_layer`='hiden' is no layer.*'hidden'"):
            KerasStudent(model, representation_layer="merged", hidden_layer="hiden")

    def test_hidden_must_be_a_vector(self):
        model, _ = dict_input_student()
        with pytest.raises(ValueError, match=r"'stacked' outputs shape \(None, 2, 2\)"):
            KerasStudent(model, representation_layer="merged", hidden_layer="stacked")

    def test_head_must_read_the_hidden_layer_alone(self):
        model, _ = dict_input_student()
        with pytest.raises(ValueError, match=r"head after `hidden_layer`='flat' also reads \['genres'\]"):
            KerasStudent(model, representation_layer="stacked", hidden_layer="flat")
        with pytest.raises(ValueError, match="no head after it"):
            KerasStudent(model, representation_layer="stacked", hidden_layer="score")

    def test_subclassed_model_is_refused(self):
        class Subclassed(keras.Model):
            def __init__(self):
                super().__init__()
                self.dense = keras.layers.Dense(1)

            def call(self, x):
                return self.dense(x)

        with pytest.raises(ValueError, match="KerasStudent needs a functional model"):
            KerasStudent(Subclassed(), representation_layer="a", hidden_layer="b")
