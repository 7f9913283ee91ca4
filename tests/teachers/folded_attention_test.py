import numpy as np
import tensorflow as tf

from diverse_distill.teachers.folded_attention import folded_read, folded_scores
from tests.test_case import TestCase

BATCH, HEADS, HEAD_DIM, TOKENS, HIDDEN = 3, 4, 8, 7, 16


class FoldedAttentionTest(TestCase):
    def setUp(self):
        super().setUp()
        rng = np.random.default_rng(0)
        self.query = rng.normal(size=(BATCH, HEADS, HEAD_DIM)).astype("float32")
        self.memory = rng.normal(size=(BATCH, TOKENS, HIDDEN)).astype("float32")
        self.key_kernel = rng.normal(size=(HIDDEN, HEADS, HEAD_DIM)).astype("float32")
        self.value_kernel = rng.normal(size=(HIDDEN, HEADS, HEAD_DIM)).astype("float32")
        weights = rng.random((BATCH, HEADS, TOKENS)).astype("float32")
        self.weights = weights / weights.sum(-1, keepdims=True)

    def test_scores_equal_the_query_against_projected_keys(self):
        keys = np.einsum("bte,ehd->bthd", self.memory, self.key_kernel)
        expected = np.einsum("bhd,bthd->bht", self.query, keys)
        scores = folded_scores(self.query, self.key_kernel, self.memory)
        self.assertEqual(tuple(scores.shape), (BATCH, HEADS, TOKENS))
        self.assertAllClose(scores, expected, atol=1e-4, rtol=1e-5)

    def test_read_equals_the_weighted_sum_of_projected_values(self):
        values = np.einsum("bte,ehd->bthd", self.memory, self.value_kernel)
        expected = np.einsum("bht,bthd->bhd", self.weights, values)
        read = folded_read(self.weights, self.memory, self.value_kernel)
        self.assertEqual(tuple(read.shape), (BATCH, HEADS, HEAD_DIM))
        self.assertAllClose(read, expected, atol=1e-4, rtol=1e-5)

    def test_gradients_equal_the_projected_form(self):
        query, weights = tf.Variable(self.query), tf.Variable(self.weights)
        with tf.GradientTape(persistent=True) as tape:
            folded = tf.reduce_sum(folded_scores(query, self.key_kernel, self.memory) ** 2) + \
                tf.reduce_sum(folded_read(weights, self.memory, self.value_kernel) ** 2)
            keys = tf.einsum("bte,ehd->bthd", self.memory, self.key_kernel)
            values = tf.einsum("bte,ehd->bthd", self.memory, self.value_kernel)
            projected = tf.reduce_sum(tf.einsum("bhd,bthd->bht", query, keys) ** 2) + \
                tf.reduce_sum(tf.einsum("bht,bthd->bhd", weights, values) ** 2)
        for variable in (query, weights):
            self.assertAllClose(tape.gradient(folded, variable), tape.gradient(projected, variable),
                                atol=1e-2, rtol=1e-4)

    def test_bfloat16_query_computes_in_bfloat16(self):
        query = tf.cast(self.query, "bfloat16")
        scores = folded_scores(query, self.key_kernel, self.memory)  # float32 kernel, memory
        self.assertEqual(scores.dtype, tf.bfloat16)
        expected = folded_scores(self.query, self.key_kernel, self.memory)
        self.assertAllClose(tf.cast(scores, "float32"), expected, atol=0.5, rtol=0.05)
