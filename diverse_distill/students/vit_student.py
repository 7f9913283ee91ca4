"""A small Vision Transformer (KerasHub `ViTBackbone`) as an image-classifier student."""

import keras
import keras_hub

from diverse_distill.students.student import Student
from diverse_distill.models.vit_backbone import (
    CLS_INDEX,
    EMBEDDING_LAYER,
    ENCODER_LAYER,
    IMAGES_KEY,
    read_images,
)


@keras.saving.register_keras_serializable(package="diverse_distill")
class ViTStudent(Student):
    """A small ViT classifier with the student read-outs at its class token.

    It owns a KerasHub `ViTBackbone` (with a class token) and a
    `Dense(num_classes)` head on the last block's class-token (CLS) state
    after the encoder's final layer norm; `call(x)` returns logits
    `(batch, num_classes)`. The read-outs, with `m = num_layers // 2`:

    - `representation(x)`: the CLS state input to encoder block `m` (the
      output of block `m - 1`, before any layer norm), `(batch, hidden_dim)`:
      what the Question Augmenter reads.
    - `hidden(x)`: the last block's CLS state after the final layer norm,
      `(batch, hidden_dim)`: the space the teachers' answers are aligned to.
    - `head`: `Dense(num_classes)`, from `hidden(x)` to the logits.
    - `features(x)`: both read-outs in one pass through the backbone.

    They call the backbone's own sub-layers (patch embedding, encoder
    dropout, blocks, final layer norm) in its order. `num_layers` must be at
    least 2: the CLS state input to block 0 is the embedded class token, the
    same for every image.

    Inputs: a dict with the float `"images"` feature `(batch, height, width,
    channels)`, the one every image teacher (`ViTTeacher`) reads, or the
    image tensor itself. `export_student` writes `serving_model`: the
    functional model `{"images": images} -> logits` on the same layers, so
    the SavedModel's `serve` takes `{"images": tensor}`.

    Args:
        image_shape: tuple of 3 ints, `(height, width, channels)`.
        patch_size: int or (int, int).
        num_layers: int, >= 2.
        num_heads: int.
        hidden_dim: int (a multiple of `num_heads`).
        mlp_dim: int. Width of each block's MLP.
        num_classes: int. Width of the head (the logits).
        dropout_rate: float, default `0.0`.
        attention_dropout: float, default `0.0`.
        layer_norm_epsilon: float, default `1e-6`.
        **kwargs: passed to `keras.Model` (e.g. `name`).

    Example:
    ```python
    student = ViTStudent(image_shape=(8, 8, 1), patch_size=4, num_layers=2, num_heads=2,
                         hidden_dim=8, mlp_dim=16, num_classes=3)
    x = {"images": np.random.rand(2, 8, 8, 1).astype("float32")}
    s, h = student.features(x)
    s.shape, h.shape, student(x).shape  # (2, 8), (2, 8), (2, 3)
    export_student(student, "/tmp/vit_student")
    reloaded = tf.saved_model.load("/tmp/vit_student")
    reloaded.serve(x).shape  # (2, 3)
    ```
    """

    images_key = IMAGES_KEY

    def __init__(
        self,
        image_shape,
        patch_size,
        num_layers,
        num_heads,
        hidden_dim,
        mlp_dim,
        num_classes,
        dropout_rate=0.0,
        attention_dropout=0.0,
        layer_norm_epsilon=1e-6,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(num_layers) < 2:
            raise ValueError(
                "`num_layers` must be >= 2: the representation is the class-token "
                "state input to block `num_layers // 2`, which for block 0 is the "
                f"same for every image. Received: num_layers={num_layers}"
            )
        if int(num_classes) < 1:
            raise ValueError(f"`num_classes` must be >= 1. Received: {num_classes}")
        # === Config ===
        self.image_shape = tuple(int(d) for d in image_shape)
        self.patch_size = (
            tuple(int(p) for p in patch_size)
            if isinstance(patch_size, (list, tuple))
            else int(patch_size)
        )
        self.num_layers = int(num_layers)
        self.num_heads = int(num_heads)
        self._hidden_dim = int(hidden_dim)
        self.mlp_dim = int(mlp_dim)
        self.num_classes = int(num_classes)
        self.dropout_rate = float(dropout_rate)
        self.attention_dropout = float(attention_dropout)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.representation_layer = self.num_layers // 2
        # === Layers ===
        self.backbone = keras_hub.models.ViTBackbone(
            image_shape=self.image_shape,
            patch_size=self.patch_size,
            num_layers=self.num_layers,
            num_heads=self.num_heads,
            hidden_dim=self._hidden_dim,
            mlp_dim=self.mlp_dim,
            dropout_rate=self.dropout_rate,
            attention_dropout=self.attention_dropout,
            layer_norm_epsilon=self.layer_norm_epsilon,
            use_class_token=True,
            name="backbone",
        )
        self.head = keras.layers.Dense(self.num_classes, name="head")
        # The plain model `export_student` writes: the same layers, images -> logits.
        sequence = self.backbone.output
        self.serving_model = keras.Model(
            {IMAGES_KEY: self.backbone.input},
            self.head(sequence[:, CLS_INDEX, :]),
            name="vit_student_serving",
        )
        self.built = True

    @classmethod
    def tiny(cls, image_shape=(8, 8, 1), patch_size=4, num_layers=2, num_heads=2,
             hidden_dim=8, mlp_dim=16, num_classes=3, **kwargs):
        """A small ViT student, for tests and examples.

        Example:
        ```python
        student = ViTStudent.tiny(num_layers=4)
        student.representation_layer, student.hidden_dim  # 2, 8
        ```
        """
        return cls(image_shape=image_shape, patch_size=patch_size, num_layers=num_layers,
                   num_heads=num_heads, hidden_dim=hidden_dim, mlp_dim=mlp_dim,
                   num_classes=num_classes, **kwargs)

    # === Read-out widths ===

    @property
    def representation_dim(self):
        """Width of `representation(x)`: the ViT's hidden size."""
        return self._hidden_dim

    @property
    def hidden_dim(self):
        """Width of `hidden(x)`: the ViT's hidden size."""
        return self._hidden_dim

    # === Read-outs ===

    def features(self, x, training=False):
        """`(representation, hidden)` in one pass through the backbone.

        Example:
        ```python
        student = ViTStudent.tiny()
        s, h = student.features({"images": np.zeros((2, 8, 8, 1), "float32")})
        s.shape, h.shape  # (2, 8), (2, 8)
        ```
        """
        encoder = self.backbone.get_layer(ENCODER_LAYER)
        images = read_images(x, self.name, self.backbone.compute_dtype)
        # As `ViTBackbone`: patches + class token + positions, the encoder's dropout,
        # its blocks and its final layer norm (per token: applied to the CLS row).
        states = self.backbone.get_layer(EMBEDDING_LAYER)(images, training=training)
        states = encoder.dropout(states, training=training)
        representation = None
        for index, block in enumerate(encoder.encoder_layers):
            if index == self.representation_layer:
                representation = states[:, CLS_INDEX, :]
            states = block(states, training=training)
        hidden = encoder.layer_norm(states[:, CLS_INDEX, :])
        return representation, hidden

    def representation(self, x, training=False):
        """The CLS state input to block `num_layers // 2`: `(batch, hidden_dim)`.

        Example:
        ```python
        ViTStudent.tiny().representation(np.zeros((2, 8, 8, 1), "float32")).shape  # (2, 8)
        ```
        """
        return self.features(x, training=training)[0]

    def hidden(self, x, training=False):
        """The last block's CLS state after the final layer norm: `(batch, hidden_dim)`.

        Example:
        ```python
        ViTStudent.tiny().hidden(np.zeros((2, 8, 8, 1), "float32")).shape  # (2, 8)
        ```
        """
        return self.features(x, training=training)[1]

    def call(self, x, training=False):
        return self.head(self.hidden(x, training=training))

    # === Serialization ===

    def get_config(self):
        return {
            **super().get_config(),
            "image_shape": list(self.image_shape),
            "patch_size": (list(self.patch_size) if isinstance(self.patch_size, tuple)
                           else self.patch_size),
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "hidden_dim": self._hidden_dim,
            "mlp_dim": self.mlp_dim,
            "num_classes": self.num_classes,
            "dropout_rate": self.dropout_rate,
            "attention_dropout": self.attention_dropout,
            "layer_norm_epsilon": self.layer_norm_epsilon,
        }
