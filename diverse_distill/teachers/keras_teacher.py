"""Any functional Keras model as a split teacher, cut at a named layer."""

import keras
from keras import ops

from diverse_distill.models.functional_graph import FunctionalGraph, GraphSlice, static_size
from diverse_distill.teachers.split_teacher import SplitTeacher

NATIVE_QUESTION = "native_question"  # the context key of the injection layer's own output


@keras.saving.register_keras_serializable(package="diverse_distill")
class KerasTeacher(SplitTeacher):
    """A functional Keras model cut at the output of its layer `injection_layer`.

    The question replaces what `injection_layer` outputs; the rest of the
    graph runs on it, with the model's own weights, frozen and with
    `training=False`. Its answer is what `answer_layer` outputs, its
    prediction the model's (single) output.

    - `prefix(x)` runs the graph up to the injection layer and returns the
      context: a dict holding the injection layer's own output under
      `"native_question"` and, under their layers' names, every tensor the
      rest of the graph reads that does not depend on the injection layer
      (a skip connection around it, another input of the model). All leaves
      have the batch first, so the distillation can gather rows of it and
      `PrefixCache` can store it.
    - `suffix(question, context)` runs the rest of the graph with `question`
      in place of the injection layer's output: `(answer, prediction)`.
    - `native_question(x, context)` is the injection layer's own output, so
      `suffix(native_question(x, c), c)` is the unsplit `model(x)`.

    Questions and answers are flat vectors: an injection or answer tensor of
    rank > 2 (a CNN feature map, say) is flattened, and its width
    (`injection_dim`, `answer_dim`) is the product of its non-batch dims,
    which must be known; `suffix` reshapes the question back. A tensor with
    an unknown non-batch dim (a sequence of any length) cannot be a question.

    The two halves run the model's own layers (and weights): the prefix is
    a `keras.Model` from the model's inputs to the context tensors, the
    suffix a `keras.Function` from the injection tensor and the bypassing
    ones to the answer and the output; the graph is only read, to find what
    bypasses the injection layer (`diverse_distill.models.functional_graph`). A functional subclass whose
    `call` does more than run its graph is split as its graph.

    Args:
        model: a functional `keras.Model` (or a `Sequential` built with
            `keras.Input`) with one output.
        injection_layer: str. Name of the layer whose output the question
            replaces; called once in the model, one output tensor.
        answer_layer: str. Name of the layer whose output is the answer
            (the last hidden layer, typically); it must depend on the
            injection layer.
        **kwargs: passed to `keras.Model` (e.g. `name`).

    Example:
    ```python
    inputs = keras.Input((6,))
    h1 = keras.layers.Dense(16, activation="relu", name="h1")(inputs)
    h2 = keras.layers.Dense(8, activation="relu", name="h2")(h1)
    model = keras.Model(inputs, keras.layers.Dense(1, name="score")(h2))
    teacher = KerasTeacher(model, injection_layer="h1", answer_layer="h2", name="mlp")
    x = np.random.default_rng(0).normal(size=(4, 6)).astype("float32")
    context = teacher.prefix(x)
    hidden, prediction = teacher.suffix(teacher.native_question(x, context), context)
    hidden.shape, prediction.shape  # (4, 8), (4, 1); prediction equals model(x)
    teacher.injection_dim, teacher.answer_dim  # 16, 8
    ```
    """

    def __init__(self, model, injection_layer, answer_layer, **kwargs):
        graph = FunctionalGraph(model, owner="KerasTeacher")
        injection = graph.output_of(injection_layer, "injection_layer")
        answer = graph.output_of(answer_layer, "answer_layer")
        prediction = graph.prediction()
        # The graph is read back from the output, so every layer of it leads
        # to the prediction: an answer after the injection layer implies a
        # prediction after it.
        if answer is injection or not graph.depends_on(answer, injection):
            raise ValueError(
                f"KerasTeacher: `answer_layer`={answer_layer!r} does not depend on "
                f"`injection_layer`={injection_layer!r}, so no question could change it; "
                "pick a layer after it."
            )
        injection_dim = static_size(injection, f"`injection_layer`={injection_layer!r}")
        answer_dim = static_size(answer, f"`answer_layer`={answer_layer!r}")
        bypass = graph.read_besides([answer, prediction], injection)
        super().__init__(injection_dim=injection_dim, answer_dim=answer_dim, **kwargs)
        self.model = model
        self.injection_layer = injection_layer
        self.answer_layer = answer_layer
        self.injection_shape = tuple(injection.shape[1:])
        self.injection_dtype = injection.dtype
        self.context_keys = []
        for key, _ in bypass:
            while key == NATIVE_QUESTION or key in self.context_keys:
                key = f"{key}_"
            self.context_keys.append(key)
        # Both halves reuse the model's layers (and so its weights).
        self.prefix_model = keras.Model(
            graph.inputs,
            {NATIVE_QUESTION: injection,
             **{k: t for k, (_, t) in zip(self.context_keys, bypass)}},
            name=f"{model.name}_prefix",
        )
        self.suffix_model = GraphSlice(
            [injection] + [t for _, t in bypass], [answer, prediction],
            name=f"{model.name}_suffix",
        )
        self.built = True

    def prefix(self, x):
        return self.prefix_model(x, training=False)

    def native_question(self, x, context):
        return ops.reshape(context[NATIVE_QUESTION], (-1, self.injection_dim))

    def suffix(self, question, context):
        question = ops.reshape(
            ops.cast(question, self.injection_dtype), (-1, *self.injection_shape)
        )
        answer, prediction = self.suffix_model(
            [question] + [context[k] for k in self.context_keys]
        )
        return ops.reshape(answer, (-1, self.answer_dim)), prediction

    def call(self, x, training=False):
        return self.model(x, training=False)

    def get_config(self):
        return {
            **super().get_config(),
            "model": keras.saving.serialize_keras_object(self.model),
            "injection_layer": self.injection_layer,
            "answer_layer": self.answer_layer,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["model"] = keras.saving.deserialize_keras_object(config["model"])
        return cls(**config)
