"""An embedding + MLP recommender (the paper's MLP-S/M/L architecture)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="diverse_distill")
class MLPRecommender(keras.Model):
    """Embedding tables, a ReLU tower and a linear head.

    The input is a dict of features. Each categorical feature (integer ids in
    `[0, vocabulary_size)`) gets its own embedding table; numeric features
    (float vectors, e.g. a multi-hot genre vector) are concatenated as they
    are. The concatenation is the model's *representation*; the tower's last
    layer is its *hidden* state; `head` maps it to the prediction. These are
    exactly the read-outs a DiverseDistill student needs and the injection
    and answer points of an MLP teacher.

    Args:
        categorical_features: dict. Feature name -> vocabulary size.
        embedding_dims: int or dict. Embedding width, for every categorical
            feature or per feature name.
        numeric_features: dict or None. Feature name -> vector width.
            Defaults to `None` (no numeric features).
        hidden_units: tuple of int. Widths of the ReLU tower. Defaults to
            `(128, 64)` (the paper's MLP-S).
        dropout: float. Dropout after each tower layer. Defaults to `0.0`.
        output_dim: int. Width of the prediction. Defaults to `1`.
        **kwargs: passed to `keras.Model`.

    Example:
    ```python
    model = MLPRecommender({"user_id": 10, "item_id": 20}, embedding_dims=4,
                           hidden_units=(8,))
    x = {"user_id": np.array([1, 2]), "item_id": np.array([3, 4])}
    model(x).shape  # (2, 1)
    model.representation(x).shape  # (2, 8)
    ```
    """

    def __init__(
        self,
        categorical_features,
        embedding_dims,
        numeric_features=None,
        hidden_units=(128, 64),
        dropout=0.0,
        output_dim=1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not categorical_features and not numeric_features:
            raise ValueError("MLPRecommender needs at least one feature.")
        if not hidden_units:
            raise ValueError("`hidden_units` must name at least one layer.")
        # === Config ===
        self.categorical_features = dict(categorical_features)
        self.embedding_dims = (
            dict(embedding_dims)
            if isinstance(embedding_dims, dict)
            else {n: int(embedding_dims) for n in self.categorical_features}
        )
        self.numeric_features = dict(numeric_features or {})
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.dropout = float(dropout)
        self.output_dim = int(output_dim)
        # === Layers ===
        self.embeddings = {
            name: keras.layers.Embedding(
                vocab, self.embedding_dims[name], name=f"{name}_embedding"
            )
            for name, vocab in self.categorical_features.items()
        }
        self.tower = [
            keras.layers.Dense(units, activation="relu", name=f"tower_{i}")
            for i, units in enumerate(self.hidden_units)
        ]
        self.dropouts = [
            keras.layers.Dropout(self.dropout, name=f"dropout_{i}")
            for i in range(len(self.hidden_units))
        ]
        self.head = keras.layers.Dense(self.output_dim, name="head")
        self._build_sublayers()

    def _build_sublayers(self):
        for name, layer in self.embeddings.items():
            layer.build((None,))
        width = self.representation_dim
        for dense in self.tower:
            dense.build((None, width))
            width = dense.units
        self.head.build((None, width))
        self.built = True

    @property
    def representation_dim(self):
        return sum(self.embedding_dims.values()) + sum(
            self.numeric_features.values()
        )

    @property
    def hidden_dim(self):
        return self.hidden_units[-1]

    @property
    def feature_names(self):
        return list(self.categorical_features) + list(self.numeric_features)

    def representation(self, x, training=False):
        """Concatenated embeddings and numeric features: `(batch, representation_dim)`."""
        parts = [
            ops.reshape(self.embeddings[n](ops.cast(x[n], "int32")), (-1, self.embedding_dims[n]))
            for n in self.categorical_features
        ]
        parts += [
            ops.reshape(ops.cast(x[n], self.compute_dtype), (-1, w))
            for n, w in self.numeric_features.items()
        ]
        return ops.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]

    def hidden_from_representation(self, representation, training=False):
        """Runs the tower on a representation: `(batch, hidden_dim)`."""
        h = representation
        for dense, drop in zip(self.tower, self.dropouts):
            h = drop(dense(h), training=training)
        return h

    def hidden(self, x, training=False):
        return self.hidden_from_representation(
            self.representation(x, training=training), training=training
        )

    def features(self, x, training=False):
        s = self.representation(x, training=training)
        return s, self.hidden_from_representation(s, training=training)

    def call(self, x, training=False):
        return self.head(self.hidden(x, training=training))

    def get_config(self):
        return {
            **super().get_config(),
            "categorical_features": self.categorical_features,
            "embedding_dims": self.embedding_dims,
            "numeric_features": self.numeric_features,
            "hidden_units": list(self.hidden_units),
            "dropout": self.dropout,
            "output_dim": self.output_dim,
        }
