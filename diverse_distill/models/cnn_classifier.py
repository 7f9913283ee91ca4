"""A small convolutional image classifier, functional, with named blocks (a split teacher)."""

import keras

HIDDEN_LAYER = "hidden"  # the penultimate Dense: a split CNN teacher's answer


def block_name(index):
    """The name of conv block `index`'s output layer (its max-pooling)."""
    return f"block{index}"


def cnn_classifier(image_shape, num_classes, filters=(32, 64, 128), hidden_dim=128,
                   dropout=0.0, name="cnn"):
    """A functional CNN: conv blocks, global average pooling, a hidden Dense, logits.

    Block `i` is two 3x3 `Conv2D(filters[i])` + ReLU and a 2x2 max-pooling
    named `block_name(i)` (the pooling is skipped once the map is 1x1). Then
    global average pooling, dropout, `Dense(hidden_dim, relu)` named
    `HIDDEN_LAYER` and `Dense(num_classes)` logits. The input is named
    `"images"`, so the model reads `{"images": batch}`.

    Args:
        image_shape: tuple `(height, width, channels)`.
        num_classes: int.
        filters: tuple of int, one conv block each. Defaults to `(32, 64, 128)`.
        hidden_dim: int. Defaults to 128.
        dropout: float, before the hidden Dense. Defaults to 0.
        name: str. Defaults to `"cnn"`.

    Returns:
        A functional `keras.Model` from `{"images": (h, w, c)}` to logits.

    Example:
    ```python
    import numpy as np
    model = cnn_classifier((28, 28, 1), num_classes=10, filters=(8, 16))
    model({"images": np.zeros((2, 28, 28, 1), "float32")}).shape  # (2, 10)
    model.get_layer(block_name(1)).output.shape  # (None, 7, 7, 16)
    ```
    """
    inputs = keras.Input(tuple(image_shape), name="images")
    x = inputs
    for i, width in enumerate(filters):
        x = keras.layers.Conv2D(width, 3, padding="same", activation="relu",
                                name=f"conv{i}_a")(x)
        x = keras.layers.Conv2D(width, 3, padding="same", activation="relu",
                                name=f"conv{i}_b")(x)
        pool = 2 if min(x.shape[1], x.shape[2]) >= 2 else 1
        x = keras.layers.MaxPooling2D(pool, name=block_name(i))(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    hidden = keras.layers.Dense(hidden_dim, activation="relu", name=HIDDEN_LAYER)(x)
    logits = keras.layers.Dense(num_classes, name="logits")(hidden)
    return keras.Model({"images": inputs}, logits, name=name)
