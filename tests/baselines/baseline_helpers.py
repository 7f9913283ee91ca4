"""Tiny committees and numpy re-implementations shared by the baseline tests."""

import keras
import numpy as np

from diverse_distill import MLPRecommender, MLPStudent, MLPTeacher

FEATURES = {"user_id": 7, "item_id": 11}


def make_data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    x = {
        "user_id": rng.integers(0, 7, n).astype("int32"),
        "item_id": rng.integers(0, 11, n).astype("int32"),
    }
    y = rng.uniform(1, 5, size=(n, 1)).astype("float32")
    return x, y


def make_student(seed=0):
    keras.utils.set_random_seed(seed)
    return MLPStudent(FEATURES, embedding_dims=3, hidden_units=(5, 4), name="student")


def make_teachers(seed=0, num=2):
    keras.utils.set_random_seed(seed + 100)
    specs = [("mlp_m", 4, (6,)), ("mlp_l", 2, (9, 3)), ("mlp_s", 3, (5,))]
    return [
        MLPTeacher(MLPRecommender(FEATURES, embedding_dims=e, hidden_units=h), name=name)
        for name, e, h in specs[:num]
    ]


def constant_teacher(value, name="constant", seed=0):
    """An MLP teacher whose prediction is `value` everywhere (head kernel 0)."""
    keras.utils.set_random_seed(seed + 200)
    model = MLPRecommender(FEATURES, embedding_dims=2, hidden_units=(3,))
    model.head.kernel.assign(np.zeros(model.head.kernel.shape, "float32"))
    model.head.bias.assign(np.full(model.head.bias.shape, value, "float32"))
    return MLPTeacher(model, name=name)


def clone_student(student):
    plain = MLPStudent.from_config(student.get_config())
    plain.set_weights(student.get_weights())
    return plain


def np_representation(model, x):
    return np.concatenate(
        [np.array(model.embeddings[n].embeddings)[x[n]] for n in model.categorical_features], -1
    )


def np_mlp(model, representation):
    """(hidden, prediction) of an MLPRecommender, by hand."""
    h = representation
    for dense in model.tower:
        h = np.maximum(h @ np.array(dense.kernel) + np.array(dense.bias), 0)
    return h, h @ np.array(model.head.kernel) + np.array(model.head.bias)


def np_forward(model, x):
    return np_mlp(model, np_representation(model, x))


def np_dense(layer, inputs):
    return inputs @ np.array(layer.kernel) + np.array(layer.bias)


def np_softmax(logits, axis=-1):
    z = np.exp(logits - logits.max(axis=axis, keepdims=True))
    return z / z.sum(axis=axis, keepdims=True)


def weights_of(layers):
    return [np.array(v) for layer in layers for v in layer.weights]
