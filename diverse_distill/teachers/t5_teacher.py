"""A KerasHub T5 / Flan-T5 language model as a split teacher."""

import keras
import keras_hub
from keras import ops

from diverse_distill.teachers.folded_attention import folded_read, folded_scores
from diverse_distill.teachers.language_model_teacher import LanguageModelTeacher
T5_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "spiece.model")


@keras.saving.register_keras_serializable(package="diverse_distill")
class T5Teacher(LanguageModelTeacher):
    """A KerasHub T5 encoder-decoder, split after its first decoder layer.

    The teacher rates a text prompt: its encoder reads the prompt tokens,
    its decoder reads a single start token (id 0, T5's pad / decoder start
    token) and the final decoder hidden state of that token (after the
    decoder's final layer norm and dropout) is the *answer*, read out by a
    `Dense(1)` regression head as the teacher's prediction (e.g. a rating).

    Split (paper Sec. 4.1): the question replaces the decoder token's hidden
    state output by the FIRST decoder transformer layer; decoder layers
    `1..num_layers-1` then run on it and cross-attend to the encoder output
    of the real prompt. Everything before that point is question-independent
    and returned by `prefix(x)` as the context, a dict whose leaves all have
    the batch as first axis:

    - `"encoder_output"`: `(batch, prompt_length, hidden_dim)`, the encoder
      output after its final layer norm;
    - `"encoder_padding_mask"`: `(batch, prompt_length)` int32;
    - `"first_decoder_layer_output"`: `(batch, hidden_dim)`, the decoder
      token's state after decoder layer 0 (the native question);
    - `"decoder_position_bias"`: `(batch, num_heads, 1, 1)`, the decoder
      self-attention bias computed by decoder layer 0 and shared by the
      later decoder layers;
    - `"cross_attention_caches"` (only if `cache_cross_attention`): a tuple
      with one `(batch, 2, prompt_length, num_heads, key_value_dim)` tensor
      per decoder layer `1..num_layers-1`, the projected cross-attention
      keys and values of the encoder output, so that a cached context saves
      those projections in every suffix.

    The context is wrapped in `stop_gradient`: under distillation gradients
    flow from the answer into the question only (fine-tune the teacher
    through `call(x)`). `prefix` and `suffix` call the backbone's own
    sub-layers (`token_embedding`, `encoder_transformer_layers`,
    `encoder_layer_norm`, `decoder_transformer_layers`,
    `decoder_layer_norm`, ...) in the backbone's order; `call(x)` runs the
    unsplit backbone, so a test can check that the two paths agree.

    Inputs are a dict of batched features; this teacher reads
    `f"{name}_token_ids"` (int, `(batch, prompt_length)`) and
    `f"{name}_padding_mask"` (int or bool, same shape), so several teachers
    can share one feature dict. `preprocess(prompts, sequence_length)`
    builds them from strings with the teacher's tokenizer.

    The teacher is trainable when constructed (fine-tune it with `fit` on
    `call(x)`, a `(batch, 1)` prediction, with the backbone's dropout
    active); `freeze()` it before distillation. A frozen teacher never runs
    dropout, even when called with `training=True`.

    Args:
        backbone: `keras_hub.models.T5Backbone`. The encoder-decoder.
        tokenizer: `keras_hub.tokenizers.T5Tokenizer` or `None`, default
            `None`. Needed only by `preprocess`.
        initial_prediction: float, default `0.0`. Initial bias of the
            regression head, e.g. the mean training rating.
        cache_cross_attention: bool, default `False`. Whether `prefix` also
            returns the later decoder layers' cross-attention keys/values:
            a cheaper suffix, but a context about
            `1 + 2 * (num_layers - 1) * num_heads * key_value_dim / hidden_dim`
            times bigger (11.5x for Flan-T5-small), too big to cache a
            whole data set. Computing the prefix at every step, both cost
            the same.
        absorb_cross_attention: bool, default `True`. How the suffix's
            decoder layers read the encoder output when the context has no
            cross-attention caches. The decoder has a single query token, so
            each head's attention can be reassociated exactly:
            `scores = (q W_kᵀ) Eᵀ` and `output = (softmax(scores) E) W_v`
            (E = the cached encoder output), never projecting the prompt's
            keys and values: about `4 · hidden_dim · inner_dim` multiply-adds
            per row and layer instead of `2 · prompt_length · hidden_dim ·
            inner_dim` (≈ 27× fewer for Flan-T5-small with 48 tokens), with
            the small encoder-output context. Equal to the projected path up
            to float rounding (tested ≤ 1e-5). `False` calls the decoder
            layers whole, as `T5Backbone` does.
        name: str, default `"t5"`. The model name, also the prefix of the
            feature keys.
        **kwargs: passed to `keras.Model`.

    Example:
    ```python
    teacher = T5Teacher.tiny(vocabulary_size=64, name="t5")
    x = {"t5_token_ids": np.random.randint(2, 64, (4, 10)),
         "t5_padding_mask": np.ones((4, 10), "int32")}
    context = teacher.prefix(x)
    hidden, rating = teacher.suffix(np.random.randn(4, 32), context)
    hidden.shape, rating.shape  # (4, 32), (4, 1)
    teacher(x).shape  # (4, 1), the unsplit teacher
    ```

    Reference:
        Raffel et al., 2020, "Exploring the Limits of Transfer Learning with
        a Unified Text-to-Text Transformer"; DiverseDistill paper Sec. 4.1.
    """

    backbone_class = keras_hub.models.T5Backbone
    tokenizer_class = keras_hub.tokenizers.T5Tokenizer
    tokenizer_files = T5_TOKENIZER_FILES
    preset_example = "flan_small_multi"

    def __init__(
        self,
        backbone,
        tokenizer=None,
        initial_prediction=0.0,
        cache_cross_attention=False,
        absorb_cross_attention=True,
        name="t5",
        **kwargs,
    ):
        self.check_backbone(backbone)
        if backbone.num_layers < 2:
            raise ValueError(
                "A split T5 teacher needs at least 2 decoder layers (the "
                "question replaces the output of the first one). Received: "
                f"num_layers={backbone.num_layers}"
            )
        super().__init__(
            backbone,
            tokenizer=tokenizer,
            initial_prediction=initial_prediction,
            name=name,
            **kwargs,
        )
        self.cache_cross_attention = bool(cache_cross_attention)
        self.absorb_cross_attention = bool(absorb_cross_attention)

    def fine_tuning_split(self):
        """What `--lm_finetune=last_layer` trains, and the teacher whose prefix it caches.

        The decoder layers after the first, the decoder's final layer norm and the head
        learn; the encoder and the first decoder layer stay frozen, so their outputs (this
        teacher's own prefix, without cross-attention caches, which would change with the
        trained layers) are computed once per example. The decoder runs one token.

        Returns:
            `(teacher, variables)`: a `T5Teacher` sharing this one's weights (training it
            trains this one) and the variables to train.

        Example:
        ```python
        teacher = T5Teacher.tiny()
        view, variables = teacher.fine_tuning_split()
        view.head is teacher.head, len(variables) > 0  # True, True
        ```
        """
        view = T5Teacher(
            self.backbone,
            tokenizer=self.tokenizer,
            initial_prediction=self.initial_prediction,
            cache_cross_attention=False,
            absorb_cross_attention=self.absorb_cross_attention,
            name=self.name,
        )
        view.head = self.head
        trained = [*self.backbone.decoder_transformer_layers[1:],
                   self.backbone.decoder_layer_norm, self.head]
        return view, [v for layer in trained for v in layer.trainable_variables]

    # === Constructors ===

    @classmethod
    def tiny(
        cls,
        vocabulary_size=96,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        dropout=0.1,
        **kwargs,
    ):
        """A small randomly initialised T5 teacher, for tests and examples.

        Args:
            vocabulary_size: int, default 96.
            num_layers: int, default 2. Encoder and decoder layers each.
            num_heads: int, default 2.
            hidden_dim: int, default 32.
            intermediate_dim: int, default 64.
            dropout: float, default 0.1.
            **kwargs: passed to the `T5Teacher` constructor.

        Example:
        ```python
        teacher = T5Teacher.tiny(num_layers=3)
        teacher.injection_dim  # 32
        ```
        """
        backbone = keras_hub.models.T5Backbone(
            vocabulary_size=vocabulary_size,
            num_layers=num_layers,
            num_heads=num_heads,
            hidden_dim=hidden_dim,
            intermediate_dim=intermediate_dim,
            dropout=dropout,
        )
        return cls(backbone, **kwargs)

    # === Inputs ===

    @property
    def feature_keys(self):
        """The keys this teacher reads from the feature dict."""
        return (self.token_ids_key, self.padding_mask_key)

    def preprocess(self, prompts, sequence_length):
        """Tokenizes prompts into this teacher's features.

        Each prompt is tokenized, truncated to `sequence_length - 1` tokens,
        ended with `</s>` and padded with `<pad>` (id 0). Works eagerly and
        inside `tf.data` (`dataset.map`).

        Args:
            prompts: list of str, or a string tensor of shape `(batch,)`.
            sequence_length: int. The packed prompt length.

        Returns:
            A dict `{f"{name}_token_ids": int32 (batch, sequence_length),
            f"{name}_padding_mask": bool (batch, sequence_length)}`.

        Usage (needs a local Flan-T5 preset folder, so not run by the tests):
        ```python
        teacher = T5Teacher.from_preset("presets/flan_small_multi")  # local
        x = teacher.preprocess(["User 12 rates Heat (1995):"], 64)
        teacher(x).shape  # (1, 1)
        ```
        """
        if self.tokenizer is None:
            raise ValueError(
                f"Teacher {self.name!r} has no tokenizer; build it with "
                "`from_preset` on a preset that has one, or pass "
                "`tokenizer=` to the constructor."
            )
        packer = keras_hub.layers.StartEndPacker(
            sequence_length=sequence_length,
            end_value=self.tokenizer.end_token_id,
            pad_value=self.tokenizer.pad_token_id,
            return_padding_mask=True,
        )
        token_ids, padding_mask = packer(self.tokenizer(prompts))
        return {
            self.token_ids_key: token_ids,
            self.padding_mask_key: padding_mask,
        }

    def _encoder_inputs(self, x):
        missing = [key for key in self.feature_keys if key not in x]
        if missing:
            raise ValueError(
                f"Teacher {self.name!r} reads the features {missing}, absent "
                f"from the inputs. Received keys: {sorted(x)}"
            )
        token_ids = ops.cast(x[self.token_ids_key], "int32")
        padding_mask = ops.cast(x[self.padding_mask_key], "int32")
        return token_ids, padding_mask

    def _decoder_start_inputs(self, token_ids):
        """One start token (id 0) per sample, and its padding mask."""
        batch_size = ops.shape(token_ids)[0]
        start_ids = ops.zeros((batch_size, 1), "int32")
        return start_ids, ops.ones((batch_size, 1), "int32")

    # === The unsplit teacher ===

    def call(self, x, training=False):
        training = self._dropout_active(training)
        token_ids, padding_mask = self._encoder_inputs(x)
        start_ids, start_mask = self._decoder_start_inputs(token_ids)
        outputs = self.backbone(
            {
                "encoder_token_ids": token_ids,
                "encoder_padding_mask": padding_mask,
                "decoder_token_ids": start_ids,
                "decoder_padding_mask": start_mask,
            },
            training=training,
        )
        hidden = outputs["decoder_sequence_output"][:, 0, :]
        return self.head(hidden)

    # === The split teacher ===

    def prefix(self, x, training=False):
        """The encoder output and the first decoder layer's output.

        Args:
            x: dict with this teacher's `*_token_ids` and `*_padding_mask`.
            training: bool, default `False`. Ignored once frozen.

        Returns:
            The context dict described in the class docstring.
        """
        training = self._dropout_active(training)
        backbone = self.backbone
        token_ids, padding_mask = self._encoder_inputs(x)
        encoder_attention_mask = padding_mask[:, None, :]

        # Encoder, as `T5Backbone` runs it.
        hidden = backbone.token_embedding(token_ids)
        hidden = backbone.encoder_embedding_dropout(hidden, training=training)
        position_bias = None
        for layer in backbone.encoder_transformer_layers:
            hidden, position_bias = layer(
                hidden,
                attention_mask=encoder_attention_mask,
                position_bias=position_bias,
                use_causal_mask=False,
                training=training,
            )
        hidden = backbone.encoder_layer_norm(hidden)
        encoder_output = backbone.encoder_dropout(hidden, training=training)

        # First decoder layer on the start token.
        start_ids, start_mask = self._decoder_start_inputs(token_ids)
        hidden = backbone.token_embedding(start_ids)
        hidden = backbone.decoder_embedding_dropout(hidden, training=training)
        first_decoder_layer = backbone.decoder_transformer_layers[0]
        hidden, decoder_position_bias = first_decoder_layer(
            hidden,
            attention_mask=start_mask[:, None, :],
            position_bias=None,
            encoder_hidden_states=encoder_output,
            encoder_attention_mask=encoder_attention_mask,
            use_causal_mask=True,
            training=training,
        )
        context = {
            "encoder_output": encoder_output,
            "encoder_padding_mask": padding_mask,
            "first_decoder_layer_output": hidden[:, 0, :],
            "decoder_position_bias": decoder_position_bias,
        }
        if self.cache_cross_attention:
            context["cross_attention_caches"] = tuple(
                self._cross_attention_cache(layer, encoder_output)
                for layer in backbone.decoder_transformer_layers[1:]
            )
        # A constant for the suffix: no gradient flows back into the prefix
        # (whose cache update op has none), wherever the context comes from.
        return keras.tree.map_structure(ops.stop_gradient, context)

    def _cross_attention_cache(self, layer, encoder_output):
        """Keys/values of `layer`'s cross-attention over the encoder output.

        Uses the attention layer's own "updated cache" mode: it projects
        `encoder_output` into an empty cache (the single dummy query's
        output is discarded).
        """
        attention = layer.cross_attention
        batch_size, source_length = ops.shape(encoder_output)[:2]
        empty_cache = ops.zeros(
            (
                batch_size,
                2,
                source_length,
                attention.num_heads,
                attention.key_value_dim,
            ),
            encoder_output.dtype,
        )
        _, _, cache = attention(
            ops.zeros_like(encoder_output[:, :1, :]),
            key_value_states=encoder_output,
            cache=empty_cache,
            cache_update_index=0,
        )
        return cache

    def native_question(self, x, context, training=False):
        """The decoder token's own state after the first decoder layer."""
        return context["first_decoder_layer_output"]

    def suffix(self, question, context, training=False):
        """Decoder layers `1..num_layers-1` with `question` as the token.

        Args:
            question: float tensor `(batch, hidden_dim)`, in place of the
                decoder token's state after the first decoder layer.
            context: the dict returned by `prefix` (or rows of it).
            training: bool, default `False`. Ignored once frozen.

        Returns:
            `(answer, prediction)`: the final decoder state
            `(batch, hidden_dim)` and the head's `(batch, 1)` prediction.
        """
        training = self._dropout_active(training)
        backbone = self.backbone
        question = self._checked_question(question, "the T5 hidden size")
        encoder_output = context["encoder_output"]
        encoder_attention_mask = context["encoder_padding_mask"][:, None, :]
        caches = context.get("cross_attention_caches")
        later_layers = backbone.decoder_transformer_layers[1:]
        if caches is None:
            caches = (None,) * len(later_layers)

        hidden = ops.cast(question, encoder_output.dtype)[:, None, :]
        for layer, cache in zip(later_layers, caches):
            if cache is None and self.absorb_cross_attention:
                hidden = self._decoder_layer_absorbed(
                    layer, hidden, context, encoder_output, training
                )
                continue
            hidden, _ = layer(
                hidden,
                position_bias=context["decoder_position_bias"],
                encoder_hidden_states=encoder_output,
                encoder_attention_mask=encoder_attention_mask,
                use_causal_mask=True,
                cross_attention_cache=cache,
                training=training,
            )
        hidden = backbone.decoder_layer_norm(hidden)
        hidden = backbone.decoder_dropout(hidden, training=training)
        answer = hidden[:, 0, :]
        return answer, self.head(answer)

    def _decoder_layer_absorbed(self, layer, hidden, context, encoder_output, training):
        """One decoder layer on the single decoder token, cross-attention reassociated.

        The layer's sub-layers run in `T5TransformerLayer`'s order; only the
        cross-attention's inner product is reordered (see
        `absorb_cross_attention`), with the attention layer's own weights,
        mask convention (-1e9 on padding), attention dropout and output
        projection.
        """
        # Self-attention of the one token, with the bias of decoder layer 0.
        residual = hidden
        x = layer.self_attention_layer_norm(hidden)
        x, _, _ = layer.self_attention(
            x, position_bias=context["decoder_position_bias"], training=training
        )
        hidden = layer.self_attention_dropout(x, training=training) + residual

        # Cross-attention to the encoder output E, without projecting E.
        residual = hidden
        attention = layer.cross_attention
        heads, head_dim = attention.num_heads, attention.key_value_dim
        x = layer.cross_attention_layer_norm(hidden)
        query = ops.reshape(attention.query_projector(x), (-1, heads, head_dim))
        hidden_dim = ops.shape(encoder_output)[-1]
        key_kernel = ops.reshape(attention.key_projector.kernel, (hidden_dim, heads, head_dim))
        value_kernel = ops.reshape(
            attention.value_projector.kernel, (hidden_dim, heads, head_dim)
        )
        scores = folded_scores(query, key_kernel, encoder_output)
        padding = ops.cast(context["encoder_padding_mask"][:, None, :], scores.dtype)
        scores = scores + (1.0 - padding) * -1e9
        weights = attention.dropout_layer(ops.softmax(scores, axis=-1), training=training)
        x = folded_read(weights, encoder_output, value_kernel)
        x = attention.output_projector(ops.reshape(x, (-1, 1, heads * head_dim)))
        hidden = layer.cross_attention_dropout(x, training=training) + residual

        # Feedforward block.
        residual = hidden
        x = layer.layer_norm(hidden)
        if layer.use_gated_activation:
            x = layer.input_projector(x) * layer.gate_projector(x)
        else:
            x = layer.input_projector(x)
        x = layer.dropout_layer(x, training=training)
        x = layer.output_projector(x)
        x = layer.dropout_layer(x, training=training)
        return x + residual

    # === Serialization ===

    def get_config(self):
        return {
            **super().get_config(),
            "cache_cross_attention": self.cache_cross_attention,
            "absorb_cross_attention": self.absorb_cross_attention,
        }
