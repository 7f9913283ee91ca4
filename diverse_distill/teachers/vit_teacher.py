"""A KerasHub Vision Transformer (ViT) image classifier as a split teacher."""

import keras
import keras_hub

from diverse_distill.models.vit_backbone import CLS_INDEX, EMBEDDING_LAYER, ENCODER_LAYER
from diverse_distill.teachers.class_token_teacher import ClassTokenTransformerTeacher


def check_vit_backbone(backbone, owner):
    """Raises a `ValueError` unless `backbone` is a `ViTBackbone` with a class token.

    Example:
    ```python
    check_vit_backbone(ViTTeacher.tiny().backbone, "ViTTeacher")  # passes
    ```
    """
    if not isinstance(backbone, keras_hub.models.ViTBackbone):
        raise ValueError(
            f"`backbone` must be a `keras_hub.models.ViTBackbone`. Received: "
            f"{type(backbone).__name__}"
        )
    if not backbone.use_class_token:
        raise ValueError(
            f"{owner} reads the class token (row 0 of the encoder's states): the "
            "`ViTBackbone` must be built with `use_class_token=True`."
        )


@keras.saving.register_keras_serializable(package="diverse_distill")
class ViTTeacher(ClassTokenTransformerTeacher):
    """A KerasHub ViT image classifier, split at the class token of a middle block.

    The teacher classifies an image: `ViTBackbone` patches and embeds it
    (Conv2D patch embedding, class token prepended as row 0, learned
    positions added), runs its encoder blocks and the encoder's final layer
    norm; the class-token (CLS) row of that output is the *answer*, read out
    by this teacher's own `Dense(num_classes)` head (`classifier_head`) as
    its prediction: logits, `(batch, num_classes)`.

    Split: with `k = injection_layer` (0-based, `0 <= k < num_layers`), the
    question replaces the CLS state *input to* encoder block `k` (the output
    of block `k - 1`; for `k == 0` the embedded class token, the same for
    every image). Blocks `k..num_layers-1` and the final layer norm run after
    the injection point. The default `k = num_layers // 2` is the middle
    block. `native_question(x, prefix(x))` is the teacher's own CLS state
    there, so the split teacher with it equals the unsplit one.

    Two suffix modes, as in `BertTeacher`:

    - `"exact"`: every token runs blocks `k..num_layers-1` with row 0
      replaced by the question, so the question changes the patch tokens'
      states too. Context: `{"layer_inputs": (states_k,)}`.
    - `"query_token"`: only the question token runs blocks
      `k..num_layers-1`. At block `j` it is the single query of the block's
      self-attention, whose keys and values are
      `ln_1([question_j; own_j[1:]])`: its own running state and the
      *unmodified* teacher's patch-token states input to block `j`, which do
      not depend on the question, so `prefix` computes them once (running
      the unsplit teacher, with its own CLS). The question then runs the
      block's own dropout, residual, `ln_2` and MLP. Context:
      `{"layer_inputs": (states_k, ..., states_{num_layers-1})}`. With the
      native question it equals the unsplit model's CLS output exactly (a
      block's CLS row depends only on the CLS and patch states input to
      it); with another question it differs from `"exact"` only through
      the patch tokens, which `"exact"` lets the question change: at the
      last block (`k == num_layers - 1`) the two modes agree for any
      question. Cheaper: one query per block instead of `1 + num_patches`.
      `ViTEncoderBlock` is pre-norm (`x + attn(ln_1(x))`, then
      `x + mlp(ln_2(x))`) around a plain `keras.layers.MultiHeadAttention`
      with `query = value = ln_1(x)`; with `absorb_attention=True` its key
      and value projections are folded into the query
      (`teachers/folded_attention.py`, through the same helper as
      `BertTeacher`), so the cached patch states are layer-normed but never
      projected.

    `states_j` is `(batch, 1 + num_patches, hidden_dim)`: the full token
    states input to block `j`, CLS row included; every context leaf has the
    batch first. The context is wrapped in `stop_gradient`: under
    distillation gradients flow from the answer into the question only.
    `prefix`, `native_question` and `suffix` are `ClassTokenTransformerTeacher`'s
    (shared with `CLIPTeacher`); they call the backbone's own sub-layers
    (`vit_patching_and_embedding`, `vit_encoder`'s dropout,
    `encoder_layers` and final `layer_norm`, and inside a block its `ln_1`,
    `mha`, `dropout`, `ln_2` and `mlp`) in the backbone's order; `call(x)`
    runs the unsplit backbone.

    Inputs: a dict of batched features, of which this teacher reads
    `"images"` (not prefixed by the teacher's name, so that every image
    teacher and the image student, `ViTStudent`, read the same feature):
    float images `(batch, height, width, channels)` (channels-first if the
    backbone is), already preprocessed as the backbone expects (e.g. by
    `keras_hub.layers.ViTImageConverter`). A bare image tensor is accepted
    too.

    The teacher is trainable when constructed (fine-tune it with `fit` on
    `call(x)` and a classification loss on the logits); `freeze()` it before
    distillation (`DistillationModel` does). A frozen teacher never runs
    dropout, even when called with `training=True`. A pretrained ViT is
    `ViTTeacher(keras_hub.models.ViTBackbone.from_preset(folder), num_classes)`;
    the head is always this teacher's own, freshly initialised.

    Args:
        backbone: `keras_hub.models.ViTBackbone`, built with
            `use_class_token=True`.
        num_classes: int. Width of the classifier head (the logits).
        injection_layer: int or `None`, default `None` (`num_layers // 2`).
            The encoder block whose CLS input the question replaces.
        suffix_mode: str, default `"exact"`. `"exact"` or `"query_token"`.
        absorb_attention: bool, default `True`. How the "query_token" suffix
            attends to the cached patch states: folded projections (`True`)
            or the block's `mha` called on `[question; patches]` (`False`).
            Same answers and gradients up to float rounding. Unused in
            "exact" mode.
        name: str, default `"vit"`.
        **kwargs: passed to `keras.Model`.

    Example:
    ```python
    teacher = ViTTeacher.tiny(num_layers=4, suffix_mode="query_token")
    x = {"images": np.random.rand(2, 8, 8, 1).astype("float32")}
    context = teacher.prefix(x)
    hidden, logits = teacher.suffix(np.random.randn(2, 16), context)
    hidden.shape, logits.shape, teacher(x).shape  # (2, 16), (2, 3), (2, 3)
    ```

    Reference:
        Dosovitskiy et al., 2021, "An Image is Worth 16x16 Words:
        Transformers for Image Recognition at Scale"; DiverseDistill paper
        Sec. 4.1 (middle-layer [CLS]).
    """

    layer_noun = "block"

    def __init__(
        self,
        backbone,
        num_classes,
        injection_layer=None,
        suffix_mode="exact",
        absorb_attention=True,
        name="vit",
        **kwargs,
    ):
        check_vit_backbone(backbone, "ViTTeacher")
        super().__init__(
            backbone,
            num_layers=backbone.num_layers,
            injection_dim=backbone.hidden_dim,
            answer_dim=backbone.hidden_dim,
            injection_layer=injection_layer,
            suffix_mode=suffix_mode,
            absorb_attention=absorb_attention,
            name=name,
            **kwargs,
        )
        if int(num_classes) < 1:
            raise ValueError(f"`num_classes` must be >= 1. Received: {num_classes}")
        self.num_classes = int(num_classes)
        self.head = keras.layers.Dense(
            self.num_classes, dtype=backbone.dtype_policy, name="classifier_head"
        )
        self.head.build((None, backbone.hidden_dim))
        self.built = True

    # === Constructors ===

    @classmethod
    def tiny(
        cls,
        image_shape=(8, 8, 1),
        patch_size=4,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        mlp_dim=32,
        num_classes=3,
        dropout_rate=0.1,
        **kwargs,
    ):
        """A small randomly initialised ViT teacher, for tests and examples.

        Args:
            image_shape: tuple, default `(8, 8, 1)`.
            patch_size: int, default 4 (so 4 patches and the class token).
            num_layers: int, default 2.
            num_heads: int, default 2.
            hidden_dim: int, default 16.
            mlp_dim: int, default 32.
            num_classes: int, default 3.
            dropout_rate: float, default 0.1.
            **kwargs: passed to the `ViTTeacher` constructor.

        Example:
        ```python
        teacher = ViTTeacher.tiny(num_layers=4)
        teacher.injection_layer, teacher.injection_dim  # 2, 16
        ```
        """
        backbone = keras_hub.models.ViTBackbone(
            image_shape=tuple(image_shape),
            patch_size=patch_size,
            num_layers=num_layers,
            num_heads=num_heads,
            hidden_dim=hidden_dim,
            mlp_dim=mlp_dim,
            dropout_rate=dropout_rate,
        )
        return cls(backbone, num_classes=num_classes, **kwargs)

    # === The backbone's sub-layers ===

    @property
    def _embedding(self):
        return self.backbone.get_layer(EMBEDDING_LAYER)

    @property
    def _encoder(self):
        return self.backbone.get_layer(ENCODER_LAYER)

    @property
    def _transformer_layers(self):
        """The encoder's `ViTEncoderBlock`s."""
        return self._encoder.encoder_layers

    # === The unsplit teacher ===

    def call(self, x, training=False):
        """The unsplit teacher: the backbone's CLS output through the head (logits).

        Example:
        ```python
        teacher = ViTTeacher.tiny()
        teacher({"images": np.zeros((2, 8, 8, 1), "float32")}).shape  # (2, 3)
        ```
        """
        training = self._dropout_active(training)
        sequence = self.backbone(self._images(x), training=training)
        return self.head(sequence[:, CLS_INDEX, :])

    # === The split teacher's hooks (`prefix`, `suffix`: the base class) ===

    def _embed(self, images, training):
        """As `ViTBackbone`: patches + class token + positions, then the encoder's dropout."""
        states = self._embedding(images, training=training)
        return self._encoder.dropout(states, training=training)

    def _query_token_layer(self, layer, query, own_states, training):
        """One `ViTEncoderBlock` for the query token alone.

        Calls the block's own sub-layers in `ViTEncoderBlock.call`'s order;
        keys/values are `ln_1([query; own_states[:, 1:]])`.
        """
        attended = self._query_token_attention(
            layer.mha, layer.layer_norm_1, query, own_states, training
        )
        hidden = layer.dropout(attended, training=training) + query
        return hidden + layer.mlp(layer.layer_norm_2(hidden), training=training)

    def _readout(self, cls_state):
        """`(answer, logits)`: the final layer norm's CLS state and the head's logits.

        The encoder's final layer norm is per token: on the CLS row alone it is
        the same. The logits are `(batch, num_classes)`.
        """
        answer = self._encoder.layer_norm(cls_state)
        return answer, self.head(answer)

    # === Serialization ===

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}
