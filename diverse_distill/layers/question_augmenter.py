"""Stage 1 of DiverseDistill: teacher-specific questions and importances."""

import math

import keras
from keras import ops

ALIGNMENTS = ("dot", "softmax", "normalized")

# Importances are kept strictly inside (0, 1) so that a threshold of 0 keeps
# every teacher and a threshold of 1 keeps none, even where a float32 sigmoid
# would round to exactly 0 or 1.
IMPORTANCE_EPSILON = 1e-6


def _unit(x):
    """`x` scaled to unit L2 norm along its last axis."""
    return x * ops.rsqrt(ops.sum(ops.square(x), axis=-1, keepdims=True) + 1e-12)


@keras.saving.register_keras_serializable(package="diverse_distill")
class QuestionAugmenter(keras.layers.Layer):
    """Turns the student's representation into one question per teacher.

    With `s` the student's representation (batch, d_s), teacher embeddings
    `E` (K, d_e) and question projection `W` (d_s, m, d_e):

    - `P = s·W` (batch, m, d_e): m projected components of the sample;
    - `A = E·Pᵀ` (batch, K, m): alignment of each teacher with each component
      (`alignment="dot"`, the paper), its softmax over the m components
      scaled by `1/sqrt(d_e)` (`alignment="softmax"`), or the cosine of each
      teacher embedding with each component (`alignment="normalized"`: `A`
      in [-1, 1], so `Q̃` is linear in the scale of `s` instead of quadratic
      and the question path gets gradients of the size of its inputs from
      the first step);
    - `Q̃ = A·P` (batch, K, d_e): one question representation per teacher;
    - `q_k = g_k(Q̃_k)`: a per-teacher MLP to teacher k's injection width;
    - `w_k = sigmoid(v_k·Q̃_k + b_k)`: a per-sample importance of teacher k,
      read out linearly from the same question representation, so it shares
      `E` and `P` with the question path. It is clipped to
      `[1e-6, 1 - 1e-6]` so that thresholds 0 and 1 mean "all" and "none".

    Args:
        injection_dims: list of int. Each teacher's injection width `d_k^in`.
        embedding_dim: int. Teacher-embedding width `d_e`. Defaults to `64`.
        num_components: int. Number of projected components `m`.
            Defaults to `4`.
        intermediate_dim: int. Hidden width of each question MLP `g_k`; `0`
            makes `g_k` a single linear layer. Defaults to `128`.
        alignment: str. `"dot"`, `"softmax"` or `"normalized"`. Defaults
            to `"dot"`.
        output_initializer: initializer of the last layer of each `g_k`
            (kernel; its bias starts at zero). `"zeros"` makes every question
            start at 0: with residual injection (the question added to the
            teacher's own state) each teacher then answers its real input at
            step 0. Defaults to `"glorot_uniform"`.
        **kwargs: passed to `keras.layers.Layer`.

    Call arguments:
        representation: float tensor `(batch, d_s)`. The student's
            representation (the caller stops its gradient).

    Returns:
        A tuple `(questions, importance)`: a list of K tensors
        `(batch, injection_dims[k])` and a tensor `(batch, K)` in (0, 1).

    Example:
    ```python
    layer = QuestionAugmenter(injection_dims=[16, 32], embedding_dim=8)
    questions, importance = layer(np.ones((4, 10)))
    [q.shape for q in questions], importance.shape  # [(4, 16), (4, 32)], (4, 2)
    ```

    Reference:
        "Wisdom of Committee: Diverse Distillation from Large Foundation
        Models and Domain Experts", Sec. 3.2.
    """

    def __init__(
        self,
        injection_dims,
        embedding_dim=64,
        num_components=4,
        intermediate_dim=128,
        alignment="dot",
        output_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        injection_dims = [int(d) for d in injection_dims]
        if not injection_dims:
            raise ValueError("`injection_dims` must name at least one teacher.")
        if any(d <= 0 for d in injection_dims):
            raise ValueError(f"Injection widths must be positive, got {injection_dims}.")
        if embedding_dim <= 0 or num_components <= 0 or intermediate_dim < 0:
            raise ValueError(
                "`embedding_dim` and `num_components` must be positive and "
                f"`intermediate_dim` non-negative, got {embedding_dim}, "
                f"{num_components}, {intermediate_dim}."
            )
        if alignment not in ALIGNMENTS:
            raise ValueError(f"`alignment` must be one of {ALIGNMENTS}, got {alignment!r}.")
        # === Config ===
        self.injection_dims = injection_dims
        self.num_teachers = len(injection_dims)
        self.embedding_dim = int(embedding_dim)
        self.num_components = int(num_components)
        self.intermediate_dim = int(intermediate_dim)
        self.alignment = alignment
        self.output_initializer = keras.initializers.get(output_initializer)
        # === Layers ===
        self.question_mlps = []
        for k, width in enumerate(injection_dims):
            layers = []
            if self.intermediate_dim:
                layers.append(
                    keras.layers.Dense(
                        self.intermediate_dim,
                        activation="relu",
                        dtype=self.dtype_policy,
                        name=f"question_{k}_hidden",
                    )
                )
            layers.append(
                keras.layers.Dense(
                    width,
                    kernel_initializer=self.output_initializer,
                    dtype=self.dtype_policy,
                    name=f"question_{k}_output",
                )
            )
            self.question_mlps.append(layers)
        self.importance_readouts = [
            keras.layers.Dense(1, dtype=self.dtype_policy, name=f"importance_{k}")
            for k in range(self.num_teachers)
        ]

    def build(self, input_shape):
        representation_dim = input_shape[-1]
        if representation_dim is None:
            raise ValueError("The representation's last axis must be known.")
        self.teacher_embeddings = self.add_weight(
            name="teacher_embeddings",
            shape=(self.num_teachers, self.embedding_dim),
            initializer="glorot_uniform",
        )
        self.question_projection = self.add_weight(
            name="question_projection",
            shape=(representation_dim, self.num_components, self.embedding_dim),
            initializer=keras.initializers.VarianceScaling(
                scale=1.0, mode="fan_in", distribution="truncated_normal"
            ),
        )
        for layers in self.question_mlps:
            width = self.embedding_dim
            for dense in layers:
                dense.build((None, width))
                width = dense.units
        for readout in self.importance_readouts:
            readout.build((None, self.embedding_dim))

    def question_representations(self, representation):
        """`Q̃`: (batch, K, d_e), one question representation per teacher."""
        projected = ops.einsum("bs,sme->bme", representation, self.question_projection)
        embeddings = self.teacher_embeddings
        if self.alignment == "normalized":
            embeddings = _unit(embeddings)
            alignment = ops.einsum("ke,bme->bkm", embeddings, _unit(projected))
        else:
            alignment = ops.einsum("ke,bme->bkm", embeddings, projected)
        if self.alignment == "softmax":
            alignment = ops.softmax(alignment / math.sqrt(self.embedding_dim), axis=-1)
        return ops.einsum("bkm,bme->bke", alignment, projected)

    def call(self, representation):
        if len(representation.shape) != 2:
            raise ValueError(
                "QuestionAugmenter expects a representation of shape "
                f"(batch, d_s), got {representation.shape}."
            )
        question_reps = self.question_representations(representation)
        questions, logits = [], []
        for k in range(self.num_teachers):
            rep = question_reps[:, k, :]
            q = rep
            for dense in self.question_mlps[k]:
                q = dense(q)
            questions.append(q)
            logits.append(self.importance_readouts[k](rep))
        importance = ops.sigmoid(ops.concatenate(logits, axis=-1))
        importance = ops.clip(importance, IMPORTANCE_EPSILON, 1.0 - IMPORTANCE_EPSILON)
        return questions, importance

    def compute_output_shape(self, input_shape):
        batch = input_shape[0]
        return (
            [(batch, d) for d in self.injection_dims],
            (batch, self.num_teachers),
        )

    def get_config(self):
        return {
            **super().get_config(),
            "injection_dims": self.injection_dims,
            "embedding_dim": self.embedding_dim,
            "num_components": self.num_components,
            "intermediate_dim": self.intermediate_dim,
            "alignment": self.alignment,
            "output_initializer": keras.initializers.serialize(self.output_initializer),
        }
