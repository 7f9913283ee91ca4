"""A KerasHub Vision Transformer (ViT) image classifier as a split teacher."""

import operator

import keras
import keras_hub
from keras import ops

# The folded single-query attention is written for Keras' `MultiHeadAttention`
# (KerasHub's BERT attention subclasses it; ViT's blocks use it as it is).
from diverse_distill.teachers.folded_attention import query_token_attention
from diverse_distill.teachers.split_teacher import SplitTeacher

SUFFIX_MODES = ("exact", "query_token")
CLS_INDEX = 0
# The image feature every image teacher and image student reads.
IMAGES_KEY = "images"
# The names `ViTBackbone` gives its two layers (keras_hub/src/models/vit/vit_backbone.py).
EMBEDDING_LAYER = "vit_patching_and_embedding"
ENCODER_LAYER = "vit_encoder"


def read_images(x, owner, dtype):
    """The image batch in `x`: `x["images"]` when `x` is a dict, else `x` itself.

    Args:
        x: a dict of batched features with an `"images"` entry, or the images.
        owner: str. The model reading them, for the error message.
        dtype: the dtype to cast the images to.

    Returns:
        The images, `(batch, height, width, channels)` (channels-last backbones).

    Example:
    ```python
    read_images({"images": np.zeros((2, 8, 8, 1))}, "vit", "float32").shape  # (2, 8, 8, 1)
    ```
    """
    if isinstance(x, dict):
        if IMAGES_KEY not in x:
            raise ValueError(
                f"{owner!r} reads the image feature {IMAGES_KEY!r}, absent from the "
                f"inputs. Received keys: {sorted(x)}"
            )
        x = x[IMAGES_KEY]
    return ops.cast(x, dtype)


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
class ViTTeacher(SplitTeacher):
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
    `prefix`/`suffix` call the backbone's own sub-layers
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

    images_key = IMAGES_KEY

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
        num_layers = backbone.num_layers
        if injection_layer is None:
            injection_layer = num_layers // 2
        try:
            index = operator.index(injection_layer)
        except TypeError:
            index = None
        if index is None or not 0 <= index < num_layers:
            raise ValueError(
                f"`injection_layer` must be in [0, {num_layers - 1}] (the encoder "
                "block whose class-token input the question replaces; the backbone "
                f"has {num_layers} blocks). Received: injection_layer={injection_layer}"
            )
        if suffix_mode not in SUFFIX_MODES:
            raise ValueError(
                f"`suffix_mode` must be one of {SUFFIX_MODES}. Received: "
                f"suffix_mode={suffix_mode!r}"
            )
        if int(num_classes) < 1:
            raise ValueError(f"`num_classes` must be >= 1. Received: {num_classes}")
        super().__init__(
            injection_dim=backbone.hidden_dim,
            answer_dim=backbone.hidden_dim,
            name=name,
            **kwargs,
        )
        # === Config ===
        self.num_classes = int(num_classes)
        self.injection_layer = int(index)
        self.suffix_mode = suffix_mode
        self.absorb_attention = bool(absorb_attention)
        # === Layers ===
        self.backbone = backbone
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

    # === Properties ===

    @property
    def hidden_dim(self):
        """The backbone's width: the question's and the answer's."""
        return self.backbone.hidden_dim

    @property
    def feature_keys(self):
        """The features this teacher reads: `("images",)`."""
        return (self.images_key,)

    @property
    def prefix_spec(self):
        """The prefix is the token states input to the blocks the suffix runs.

        Example:
        ```python
        teacher = ViTTeacher.tiny(num_layers=2, suffix_mode="query_token")
        teacher.prefix_spec  # {'injection_layer': 1, 'suffix_mode': 'query_token'}
        ```
        """
        return {"injection_layer": self.injection_layer, "suffix_mode": self.suffix_mode}

    @property
    def _embedding(self):
        return self.backbone.get_layer(EMBEDDING_LAYER)

    @property
    def _encoder(self):
        return self.backbone.get_layer(ENCODER_LAYER)

    def _dropout_active(self, training):
        """Dropout runs only when asked for and the teacher is not frozen."""
        return bool(training) and self.trainable

    def _images(self, x):
        return read_images(x, self.name, self.backbone.compute_dtype)

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

    # === The split teacher ===

    def prefix(self, x, training=False):
        """Token states input to the blocks the suffix runs.

        Args:
            x: dict with this teacher's `"images"` (or the image tensor).
            training: bool, default `False`. Ignored once frozen.

        Returns:
            `{"layer_inputs": tuple}` of `(batch, 1 + num_patches, hidden_dim)`
            states: one (input to `injection_layer`) in "exact" mode, one per
            block `injection_layer..num_layers-1` in "query_token" mode.

        Example:
        ```python
        teacher = ViTTeacher.tiny(num_layers=4, suffix_mode="query_token")
        context = teacher.prefix({"images": np.zeros((2, 8, 8, 1), "float32")})
        [s.shape for s in context["layer_inputs"]]  # [(2, 5, 16), (2, 5, 16)]
        ```
        """
        training = self._dropout_active(training)
        encoder = self._encoder
        # As `ViTBackbone`: patches + class token + positions, then the encoder's dropout.
        states = self._embedding(self._images(x), training=training)
        states = encoder.dropout(states, training=training)

        # The unmodified teacher up to the last block input the suffix needs.
        if self.suffix_mode == "exact":
            last_needed_input = self.injection_layer
        else:
            last_needed_input = self.backbone.num_layers - 1
        layer_inputs = []
        for index in range(last_needed_input + 1):
            if index >= self.injection_layer:
                layer_inputs.append(states)
            if index < last_needed_input:
                states = encoder.encoder_layers[index](states, training=training)
        context = {"layer_inputs": tuple(layer_inputs)}
        # A constant for the suffix: no gradient flows back into the prefix.
        return keras.tree.map_structure(ops.stop_gradient, context)

    def native_question(self, x, context, training=False):
        """The teacher's own CLS state input to `injection_layer`.

        Example:
        ```python
        teacher = ViTTeacher.tiny()
        x = {"images": np.zeros((2, 8, 8, 1), "float32")}
        teacher.native_question(x, teacher.prefix(x)).shape  # (2, 16)
        ```
        """
        return context["layer_inputs"][0][:, CLS_INDEX, :]

    def suffix(self, question, context, training=False):
        """Blocks `injection_layer..num_layers-1` with `question` as the CLS token.

        Args:
            question: float tensor `(batch, hidden_dim)`, in place of the CLS
                state input to `injection_layer`.
            context: the dict returned by `prefix` (or rows of it).
            training: bool, default `False`. Ignored once frozen.

        Returns:
            `(answer, logits)`: the last block's CLS state after the encoder's
            final layer norm, `(batch, hidden_dim)`, and the head's
            `(batch, num_classes)` logits.

        Example:
        ```python
        teacher = ViTTeacher.tiny()
        context = teacher.prefix({"images": np.zeros((2, 8, 8, 1), "float32")})
        answer, logits = teacher.suffix(np.ones((2, 16), "float32"), context)
        answer.shape, logits.shape  # (2, 16), (2, 3)
        ```
        """
        training = self._dropout_active(training)
        question = ops.convert_to_tensor(question)
        if question.shape[-1] not in (None, self.injection_dim):
            raise ValueError(
                f"`question` must have last dimension {self.injection_dim} (the ViT "
                f"hidden size). Received shape: {question.shape}"
            )
        encoder = self._encoder
        layer_inputs = context["layer_inputs"]
        later_blocks = encoder.encoder_layers[self.injection_layer :]
        question = ops.cast(question, layer_inputs[0].dtype)[:, None, :]

        if self.suffix_mode == "exact":
            states = ops.concatenate(
                [question, layer_inputs[0][:, CLS_INDEX + 1 :, :]], axis=1
            )
            for block in later_blocks:
                states = block(states, training=training)
            cls_state = states[:, CLS_INDEX, :]
        else:
            if len(layer_inputs) != len(later_blocks):
                raise ValueError(
                    "A query_token context holds the token states input to each of "
                    f"the {len(later_blocks)} blocks after the injection point. "
                    f"Received {len(layer_inputs)}."
                )
            for block, own_states in zip(later_blocks, layer_inputs):
                question = self._query_token_block(block, question, own_states, training)
            cls_state = question[:, 0, :]
        # The final layer norm is per token: on the CLS row alone it is the same.
        answer = encoder.layer_norm(cls_state)
        return answer, self.head(answer)

    def _query_token_block(self, block, query, own_states, training):
        """One `ViTEncoderBlock` for the query token alone.

        Calls the block's own sub-layers in `ViTEncoderBlock.call`'s order;
        keys/values are `ln_1([query; own_states[:, 1:]])`.
        """
        patches = block.layer_norm_1(own_states[:, CLS_INDEX + 1 :, :])
        normed = block.layer_norm_1(query)
        if self.absorb_attention:
            attended = query_token_attention(block.mha, normed, patches, None, training)
        else:
            attended = block.mha(
                query=normed,
                value=ops.concatenate([normed, patches], axis=1),
                training=training,
            )
        hidden = block.dropout(attended, training=training) + query
        return hidden + block.mlp(block.layer_norm_2(hidden), training=training)

    # === Serialization ===

    def get_config(self):
        return {
            **super().get_config(),
            # Tuples as lists (KerasHub keeps `image_shape` and `patch_size` as given):
            # the config is the same before and after a JSON round trip.
            "backbone": _lists(keras.saving.serialize_keras_object(self.backbone)),
            "num_classes": self.num_classes,
            "injection_layer": self.injection_layer,
            "suffix_mode": self.suffix_mode,
            "absorb_attention": self.absorb_attention,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)


def _lists(config):
    """`config` with every tuple, at any depth, turned into a list (as JSON gives it back)."""
    if isinstance(config, dict):
        return {key: _lists(value) for key, value in config.items()}
    if isinstance(config, (list, tuple)):
        return [_lists(value) for value in config]
    return config
