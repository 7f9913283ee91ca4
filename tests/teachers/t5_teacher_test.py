import io
import json
import os
import time
from unittest import mock

import keras
import keras_hub
import numpy as np
import pytest
import sentencepiece
import tensorflow as tf
from absl.testing import parameterized

from diverse_distill.teachers import SplitTeacher, T5Teacher
from tests.test_case import TestCase

VOCABULARY_SIZE = 64
HIDDEN_DIM = 32
BATCH, PROMPT_LENGTH = 4, 9
ATOL = 1e-5
# How the suffix reads the encoder: (name, cache_cross_attention, absorb_cross_attention).
CROSS_ATTENTION_MODES = (
    ("absorbed", False, True),  # the default: no key/value projection of the prompt
    ("projected", False, False),  # the decoder layers called whole
    ("cross_attention_cache", True, True),  # keys/values cached in the context
)


def _prompts(rng):
    """Random prompts; sample 1 has 3 padding positions."""
    token_ids = rng.integers(2, VOCABULARY_SIZE, (BATCH, PROMPT_LENGTH))
    padding_mask = np.ones((BATCH, PROMPT_LENGTH), "int32")
    token_ids[1, -3:] = 0
    padding_mask[1, -3:] = 0
    return {"t5_token_ids": token_ids.astype("int32"), "t5_padding_mask": padding_mask}


def _tiny_t5_tokenizer():
    """A word-level SentencePiece T5 tokenizer trained on a few prompts."""
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(["user 12 rates heat comedy drama", "the movie was great"] * 10),
        model_writer=model, vocab_size=13, model_type="word",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>", minloglevel=2,
    )
    return keras_hub.tokenizers.T5Tokenizer(proto=model.getvalue())


def _unsplit_decoder_state(teacher, x):
    """The backbone's own final decoder state of the start token."""
    outputs = teacher.backbone({
        "encoder_token_ids": x["t5_token_ids"],
        "encoder_padding_mask": x["t5_padding_mask"],
        "decoder_token_ids": np.zeros((BATCH, 1), "int32"),
        "decoder_padding_mask": np.ones((BATCH, 1), "int32"),
    })
    return outputs["decoder_sequence_output"][:, 0, :]


class T5TeacherTest(TestCase, parameterized.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # Building a T5Backbone traces its functional graph (~3 s): build one
        # and give every test a fresh teacher around it, restored afterwards.
        keras.utils.set_random_seed(1337)
        cls.backbone = T5Teacher.tiny(
            vocabulary_size=VOCABULARY_SIZE, num_layers=3, hidden_dim=HIDDEN_DIM
        ).backbone
        cls.initial_weights = cls.backbone.get_weights()

    def setUp(self):
        super().setUp()
        self.rng = np.random.default_rng(0)
        self.teacher = T5Teacher(self.backbone, name="t5")
        self.x = _prompts(self.rng)
        self.question = self.rng.normal(size=(BATCH, HIDDEN_DIM)).astype("float32")

    def tearDown(self):
        self.backbone.trainable = True  # undo `freeze()`, recursively
        self.backbone.set_weights(self.initial_weights)  # undo `fit`
        super().tearDown()

    def test_dims_and_contract(self):
        self.assertIsInstance(self.teacher, SplitTeacher)
        self.assertEqual(self.teacher.injection_dim, HIDDEN_DIM)
        self.assertEqual(self.teacher.answer_dim, HIDDEN_DIM)
        self.assertEqual(self.teacher.feature_keys, ("t5_token_ids", "t5_padding_mask"))
        self.assertEqual(tuple(self.teacher(self.x).shape), (BATCH, 1))
        self.assertNotEmpty(self.teacher.trainable_variables)  # trainable until frozen

    def test_split_with_native_question_equals_unsplit(self):
        unsplit = self.teacher(self.x)
        unsplit_hidden = _unsplit_decoder_state(self.teacher, self.x)
        for _, cache, absorb in CROSS_ATTENTION_MODES:
            teacher = T5Teacher(self.teacher.backbone, cache_cross_attention=cache,
                                absorb_cross_attention=absorb, name="t5")
            teacher.head.set_weights(self.teacher.head.get_weights())
            context = teacher.prefix(self.x)
            hidden, prediction = teacher.suffix(teacher.native_question(self.x, context), context)
            self.assertAllClose(hidden, unsplit_hidden, atol=ATOL, rtol=0)
            self.assertAllClose(prediction, unsplit, atol=ATOL, rtol=0)
            self.assertEqual("cross_attention_caches" in context, cache)

    def test_context_leaves_are_batch_first(self):
        context = self.teacher.prefix(self.x)
        self.assertEqual(
            set(context),
            {"encoder_output", "encoder_padding_mask", "first_decoder_layer_output",
             "decoder_position_bias"},
        )
        for leaf in tf.nest.flatten(context):
            self.assertEqual(leaf.shape[0], BATCH)
        context = T5Teacher(self.backbone, cache_cross_attention=True).prefix(self.x)
        self.assertLen(context["cross_attention_caches"], 2)  # decoder layers 1 and 2
        self.assertEqual(
            tuple(context["cross_attention_caches"][0].shape), (BATCH, 2, PROMPT_LENGTH, 2, 16)
        )
        for leaf in tf.nest.flatten(context):
            self.assertEqual(leaf.shape[0], BATCH)
        self.assertEqual(tuple(context["encoder_output"].shape), (BATCH, PROMPT_LENGTH, HIDDEN_DIM))

    def test_another_question_changes_the_answer(self):
        context = self.teacher.prefix(self.x)
        native_hidden, native_prediction = self.teacher.suffix(
            self.teacher.native_question(self.x, context), context
        )
        hidden, prediction = self.teacher.suffix(self.question, context)
        self.assertEqual(tuple(hidden.shape), (BATCH, HIDDEN_DIM))
        self.assertEqual(tuple(prediction.shape), (BATCH, 1))
        self.assertGreater(float(tf.reduce_max(tf.abs(hidden - native_hidden))), 1e-3)
        self.assertGreater(float(tf.reduce_max(tf.abs(prediction - native_prediction))), 1e-4)

    def test_absorbed_cross_attention_equals_projected_for_any_question(self):
        absorbed = T5Teacher(self.backbone, absorb_cross_attention=True)
        projected = T5Teacher(self.backbone, absorb_cross_attention=False)
        projected.head.set_weights(absorbed.head.get_weights())
        context = absorbed.prefix(self.x)  # sample 1 is padded: the mask must match too
        question = tf.constant(self.question)
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(question)
            got = absorbed.suffix(question, context)
            want = projected.suffix(question, context)
            got_loss, want_loss = (tf.reduce_sum(h) + tf.reduce_sum(p) for h, p in (got, want))
        for a, b in zip(got, want):
            self.assertAllClose(a, b, atol=ATOL, rtol=0)
        self.assertAllClose(tape.gradient(got_loss, question), tape.gradient(want_loss, question),
                            atol=1e-4, rtol=1e-4)
        # A padded prompt position changes nothing in either path.
        changed = dict(context, encoder_output=tf.tensor_scatter_nd_update(
            context["encoder_output"], [[1, PROMPT_LENGTH - 1]], [tf.ones([HIDDEN_DIM]) * 9.0]))
        self.assertAllClose(absorbed.suffix(question, changed)[0][1], got[0][1], atol=ATOL, rtol=0)

    @parameterized.named_parameters(*CROSS_ATTENTION_MODES)
    def test_gradient_reaches_the_question_never_frozen_weights(self, cache, absorb):
        teacher = T5Teacher(self.backbone, cache_cross_attention=cache,
                            absorb_cross_attention=absorb).freeze()
        self.assertEmpty(teacher.trainable_variables)
        before = [np.array(w) for w in teacher.weights]
        question = keras.Variable(self.question)
        optimizer = keras.optimizers.SGD(1.0)
        with tf.GradientTape() as tape:
            context = teacher.prefix(self.x)
            hidden, prediction = teacher.suffix(question, context)
            loss = tf.reduce_sum(hidden) + tf.reduce_sum(prediction)
        variables = [question] + teacher.trainable_variables
        gradients = tape.gradient(loss, variables)
        self.assertLen(gradients, 1)
        row_norms = tf.reduce_sum(tf.abs(gradients[0]), axis=-1)
        self.assertGreater(float(tf.reduce_min(row_norms)), 0.0)  # every sample
        optimizer.apply(gradients, variables)
        self.assertNotAllClose(question, self.question)
        for weight, value in zip(teacher.weights, before):
            self.assertAllEqual(weight, value)

    def test_cached_prefix_is_reused(self):
        context = self.teacher.prefix(self.x)
        first = self.teacher.suffix(self.question, context)
        self.teacher.suffix(self.rng.normal(size=(BATCH, HIDDEN_DIM)), context)  # no state kept
        again = tf.function(self.teacher.suffix)(self.question, context)
        recomputed = self.teacher.suffix(self.question, self.teacher.prefix(self.x))
        for a, b, c in zip(first, again, recomputed):
            self.assertAllClose(a, b, atol=ATOL, rtol=0)
            self.assertAllClose(a, c, atol=ATOL, rtol=0)

    @parameterized.named_parameters(*CROSS_ATTENTION_MODES)
    def test_gathered_context_rows_give_the_same_answers(self, cache, absorb):
        teacher = T5Teacher(self.backbone, cache_cross_attention=cache,
                            absorb_cross_attention=absorb)
        context = teacher.prefix(self.x)
        rows = tf.constant([3, 1])  # sample 1 has padding
        hidden, prediction = teacher.suffix(self.question, context)
        gathered = tf.nest.map_structure(lambda leaf: tf.gather(leaf, rows), context)
        row_hidden, row_prediction = teacher.suffix(tf.gather(self.question, rows), gathered)
        self.assertAllClose(row_hidden, tf.gather(hidden, rows), atol=ATOL, rtol=0)
        self.assertAllClose(row_prediction, tf.gather(prediction, rows), atol=ATOL, rtol=0)

    def test_dropout_runs_only_while_fine_tuning(self):
        evaluation = self.teacher(self.x)
        self.assertNotAllClose(self.teacher(self.x, training=True), evaluation)
        self.teacher.freeze()
        self.assertAllClose(self.teacher(self.x, training=True), evaluation, atol=0, rtol=0)
        context = self.teacher.prefix(self.x, training=True)
        _, prediction = self.teacher.suffix(
            self.teacher.native_question(self.x, context), context, training=True
        )
        self.assertAllClose(prediction, evaluation, atol=ATOL, rtol=0)

    def test_fit_fine_tunes_every_weight(self):
        teacher = T5Teacher(self.backbone, initial_prediction=3.5, name="t5")
        self.assertAllClose(teacher.head.bias, [3.5])
        # Eager: tracing the T5 train step takes longer than the step itself.
        # Plain SGD: a weight moves by 0.1 x its gradient (Adam would give a
        # rounding-level gradient a full-size step).
        teacher.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse", run_eagerly=True)
        before = [np.array(w) for w in teacher.trainable_weights]
        teacher.fit(self.x, np.full((BATCH, 1), 4.0, "float32"), epochs=1, verbose=0)
        # The decoder reads one token: its self-attention softmax runs over a
        # single key, so its query/key projections and relative bias get no
        # gradient in exact arithmetic (exactly 0 on some CPUs, rounding noise
        # on others, which moves them far less than 1e-5). Every other weight
        # trains: each moves by more than 1e-3.
        decoder_query_key = [
            f"transformer_decoder_layer_{i}/self_attention/{name}_projector/kernel"
            for i in range(3) for name in ("query", "key")
        ]
        self.assertUnmoved(
            teacher.trainable_weights, before,
            decoder_query_key + ["self_attention/embeddings"],  # the decoder's relative bias
            atol=1e-5,
        )

    def test_serialization_and_keras_file_round_trip(self):
        # One reload only: every T5Backbone rebuild traces its graph (~3 s).
        path = os.path.join(self.get_temp_dir(), "t5_teacher.keras")
        self.teacher.save(path)
        reloaded = keras.saving.load_model(path)
        self.assertIsInstance(reloaded, T5Teacher)
        self.assertAllClose(reloaded(self.x), self.teacher(self.x), atol=0, rtol=0)
        self.assertEqual(reloaded.get_config(), self.teacher.get_config())

    def test_preprocess_namespaces_and_packs_prompts(self):
        teacher = T5Teacher(self.backbone, tokenizer=_tiny_t5_tokenizer(), name="flan")
        features = teacher.preprocess(["user 12 rates heat", "the movie was great comedy drama"], 6)
        self.assertEqual(set(features), {"flan_token_ids", "flan_padding_mask"})
        token_ids = np.array(features["flan_token_ids"])
        padding_mask = np.array(features["flan_padding_mask"])
        self.assertEqual(token_ids.shape, (2, 6))
        self.assertEqual(token_ids[0, 4], 1)  # </s> ends the prompt ...
        self.assertAllEqual(token_ids[0, 5:], [0])  # ... then <pad>
        self.assertAllEqual(padding_mask[0], [1, 1, 1, 1, 1, 0])
        self.assertAllEqual(padding_mask[1], [1] * 6)  # truncated
        self.assertEqual(tuple(teacher(features).shape), (2, 1))

    def test_preprocess_without_tokenizer_raises(self):
        with pytest.raises(ValueError, match="no tokenizer"):
            self.teacher.preprocess(["a prompt"], 8)

    def test_from_preset_round_trip(self):
        folder = os.path.join(self.get_temp_dir(), "tiny_t5")
        self.teacher.backbone.save_to_preset(folder)
        teacher = T5Teacher.from_preset(folder, initial_prediction=3.0)
        self.assertIsNone(teacher.tokenizer)  # the folder holds no tokenizer
        self.assertEqual(teacher.backbone.get_config(), self.teacher.backbone.get_config())
        self.assertAllClose(
            _unsplit_decoder_state(teacher, self.x),
            _unsplit_decoder_state(self.teacher, self.x), atol=0, rtol=0,
        )
        _tiny_t5_tokenizer().save_to_preset(folder)
        # Rebuilding the backbone again would only cost time (~5 s).
        with mock.patch.object(
            keras_hub.models.T5Backbone, "from_preset", return_value=self.backbone
        ):
            teacher = T5Teacher.from_preset(folder)
        self.assertIsInstance(teacher.tokenizer, keras_hub.tokenizers.T5Tokenizer)
        self.assertEqual(tuple(teacher(teacher.preprocess(["user rates heat"], 5)).shape), (1, 1))

    def test_from_preset_name_fails_fast_without_network(self):
        start = time.monotonic()
        with mock.patch.dict(os.environ, {"DIVERSE_DISTILL_ALLOW_DOWNLOAD": ""}):
            with pytest.raises(ValueError, match="local preset folder"):
                T5Teacher.from_preset("flan_small_multi")
            with pytest.raises(ValueError, match="local preset folder"):
                T5Teacher.from_preset("/no/such/folder/flan_small_multi")
        self.assertLess(time.monotonic() - start, 1.0)

    def test_bad_inputs_raise(self):
        with pytest.raises(ValueError, match="T5Backbone"):
            T5Teacher(keras.Sequential([keras.layers.Dense(1)]))
        with pytest.raises(ValueError, match="at least 2 decoder layers"):
            T5Teacher(mock.Mock(spec=keras_hub.models.T5Backbone, num_layers=1))
        with pytest.raises(ValueError, match="t5_padding_mask"):
            self.teacher({"t5_token_ids": self.x["t5_token_ids"]})
        context = self.teacher.prefix(self.x)
        with pytest.raises(ValueError, match="last dimension 32"):
            self.teacher.suffix(np.ones((BATCH, 7), "float32"), context)

    def test_config_is_json(self):
        config = json.loads(json.dumps(self.teacher.get_config()))
        self.assertEqual(config["name"], "t5")
        self.assertEqual(config["initial_prediction"], 0.0)
