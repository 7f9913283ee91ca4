import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

from diverse_distill import DistillationModel, ViTStudent
from diverse_distill.teachers import ViTTeacher
from tests.teachers.vision_teacher_helpers import (
    ATOL, BATCH, HIDDEN_DIM, MODES, NUM_CLASSES, NUM_LAYERS, NUM_TOKENS, PATCH_SIZE,
    VisionTeacherTestCase,
)

IMAGE_SHAPE = (8, 8, 1)


def _cls_output(teacher, x):
    """The backbone's own last-layer class-token state (after its final layer norm)."""
    return teacher.backbone(x["images"])[:, 0, :]


class ViTTeacherTest(VisionTeacherTestCase):
    IMAGE_SHAPE = IMAGE_SHAPE

    @classmethod
    def make_backbone(cls):
        cls.backbone = ViTTeacher.tiny(
            image_shape=IMAGE_SHAPE, patch_size=PATCH_SIZE, num_layers=NUM_LAYERS,
            hidden_dim=HIDDEN_DIM, num_classes=NUM_CLASSES,
        ).backbone

    def _teacher(self, **kwargs):
        kwargs.setdefault("name", "vit")
        return ViTTeacher(self.backbone, num_classes=NUM_CLASSES, **kwargs)

    def test_dims_and_defaults(self):
        teacher = self._teacher()
        self.check_defaults(teacher, answer_dim=HIDDEN_DIM)
        self.assertFalse(teacher.prefix_trims_padding)

    @parameterized.product(
        suffix_mode=("exact", "query_token"), injection_layer=(0, 1, 2, NUM_LAYERS - 1)
    )
    def test_split_with_native_question_equals_unsplit(self, suffix_mode, injection_layer):
        teacher = self._teacher(suffix_mode=suffix_mode, injection_layer=injection_layer)
        context = teacher.prefix(self.x)
        hidden, prediction = teacher.suffix(teacher.native_question(self.x, context), context)
        cls_output = _cls_output(teacher, self.x)
        self.assertAllClose(hidden, cls_output, atol=ATOL, rtol=0)
        self.assertAllClose(prediction, teacher(self.x), atol=ATOL, rtol=0)
        self.assertAllClose(prediction, teacher.head(cls_output), atol=ATOL, rtol=0)
        # The native question is the class-token state input to the injection block.
        self.assertAllClose(
            teacher.native_question(self.x, context), context["layer_inputs"][0][:, 0, :],
            atol=0, rtol=0,
        )

    def test_projected_query_token_suffix_with_native_question_equals_unsplit(self):
        teacher = self._teacher(suffix_mode="query_token", injection_layer=1,
                                absorb_attention=False)
        context = teacher.prefix(self.x)
        hidden, prediction = teacher.suffix(teacher.native_question(self.x, context), context)
        self.assertAllClose(hidden, _cls_output(teacher, self.x), atol=ATOL, rtol=0)
        self.assertAllClose(prediction, teacher(self.x), atol=ATOL, rtol=0)

    def test_injection_at_block_zero_replaces_the_embedded_class_token(self):
        teacher = self._teacher(injection_layer=0)
        native = teacher.native_question(self.x, teacher.prefix(self.x))
        embedding = self.backbone.get_layer("vit_patching_and_embedding")
        expected = (np.asarray(embedding.class_token)[0, 0]
                    + np.asarray(embedding.position_embedding.embeddings)[0])
        self.assertAllClose(native, np.tile(expected, (BATCH, 1)), atol=1e-6, rtol=0)

    @parameterized.named_parameters(("exact", "exact", 1), ("query_token", "query_token", 2))
    def test_context_leaves_are_batch_first(self, suffix_mode, num_layer_inputs):
        context = self._teacher(suffix_mode=suffix_mode).prefix(self.x)
        self.assertEqual(set(context), {"layer_inputs"})
        self.assertLen(context["layer_inputs"], num_layer_inputs)  # blocks 2..3
        for states in context["layer_inputs"]:
            self.assertEqual(tuple(states.shape), (BATCH, NUM_TOKENS, HIDDEN_DIM))

    @parameterized.named_parameters(*MODES)
    def test_another_question_changes_the_answer(self, suffix_mode):
        self.check_another_question_changes_the_answer(
            self._teacher(suffix_mode=suffix_mode), answer_dim=HIDDEN_DIM
        )

    @parameterized.named_parameters(("absorbed", True), ("projected", False))
    def test_modes_differ_only_through_the_other_tokens(self, absorb_attention):
        head_weights = self._teacher().head.get_weights()

        def answers(injection_layer):
            return self.answers_by_suffix_mode(
                injection_layer, absorb_attention,
                # One backbone, one head.
                prepare=lambda teacher: teacher.head.set_weights(head_weights),
            )

        # At the last block no later block reads the other tokens: the modes agree
        # for any question.
        (exact_hidden, exact_logits), (query_hidden, query_logits) = answers(NUM_LAYERS - 1)
        self.assertAllClose(query_hidden, exact_hidden, atol=ATOL, rtol=0)
        self.assertAllClose(query_logits, exact_logits, atol=ATOL, rtol=0)
        # Earlier, "exact" lets the question change the patch tokens that the later
        # blocks attend to; "query_token" keeps the teacher's own.
        (exact_hidden, _), (query_hidden, _) = answers(2)
        self.assertGreater(float(tf.reduce_max(tf.abs(exact_hidden - query_hidden))), 1e-4)

    def test_absorbed_and_projected_query_token_suffixes_agree(self):
        def share_head(absorbed, projected):  # one backbone, two equal heads
            projected.head.set_weights(absorbed.head.get_weights())

        absorbed_out, projected_out, absorbed_gradient, projected_gradient = (
            self.absorbed_and_projected_outputs(prepare=share_head)
        )
        for a, b in zip(absorbed_out, projected_out):
            self.assertAllClose(a, b, atol=ATOL, rtol=0)
        self.assertAllClose(absorbed_gradient, projected_gradient, atol=1e-4, rtol=0)

    @parameterized.named_parameters(*MODES)
    def test_gradient_reaches_the_question_never_frozen_weights(self, suffix_mode):
        self.check_gradient_reaches_the_question_never_frozen_weights(
            suffix_mode, prediction_loss=tf.reduce_sum
        )

    @parameterized.named_parameters(*MODES)
    def test_gathered_context_rows_give_the_same_answers(self, suffix_mode):
        teacher = self._teacher(suffix_mode=suffix_mode)
        self.check_gathered_context_rows(teacher, teacher.prefix(self.x), prediction_atol=ATOL)

    def test_dropout_runs_only_while_fine_tuning(self):
        teacher = self._teacher(suffix_mode="query_token")  # tiny(): dropout_rate=0.1
        evaluation = teacher(self.x)
        self.assertNotAllClose(teacher(self.x, training=True), evaluation)
        teacher.freeze()
        self.assertAllClose(teacher(self.x, training=True), evaluation, atol=0, rtol=0)
        context = teacher.prefix(self.x, training=True)
        _, prediction = teacher.suffix(
            teacher.native_question(self.x, context), context, training=True
        )
        self.assertAllClose(prediction, evaluation, atol=ATOL, rtol=0)

    def test_frozen_through_a_distillation_step(self):
        # Two teachers over one backbone (each mode), a ViT student, integer labels and
        # a classification loss on the logits. The "paper" variant: its L_reg fits
        # head_S(a_k) to the label; the default "tuned" one fits it to the teacher's
        # logits with the task loss, which a sparse (label) loss cannot take.
        teachers = [self._teacher(name="vit_exact"),
                    self._teacher(suffix_mode="query_token", name="vit_query")]
        teachers[1].head.set_weights(teachers[0].head.get_weights())
        keras.utils.set_random_seed(7)
        student = ViTStudent.tiny(image_shape=IMAGE_SHAPE, patch_size=PATCH_SIZE,
                                  num_classes=NUM_CLASSES)
        model = DistillationModel(student, teachers, variant="paper", embedding_dim=8,
                                  intermediate_dim=8)
        model.compile(optimizer=keras.optimizers.SGD(0.1),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        for teacher in teachers:
            self.assertEmpty(teacher.trainable_weights)
        before = [np.array(w) for w in self.backbone.weights + teachers[0].head.weights]
        student_before = np.array(student.head.kernel)
        y = self.rng.integers(0, NUM_CLASSES, BATCH).astype("int32")
        logs = model.train_on_batch(self.x, y, return_dict=True)
        for name in ("loss", "task_loss", "distill_loss", "reg_loss"):
            self.assertTrue(np.isfinite(logs[name]), (name, logs[name]))
        self.assertGreater(logs["reg_loss"], 0.0)
        after = [np.array(w) for w in self.backbone.weights + teachers[0].head.weights]
        for b, a in zip(before, after):
            np.testing.assert_array_equal(a, b)
        self.assertNotAllClose(student.head.kernel, student_before)

    def test_serialization_and_keras_file_round_trip(self):
        teacher = self._teacher(suffix_mode="query_token", injection_layer=1,
                                absorb_attention=False)
        revived, _ = self.check_keras_file_round_trip(teacher, ViTTeacher)
        self.assertEqual(
            (revived.suffix_mode, revived.injection_layer, revived.absorb_attention,
             revived.num_classes),
            ("query_token", 1, False, NUM_CLASSES),
        )

    def test_bad_arguments_raise(self):
        self.check_split_argument_errors(layer_noun="blocks")
        with pytest.raises(ValueError, match="num_classes"):
            ViTTeacher(self.backbone, num_classes=0)
        with pytest.raises(ValueError, match="ViTBackbone"):
            ViTTeacher(keras.Sequential([keras.layers.Dense(1)]), num_classes=2)
        no_class_token = keras_hub.models.ViTBackbone(
            image_shape=IMAGE_SHAPE, patch_size=PATCH_SIZE, num_layers=1, num_heads=2,
            hidden_dim=8, mlp_dim=8, use_class_token=False,
        )
        with pytest.raises(ValueError, match="use_class_token=True"):
            ViTTeacher(no_class_token, num_classes=2)
