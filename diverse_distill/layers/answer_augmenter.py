"""Stage 3 of DiverseDistill: teachers' answers in the student's hidden space."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="diverse_distill")
class AnswerAugmenter(keras.layers.Layer):
    """Maps each teacher's answer into the student's hidden space.

    Teacher k's last-layer hidden state `h_k` (batch, answer_dims[k]) goes
    through its own MLP `f_k` to `a_k` (batch, hidden_dim), the width of the
    student's last hidden layer.

    Args:
        hidden_dim: int. The student's last hidden width `d_h`.
        answer_dims: list of int. Each teacher's answer width `d_k^out`.
        intermediate_dim: int. Hidden width of each MLP `f_k`; `0` makes
            `f_k` a single linear layer. Defaults to `128`.
        **kwargs: passed to `keras.layers.Layer`.

    Call arguments:
        answers: list of K tensors `(batch, answer_dims[k])`.

    Returns:
        A tensor `(batch, K, hidden_dim)`. `project(k, h_k)` maps one
        teacher's answer alone (used when teachers run on different rows).

    Example:
    ```python
    layer = AnswerAugmenter(hidden_dim=8, answer_dims=[16, 32])
    layer([np.ones((4, 16)), np.ones((4, 32))]).shape  # (4, 2, 8)
    ```

    Reference:
        "Wisdom of Committee: Diverse Distillation from Large Foundation
        Models and Domain Experts", Sec. 3.2.
    """

    def __init__(self, hidden_dim, answer_dims, intermediate_dim=128, **kwargs):
        super().__init__(**kwargs)
        answer_dims = [int(d) for d in answer_dims]
        if not answer_dims:
            raise ValueError("`answer_dims` must name at least one teacher.")
        if hidden_dim <= 0 or any(d <= 0 for d in answer_dims) or intermediate_dim < 0:
            raise ValueError(
                "`hidden_dim` and `answer_dims` must be positive and "
                f"`intermediate_dim` non-negative, got {hidden_dim}, "
                f"{answer_dims}, {intermediate_dim}."
            )
        # === Config ===
        self.hidden_dim = int(hidden_dim)
        self.answer_dims = answer_dims
        self.num_teachers = len(answer_dims)
        self.intermediate_dim = int(intermediate_dim)
        # === Layers ===
        self.answer_mlps = []
        for k in range(self.num_teachers):
            layers = []
            if self.intermediate_dim:
                layers.append(
                    keras.layers.Dense(
                        self.intermediate_dim,
                        activation="relu",
                        dtype=self.dtype_policy,
                        name=f"answer_{k}_hidden",
                    )
                )
            layers.append(
                keras.layers.Dense(
                    self.hidden_dim, dtype=self.dtype_policy, name=f"answer_{k}_output"
                )
            )
            self.answer_mlps.append(layers)

    def build(self, input_shape=None):
        for layers, width in zip(self.answer_mlps, self.answer_dims):
            for dense in layers:
                dense.build((None, width))
                width = dense.units

    def project(self, index, answer):
        """Maps teacher `index`'s answer `(batch, answer_dims[index])`."""
        if answer.shape[-1] != self.answer_dims[index]:
            raise ValueError(
                f"Teacher {index}'s answer has width {answer.shape[-1]}, "
                f"the AnswerAugmenter expects {self.answer_dims[index]}."
            )
        a = answer
        for dense in self.answer_mlps[index]:
            a = dense(a)
        return a

    def call(self, answers):
        if len(answers) != self.num_teachers:
            raise ValueError(
                f"Expected {self.num_teachers} answers, got {len(answers)}."
            )
        return ops.stack([self.project(k, h) for k, h in enumerate(answers)], axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.num_teachers, self.hidden_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "hidden_dim": self.hidden_dim,
            "answer_dims": self.answer_dims,
            "intermediate_dim": self.intermediate_dim,
        }
