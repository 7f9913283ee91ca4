"""AMTML-KD: per-sample learned teacher weights for soft targets and hints."""

import keras
from keras import ops

from diverse_distill.baselines.baseline_distiller import BaselineDistiller, squared_error
from diverse_distill.baselines.registry import register_method


@register_method("amtml")
class AdaptiveMultiTeacherMultiLevelDistillation(BaselineDistiller):
    """Adaptive multi-teacher multi-level distillation (AMTML-KD).

    Each teacher has a learned latent vector; the instance-level importance
    of teacher k for sample x is a softmax over teachers of the latent's
    dot product with the student's features. Here the latents are the
    columns of a `Dense(K)` layer (`teacher_weighting`) applied to the
    student's last hidden layer `h_S`:

    `w(x) = softmax_k(W · h_S + b)`, so `Σ_k w_k(x) = 1` for every sample.

    Two levels of knowledge, both weighted by `w`:

    - soft target (high level): `ŷ_T = Σ_k w_k · sg(ŷ_k)` with `ŷ_k =
      teacher_k(x)`, loss `logit_loss = mean((ŷ_S − ŷ_T)²)`;
    - hints (intermediate level): a learned projector `P_k` (`Dense`) per
      teacher maps `h_S` to teacher k's last hidden state `h_k` (its own
      forward pass, `suffix(native_question(x, c), c)[0]`), loss
      `hint_loss = Σ_k w_k · mean((P_k(h_S) − sg(h_k))²)`.

    The student, the weighting layer and the projectors minimise, with one
    optimizer, `L = ℓ(y, ŷ_S) + alpha · (logit_loss + beta · hint_loss)`.
    As in the original, the weights are trained end to end by this loss
    (which pulls weight towards the teachers the student already matches
    best); with `detach_features=True` (the default) the weighting layer
    reads `sg(h_S)`, so it learns without reshaping the student's features,
    while `detach_features=False` lets its gradient reach the student.
    Differences from Liu et al. (2020): regression, so the KL on softened
    class distributions becomes the mean squared error; the paper's
    multi-group hints (several student layers, each taught by a group of
    teacher layers) are reduced to one level, the last hidden layers.

    Logged metrics: `loss`, `task_loss`, `distill_loss` (`logit_loss +
    beta · hint_loss`), `logit_loss`, `hint_loss`, and per teacher
    `teacher_weight_<name>` (its mean weight over the samples).

    Args:
        student: a student (`diverse_distill.students.Student` contract).
        teachers: list of split teachers
            (`diverse_distill.teachers.SplitTeacher` contract), unique names.
        alpha: float >= 0. Weight of the distillation term. Defaults to `1.0`.
        beta: float >= 0. Weight of the hint loss inside it. Defaults to `1.0`.
        detach_features: bool. Whether the weighting reads `sg(h_S)`.
            Defaults to `True`.
        **kwargs: passed to `keras.Model`.

    Example:
    ```python
    features = {"user_id": 10, "item_id": 20}
    student = MLPStudent(features, embedding_dims=4, hidden_units=(8,))
    teachers = [
        MLPTeacher(MLPRecommender(features, embedding_dims=8, hidden_units=(16,)),
                   name="mlp_l"),
        MLPTeacher(MLPRecommender(features, embedding_dims=6, hidden_units=(12,)),
                   name="mlp_m"),
    ]
    model = AdaptiveMultiTeacherMultiLevelDistillation(student, teachers, beta=0.5)
    model.compile(optimizer=keras.optimizers.Adagrad(0.06), loss="mse")
    x = {"user_id": np.arange(8) % 10, "item_id": np.arange(8)}
    history = model.fit(x, np.ones((8, 1)), epochs=1, verbose=0)
    model.teacher_weights(x).shape  # (8, 2)
    ```

    Reference:
    - Liu, Zhang & Wang, "Adaptive multi-teacher multi-level knowledge
      distillation", Neurocomputing 415:106-113, 2020.
    """

    def __init__(self, student, teachers, alpha=1.0, beta=1.0, detach_features=True, **kwargs):
        super().__init__(student, teachers, alpha=alpha, needs_split_teachers=True, **kwargs)
        if beta is None or float(beta) < 0:
            raise ValueError(f"`beta` must be >= 0, got {beta}.")
        self.beta = float(beta)
        self.detach_features = bool(detach_features)
        self.teacher_weighting = keras.layers.Dense(
            len(self.teachers), name="teacher_weighting"
        )
        self.teacher_weighting.build((None, student.hidden_dim))
        self.hint_projectors = [
            keras.layers.Dense(t.answer_dim, name=f"hint_projector_{name}")
            for t, name in zip(self.teachers, self.teacher_names)
        ]
        for projector in self.hint_projectors:
            projector.build((None, student.hidden_dim))

    @property
    def auxiliary_variables(self):
        variables = list(self.teacher_weighting.trainable_variables)
        for projector in self.hint_projectors:
            variables += projector.trainable_variables
        return variables

    def extra_loss_names(self):
        return ["logit_loss", "hint_loss"]

    def stat_names(self):
        return [f"teacher_weight_{name}" for name in self.teacher_names]

    def weights_from_hidden(self, hidden):
        """Per-sample teacher weights `(batch, K)` from the student's hidden layer."""
        if self.detach_features:
            hidden = ops.stop_gradient(hidden)
        return ops.softmax(ops.cast(self.teacher_weighting(hidden), "float32"), axis=-1)

    def teacher_weights(self, x):
        """Per-sample teacher weights `(batch, K)` for `x` (rows sum to 1)."""
        return self.weights_from_hidden(self.student.hidden(x, training=False))

    def distillation_terms(self, x, y, student, sample_weight=None, training=True):
        hidden, prediction = student["hidden"], student["prediction"]
        weights = self.weights_from_hidden(hidden)
        target = ops.zeros_like(prediction)
        hint = ops.zeros_like(weights[:, 0])
        for k, teacher in enumerate(self.teachers):
            teacher_hidden, teacher_pred = self.teacher_hidden_and_prediction(teacher, x)
            teacher_pred = ops.reshape(teacher_pred, ops.shape(prediction))
            w_k = weights[:, k]
            target += ops.reshape(w_k, (-1,) + (1,) * (len(prediction.shape) - 1)) * teacher_pred
            hint += w_k * squared_error(self.hint_projectors[k](hidden), teacher_hidden)
        logit = self.soft_target_fn(target, prediction)
        stats = {
            f"teacher_weight_{name}": weights[:, k] for k, name in enumerate(self.teacher_names)
        }
        return logit + self.beta * hint, {"logit_loss": logit, "hint_loss": hint}, stats
