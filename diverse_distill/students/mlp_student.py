"""The MLP student (the paper's MLP-S)."""

import keras

from diverse_distill.models.mlp_recommender import MLPRecommender


@keras.saving.register_keras_serializable(package="diverse_distill")
class MLPStudent(MLPRecommender):
    """An `MLPRecommender` used as a DiverseDistill student.

    Its representation is the concatenated input embeddings, its hidden
    state the last tower layer, its head the linear prediction layer. The
    paper's MLP-S is `hidden_units=(128, 64)` with ~768-wide user and movie
    embeddings (about 2M parameters on MovieLens-100K).

    Args: as `MLPRecommender`.

    Example:
    ```python
    student = MLPStudent({"user_id": 10, "item_id": 20}, embedding_dims=4)
    x = {"user_id": np.array([1, 2]), "item_id": np.array([3, 4])}
    s, h = student.features(x)
    s.shape, h.shape, student(x).shape  # (2, 8), (2, 64), (2, 1)
    ```
    """
