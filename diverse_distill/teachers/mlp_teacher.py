"""An MLP recommender as a split teacher."""

import keras

from diverse_distill.models.mlp_recommender import MLPRecommender
from diverse_distill.teachers.split_teacher import SplitTeacher


@keras.saving.register_keras_serializable(package="diverse_distill")
class MLPTeacher(SplitTeacher):
    """An `MLPRecommender` cut after its embedding tables.

    The question replaces the concatenated embeddings (the model's
    representation); the teacher's tower runs on it and its last hidden
    layer is the answer; its own head gives its prediction. Nothing before
    the injection point is question-independent, so the context is `None`.

    Args:
        model: `MLPRecommender`. A trained recommender.
        **kwargs: passed to `keras.Model` (e.g. `name`).

    Example:
    ```python
    model = MLPRecommender({"user_id": 10, "item_id": 20}, embedding_dims=4,
                           hidden_units=(16, 8))
    teacher = MLPTeacher(model, name="mlp_m")
    hidden, prediction = teacher.suffix(np.ones((2, 8)), None)
    hidden.shape, prediction.shape  # (2, 8), (2, 1)
    ```
    """

    def __init__(self, model, **kwargs):
        if not isinstance(model, MLPRecommender):
            raise ValueError(
                f"MLPTeacher wraps an MLPRecommender, got {type(model).__name__}."
            )
        super().__init__(
            injection_dim=model.representation_dim,
            answer_dim=model.hidden_dim,
            **kwargs,
        )
        self.model = model

    def prefix(self, x):
        return None

    def native_question(self, x, context):
        return self.model.representation(x, training=False)

    def suffix(self, question, context):
        hidden = self.model.hidden_from_representation(question, training=False)
        return hidden, self.model.head(hidden)

    def call(self, x, training=False):
        return self.model(x, training=False)

    def get_config(self):
        return {
            **super().get_config(),
            "model": keras.saving.serialize_keras_object(self.model),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["model"] = keras.saving.deserialize_keras_object(config["model"])
        return cls(**config)
