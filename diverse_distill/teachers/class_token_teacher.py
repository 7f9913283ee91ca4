"""A class-token vision transformer as a split teacher: the part ViT and CLIP share."""

import operator

import keras
from keras import ops

# The folded single-query attention is written for Keras' `MultiHeadAttention`
# (KerasHub's BERT attention subclasses it; ViT's and CLIP's layers use it as it is).
from diverse_distill.models.vit_backbone import CLS_INDEX, IMAGES_KEY, read_images
from diverse_distill.teachers.folded_attention import query_token_attention
from diverse_distill.teachers.split_teacher import SplitTeacher

SUFFIX_MODES = ("exact", "query_token")
def lists(config):
    """`config` with every tuple, at any depth, turned into a list (as JSON gives it back).

    Example:
    ```python
    lists({"image_shape": (8, 8, 1), "sizes": [(1, 2)]})
    # {'image_shape': [8, 8, 1], 'sizes': [[1, 2]]}
    ```
    """
    if isinstance(config, dict):
        return {key: lists(value) for key, value in config.items()}
    if isinstance(config, (list, tuple)):
        return [lists(value) for value in config]
    return config


def check_injection_layer(injection_layer, num_layers, layer_noun="layer"):
    """`injection_layer` as an int in `[0, num_layers)` (`None`: the middle), or a `ValueError`.

    Args:
        injection_layer: int or `None` (`num_layers // 2`).
        num_layers: int. How many transformer layers the split model has.
        layer_noun: str. What the error message calls one layer.

    Example:
    ```python
    check_injection_layer(None, 4), check_injection_layer(3, 4)  # 2, 3
    ```
    """
    if injection_layer is None:
        injection_layer = num_layers // 2
    try:
        index = operator.index(injection_layer)
    except TypeError:
        index = None
    if index is None or not 0 <= index < num_layers:
        raise ValueError(
            f"`injection_layer` must be in [0, {num_layers - 1}] (the {layer_noun} "
            f"whose class-token input the question replaces; there are {num_layers} "
            f"{layer_noun}s). Received: injection_layer={injection_layer}"
        )
    return int(index)


def check_suffix_mode(suffix_mode):
    """Raises a `ValueError` unless `suffix_mode` is `"exact"` or `"query_token"`."""
    if suffix_mode not in SUFFIX_MODES:
        raise ValueError(
            f"`suffix_mode` must be one of {SUFFIX_MODES}. Received: "
            f"suffix_mode={suffix_mode!r}"
        )
    return suffix_mode


class ClassTokenTransformerTeacher(SplitTeacher):
    """A class-token vision transformer split at the CLS input of one of its layers.

    The base of `ViTTeacher` and `CLIPTeacher`. The model embeds an image into
    token states, CLS first (row 0), then the patches, and runs a stack of
    pre-norm transformer layers; the last layer's CLS state is read out as
    the answer and the prediction. With `k = injection_layer`
    (`0 <= k < num_layers`, default the middle, `num_layers // 2`) the
    question replaces the CLS state *input to* layer `k`.

    - `prefix(x)` embeds the images and runs the layers below `k`: context
      `{"layer_inputs": (states_k,)}` in `"exact"` mode, and
      `{"layer_inputs": (states_k, ..., states_{num_layers-1})}` (the
      *unmodified* teacher's states input to every later layer) in
      `"query_token"` mode; `states_j` is `(batch, 1 + num_patches,
      hidden_dim)`. The context is wrapped in `stop_gradient`.
    - `native_question(x, context)` is the CLS row of `states_k`.
    - `suffix(question, context)` runs layers `k..num_layers-1` with the
      question as the CLS token: every token (`"exact"`) or the question
      token alone, attending over `ln_1([question_j; own_j[1:]])`
      (`"query_token"`, through `query_token_attention` when
      `absorb_attention`), then `_readout`.

    Dropout runs only when asked for (`training=True`) and the teacher is
    not frozen. Images are read from the `"images"` feature (`read_images`).

    A subclass passes its backbone and dims to `__init__` and supplies:

    - `_transformer_layers`: the list of transformer layers (the backbone's own).
    - `_embed(images, training)`: the token states input to layer 0.
    - `_query_token_layer(layer, query, own_states, training)`: the question
      token `(batch, 1, hidden_dim)` through one layer, given the token
      states `own_states` input to it (`_query_token_attention` does the
      attention part).
    - `_readout(cls_state)`: `(answer, prediction)` from the last layer's
      CLS state `(batch, hidden_dim)`.
    - `layer_noun` (class attribute): what error messages call one layer.
    - `call(x, training)`: the unsplit model.

    Args:
        backbone: the model's backbone (`self.backbone`; serialised by
            `get_config`).
        num_layers: int. How many transformer layers `_transformer_layers` holds.
        injection_dim: int. The transformer's width (the question's).
        answer_dim: int. The answer's width.
        injection_layer: int or `None`, default `None` (`num_layers // 2`).
        suffix_mode: str, default `"exact"`. `"exact"` or `"query_token"`.
        absorb_attention: bool, default `True`. Folded key/value projections
            (`True`) or the layer's attention on `[question; patches]`
            (`False`) in the "query_token" suffix.
        **kwargs: passed to `keras.Model` (e.g. `name`).

    Example:
    ```python
    teacher = ViTTeacher.tiny(num_layers=4, suffix_mode="query_token")  # a subclass
    isinstance(teacher, ClassTokenTransformerTeacher), teacher.injection_layer  # True, 2
    ```
    """

    images_key = IMAGES_KEY
    layer_noun = "layer"

    def __init__(
        self,
        backbone,
        num_layers,
        injection_dim,
        answer_dim,
        injection_layer=None,
        suffix_mode="exact",
        absorb_attention=True,
        **kwargs,
    ):
        injection_layer = check_injection_layer(injection_layer, num_layers, self.layer_noun)
        check_suffix_mode(suffix_mode)
        super().__init__(injection_dim=injection_dim, answer_dim=answer_dim, **kwargs)
        # === Config ===
        self.injection_layer = injection_layer
        self.suffix_mode = suffix_mode
        self.absorb_attention = bool(absorb_attention)
        # === Layers ===
        self.backbone = backbone

    # === Hooks ===

    # (Not `_layers`: `keras.Layer` keeps its tracked sub-layers under that name.)
    @property
    def _transformer_layers(self):
        """The transformer layers, in order."""
        raise NotImplementedError

    def _embed(self, images, training):
        """The token states `(batch, 1 + num_patches, hidden_dim)` input to layer 0."""
        raise NotImplementedError

    def _query_token_layer(self, layer, query, own_states, training):
        """`query` `(batch, 1, hidden_dim)` as the only query through `layer`."""
        raise NotImplementedError

    def _readout(self, cls_state):
        """`(answer, prediction)` from the last layer's CLS state."""
        raise NotImplementedError

    # === Properties ===

    @property
    def hidden_dim(self):
        """The transformer's width: the question's."""
        return self.injection_dim

    @property
    def feature_keys(self):
        """The features this teacher reads: `("images",)`."""
        return (self.images_key,)

    @property
    def prefix_spec(self):
        """The prefix is the token states input to the layers the suffix runs.

        Example:
        ```python
        teacher = ViTTeacher.tiny(num_layers=2, suffix_mode="query_token")
        teacher.prefix_spec  # {'injection_layer': 1, 'suffix_mode': 'query_token'}
        CLIPTeacher.tiny(suffix_mode="query_token").prefix_spec  # the same
        ```
        """
        return {"injection_layer": self.injection_layer, "suffix_mode": self.suffix_mode}

    def _dropout_active(self, training):
        """Dropout runs only when asked for and the teacher is not frozen."""
        return bool(training) and self.trainable

    def _images(self, x):
        return read_images(x, self.name, self.backbone.compute_dtype)

    # === The split teacher ===

    def prefix(self, x, training=False):
        """Token states input to the layers the suffix runs.

        Args:
            x: dict with the `"images"` feature (or the image tensor).
            training: bool, default `False`. Ignored once frozen.

        Returns:
            `{"layer_inputs": tuple}` of `(batch, 1 + num_patches, hidden_dim)`
            states: one (input to `injection_layer`) in "exact" mode, one per
            layer `injection_layer..num_layers-1` in "query_token" mode.

        Example:
        ```python
        teacher = ViTTeacher.tiny(num_layers=4, suffix_mode="query_token")
        context = teacher.prefix({"images": np.zeros((2, 8, 8, 1), "float32")})
        [s.shape for s in context["layer_inputs"]]  # [(2, 5, 16), (2, 5, 16)]
        ```
        """
        training = self._dropout_active(training)
        layers = self._transformer_layers
        states = self._embed(self._images(x), training)
        # The unmodified teacher up to the last layer input the suffix needs.
        if self.suffix_mode == "exact":
            last_needed_input = self.injection_layer
        else:
            last_needed_input = len(layers) - 1
        layer_inputs = []
        for index in range(last_needed_input + 1):
            if index >= self.injection_layer:
                layer_inputs.append(states)
            if index < last_needed_input:
                states = layers[index](states, training=training)
        context = {"layer_inputs": tuple(layer_inputs)}
        # A constant for the suffix: no gradient flows back into the prefix.
        return keras.tree.map_structure(ops.stop_gradient, context)

    def native_question(self, x, context, training=False):
        """The teacher's own CLS state input to `injection_layer`.

        Example:
        ```python
        teacher = CLIPTeacher.tiny()
        x = {"images": np.zeros((2, 8, 8, 3), "float32")}
        teacher.native_question(x, teacher.prefix(x)).shape  # (2, 16)
        ```
        """
        return context["layer_inputs"][0][:, CLS_INDEX, :]

    def suffix(self, question, context, training=False):
        """Layers `injection_layer..num_layers-1` with `question` as the CLS token.

        Args:
            question: float tensor `(batch, hidden_dim)`, in place of the CLS
                state input to `injection_layer`.
            context: the dict returned by `prefix` (or rows of it).
            training: bool, default `False`. Ignored once frozen.

        Returns:
            `(answer, prediction)`: `_readout` of the last layer's CLS state
            (ViT: the final layer norm's output and the head's logits; CLIP:
            the projected image embedding and the zero-shot logits).

        Example:
        ```python
        teacher = ViTTeacher.tiny()
        context = teacher.prefix({"images": np.zeros((2, 8, 8, 1), "float32")})
        answer, logits = teacher.suffix(np.ones((2, 16), "float32"), context)
        answer.shape, logits.shape  # (2, 16), (2, 3)
        teacher = CLIPTeacher.tiny()  # the answer: the projected image embedding
        context = teacher.prefix({"images": np.zeros((2, 8, 8, 3), "float32")})
        answer, logits = teacher.suffix(np.ones((2, 16), "float32"), context)
        answer.shape, logits.shape  # (2, 12), (2, 3)
        ```
        """
        training = self._dropout_active(training)
        question = self._checked_question(
            question, f"the hidden size of {type(self).__name__}'s {self.layer_noun}s")
        layer_inputs = context["layer_inputs"]
        later_layers = self._transformer_layers[self.injection_layer :]
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
                    f"the {len(later_layers)} {self.layer_noun}s after the injection "
                    f"point. Received {len(layer_inputs)}."
                )
            for layer, own_states in zip(later_layers, layer_inputs):
                question = self._query_token_layer(layer, question, own_states, training)
            cls_state = question[:, 0, :]
        return self._readout(cls_state)

    def _query_token_attention(self, attention, layer_norm, query, own_states, training):
        """`attention(ln(query), ln([query; own_states[:, 1:]]))` for one query token.

        Args:
            attention: the layer's `keras.layers.MultiHeadAttention`.
            layer_norm: the layer norm before it (`ln_1`).
            query: `(batch, 1, hidden_dim)`, the question token's running state.
            own_states: `(batch, 1 + num_patches, hidden_dim)`, the unmodified
                teacher's token states input to the layer (row 0 unused).
            training: bool.

        Returns:
            The attention output `(batch, 1, hidden_dim)`: folded projections
            (`query_token_attention`) when `absorb_attention`, else `attention`
            called on `[ln(query); ln(patches)]`.
        """
        patches = layer_norm(own_states[:, CLS_INDEX + 1 :, :])
        normed = layer_norm(query)
        if self.absorb_attention:
            return query_token_attention(attention, normed, patches, None, training)
        memory = ops.concatenate([normed, patches], axis=1)
        return attention(query=normed, value=memory, key=memory, training=training)

    # === Serialization ===

    def get_config(self):
        return {
            **super().get_config(),
            # Tuples as lists (KerasHub keeps e.g. `image_shape` as given): the
            # config is the same before and after a JSON round trip.
            "backbone": lists(keras.saving.serialize_keras_object(self.backbone)),
            "injection_layer": self.injection_layer,
            "suffix_mode": self.suffix_mode,
            "absorb_attention": self.absorb_attention,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)
