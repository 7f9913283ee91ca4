"""A KerasHub CLIP model as a zero-shot image classifier and split teacher."""

import operator

import keras
import keras_hub
import numpy as np
from keras import ops

from diverse_distill.teachers.folded_attention import query_token_attention
from diverse_distill.teachers.presets import check_preset_is_local
from diverse_distill.teachers.split_teacher import SplitTeacher
from diverse_distill.teachers.vit_teacher import IMAGES_KEY, SUFFIX_MODES, _lists, read_images

CLS_INDEX = 0
# OpenAI's CLIP zero-shot prompt (one of its 80 ImageNet templates).
DEFAULT_TEMPLATE = "a photo of a {label}."
# Class prompts run through the text tower this many at a time, once.
TEXT_BATCH_SIZE = 256


def _check_injection_layer(injection_layer, num_layers):
    """`injection_layer` as an int in `[0, num_layers)`, or one `ValueError`."""
    try:
        index = operator.index(injection_layer)
    except TypeError:
        index = None
    if index is None or not 0 <= index < num_layers:
        raise ValueError(
            f"`injection_layer` must be in [0, {num_layers - 1}] (the vision encoder "
            "layer whose class-token input the question replaces; the vision tower has "
            f"{num_layers} layers). Received: injection_layer={injection_layer}"
        )
    return int(index)


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
class CLIPTeacher(SplitTeacher):
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
    `stop_gradient`. `prefix`/`suffix` call the vision encoder's own sub-layers
    (`embedding`, `pre_layer_norm`, `encoder_layers`, `layer_norm`, and inside a
    layer its `layer_norm_1`, `attention`, `layer_norm_2`, `dense_1`,
    `activation`, `dense_2`) and the backbone's `vision_projection` and
    `clip_head.logit_scale`; `call(x)` runs KerasHub's own
    `get_vision_embeddings`. CLIP has no dropout, so `training` changes nothing.

    Inputs: a dict of batched features, of which this teacher reads `"images"`
    (as every image teacher and `ViTStudent`): float images
    `(batch, height, width, channels)` (channels-first if the encoder is),
    already preprocessed as CLIP expects (resized, scaled and normalised by
    `keras_hub.layers.CLIPImageConverter.from_preset(preset)`). A bare image
    tensor is accepted too.

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
        name: str, default `"clip"`.
        **kwargs: passed to `keras.Model`.

    Example:
    ```python
    teacher = CLIPTeacher.tiny(num_layers=4, suffix_mode="query_token")
    x = {"images": np.random.rand(2, 8, 8, 3).astype("float32")}
    context = teacher.prefix(x)
    hidden, logits = teacher.suffix(np.random.randn(2, 16), context)
    hidden.shape, logits.shape, teacher(x).shape  # (2, 12), (2, 3), (2, 3)
    ```

    Reference:
        Radford et al., 2021, "Learning Transferable Visual Models From Natural
        Language Supervision"; DiverseDistill paper Sec. 4.1 (middle-layer [CLS]).
    """

    images_key = IMAGES_KEY
    preset_example = "clip_vit_base_patch32"

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
        name="clip",
        **kwargs,
    ):
        if not isinstance(backbone, keras_hub.models.CLIPBackbone):
            raise ValueError(
                "`backbone` must be a `keras_hub.models.CLIPBackbone`. Received: "
                f"{type(backbone).__name__}"
            )
        num_layers = backbone.vision_encoder.num_layers
        if injection_layer is None:
            injection_layer = num_layers // 2
        injection_layer = _check_injection_layer(injection_layer, num_layers)
        if suffix_mode not in SUFFIX_MODES:
            raise ValueError(
                f"`suffix_mode` must be one of {SUFFIX_MODES}. Received: "
                f"suffix_mode={suffix_mode!r}"
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
        super().__init__(
            injection_dim=backbone.vision_encoder.hidden_dim,
            answer_dim=backbone.projection_dim,
            name=name,
            **kwargs,
        )
        # === Config ===
        self.class_token_ids = class_token_ids
        self.class_names = class_names
        self.template = str(template)
        self.injection_layer = injection_layer
        self.suffix_mode = suffix_mode
        self.absorb_attention = bool(absorb_attention)
        # === Layers and weights ===
        self.backbone = backbone
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
        image_shape=(8, 8, 3),
        patch_size=4,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        text_num_layers=1,
        text_hidden_dim=8,
        vocabulary_size=20,
        sequence_length=6,
        projection_dim=12,
        num_classes=3,
        seed=0,
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
        vision_encoder = keras_hub.models.CLIPVisionEncoder(
            patch_size=patch_size,
            hidden_dim=hidden_dim,
            num_layers=num_layers,
            num_heads=num_heads,
            intermediate_dim=intermediate_dim,
            image_shape=tuple(image_shape),
        )
        text_encoder = keras_hub.models.CLIPTextEncoder(
            vocabulary_size=vocabulary_size,
            embedding_dim=text_hidden_dim,
            hidden_dim=text_hidden_dim,
            num_layers=text_num_layers,
            num_heads=num_heads,
            intermediate_dim=intermediate_dim,
            max_sequence_length=sequence_length,
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
    def hidden_dim(self):
        """The vision tower's width: the question's."""
        return self.backbone.vision_encoder.hidden_dim

    @property
    def feature_keys(self):
        """The features this teacher reads: `("images",)`."""
        return (self.images_key,)

    @property
    def prefix_spec(self):
        """The prefix is the vision token states input to the layers the suffix runs.

        Example:
        ```python
        CLIPTeacher.tiny(suffix_mode="query_token").prefix_spec
        # {'injection_layer': 1, 'suffix_mode': 'query_token'}
        ```
        """
        return {"injection_layer": self.injection_layer, "suffix_mode": self.suffix_mode}

    @property
    def _vision(self):
        return self.backbone.vision_encoder

    def _images(self, x):
        return read_images(x, self.name, self.backbone.compute_dtype)

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

    # === The unsplit teacher ===

    def call(self, x, training=False):
        """The unsplit teacher: KerasHub's image embedding, scored zero-shot (logits).

        Example:
        ```python
        teacher = CLIPTeacher.tiny()
        teacher({"images": np.zeros((2, 8, 8, 3), "float32")}).shape  # (2, 3)
        ```
        """
        return self.zero_shot_logits(self.backbone.get_vision_embeddings(self._images(x)))

    # === The split teacher ===

    def prefix(self, x, training=False):
        """Vision token states input to the layers the suffix runs.

        Args:
            x: dict with the `"images"` feature (or the image tensor).
            training: bool, default `False` (CLIP has no dropout).

        Returns:
            `{"layer_inputs": tuple}` of `(batch, 1 + num_patches, hidden_dim)`
            states: one (input to `injection_layer`) in "exact" mode, one per
            layer `injection_layer..num_layers-1` in "query_token" mode.

        Example:
        ```python
        teacher = CLIPTeacher.tiny(num_layers=4, suffix_mode="query_token")
        context = teacher.prefix({"images": np.zeros((2, 8, 8, 3), "float32")})
        [s.shape for s in context["layer_inputs"]]  # [(2, 5, 16), (2, 5, 16)]
        ```
        """
        vision = self._vision
        # As `CLIPVisionEncoder`: patches + class token + positions, pre-layer-norm.
        states = vision.pre_layer_norm(vision.embedding(self._images(x)))
        if self.suffix_mode == "exact":
            last_needed_input = self.injection_layer
        else:
            last_needed_input = vision.num_layers - 1
        layer_inputs = []
        for index in range(last_needed_input + 1):
            if index >= self.injection_layer:
                layer_inputs.append(states)
            if index < last_needed_input:
                states = vision.encoder_layers[index](states, training=training)
        context = {"layer_inputs": tuple(layer_inputs)}
        return keras.tree.map_structure(ops.stop_gradient, context)

    def native_question(self, x, context, training=False):
        """The teacher's own CLS state input to vision layer `injection_layer`.

        Example:
        ```python
        teacher = CLIPTeacher.tiny()
        x = {"images": np.zeros((2, 8, 8, 3), "float32")}
        teacher.native_question(x, teacher.prefix(x)).shape  # (2, 16)
        ```
        """
        return context["layer_inputs"][0][:, CLS_INDEX, :]

    def suffix(self, question, context, training=False):
        """Vision layers `injection_layer..` with `question` as the CLS token, then the head.

        Args:
            question: float tensor `(batch, hidden_dim)`, in place of the CLS
                state input to `injection_layer`.
            context: the dict returned by `prefix` (or rows of it).
            training: bool, default `False` (CLIP has no dropout).

        Returns:
            `(answer, logits)`: the projected image embedding
            `(batch, projection_dim)` and the zero-shot `(batch, num_classes)`
            logits. The text tower does not run.

        Example:
        ```python
        teacher = CLIPTeacher.tiny()
        context = teacher.prefix({"images": np.zeros((2, 8, 8, 3), "float32")})
        answer, logits = teacher.suffix(np.ones((2, 16), "float32"), context)
        answer.shape, logits.shape  # (2, 12), (2, 3)
        ```
        """
        question = ops.convert_to_tensor(question)
        if question.shape[-1] not in (None, self.injection_dim):
            raise ValueError(
                f"`question` must have last dimension {self.injection_dim} (the CLIP "
                f"vision hidden size). Received shape: {question.shape}"
            )
        vision = self._vision
        layer_inputs = context["layer_inputs"]
        later_layers = vision.encoder_layers[self.injection_layer :]
        question = ops.cast(question, layer_inputs[0].dtype)[:, None, :]

        if self.suffix_mode == "exact":
            states = ops.concatenate(
                [question, layer_inputs[0][:, CLS_INDEX + 1 :, :]], axis=1
            )
            for layer in later_layers:
                states = layer(states, training=training)
            cls_state = states[:, CLS_INDEX, :]
        else:
            if len(layer_inputs) != len(later_layers):
                raise ValueError(
                    "A query_token context holds the token states input to each of "
                    f"the {len(later_layers)} vision layers after the injection point. "
                    f"Received {len(layer_inputs)}."
                )
            for layer, own_states in zip(later_layers, layer_inputs):
                question = self._query_token_layer(layer, question, own_states, training)
            cls_state = question[:, 0, :]
        # Final layer norm (per token), the pooler's row 0, the projection.
        answer = self.backbone.vision_projection(vision.layer_norm(cls_state))
        return answer, self.zero_shot_logits(answer)

    def _query_token_layer(self, layer, query, own_states, training):
        """One `CLIPEncoderLayer` for the query token alone (its own sub-layers, in order)."""
        patches = layer.layer_norm_1(own_states[:, CLS_INDEX + 1 :, :])
        normed = layer.layer_norm_1(query)
        if self.absorb_attention:
            attended = query_token_attention(layer.attention, normed, patches, None, training)
        else:
            memory = ops.concatenate([normed, patches], axis=1)
            attended = layer.attention(normed, memory, memory, training=training)
        hidden = ops.add(query, attended)
        mlp = layer.dense_2(layer.activation(layer.dense_1(layer.layer_norm_2(hidden))))
        return ops.add(hidden, mlp)

    # === Serialization ===

    def get_config(self):
        return {
            **super().get_config(),
            "backbone": _lists(keras.saving.serialize_keras_object(self.backbone)),
            "class_token_ids": self.class_token_ids.tolist(),
            "class_names": self.class_names,
            "template": self.template,
            "injection_layer": self.injection_layer,
            "suffix_mode": self.suffix_mode,
            "absorb_attention": self.absorb_attention,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)


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
