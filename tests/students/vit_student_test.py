import os
import tempfile

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from diverse_distill import DistillationModel, ViTStudent, ViTTeacher, export_student
from diverse_distill.students import Student, validate_student
from tests.test_case import TestCase

IMAGE_SHAPE, PATCH_SIZE = (8, 8, 1), 4
NUM_LAYERS, HIDDEN_DIM, NUM_CLASSES = 4, 8, 3
BATCH = 4
ATOL = 1e-5


def _student(**kwargs):
    config = dict(image_shape=IMAGE_SHAPE, patch_size=PATCH_SIZE, num_layers=NUM_LAYERS,
                  num_heads=2, hidden_dim=HIDDEN_DIM, mlp_dim=16, num_classes=NUM_CLASSES)
    config.update(kwargs)
    return ViTStudent(**config)


class ViTStudentTest(TestCase):
    def setUp(self):
        super().setUp()
        self.rng = np.random.default_rng(0)
        self.x = {"images": self.rng.random((BATCH,) + IMAGE_SHAPE).astype("float32")}

    def test_read_outs_are_class_token_states_of_the_backbone(self):
        student = _student()
        validate_student(student)
        self.assertIsInstance(student, Student)
        self.assertEqual((student.representation_dim, student.hidden_dim),
                         (HIDDEN_DIM, HIDDEN_DIM))
        self.assertEqual(student.representation_layer, NUM_LAYERS // 2)
        s, h = student.features(self.x)
        self.assertEqual((tuple(s.shape), tuple(h.shape)),
                         ((BATCH, HIDDEN_DIM), (BATCH, HIDDEN_DIM)))
        self.assertAllClose(s, student.representation(self.x), atol=0, rtol=0)
        self.assertAllClose(h, student.hidden(self.x), atol=0, rtol=0)
        # hidden: the backbone's own class-token output (after its final layer norm).
        self.assertAllClose(h, student.backbone(self.x["images"])[:, 0, :], atol=ATOL, rtol=0)
        # representation: the class-token state after the first num_layers // 2 blocks,
        # checked against KerasHub's own forward pass of a 2-block ViT with those
        # weights (its final layer norm, set to the student's, applied to both).
        half = keras_hub.models.ViTBackbone(
            image_shape=IMAGE_SHAPE, patch_size=PATCH_SIZE, num_layers=NUM_LAYERS // 2,
            num_heads=2, hidden_dim=HIDDEN_DIM, mlp_dim=16,
        )
        embedding = "vit_patching_and_embedding"
        half.get_layer(embedding).set_weights(student.backbone.get_layer(embedding).get_weights())
        encoder, half_encoder = (b.get_layer("vit_encoder") for b in (student.backbone, half))
        for mine, theirs in zip(encoder.encoder_layers, half_encoder.encoder_layers):
            theirs.set_weights(mine.get_weights())
        half_encoder.layer_norm.set_weights(encoder.layer_norm.get_weights())
        self.assertAllClose(encoder.layer_norm(s), half(self.x["images"])[:, 0, :],
                            atol=ATOL, rtol=0)
        # The representation depends on the image (not the constant class token).
        self.assertGreater(float(tf.reduce_max(tf.abs(s - s[:1]))), 1e-4)
        # The prediction: logits from the head on hidden.
        logits = student(self.x)
        self.assertEqual(tuple(logits.shape), (BATCH, NUM_CLASSES))
        self.assertAllClose(logits, student.head(h), atol=0, rtol=0)
        self.assertAllClose(logits, student.serving_model(self.x), atol=ATOL, rtol=0)
        self.assertAllClose(logits, student(self.x["images"]), atol=0, rtol=0)

    def test_export_round_trip(self):
        student = _student()
        with tempfile.TemporaryDirectory() as tmp:
            path = export_student(student, os.path.join(tmp, "student"))
            reloaded = tf.saved_model.load(path)
            served = reloaded.serve({"images": tf.constant(self.x["images"])})
        self.assertEqual(tuple(served.shape), (BATCH, NUM_CLASSES))
        self.assertAllClose(served, student(self.x), atol=ATOL, rtol=0)

    def test_distillation_step_with_a_classification_loss_then_export(self):
        # Integer labels, SparseCategoricalCrossentropy on the logits; the "paper"
        # variant (L_reg fits head_S(a_k) to the label, no prediction term): the default
        # "tuned" variant feeds the teacher's logits to the task loss as a target.
        keras.utils.set_random_seed(3)
        teacher = ViTTeacher.tiny(image_shape=IMAGE_SHAPE, patch_size=PATCH_SIZE,
                                  num_classes=NUM_CLASSES, suffix_mode="query_token")
        student = _student()
        model = DistillationModel(student, [teacher], variant="paper", embedding_dim=8,
                                  intermediate_dim=8)
        model.compile(optimizer=keras.optimizers.SGD(0.5),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        y = self.rng.integers(0, NUM_CLASSES, BATCH).astype("int32")
        before = [np.array(w) for w in student.trainable_weights]
        self.assertEqual(len(before), len(student.backbone.weights) + 2)  # + the head
        logs = model.train_on_batch(self.x, y, return_dict=True)
        for name in ("loss", "task_loss", "distill_loss", "reg_loss"):
            self.assertTrue(np.isfinite(logs[name]), (name, logs[name]))
        # Every student weight trains but the attention key biases, which shift all
        # of a query's scores alike (no gradient through the softmax).
        self.assertUnmoved(
            student.trainable_weights, before,
            [f"vit_encoder/transformer_block_{i + 1}/mha/key/bias"
             for i in range(NUM_LAYERS)],
        )
        logits = model.predict(self.x, verbose=0)
        expected = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, logits)
        self.assertAllClose(model.evaluate(self.x, y, verbose=0, return_dict=True)["loss"],
                            expected, atol=1e-5)
        with tempfile.TemporaryDirectory() as tmp:
            path = model.export_student(os.path.join(tmp, "student"))
            reloaded = tf.saved_model.load(path)  # kept: the call needs its variables
            served = reloaded.serve({"images": tf.constant(self.x["images"])})
        self.assertAllClose(served, logits, atol=ATOL, rtol=0)

    def test_serialization_and_keras_file_round_trip(self):
        student = _student(patch_size=(4, 2), dropout_rate=0.1)
        revived = self.run_serialization_test(student)
        self.assertEqual((revived.patch_size, revived.num_classes), ((4, 2), NUM_CLASSES))
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "vit_student.keras")
            student.save(path)
            reloaded = keras.saving.load_model(path)
        self.assertIsInstance(reloaded, ViTStudent)
        self.assertAllClose(reloaded(self.x), student(self.x), atol=0, rtol=0)
        self.assertNotAllClose(student(self.x, training=True), student(self.x))  # dropout

    def test_tiny(self):
        student = ViTStudent.tiny()
        self.assertEqual((student.num_layers, student.representation_layer, student.hidden_dim),
                         (2, 1, 8))
        self.assertEqual(tuple(student(np.zeros((2, 8, 8, 1), "float32")).shape), (2, 3))

    def test_bad_config(self):
        with pytest.raises(ValueError, match="`num_layers` must be >= 2"):
            _student(num_layers=1)
        with pytest.raises(ValueError, match="num_classes"):
            _student(num_classes=0)
        with pytest.raises(ValueError, match="'images'"):
            ViTStudent.tiny()({"pixels": np.zeros((2, 8, 8, 1), "float32")})
