"""Any functional Keras model as a DiverseDistill student."""

import keras
from keras import ops

from diverse_distill.models.functional_graph import FunctionalGraph, GraphSlice, static_size
from diverse_distill.students.student import Student


@keras.saving.register_keras_serializable(package="diverse_distill")
class KerasStudent(Student):
    """A functional Keras model with the student read-outs taken at named layers.

    - `representation(x)`: the output of `representation_layer`, flattened
      to `(batch, representation_dim)`; what the Question Augmenter reads.
    - `hidden(x)`: the output of `hidden_layer`, `(batch, hidden_dim)`; the
      space the teachers' answers are aligned to.
    - `head`: a layer from `hidden(x)` to the prediction: the part of the
      graph after `hidden_layer`, running the model's own layers (inference
      mode: a Dropout after the hidden layer does not run in it). It must
      read nothing but the hidden layer (no skip connection around it, no
      other input), or `head(hidden(x))` could not be the prediction.
    - `features(x)`: `(representation, hidden)` in one pass.
    - `call(x)`: the model itself; training updates the model's own weights,
      so after `DistillationModel.fit` the model is the distilled student,
      and `export_student` writes it alone (`serving_model`).

    Args:
        model: a functional `keras.Model` (or a `Sequential` built with
            `keras.Input`) with one output.
        representation_layer: str. Name of the layer whose output is the
            representation (e.g. the input embeddings, or the first layer).
        hidden_layer: str. Name of the layer whose output is the hidden
            state: rank 2, known width, and the prediction a function of it
            alone (typically the layer before the output layer).
        **kwargs: passed to `keras.Model` (e.g. `name`).

    Example:
    ```python
    inputs = keras.Input((6,))
    h1 = keras.layers.Dense(8, activation="relu", name="h1")(inputs)
    h2 = keras.layers.Dense(4, activation="relu", name="h2")(h1)
    model = keras.Model(inputs, keras.layers.Dense(1, name="score")(h2))
    student = KerasStudent(model, representation_layer="h1", hidden_layer="h2")
    x = np.ones((3, 6), "float32")
    s, h = student.features(x)
    s.shape, h.shape, student.head(h).shape  # (3, 8), (3, 4), (3, 1)
    export_student(student, "/tmp/keras_student")  # the plain model
    reloaded = tf.saved_model.load("/tmp/keras_student")
    reloaded.serve(x).shape  # (3, 1)
    ```
    """

    def __init__(self, model, representation_layer, hidden_layer, **kwargs):
        graph = FunctionalGraph(model, owner="KerasStudent")
        representation = graph.output_of(representation_layer, "representation_layer")
        hidden = graph.output_of(hidden_layer, "hidden_layer")
        prediction = graph.prediction()
        if len(hidden.shape) != 2 or hidden.shape[-1] is None:
            raise ValueError(
                f"KerasStudent: `hidden_layer`={hidden_layer!r} outputs shape "
                f"{tuple(hidden.shape)}; the hidden state must be (batch, width)."
            )
        if prediction is hidden or not graph.depends_on(prediction, hidden):
            raise ValueError(
                f"KerasStudent: the model's output does not follow `hidden_layer`="
                f"{hidden_layer!r}, so there is no head after it; pick an earlier layer."
            )
        bypass = graph.read_besides([prediction], hidden)
        if bypass:
            raise ValueError(
                f"KerasStudent: the head after `hidden_layer`={hidden_layer!r} also reads "
                f"{[key for key, _ in bypass]}, so it is not a function of the hidden state alone."
            )
        representation_dim = static_size(
            representation, f"`representation_layer`={representation_layer!r}"
        )
        super().__init__(**kwargs)
        self.model = model
        self.representation_layer = representation_layer
        self.hidden_layer = hidden_layer
        self.representation_dim = representation_dim
        self.hidden_dim = int(hidden.shape[-1])
        # Sub-models on the model's own tensors: they share its layers and weights.
        self.features_model = keras.Model(
            graph.inputs, [representation, hidden], name=f"{model.name}_features"
        )
        self.head = GraphSlice(hidden, prediction, name=f"{model.name}_head")
        self.built = True

    @property
    def serving_model(self):
        """What `export_student` writes: the plain model, inputs to prediction."""
        return self.model

    def features(self, x, training=False):
        representation, hidden = self.features_model(x, training=training)
        return ops.reshape(representation, (-1, self.representation_dim)), hidden

    def representation(self, x, training=False):
        return self.features(x, training=training)[0]

    def hidden(self, x, training=False):
        return self.features(x, training=training)[1]

    def call(self, x, training=False):
        return self.model(x, training=training)

    def get_config(self):
        return {
            **super().get_config(),
            "model": keras.saving.serialize_keras_object(self.model),
            "representation_layer": self.representation_layer,
            "hidden_layer": self.hidden_layer,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["model"] = keras.saving.deserialize_keras_object(config["model"])
        return cls(**config)
