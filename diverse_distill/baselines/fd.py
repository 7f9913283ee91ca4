"""Feature distillation (FD): the student's hidden layer regresses onto the teacher's."""

import keras

from diverse_distill.baselines.baseline_distiller import (
    BaselineDistiller,
    select_single_teacher,
    squared_error,
)
from diverse_distill.baselines.registry import register_method


@register_method("fd")
class FeatureDistillation(BaselineDistiller):
    """Feature (hint) distillation from a single frozen split teacher.

    A learned linear projector `P` (a `Dense` layer) maps the student's last
    hidden layer `h_S` to the width of the teacher's last hidden state
    `h_T = suffix(native_question(x, c), c)[0]` with `c = prefix(x)` (the
    teacher's own, unmodified forward pass). The student and `P` minimise,
    with the same optimizer,

    `L = ℓ(y, ŷ_S) + alpha · mean((P(h_S) − sg(h_T))²)`.

    FitNets (Romero et al., 2015) trains the projector ("regressor") on a
    middle layer of a classifier in a separate hint-training stage; here it
    is trained jointly, on the last hidden layers, with the task loss (the
    single-stage form the DiverseDistill paper's FD baseline uses, citing
    DIME-FM, Sun et al., ICCV 2023). The hint loss is already an L2 loss, so
    nothing changes for regression.

    Logged metrics: `loss`, `task_loss`, `distill_loss`.

    Args:
        student: a student (`diverse_distill.students.Student` contract).
        teachers: one split teacher (`diverse_distill.teachers.SplitTeacher`
            contract), or a list from which `teacher_index` picks one.
        alpha: float >= 0. Weight of the hint term. Defaults to `1.0`.
        teacher_index: int or `None`. Which teacher of a committee to use;
            `None` (the default) requires exactly one teacher.
        **kwargs: passed to `keras.Model`.

    Example:
    ```python
    features = {"user_id": 10, "item_id": 20}
    student = MLPStudent(features, embedding_dims=4, hidden_units=(8,))
    teacher = MLPTeacher(MLPRecommender(features, embedding_dims=8, hidden_units=(16,)),
                         name="mlp_l")
    model = FeatureDistillation(student, [teacher], alpha=0.5)
    model.compile(optimizer=keras.optimizers.Adagrad(0.06), loss="mse")
    x = {"user_id": np.arange(8) % 10, "item_id": np.arange(8)}
    history = model.fit(x, np.ones((8, 1)), epochs=1, verbose=0)
    model.projector.kernel.shape  # (8, 16)
    ```

    Reference:
    - Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015
      (arXiv:1412.6550).
    """

    def __init__(self, student, teachers, alpha=1.0, teacher_index=None, **kwargs):
        teacher = select_single_teacher(teachers, teacher_index, "FeatureDistillation")
        super().__init__(student, [teacher], alpha=alpha, needs_split_teachers=True, **kwargs)
        self.teacher_index = teacher_index
        self.projector = keras.layers.Dense(teacher.answer_dim, name="projector")
        self.projector.build((None, student.hidden_dim))

    @property
    def teacher(self):
        return self.teachers[0]

    @property
    def auxiliary_variables(self):
        return self.projector.trainable_variables

    def distillation_terms(self, x, y, student, sample_weight=None, training=True):
        teacher_hidden, _ = self.teacher_hidden_and_prediction(self.teacher, x)
        return squared_error(self.projector(student["hidden"]), teacher_hidden), {}, {}
