"""Multi-teacher distillation (MT): the student regresses onto the teachers' mean."""

from keras import ops

from diverse_distill.baselines.baseline_distiller import BaselineDistiller
from diverse_distill.baselines.registry import register_method


@register_method("mt")
class MultiTeacherDistillation(BaselineDistiller):
    """Multi-teacher distillation with the averaged teacher prediction as target.

    With `K` frozen teachers the soft target is their mean prediction and
    the student minimises

    `L = ℓ(y, ŷ_S) + alpha · mean((ŷ_S − sg(1/K · Σ_k ŷ_k))²)`.

    You et al. (KDD 2017), the "MT" baseline of the DiverseDistill paper,
    average the teachers' softened class distributions and match them with
    a cross-entropy, plus a relative-dissimilarity hint on intermediate
    layers that this baseline leaves out; for regression the averaged
    prediction is the soft target and the cross-entropy is replaced by the
    mean squared error. (The name is not the semi-supervised "Mean Teacher"
    of Tarvainen & Valpola, which averages one model's weights over time.)

    Logged metrics: `loss`, `task_loss`, `distill_loss`.

    Args:
        student: a student (`diverse_distill.students.Student` contract).
        teachers: list of teachers with unique names; any frozen Keras
            models mapping `x` to a prediction.
        alpha: float >= 0. Weight of the distillation term. Defaults to `1.0`.
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
    model = MultiTeacherDistillation(student, teachers, alpha=0.5)
    model.compile(optimizer=keras.optimizers.Adagrad(0.06), loss="mse")
    x = {"user_id": np.arange(8) % 10, "item_id": np.arange(8)}
    history = model.fit(x, np.ones((8, 1)), epochs=1, verbose=0)
    model.soft_target(x).shape  # (8, 1)
    ```

    Reference:
    - You, Xu, Xu & Tao, "Learning from Multiple Teacher Networks",
      KDD 2017.
    """

    def __init__(self, student, teachers, alpha=1.0, **kwargs):
        super().__init__(student, teachers, alpha=alpha, **kwargs)

    def soft_target(self, x, like=None):
        """`sg(mean_k teacher_k(x))`, the averaged teacher prediction."""
        predictions = [self.teacher_prediction(t, x, like=like) for t in self.teachers]
        return ops.mean(ops.stack(predictions, axis=0), axis=0)

    def distillation_terms(self, x, y, student, sample_weight=None, training=True):
        prediction = student["prediction"]
        return self.soft_target_fn(self.soft_target(x, like=prediction), prediction), {}, {}
