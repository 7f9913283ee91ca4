"""A KerasHub CLIP model as a zero-shot image classifier and split teacher."""

import keras
import keras_hub
import numpy as np
from keras import ops

from diverse_distill.teachers.class_token_teacher import ClassTokenTransformerTeacher
from diverse_distill.teachers.presets import check_preset_is_local

# OpenAI's CLIP zero-shot prompt (one of its 80 ImageNet templates).
DEFAULT_TEMPLATE = "a photo of a {label}."
# OpenAI CLIP's per-channel pixel mean and std (of images scaled to [0, 1]), as KerasHub's
# `CLIPImageConverter` normalises them: `pixel_mean`/`pixel_std` of `CLIP_PIXEL_STATS`.
CLIP_PIXEL_STATS = {"pixel_mean": (0.48145466, 0.4578275, 0.40821073),
                    "pixel_std": (0.26862954, 0.26130258, 0.27577711)}
# Class prompts run through the text tower this many at a time, once.
TEXT_BATCH_SIZE = 256


def tokenize_class_prompts(
    preprocessor, class_names, template=DEFAULT_TEMPLATE, sequence_length=None
):
    """Token ids of one prompt per class, as the CLIP text tower reads them.

    Args:
        preprocessor: a `keras_hub.models.CLIPPreprocessor` (lower-cases, tokenizes
            and packs `<|startoftext|> ... <|endoftext|>` padded to its
            `sequence_length`) or a `keras_hub.models.CLIPTokenizer` (wrapped in a
            `CLIPPreprocessor` with its default settings).
        class_names: list of str.
        template: str with a `{label}` field, default `"a photo of a {label}."`.
        sequence_length: int or `None`. The packed length; `None` keeps the
            preprocessor's (77 for a bare tokenizer, as CLIP's text encoder).

    Returns:
        int32 numpy array `(num_classes, sequence_length)`.

    Example:
    ```python
    # A two-word BPE vocabulary; a real one comes with a preset
    # (`keras_hub.models.CLIPPreprocessor.from_preset(folder)`).
    vocabulary = {"<|pad|>": 0, "x</w>": 1, "y</w>": 2, "x": 3, "xy</w>": 4,
                  "<|startoftext|>": 5, "<|endoftext|>": 6}
    tokenizer = keras_hub.models.CLIPTokenizer(vocabulary=vocabulary, merges=["x y</w>"])
    tokenize_class_prompts(tokenizer, ["x", "Y"], template="{label}", sequence_length=4)
    # [[5, 1, 6, 0], [5, 2, 6, 0]]
    ```
    """
    if "{label}" not in template:
        raise ValueError(
            f"`template` must contain the field '{{label}}'. Received: {template!r}"
        )
    if isinstance(preprocessor, keras_hub.models.CLIPTokenizer):
        preprocessor = keras_hub.models.CLIPPreprocessor(preprocessor)
    if not isinstance(preprocessor, keras_hub.models.CLIPPreprocessor):
        raise ValueError(
            "`preprocessor` must be a `keras_hub.models.CLIPPreprocessor` or a "
            f"`keras_hub.models.CLIPTokenizer`. Received: {type(preprocessor).__name__}"
        )
    prompts = [template.format(label=name) for name in class_names]
    packed = preprocessor(
        {"prompts": prompts, "images": None}, sequence_length=sequence_length
    )
    return np.asarray(packed["token_ids"], dtype="int32")


@keras.saving.register_keras_serializable(package="diverse_distill")
class CLIPTeacher(ClassTokenTransformerTeacher):
    """A KerasHub CLIP model as a zero-shot classifier, split in its image tower.

    The teacher classifies an image *zero-shot*, as CLIP does: the image tower
    (`CLIPVisionEncoder`: Conv2D patch embedding, class token prepended as row 0,
    learned positions, a pre-layer-norm, pre-norm encoder layers and a final layer
    norm) gives the class-token (CLS) state, `CLIPBackbone.vision_projection` maps
    it to the joint space: that *image embedding* is the *answer*
    (`(batch, projection_dim)`, what `CLIPBackbone.get_vision_embeddings`
    computes). The prediction is the logits
    `exp(logit_scale) * cos(image_embedding, class_embedding_c)` for each class
    `c`, `(batch, num_classes)`: `CLIPBackbone`'s own `"vision_logits"` for the
    images and the class prompts (`clip_head`). The class embeddings are the text
    tower's embeddings (`get_text_embeddings`) of one prompt per class (default
    `"a photo of a {label}."`), computed once at construction and stored as a
    non-trainable weight (`class_embeddings`): the teacher never runs the text
    tower again.

    Split: with `k = injection_layer` (0-based, `0 <= k < num_layers` of the
    vision encoder), the question replaces the CLS state *input to* vision
    encoder layer `k` (the output of layer `k - 1`; for `k == 0` the embedded,
    pre-layer-normed class token, the same for every image). Layers
    `k..num_layers-1`, the final layer norm, the projection and the zero-shot
    head run after the injection point. The default `k = num_layers // 2` is the
    middle layer. `native_question(x, prefix(x))` is the teacher's own CLS state
    there, so the split teacher with it equals the unsplit one.

    Two suffix modes, as in `ViTTeacher`:

    - `"exact"`: every token runs layers `k..num_layers-1` with row 0 replaced
      by the question. Context: `{"layer_inputs": (states_k,)}`.
    - `"query_token"`: only the question token runs layers `k..num_layers-1`,
      as the single query of each layer's self-attention over
      `ln_1([question_j; own_j[1:]])`, with the *unmodified* teacher's patch
      states input to layer `j` (computed once by `prefix`). Context:
      `{"layer_inputs": (states_k, ..., states_{num_layers-1})}`. Equal to the
      unsplit model with the native question; with another question it differs
      from `"exact"` only through the patch tokens (the two agree at
      `k == num_layers - 1`). `CLIPEncoderLayer` is pre-norm
      (`x + attention(ln_1(x))`, then `x + dense_2(act(dense_1(ln_2(x))))`)
      around a plain `keras.layers.MultiHeadAttention`; with
      `absorb_attention=True` the key and value projections are folded into the
      query (`teachers/folded_attention.py`).

    `states_j` is `(batch, 1 + num_patches, hidden_dim)`, CLS row included; every
    context leaf has the batch first, and the context is wrapped in
    `stop_gradient`. `prefix`, `native_question` and `suffix` are
    `ClassTokenTransformerTeacher`'s (shared with `ViTTeacher`); they call the
    vision encoder's own sub-layers
    (`embedding`, `pre_layer_norm`, `encoder_layers`, `layer_norm`, and inside a
    layer its `layer_norm_1`, `attention`, `layer_norm_2`, `dense_1`,
    `activation`, `dense_2`) and the backbone's `vision_projection` and
    `clip_head.logit_scale`; `call(x)` runs KerasHub's own
    `get_vision_embeddings`. CLIP has no dropout, so `training` changes nothing.

    Inputs: a dict of batched features, of which this teacher reads `"images"`
    (as every image teacher and `ViTStudent`): float images
    `(batch, height, width, channels)` (channels-first if the encoder is),
    already preprocessed as CLIP expects (resized, scaled and normalised by
    `keras_hub.layers.CLIPImageConverter.from_preset(preset)`), or, with
    `pixel_mean` and `pixel_std`, images of the right size in [0, 1] that the
    teacher normalises itself (`(x - mean) / std` per channel; one grey channel
    is repeated to three first), so that it reads the same images as a student
    that does not normalise. A bare image tensor is accepted too.

    Classes: either `class_token_ids` (the packed prompts, as
    `CLIPPreprocessor` gives them: `<|startoftext|>`, tokens, `<|endoftext|>`,
    padding; the text pooler reads the state at the position of the largest id,
    which is `<|endoftext|>` in CLIP's vocabulary) or `class_names` with a
    `preprocessor` (a `CLIPPreprocessor` or `CLIPTokenizer`) that tokenizes
    `template.format(label=name)`. The token ids are kept in the config, so a
    saved teacher needs no tokenizer.

    The teacher is trainable when constructed (a `fit` on `call(x)` trains the
    image tower, projection and logit scale; the class embeddings stay fixed);
    `freeze()` it before distillation (`DistillationModel` does).

    Args:
        backbone: `keras_hub.models.CLIPBackbone`.
        class_token_ids: int array `(num_classes, sequence_length)` or `None`.
        class_names: list of str or `None`. Needed (with `preprocessor`) when
            `class_token_ids` is `None`; otherwise kept as metadata.
        preprocessor: `keras_hub.models.CLIPPreprocessor` or `CLIPTokenizer`, or
            `None`. Tokenizes the class prompts when `class_token_ids` is `None`.
        template: str, default `"a photo of a {label}."`.
        injection_layer: int or `None`, default `None` (`num_layers // 2`). The
            vision encoder layer whose CLS input the question replaces.
        suffix_mode: str, default `"exact"`. `"exact"` or `"query_token"`.
        absorb_attention: bool, default `True`. How the "query_token" suffix
            attends to the cached patch states: folded projections (`True`) or the
            layer's `attention` called on `[question; patches]` (`False`).
        pixel_mean: sequence of floats (one per channel) or `None`, default
            `None` (images arrive normalised). With `pixel_std`: the teacher
            normalises images in [0, 1] itself (`CLIP_PIXEL_STATS` holds CLIP's).
        pixel_std: sequence of floats or `None`, default `None`.
        name: str, default `"clip"`.
        **kwargs: passed to `keras.Model`.

    Example:
    ```python
    teacher = CLIPTeacher.tiny(num_layers=4, suffix_mode="query_token")
    images = np.random.rand(2, 8, 8, 3).astype("float32")  # as CLIPImageConverter gives
    # `answer(x, question)` is `suffix(question, prefix(x))`.
    embedding, logits = teacher.answer({"images": images}, np.random.randn(2, 16))
    embedding.shape, logits.shape, teacher.class_embeddings.shape  # (2, 12), (2, 3), (3, 12)
    ```

    Reference:
        Radford et al., 2021, "Learning Transferable Visual Models From Natural
        Language Supervision"; DiverseDistill paper Sec. 4.1 (middle-layer [CLS]).
    """

    preset_example = "clip_vit_base_patch32"
    layer_noun = "vision layer"

    def __init__(
        self,
        backbone,
        class_token_ids=None,
        class_names=None,
        preprocessor=None,
        template=DEFAULT_TEMPLATE,
        injection_layer=None,
        suffix_mode="exact",
        absorb_attention=True,
        pixel_mean=None,
        pixel_std=None,
        name="clip",
        **kwargs,
    ):
        if not isinstance(backbone, keras_hub.models.CLIPBackbone):
            raise ValueError(
                "`backbone` must be a `keras_hub.models.CLIPBackbone`. Received: "
                f"{type(backbone).__name__}"
            )
        super().__init__(
            backbone,
            num_layers=backbone.vision_encoder.num_layers,
            injection_dim=backbone.vision_encoder.hidden_dim,
            answer_dim=backbone.projection_dim,
            injection_layer=injection_layer,
            suffix_mode=suffix_mode,
            absorb_attention=absorb_attention,
            name=name,
            **kwargs,
        )
        if class_names is not None:
            class_names = [str(label) for label in class_names]
        if class_token_ids is None:
            if class_names is None or preprocessor is None:
                raise ValueError(
                    "Pass the classes as `class_token_ids` (the tokenized class "
                    "prompts) or as `class_names` with a `preprocessor` (a "
                    "`keras_hub.models.CLIPPreprocessor` or `CLIPTokenizer`)."
                )
            class_token_ids = tokenize_class_prompts(
                preprocessor,
                class_names,
                template,
                # A bare tokenizer packs to the text encoder's own length.
                sequence_length=(
                    backbone.text_encoder.max_sequence_length
                    if isinstance(preprocessor, keras_hub.models.CLIPTokenizer)
                    else None
                ),
            )
        class_token_ids = self._check_token_ids(class_token_ids, backbone)
        if class_names is not None and len(class_names) != len(class_token_ids):
            raise ValueError(
                f"Got {len(class_names)} `class_names` for {len(class_token_ids)} "
                "rows of `class_token_ids`."
            )
        if (pixel_mean is None) != (pixel_std is None) or (
                pixel_mean is not None and len(pixel_mean) != len(pixel_std)):
            raise ValueError("Pass `pixel_mean` and `pixel_std` together, one value per "
                             f"channel each. Received: {pixel_mean}, {pixel_std}")
        # === Config ===
        self.pixel_mean = None if pixel_mean is None else [float(v) for v in pixel_mean]
        self.pixel_std = None if pixel_std is None else [float(v) for v in pixel_std]
        self.class_token_ids = class_token_ids
        self.class_names = class_names
        self.template = str(template)
        # === Weights (the base class has set `self.backbone`) ===
        # The text tower runs here, once; the suffix reads this constant.
        self.class_embeddings = self.add_weight(
            shape=(self.num_classes, backbone.projection_dim),
            initializer="zeros",
            dtype=backbone.dtype_policy.variable_dtype,
            trainable=False,
            name="class_embeddings",
        )
        self.class_embeddings.assign(
            ops.cast(self.text_embeddings(class_token_ids), self.class_embeddings.dtype)
        )
        self.built = True

    @staticmethod
    def _check_token_ids(token_ids, backbone):
        token_ids = np.asarray(token_ids)
        if (
            token_ids.ndim != 2
            or not np.issubdtype(token_ids.dtype, np.integer)
            or token_ids.shape[0] < 1
        ):
            raise ValueError(
                "`class_token_ids` must be an int array (num_classes, sequence_length) "
                f"with at least one class. Received: dtype={token_ids.dtype}, "
                f"shape={token_ids.shape}"
            )
        max_length = backbone.text_encoder.max_sequence_length
        if token_ids.shape[1] > max_length:
            raise ValueError(
                f"`class_token_ids` rows must be at most {max_length} tokens long (the "
                f"text encoder's `max_sequence_length`). Received: {token_ids.shape[1]}"
            )
        return token_ids.astype("int32")

    # === Constructors ===

    @classmethod
    def from_preset(
        cls,
        preset,
        class_names,
        template=DEFAULT_TEMPLATE,
        allow_download=False,
        **kwargs,
    ):
        """A pretrained CLIP from a KerasHub preset (or a local folder) and class names.

        Loads `keras_hub.models.CLIPBackbone.from_preset(preset)` and
        `keras_hub.models.CLIPPreprocessor.from_preset(preset)`, and embeds
        `template.format(label=name)` for each class name once. Images must be
        preprocessed by the preset's converter:
        `keras_hub.layers.CLIPImageConverter.from_preset(preset)`.

        Args:
            preset: str. A local KerasHub preset folder (e.g. written by
                `backbone.save_to_preset(folder)` and
                `preprocessor.save_to_preset(folder)`), or with downloads
                allowed a preset name such as `"clip_vit_base_patch32"`.
            class_names: list of str, one per class (the logits' order).
            template: str, default `"a photo of a {label}."`.
            allow_download: bool, default `False`. Let KerasHub download a
                named preset (also `DIVERSE_DISTILL_ALLOW_DOWNLOAD=1`);
                otherwise a preset that is not a local folder raises a
                `ValueError` at once.
            **kwargs: passed to the constructor (`injection_layer`,
                `suffix_mode`, `name`, ...).

        Example:
        ```python
        # A tiny preset folder; a real one is e.g. "clip_vit_base_patch32", saved
        # on a machine with network, whose images go through
        # `keras_hub.layers.CLIPImageConverter.from_preset(folder)`.
        vocabulary = {"<|pad|>": 0, "x</w>": 1, "y</w>": 2, "x": 3, "xy</w>": 4,
                      "<|startoftext|>": 5, "<|endoftext|>": 6}
        tokenizer = keras_hub.models.CLIPTokenizer(vocabulary=vocabulary, merges=["x y</w>"])
        CLIPTeacher.tiny(vocabulary_size=7).backbone.save_to_preset("/tmp/tiny_clip")
        keras_hub.models.CLIPPreprocessor(tokenizer, sequence_length=6).save_to_preset(
            "/tmp/tiny_clip")
        teacher = CLIPTeacher.from_preset("/tmp/tiny_clip", ["x", "y"], template="{label}")
        teacher({"images": np.zeros((2, 8, 8, 3), "float32")}).shape  # (2, 2)
        ```
        """
        check_preset_is_local(preset, allow_download, cls.preset_example)
        backbone = keras_hub.models.CLIPBackbone.from_preset(preset)
        preprocessor = keras_hub.models.CLIPPreprocessor.from_preset(preset)
        return cls(
            backbone,
            class_names=class_names,
            preprocessor=preprocessor,
            template=template,
            **kwargs,
        )

    @classmethod
    def tiny(
        cls,
        # The vision tower (`num_heads` and `intermediate_dim`: both towers).
        image_shape=(8, 8, 3), patch_size=4, num_layers=2, num_heads=2, hidden_dim=16,
        intermediate_dim=32,
        # The text tower, the joint space and the class prompts.
        text_num_layers=1, text_hidden_dim=8, vocabulary_size=20, sequence_length=6,
        projection_dim=12, num_classes=3, seed=0,
        **kwargs,
    ):
        """A small randomly initialised CLIP teacher, for tests and examples.

        The classes are random token-id prompts: `<|startoftext|>` (id
        `vocabulary_size - 2`), random words, `<|endoftext|>` (id
        `vocabulary_size - 1`, the largest, as in CLIP's vocabulary), padding 0.

        Args:
            image_shape: tuple, default `(8, 8, 3)`.
            patch_size: int, default 4 (4 patches and the class token).
            num_layers: int, default 2. Vision encoder layers.
            num_heads: int, default 2 (both towers).
            hidden_dim: int, default 16. Vision width (the question's).
            intermediate_dim: int, default 32 (both towers).
            text_num_layers: int, default 1.
            text_hidden_dim: int, default 8.
            vocabulary_size: int, default 20.
            sequence_length: int, default 6. Text `max_sequence_length`.
            projection_dim: int, default 12 (the answer's width).
            num_classes: int, default 3. Unused with a `preprocessor` (the
                classes are then `class_names`).
            seed: int, default 0. Seeds the class prompts' token ids.
            **kwargs: passed to the `CLIPTeacher` constructor.

        Example:
        ```python
        teacher = CLIPTeacher.tiny(num_layers=4)
        teacher.injection_layer, teacher.injection_dim, teacher.answer_dim  # 2, 16, 12
        ```
        """
        both_towers = {"num_heads": num_heads, "intermediate_dim": intermediate_dim}
        vision_encoder = keras_hub.models.CLIPVisionEncoder(
            image_shape=tuple(image_shape),
            patch_size=patch_size,
            num_layers=num_layers,
            hidden_dim=hidden_dim,
            **both_towers,
        )
        text_encoder = keras_hub.models.CLIPTextEncoder(
            vocabulary_size=vocabulary_size,
            max_sequence_length=sequence_length,
            num_layers=text_num_layers,
            # The text tower's width: its token embeddings' and its layers'.
            embedding_dim=text_hidden_dim, hidden_dim=text_hidden_dim,
            **both_towers,
        )
        backbone = keras_hub.models.CLIPBackbone(
            vision_encoder=vision_encoder,
            text_encoder=text_encoder,
            projection_dim=projection_dim,
        )
        if kwargs.get("preprocessor") is None:
            kwargs.setdefault(
                "class_token_ids",
                random_prompt_token_ids(num_classes, sequence_length, vocabulary_size, seed),
            )
        return cls(backbone, **kwargs)

    # === Properties ===

    @property
    def num_classes(self):
        """How many classes (class prompts) the logits score."""
        return int(self.class_token_ids.shape[0])

    @property
    def _vision(self):
        return self.backbone.vision_encoder

    @property
    def _transformer_layers(self):
        """The vision encoder's `CLIPEncoderLayer`s."""
        return self._vision.encoder_layers

    # === The text tower (construction only) ===

    def text_embeddings(self, token_ids):
        """The text tower's projected embeddings of packed prompts, as KerasHub's.

        `CLIPBackbone.get_text_embeddings`, in batches of 256. Called once, at
        construction, for the class prompts.

        Example:
        ```python
        teacher = CLIPTeacher.tiny()
        teacher.text_embeddings(teacher.class_token_ids).shape  # (3, 12)
        ```
        """
        token_ids = np.asarray(token_ids, dtype="int32")
        chunks = [
            self.backbone.get_text_embeddings(token_ids[start : start + TEXT_BATCH_SIZE])
            for start in range(0, len(token_ids), TEXT_BATCH_SIZE)
        ]
        return ops.concatenate(chunks, axis=0) if len(chunks) > 1 else chunks[0]

    # === The zero-shot head ===

    def zero_shot_logits(self, image_embeddings):
        """`exp(logit_scale) * cos(image, class)`: `CLIPHead`'s `vision_logits`.

        Args:
            image_embeddings: `(batch, projection_dim)`.

        Returns:
            `(batch, num_classes)` logits against the stored class embeddings.
        """
        dtype = image_embeddings.dtype
        classes = ops.cast(self.class_embeddings, dtype)
        # As `CLIPHead.call`: L2-normalise both sides, scale by exp(logit_scale).
        images = image_embeddings / ops.sqrt(
            ops.sum(ops.power(image_embeddings, 2), axis=-1, keepdims=True)
        )
        classes = classes / ops.sqrt(ops.sum(ops.power(classes, 2), axis=-1, keepdims=True))
        scale = ops.exp(ops.cast(self.backbone.clip_head.logit_scale, dtype))
        return ops.matmul(images, ops.transpose(classes)) * scale

    def _images(self, x):
        """The images; normalised here when `pixel_mean`/`pixel_std` are set."""
        images = super()._images(x)
        if self.pixel_mean is None:
            return images
        channels = len(self.pixel_mean)
        if images.shape[-1] == 1 and channels > 1:  # grey images: one channel, repeated
            images = ops.repeat(images, channels, axis=-1)
        mean = ops.cast(ops.convert_to_tensor(self.pixel_mean), images.dtype)
        std = ops.cast(ops.convert_to_tensor(self.pixel_std), images.dtype)
        return (images - mean) / std

    # === The unsplit teacher ===

    def call(self, x, training=False):
        """The unsplit teacher: KerasHub's image embedding, scored zero-shot (logits).

        Example:
        ```python
        teacher = CLIPTeacher.tiny()
        images = np.random.rand(2, 8, 8, 3).astype("float32")
        logits = teacher(images)  # (2, 3); a bare image tensor works too
        # KerasHub's image-text logits against the class prompts:
        kerashub = teacher.backbone({"images": images, "token_ids": teacher.class_token_ids})
        np.allclose(logits, kerashub["vision_logits"], atol=1e-4)  # True
        ```
        """
        return self.zero_shot_logits(self.backbone.get_vision_embeddings(self._images(x)))

    # === The split teacher's hooks (`prefix`, `suffix`: the base class) ===

    def _embed(self, images, training):
        """As `CLIPVisionEncoder`: patches + class token + positions, pre-layer-norm."""
        vision = self._vision
        return vision.pre_layer_norm(vision.embedding(images))

    def _query_token_layer(self, layer, query, own_states, training):
        """One `CLIPEncoderLayer` for the query token alone (its own sub-layers, in order)."""
        attended = self._query_token_attention(
            layer.attention, layer.layer_norm_1, query, own_states, training
        )
        hidden = ops.add(query, attended)
        mlp = layer.dense_2(layer.activation(layer.dense_1(layer.layer_norm_2(hidden))))
        return ops.add(hidden, mlp)

    def _readout(self, cls_state):
        """`(image_embedding, logits)` from the last vision layer's CLS state.

        Final layer norm (per token), the pooler's row 0, the projection: the
        answer is the projected image embedding `(batch, projection_dim)`; the
        prediction its zero-shot `(batch, num_classes)` logits. The text tower
        does not run.
        """
        answer = self.backbone.vision_projection(self._vision.layer_norm(cls_state))
        return answer, self.zero_shot_logits(answer)

    # === Serialization ===

    def get_config(self):
        return {
            **super().get_config(),
            "class_token_ids": self.class_token_ids.tolist(),
            "class_names": self.class_names,
            "template": self.template,
            "pixel_mean": self.pixel_mean,
            "pixel_std": self.pixel_std,
        }


def random_prompt_token_ids(num_classes, sequence_length, vocabulary_size, seed=0):
    """Random packed prompts for a tiny CLIP: start, words, end (the largest id), padding.

    Example:
    ```python
    random_prompt_token_ids(2, 6, 20)  # e.g. [[18, 5, 19, 0, 0, 0], [18, 3, 11, 19, 0, 0]]
    ```
    """
    if sequence_length < 3 or vocabulary_size < 4:
        raise ValueError(
            "Random prompts need `sequence_length >= 3` and `vocabulary_size >= 4`. "
            f"Received: {sequence_length}, {vocabulary_size}"
        )
    rng = np.random.default_rng(seed)
    start, end = vocabulary_size - 2, vocabulary_size - 1
    token_ids = np.zeros((num_classes, sequence_length), "int32")
    for row in range(num_classes):
        length = int(rng.integers(1, sequence_length - 1))  # 1..sequence_length-2 words
        words = rng.integers(1, start, length)
        token_ids[row, : length + 2] = [start, *words, end]
    return token_ids
