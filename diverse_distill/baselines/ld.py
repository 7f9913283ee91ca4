"""Logit distillation (LD): the student regresses onto one teacher's prediction."""

from diverse_distill.baselines.baseline_distiller import (
    BaselineDistiller,
    select_single_teacher,
)
from diverse_distill.baselines.registry import register_method


@register_method("ld")
class LogitDistillation(BaselineDistiller):
    """Logit distillation from a single frozen teacher.

    The student minimises

    `L = ℓ(y, ŷ_S) + alpha · mean((ŷ_S − sg(ŷ_T))²)`,

    where `ŷ_T = teacher(x)` is the unmodified teacher's prediction. The
    original method (Hinton et al., 2015) is for classification and matches
    temperature-softened class probabilities with a KL divergence; on a
    regression task the prediction itself is the soft target and the KL is
    replaced by the mean squared error (no temperature). The DiverseDistill
    paper's LD baseline cites DistilBERT (Sanh et al.) and TinyViT
    (Wu et al.), which use the same soft-target loss.

    Logged metrics: `loss`, `task_loss`, `distill_loss`.

    Args:
        student: a student (`diverse_distill.students.Student` contract).
        teachers: one teacher, or a list from which `teacher_index` picks
            one. Any frozen Keras model mapping `x` to a prediction works.
        alpha: float >= 0. Weight of the distillation term. Defaults to `1.0`.
        teacher_index: int or `None`. Which teacher of a committee to use;
            `None` (the default) requires exactly one teacher.
        **kwargs: passed to `keras.Model`.

    Example:
    ```python
    features = {"user_id": 10, "item_id": 20}
    student = MLPStudent(features, embedding_dims=4, hidden_units=(8,))
    teacher = MLPTeacher(MLPRecommender(features, embedding_dims=8, hidden_units=(16,)),
                         name="mlp_l")
    model = LogitDistillation(student, [teacher], alpha=0.5)
    model.compile(optimizer=keras.optimizers.Adagrad(0.06), loss="mse")
    x = {"user_id": np.arange(8) % 10, "item_id": np.arange(8)}
    history = model.fit(x, np.ones((8, 1)), epochs=1, verbose=0)
    sorted(history.history)  # ['distill_loss', 'loss', 'task_loss']
    ```

    Reference:
    - Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural
      Network", NIPS Deep Learning Workshop 2015 (arXiv:1503.02531).
    """

    def __init__(self, student, teachers, alpha=1.0, teacher_index=None, **kwargs):
        teacher = select_single_teacher(teachers, teacher_index, "LogitDistillation")
        super().__init__(student, [teacher], alpha=alpha, **kwargs)
        self.teacher_index = teacher_index

    @property
    def teacher(self):
        return self.teachers[0]

    def distillation_terms(self, x, y, student, sample_weight=None, training=True):
        prediction = student["prediction"]
        target = self.teacher_prediction(self.teacher, x, like=prediction)
        return self.soft_target_fn(target, prediction), {}, {}
