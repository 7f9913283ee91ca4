"""SCKD: distil only when the distillation gradient agrees with the task gradient."""

import keras
import tensorflow as tf
from keras import ops

from diverse_distill.baselines.baseline_distiller import (
    BaselineDistiller,
    all_reduce_sum,
    dense_gradients,
    select_single_teacher,
    squared_error,
)
from diverse_distill.baselines.registry import register_method

DISTILL_TARGETS = ("prediction", "hidden")


def gradient_cosine(a, b, epsilon=1e-12):
    """Cosine between two gradients given as lists of tensors (0 if one is 0)."""
    dot = tf.add_n([tf.reduce_sum(x * y) for x, y in zip(a, b)])
    norm_a = tf.add_n([tf.reduce_sum(tf.square(x)) for x in a])
    norm_b = tf.add_n([tf.reduce_sum(tf.square(y)) for y in b])
    return dot / tf.maximum(tf.sqrt(norm_a * norm_b), epsilon)


@register_method("sckd")
class StudentCustomizedDistillation(BaselineDistiller):
    """Student Customized Knowledge Distillation (SCKD) from one frozen teacher.

    SCKD treats distillation as a second task and lets the teacher teach
    only what the student can use: each step it compares the gradient of
    the task loss `g_task = ∇_θ [ℓ(y, ŷ_S)]` with the gradient of the
    distillation loss `g_kd = ∇_θ [alpha · L_kd]`, both over the student's
    trainable variables `θ` (all of them, on the whole global batch), and

    - `cos(g_task, g_kd) ≥ 0`: the student takes the step `g_task + g_kd`
      (task + distillation, as `LogitDistillation`/`FeatureDistillation`);
    - `cos(g_task, g_kd) < 0` (a conflict): the distillation term is
      dropped for this step and the student takes `g_task` alone.

    The distillation loss is logit-style,
    `L_kd = mean((ŷ_S − sg(teacher(x)))²)` (`distill_target="prediction"`),
    or feature-style, `L_kd = mean((P(h_S) − sg(h_T))²)` with a learned
    projector `P` as in `FeatureDistillation` (`distill_target="hidden"`);
    the projector follows the same rule (no update on a conflicting step).
    The original (Zhu & Wang, ICCV 2021) is for classification with a KL
    distillation loss; for regression the KL is replaced by the mean
    squared error. Gradients are summed over replicas before the cosine, so
    every replica takes the same decision under `tf.distribute`.

    Logged metrics: `loss` (the objective actually optimised:
    `task_loss + [kept] · alpha · distill_loss`), `task_loss`,
    `distill_loss` (computed every step, used or not), `conflict_fraction`
    (fraction of steps whose distillation term was dropped) and
    `gradient_cosine` (mean cosine).

    Args:
        student: a student (`diverse_distill.students.Student` contract).
        teachers: one teacher, or a list from which `teacher_index` picks
            one (a split teacher when `distill_target="hidden"`).
        alpha: float >= 0. Weight of the distillation term. Defaults to `1.0`.
        distill_target: `"prediction"` (LD-style) or `"hidden"` (FD-style).
            Defaults to `"prediction"`.
        teacher_index: int or `None`. Which teacher of a committee to use;
            `None` (the default) requires exactly one teacher.
        **kwargs: passed to `keras.Model`.

    Example:
    ```python
    features = {"user_id": 10, "item_id": 20}
    student = MLPStudent(features, embedding_dims=4, hidden_units=(8,))
    teacher = MLPTeacher(MLPRecommender(features, embedding_dims=8, hidden_units=(16,)),
                         name="mlp_l")
    model = StudentCustomizedDistillation(student, [teacher], alpha=0.5)
    model.compile(optimizer=keras.optimizers.Adagrad(0.06), loss="mse")
    x = {"user_id": np.arange(8) % 10, "item_id": np.arange(8)}
    history = model.fit(x, np.ones((8, 1)), epochs=1, verbose=0)
    0.0 <= history.history["conflict_fraction"][0] <= 1.0  # True
    ```

    Reference:
    - Zhu & Wang, "Student Customized Knowledge Distillation: Bridging the
      Gap Between Student and Teacher", ICCV 2021.
    """

    def __init__(
        self,
        student,
        teachers,
        alpha=1.0,
        distill_target="prediction",
        teacher_index=None,
        **kwargs,
    ):
        if distill_target not in DISTILL_TARGETS:
            raise ValueError(
                f"`distill_target` must be one of {DISTILL_TARGETS}, got {distill_target!r}."
            )
        teacher = select_single_teacher(teachers, teacher_index, "StudentCustomizedDistillation")
        super().__init__(
            student,
            [teacher],
            alpha=alpha,
            needs_split_teachers=distill_target == "hidden",
            **kwargs,
        )
        self.distill_target = distill_target
        self.teacher_index = teacher_index
        self.projector = None
        if distill_target == "hidden":
            self.projector = keras.layers.Dense(teacher.answer_dim, name="projector")
            self.projector.build((None, student.hidden_dim))

    @property
    def teacher(self):
        return self.teachers[0]

    @property
    def auxiliary_variables(self):
        return [] if self.projector is None else self.projector.trainable_variables

    def stat_names(self):
        return ["conflict_fraction", "gradient_cosine"]

    def distillation_terms(self, x, y, student, sample_weight=None, training=True):
        if self.distill_target == "hidden":
            teacher_hidden, _ = self.teacher_hidden_and_prediction(self.teacher, x)
            return squared_error(self.projector(student["hidden"]), teacher_hidden), {}, {}
        prediction = student["prediction"]
        target = self.teacher_prediction(self.teacher, x, like=prediction)
        return self.soft_target_fn(target, prediction), {}, {}

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        student_vars = self.student_variables
        auxiliary_vars = self.auxiliary_variables
        with tf.GradientTape(persistent=True) as tape:
            losses = self.compute_losses(x, y, sample_weight, training=True)
            task_objective = losses["task_loss"] + losses["regularization_loss"]
            distill_objective = self.alpha * losses["distill_loss"]
        task_grads = dense_gradients(tape.gradient(task_objective, student_vars), student_vars)
        distill_grads = dense_gradients(
            tape.gradient(distill_objective, student_vars + auxiliary_vars),
            student_vars + auxiliary_vars,
        )
        del tape
        n = len(student_vars)
        # Per-replica gradients sum to the global-batch gradient.
        global_task, global_distill = all_reduce_sum((task_grads, distill_grads[:n]))
        cosine = gradient_cosine(global_task, global_distill)
        keep = ops.cast(cosine >= 0.0, "float32")
        gradients = [t + keep * d for t, d in zip(task_grads, distill_grads[:n])]
        gradients += [keep * d for d in distill_grads[n:]]
        self.optimizer.apply(gradients, student_vars + auxiliary_vars)
        losses["stats"]["conflict_fraction"] = 1.0 - keep
        losses["stats"]["gradient_cosine"] = cosine
        return self.finish_train_step(
            x, y, sample_weight, losses, task_objective + keep * distill_objective
        )
