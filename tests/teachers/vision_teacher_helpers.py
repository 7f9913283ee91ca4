"""What the ViT and CLIP teacher tests share: a tiny backbone per test class and the
split-teacher checks both run (`ClassTokenTransformerTeacher`)."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

from diverse_distill.teachers import SplitTeacher
from tests.test_case import SharedBackboneTestCase

NUM_LAYERS, HIDDEN_DIM, NUM_CLASSES = 4, 16, 3
PATCH_SIZE = 4
NUM_TOKENS = 1 + (8 // 4) ** 2  # the class token and 4 patches of an 8x8 image
BATCH = 4
ATOL = 1e-5
MODES = (("exact", "exact"), ("query_token", "query_token"))


class VisionTeacherTestCase(SharedBackboneTestCase, parameterized.TestCase):
    """A test class over one tiny backbone, restored after each test.

    A subclass sets `IMAGE_SHAPE` and implements `make_backbone` (which sets
    `cls.backbone` and whatever else it needs) and `_teacher(**kwargs)` (a
    teacher over `self.backbone`). Each test gets `self.x` (`BATCH` images),
    `self.question` (`(BATCH, HIDDEN_DIM)`) and `self.rng`.
    """

    IMAGE_SHAPE = None

    def setUp(self):
        super().setUp()
        self.x = {"images": self.rng.random((BATCH,) + self.IMAGE_SHAPE).astype("float32")}
        self.question = self.rng.normal(size=(BATCH, HIDDEN_DIM)).astype("float32")

    def _teacher(self, **kwargs):
        raise NotImplementedError

    # === Checks the two test classes share ===

    def check_defaults(self, teacher, answer_dim):
        """A default teacher: split at the middle layer, "exact", folded attention."""
        self.assertIsInstance(teacher, SplitTeacher)
        self.assertEqual(teacher.injection_layer, NUM_LAYERS // 2)
        self.assertEqual(teacher.suffix_mode, "exact")
        self.assertTrue(teacher.absorb_attention)
        self.assertEqual((teacher.injection_dim, teacher.hidden_dim, teacher.answer_dim),
                         (HIDDEN_DIM, HIDDEN_DIM, answer_dim))
        self.assertEqual(teacher.feature_keys, ("images",))
        self.assertEqual(teacher.prefix_spec, {"injection_layer": 2, "suffix_mode": "exact"})
        self.assertIsNone(teacher.prefix_padding_mask_key)
        self.assertEqual(tuple(teacher(self.x).shape), (BATCH, NUM_CLASSES))
        # A bare image tensor works too, and extra features are ignored.
        self.assertAllClose(teacher(self.x["images"]),
                            teacher({**self.x, "other": np.zeros((BATCH, 2))}), atol=0, rtol=0)
        self.assertNotEmpty(teacher.trainable_variables)  # trainable until frozen

    def check_another_question_changes_the_answer(self, teacher, answer_dim):
        """The answer to `self.question` differs from the native one; returns it."""
        context = teacher.prefix(self.x)
        native_hidden, native_prediction = teacher.suffix(
            teacher.native_question(self.x, context), context
        )
        hidden, prediction = teacher.suffix(self.question, context)
        self.assertEqual(tuple(hidden.shape), (BATCH, answer_dim))
        self.assertEqual(tuple(prediction.shape), (BATCH, NUM_CLASSES))
        self.assertGreater(float(tf.reduce_max(tf.abs(hidden - native_hidden))), 1e-3)
        self.assertGreater(float(tf.reduce_max(tf.abs(prediction - native_prediction))), 1e-4)
        return hidden, prediction

    def answers_by_suffix_mode(self, injection_layer, absorb_attention, prepare=None):
        """`[(answer, prediction)]` to `self.question` of an "exact" and a "query_token"
        teacher; `prepare(teacher)`, when given, runs on each first."""
        outputs = []
        for suffix_mode in ("exact", "query_token"):
            teacher = self._teacher(suffix_mode=suffix_mode, injection_layer=injection_layer,
                                    absorb_attention=absorb_attention)
            if prepare is not None:
                prepare(teacher)
            outputs.append(teacher.suffix(self.question, teacher.prefix(self.x)))
        return outputs

    def absorbed_and_projected_outputs(self, prepare=None):
        """Outputs and question gradients of the two "query_token" attentions at layer 1.

        `prepare(absorbed, projected)`, when given, runs on the two teachers first.

        Returns:
            `(absorbed_out, projected_out, absorbed_gradient, projected_gradient)`.
        """
        absorbed = self._teacher(suffix_mode="query_token", injection_layer=1)
        projected = self._teacher(suffix_mode="query_token", injection_layer=1,
                                  absorb_attention=False)
        if prepare is not None:
            prepare(absorbed, projected)
        context = absorbed.prefix(self.x)
        question = tf.Variable(self.question)
        with tf.GradientTape(persistent=True) as tape:
            absorbed_out = absorbed.suffix(question, context)
            projected_out = projected.suffix(question, context)
            absorbed_loss = tf.reduce_sum(absorbed_out[0]) + tf.reduce_sum(absorbed_out[1])
            projected_loss = tf.reduce_sum(projected_out[0]) + tf.reduce_sum(projected_out[1])
        return (absorbed_out, projected_out, tape.gradient(absorbed_loss, question),
                tape.gradient(projected_loss, question))

    def check_gradient_reaches_the_question_never_frozen_weights(self, suffix_mode,
                                                                 prediction_loss):
        """A frozen teacher: the loss `|answer|^2 + prediction_loss(prediction)` moves
        the question (every row gets a gradient) and no weight."""
        teacher = self._teacher(suffix_mode=suffix_mode).freeze()
        self.assertEmpty(teacher.trainable_variables)
        before = [np.array(w) for w in teacher.weights]
        question = keras.Variable(self.question)
        with tf.GradientTape() as tape:
            hidden, prediction = teacher.suffix(question, teacher.prefix(self.x))
            loss = tf.reduce_sum(hidden * hidden) + prediction_loss(prediction)
        variables = [question] + teacher.trainable_variables
        gradients = tape.gradient(loss, variables)
        self.assertLen(gradients, 1)
        self.assertTrue(np.isfinite(np.asarray(gradients[0])).all())
        row_norms = tf.reduce_sum(tf.abs(gradients[0]), axis=-1)
        self.assertGreater(float(tf.reduce_min(row_norms)), 0.0)  # every sample
        keras.optimizers.SGD(1.0).apply(gradients, variables)
        self.assertNotAllClose(question, self.question)
        for weight, value in zip(teacher.weights, before):
            self.assertAllEqual(weight, value)

    def check_gathered_context_rows(self, teacher, context, prediction_atol):
        """Rows 1 and 3 of `context` (in a `tf.function`) answer as rows 1 and 3 of all."""
        rows = tf.constant([1, 3])
        hidden, prediction = teacher.suffix(self.question, context)
        gathered = tf.nest.map_structure(lambda leaf: tf.gather(leaf, rows), context)
        row_hidden, row_prediction = tf.function(teacher.suffix)(
            tf.gather(self.question, rows), gathered
        )
        self.assertAllClose(row_hidden, tf.gather(hidden, rows), atol=ATOL, rtol=0)
        self.assertAllClose(row_prediction, tf.gather(prediction, rows),
                            atol=prediction_atol, rtol=0)

    def check_keras_file_round_trip(self, teacher, teacher_class):
        """JSON config and `.keras` file round trips; returns the config-revived teacher."""
        revived = self.run_serialization_test(teacher)
        path = os.path.join(self.get_temp_dir(), f"{teacher.name}_teacher.keras")
        teacher.save(path)
        reloaded = keras.saving.load_model(path)
        self.assertIsInstance(reloaded, teacher_class)
        self.assertAllClose(reloaded(self.x), teacher(self.x), atol=0, rtol=0)
        return revived, reloaded

    def check_split_argument_errors(self, layer_noun):
        """Bad `injection_layer`/`suffix_mode`, inputs without images, a question of the
        wrong width and an "exact" context given to a "query_token" suffix all raise."""
        for bad in (NUM_LAYERS, -1, 1.5, "2"):
            with pytest.raises(ValueError, match=r"`injection_layer` must be in \[0, 3\]"):
                self._teacher(injection_layer=bad)
        with pytest.raises(ValueError, match="suffix_mode"):
            self._teacher(suffix_mode="fast")
        teacher = self._teacher()
        with pytest.raises(ValueError, match="'images'"):
            teacher({"pixels": self.x["images"]})
        with pytest.raises(ValueError, match="last dimension 16"):
            teacher.suffix(np.ones((BATCH, 7), "float32"), teacher.prefix(self.x))
        with pytest.raises(ValueError, match=f"each of the 2 {layer_noun}"):
            self._teacher(suffix_mode="query_token").suffix(
                self.question, teacher.prefix(self.x)  # an "exact" context: 1 entry
            )
