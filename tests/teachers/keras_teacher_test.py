import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from diverse_distill import (
    DistillationModel,
    KerasTeacher,
    MLPRecommender,
    MLPStudent,
    MLPTeacher,
    PrefixCache,
)
from tests.test_case import TestCase

RNG = np.random.default_rng(0)


def functional_mlp():
    inputs = keras.Input((6,), name="features")
    h1 = keras.layers.Dense(12, activation="relu", name="h1")(inputs)
    h2 = keras.layers.Dense(8, activation="relu", name="h2")(h1)
    h2 = keras.layers.Dropout(0.5, name="dropout")(h2)
    outputs = keras.layers.Dense(1, name="score")(h2)
    return keras.Model(inputs, outputs, name="mlp"), RNG.normal(size=(5, 6)).astype("float32")


def residual_cnn():
    """The injection layer sits inside a residual block; the skip bypasses it."""
    inputs = keras.Input((8, 8, 1), name="image")
    stem = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="stem")(inputs)
    block = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="block_conv")(stem)
    block = keras.layers.BatchNormalization(name="block_norm")(block)
    merged = keras.layers.Add(name="residual")([stem, block])
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(merged)
    answer = keras.layers.Dense(5, activation="relu", name="answer")(pooled)
    outputs = keras.layers.Dense(1, name="score")(answer)
    return keras.Model(inputs, outputs, name="cnn"), RNG.normal(size=(3, 8, 8, 1)).astype("float32")


def two_input_model():
    """Input `b` never passes through the injection layer."""
    a = keras.Input((4,), name="a")
    b = keras.Input((2,), name="b")
    h = keras.layers.Dense(6, activation="tanh", name="inj")(a)
    merged = keras.layers.Concatenate(name="cat")([h, b])
    answer = keras.layers.Dense(3, activation="relu", name="answer")(merged)
    outputs = keras.layers.Dense(1, name="score")(answer)
    x = {"a": RNG.normal(size=(4, 4)).astype("float32"),
         "b": RNG.normal(size=(4, 2)).astype("float32")}
    return keras.Model({"a": a, "b": b}, outputs, name="two_inputs"), x


def bert_model():
    """A tiny random KerasHub BERT whose graph is the model's own, plus a head.

    The head reads the pooled [CLS] state (the injection point) and the mean
    token state, which bypasses it.
    """
    import keras_hub

    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=8, intermediate_dim=16,
        max_sequence_length=8,
    )
    mean = keras.layers.GlobalAveragePooling1D(name="mean_tokens")(
        backbone.output["sequence_output"]
    )
    merged = keras.layers.Concatenate(name="cat")([backbone.output["pooled_output"], mean])
    answer = keras.layers.Dense(6, activation="relu", name="answer")(merged)
    outputs = keras.layers.Dense(1, name="score")(answer)
    x = {"token_ids": RNG.integers(1, 50, (3, 8)).astype("int32"),
         "segment_ids": np.zeros((3, 8), "int32"),
         "padding_mask": np.array([[1] * 8, [1] * 5 + [0] * 3, [1] * 3 + [0] * 5], "int32")}
    return keras.Model(backbone.input, outputs, name="bert"), x


CASES = {
    "mlp": (functional_mlp, "h1", "h2", 12, 8, {"native_question"}),
    "cnn": (residual_cnn, "block_conv", "answer", 8 * 8 * 4, 5, {"native_question", "stem"}),
    "two_inputs": (two_input_model, "inj", "answer", 6, 3, {"native_question", "b"}),
    "bert": (bert_model, "pooled_dense", "answer", 8, 6, {"native_question", "mean_tokens"}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_split_equals_unsplit(case):
    """The model's own state injected gives the model's prediction and answer-layer output."""
    keras.utils.set_random_seed(1337)
    build, injection, answer, injection_dim, answer_dim, keys = CASES[case]
    model, x = build()
    teacher = KerasTeacher(model, injection_layer=injection, answer_layer=answer, name=case)
    assert (teacher.injection_dim, teacher.answer_dim) == (injection_dim, answer_dim)
    context = teacher.prefix(x)
    assert set(context) == keys
    batch = len(tf.nest.flatten(x)[0])
    for leaf in tf.nest.flatten(context):
        assert leaf.shape[0] == batch
    question = teacher.native_question(x, context)
    assert tuple(question.shape) == (batch, injection_dim)
    hidden, prediction = teacher.suffix(question, context)
    expected = model(x, training=False)
    np.testing.assert_allclose(prediction, expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(teacher(x), expected, rtol=0, atol=1e-6)
    read_out = keras.Model(model.inputs, model.get_layer(answer).output)
    np.testing.assert_allclose(hidden, np.reshape(read_out(x), (batch, -1)), rtol=0, atol=1e-6)


class KerasTeacherTest(TestCase):
    def test_sequential_model(self):
        model = keras.Sequential([
            keras.Input((5,)),
            keras.layers.Dense(7, activation="relu", name="first"),
            keras.layers.Dense(4, activation="relu", name="last"),
            keras.layers.Dense(1, name="score"),
        ])
        teacher = KerasTeacher(model, injection_layer="first", answer_layer="last")
        x = RNG.normal(size=(3, 5)).astype("float32")
        context = teacher.prefix(x)
        _, prediction = teacher.suffix(teacher.native_question(x, context), context)
        self.assertAllClose(prediction, model(x), atol=1e-6)

    def test_other_question_changes_answer_and_gradient_reaches_question(self):
        model, x = residual_cnn()
        teacher = KerasTeacher(model, injection_layer="block_conv", answer_layer="answer").freeze()
        self.assertEmpty(teacher.trainable_variables)
        context = teacher.prefix(x)
        question = tf.Variable(RNG.normal(size=(3, 256)).astype("float32"))
        with tf.GradientTape() as tape:
            hidden, prediction = teacher.suffix(question, context)
            loss = tf.reduce_sum(prediction) + tf.reduce_sum(hidden)
        self.assertGreater(float(tf.reduce_max(tf.abs(tape.gradient(loss, question)))), 0.0)
        self.assertNotAllClose(prediction, model(x))

    def test_dropout_never_runs(self):
        model, x = functional_mlp()
        teacher = KerasTeacher(model, injection_layer="h1", answer_layer="h2")
        context = teacher.prefix(x)
        q = teacher.native_question(x, context)
        self.assertAllClose(teacher.suffix(q, context)[1], teacher.suffix(q, context)[1])
        self.assertAllClose(teacher(x, training=True), model(x, training=False))

    def test_prefix_cache_serves_the_context(self):
        model, x = two_input_model()
        teacher = KerasTeacher(model, injection_layer="inj", answer_layer="answer", name="two")
        cache = PrefixCache(teacher, storage_dtype="float32").build(x, batch_size=3)
        context = cache.context({**x, **cache.features()})
        expected = teacher.prefix(x)
        for key in expected:
            self.assertAllClose(context[key], expected[key])

    def test_serialization(self):
        model, x = two_input_model()
        teacher = KerasTeacher(model, injection_layer="inj", answer_layer="answer", name="two")
        config = json.loads(json.dumps(keras.saving.serialize_keras_object(teacher)))
        revived = keras.saving.deserialize_keras_object(config)
        self.assertIsInstance(revived, KerasTeacher)
        as_json = lambda t: json.loads(json.dumps(t.get_config()))  # noqa: E731
        self.assertEqual(as_json(revived), as_json(teacher))
        self.assertEqual(revived.context_keys, ["b"])
        revived.model.set_weights(model.get_weights())
        self.assertAllClose(revived(x), model(x), atol=1e-6)

    # --- errors ------------------------------------------------------------

    def test_unknown_layer_lists_close_names(self):
        model, _ = residual_cnn()
        with pytest.raises(ValueError, match=r"'block_con' is no layer of 'cnn'.*block_conv"):
            KerasTeacher(model, injection_layer="block_con", answer_layer="answer")
        with pytest.raises(ValueError, match=r"`answer_layer`='anwser'.*answer"):
            KerasTeacher(model, injection_layer="block_conv", answer_layer="anwser")

    def test_layer_without_a_single_output(self):
        shared = keras.layers.Dense(3, name="shared")
        a = keras.Input((3,))
        h = shared(shared(a))
        model = keras.Model(a, keras.layers.Dense(1, name="score")(
            keras.layers.Dense(2, name="answer")(h)))
        with pytest.raises(ValueError, match="'shared' is called 2 times.*single tensor"):
            KerasTeacher(model, injection_layer="shared", answer_layer="answer")

        inner_in = keras.Input((3,))
        inner = keras.Model(inner_in, [keras.layers.Dense(2)(inner_in), keras.layers.Dense(2)(inner_in)],
                            name="two_heads")
        a = keras.Input((3,))
        first, second = inner(a)
        answer = keras.layers.Dense(2, name="answer")(keras.layers.Add()([first, second]))
        model = keras.Model(a, keras.layers.Dense(1)(answer))
        with pytest.raises(ValueError, match="'two_heads' returns 2 tensors"):
            KerasTeacher(model, injection_layer="two_heads", answer_layer="answer")

    def test_answer_must_depend_on_the_injection_layer(self):
        model, _ = residual_cnn()
        with pytest.raises(ValueError, match="'stem' does not depend on `injection_layer`='block_conv'"):
            KerasTeacher(model, injection_layer="block_conv", answer_layer="stem")
        with pytest.raises(ValueError, match="'answer' does not depend on `injection_layer`='answer'"):
            KerasTeacher(model, injection_layer="answer", answer_layer="answer")
        with pytest.raises(ValueError, match="'answer' does not depend on `injection_layer`='score'"):
            KerasTeacher(model, injection_layer="score", answer_layer="answer")

    def test_subclassed_and_unbuilt_models_are_refused(self):
        class Subclassed(keras.Model):
            def __init__(self):
                super().__init__()
                self.dense = keras.layers.Dense(1)

            def call(self, x):
                return self.dense(x)

        model = Subclassed()
        model(np.ones((1, 3)))
        with pytest.raises(ValueError, match="needs a functional model.*subclassed"):
            KerasTeacher(model, injection_layer="dense", answer_layer="dense")
        with pytest.raises(ValueError, match="needs a functional model"):
            KerasTeacher(keras.Sequential([keras.layers.Dense(1)]), injection_layer="a",
                         answer_layer="b")
        with pytest.raises(ValueError, match="wraps a keras.Model"):
            KerasTeacher(keras.layers.Dense(1), injection_layer="a", answer_layer="b")

    def test_unknown_width_and_several_outputs_are_refused(self):
        model, _ = bert_model()
        with pytest.raises(ValueError, match=r"'transformer_layer_0' has shape \(None, None, 8\)"):
            KerasTeacher(model, injection_layer="transformer_layer_0", answer_layer="answer")
        a = keras.Input((3,))
        h = keras.layers.Dense(2, name="h")(a)
        model = keras.Model(a, [keras.layers.Dense(1)(h), keras.layers.Dense(1)(h)])
        with pytest.raises(ValueError, match="one output.*has 2"):
            KerasTeacher(model, injection_layer="h", answer_layer="h")

    # --- inside a DistillationModel -----------------------------------------

    def test_frozen_in_a_distillation_step_next_to_an_mlp_teacher(self):
        features = {"user_id": 10, "item_id": 12}
        user = keras.Input((), dtype="int32", name="user_id")
        item = keras.Input((), dtype="int32", name="item_id")
        user_vec = keras.layers.Embedding(10, 4, name="user_embedding")(user)
        item_vec = keras.layers.Embedding(12, 4, name="item_embedding")(item)
        tower = keras.layers.Dense(8, activation="relu", name="tower")(
            keras.layers.Concatenate(name="embeddings")([user_vec, item_vec]))
        merged = keras.layers.Concatenate(name="with_item")([tower, item_vec])  # a bypass
        answer = keras.layers.Dense(6, activation="relu", name="answer")(merged)
        model = keras.Model({"user_id": user, "item_id": item},
                            keras.layers.Dense(1, name="score")(answer))
        keras_teacher = KerasTeacher(model, injection_layer="tower", answer_layer="answer",
                                     name="keras")
        mlp_teacher = MLPTeacher(MLPRecommender(features, embedding_dims=3, hidden_units=(8, 4)),
                                 name="mlp")
        x = {"user_id": RNG.integers(0, 10, 16).astype("int32"),
             "item_id": RNG.integers(0, 12, 16).astype("int32")}
        y = RNG.uniform(1, 5, (16, 1)).astype("float32")
        mlp_teacher(x)
        for kwargs in ({"injection": "add"}, {"injection": "replace", "importance_threshold": 0.3}):
            distiller = DistillationModel(
                MLPStudent(features, embedding_dims=2, hidden_units=(6, 4)),
                [keras_teacher, mlp_teacher], intermediate_dim=8, **kwargs)
            distiller.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
            before = [np.array(w) for w in keras_teacher.weights + mlp_teacher.weights]
            logs = distiller.train_on_batch(x, y, return_dict=True)
            for name in ("loss", "task_loss", "distill_loss", "reg_loss"):
                self.assertTrue(np.isfinite(logs[name]), (kwargs, name, logs[name]))
            after = [np.array(w) for w in keras_teacher.weights + mlp_teacher.weights]
            for b, a in zip(before, after):
                np.testing.assert_array_equal(a, b)
        self.assertEmpty(keras_teacher.trainable_weights)
        self.assertEqual(len(keras_teacher.weights), len(model.weights))
