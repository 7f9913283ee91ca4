import os

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

from diverse_distill import CLIPTeacher, DistillationModel, ViTStudent
from diverse_distill.teachers.clip_teacher import random_prompt_token_ids
from tests.teachers.vision_teacher_helpers import (
    ATOL, BATCH, HIDDEN_DIM, MODES, NUM_CLASSES, NUM_LAYERS, NUM_TOKENS, PATCH_SIZE,
    VisionTeacherTestCase,
)

PROJECTION_DIM = 12
IMAGE_SHAPE = (8, 8, 3)
VOCABULARY_SIZE, SEQUENCE_LENGTH = 20, 6
LOGITS_LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _kerashub_image_embeddings(backbone, images):
    """KerasHub's own image embedding, spelled out as `get_vision_embeddings` does it."""
    sequence = backbone.vision_encoder({"images": images})
    return backbone.vision_projection(backbone.vision_pooler(sequence))


def _kerashub_logits(backbone, images, token_ids):
    """`CLIPBackbone`'s image-text logits: (images, prompts)."""
    return backbone({"images": images, "token_ids": token_ids})["vision_logits"]


def _tiny_bpe(words):
    """A CLIP BPE vocabulary and merges that spell each of `words` as one token.

    `<|endoftext|>` gets the largest id, as in CLIP (the text pooler reads the
    state at the largest id), and 0 is padding.
    """
    vocabulary, merges = {"<|pad|>": 0}, []

    def add(token):
        vocabulary.setdefault(token, len(vocabulary))

    for word in words:
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        for piece in pieces:
            add(piece)
        merged = pieces[0]
        for piece in pieces[1:]:
            merges.append(f"{merged} {piece}")
            merged += piece
            add(merged)
    add("<|startoftext|>")
    add("<|endoftext|>")
    return vocabulary, merges


class CLIPTeacherTest(VisionTeacherTestCase):
    IMAGE_SHAPE = IMAGE_SHAPE

    @classmethod
    def make_backbone(cls):
        teacher = CLIPTeacher.tiny(
            image_shape=IMAGE_SHAPE, patch_size=PATCH_SIZE, num_layers=NUM_LAYERS,
            hidden_dim=HIDDEN_DIM, projection_dim=PROJECTION_DIM, num_classes=NUM_CLASSES,
            vocabulary_size=VOCABULARY_SIZE, sequence_length=SEQUENCE_LENGTH,
        )
        cls.backbone = teacher.backbone
        cls.token_ids = teacher.class_token_ids

    def _teacher(self, **kwargs):
        kwargs.setdefault("name", "clip")
        kwargs.setdefault("class_token_ids", self.token_ids)
        return CLIPTeacher(self.backbone, **kwargs)

    def test_dims_and_defaults(self):
        teacher = self._teacher()
        self.check_defaults(teacher, answer_dim=PROJECTION_DIM)
        self.assertEqual(teacher.num_classes, NUM_CLASSES)
        # Every tiny class prompt ends with <|endoftext|>, the largest id.
        self.assertTrue((self.token_ids.max(axis=1) == VOCABULARY_SIZE - 1).all())

    def test_class_embeddings_are_a_stored_constant_from_the_text_tower(self):
        teacher = self._teacher()
        embeddings = teacher.class_embeddings
        self.assertFalse(embeddings.trainable)
        self.assertTrue(any(w is embeddings for w in teacher.non_trainable_weights))
        self.assertFalse(any(w is embeddings for w in teacher.trainable_weights))
        self.assertEqual(tuple(teacher.class_embeddings.shape), (NUM_CLASSES, PROJECTION_DIM))
        self.assertAllClose(teacher.class_embeddings,
                            self.backbone.get_text_embeddings(self.token_ids), atol=ATOL, rtol=0)

    @parameterized.product(
        suffix_mode=("exact", "query_token"), injection_layer=(0, 1, NUM_LAYERS - 1)
    )
    def test_split_with_native_question_equals_unsplit_and_kerashub(
        self, suffix_mode, injection_layer
    ):
        teacher = self._teacher(suffix_mode=suffix_mode, injection_layer=injection_layer)
        context = teacher.prefix(self.x)
        native = teacher.native_question(self.x, context)
        hidden, prediction = teacher.suffix(native, context)
        self.assertAllClose(prediction, teacher(self.x), atol=ATOL, rtol=0)
        # The answer is KerasHub's projected image embedding ...
        self.assertAllClose(hidden, _kerashub_image_embeddings(self.backbone, self.x["images"]),
                            atol=ATOL, rtol=0)
        self.assertAllClose(hidden, self.backbone.get_vision_embeddings(self.x["images"]),
                            atol=ATOL, rtol=0)
        # ... and the prediction KerasHub's image-text logits against the class prompts.
        self.assertAllClose(prediction,
                            _kerashub_logits(self.backbone, self.x["images"], self.token_ids),
                            atol=1e-4, rtol=0)
        # The native question is the class-token state input to the injection layer.
        self.assertAllClose(native, context["layer_inputs"][0][:, 0, :], atol=0, rtol=0)

    def test_logits_are_scaled_cosines_with_kerashub_text_embeddings(self):
        teacher = self._teacher()
        self.backbone.clip_head.logit_scale.assign(np.log(7.0))  # not the default
        image = np.array(self.backbone.get_vision_embeddings(self.x["images"]))
        text = np.array(self.backbone.get_text_embeddings(self.token_ids))
        image /= np.linalg.norm(image, axis=-1, keepdims=True)
        text /= np.linalg.norm(text, axis=-1, keepdims=True)
        expected = 7.0 * image @ text.T
        self.assertAllClose(teacher(self.x), expected, atol=1e-4, rtol=0)
        self.assertAllClose(
            _kerashub_logits(self.backbone, self.x["images"], self.token_ids), expected,
            atol=1e-4, rtol=0,
        )
        # Other images in the batch never change an image's logits.
        self.assertAllClose(teacher({"images": self.x["images"][:1]}), expected[:1],
                            atol=1e-4, rtol=0)

    def test_injection_at_layer_zero_replaces_the_embedded_class_token(self):
        teacher = self._teacher(injection_layer=0)
        native = teacher.native_question(self.x, teacher.prefix(self.x))
        vision = self.backbone.vision_encoder
        token = (np.asarray(vision.embedding.class_embedding)
                 + np.asarray(vision.embedding.position_embedding.embeddings)[0])
        expected = vision.pre_layer_norm(token[None])[0]
        self.assertAllClose(native, np.tile(expected, (BATCH, 1)), atol=1e-6, rtol=0)

    @parameterized.named_parameters(*MODES)
    def test_the_text_tower_never_runs_after_construction(self, suffix_mode):
        teacher = self._teacher(suffix_mode=suffix_mode)
        calls = []
        text_encoder = self.backbone.text_encoder
        original_call = text_encoder.call

        def counting_call(*args, **kwargs):
            calls.append(1)
            return original_call(*args, **kwargs)

        # Both the text encoder (any route) and the backbone's text helper count.
        text_encoder.call = counting_call
        self.backbone.get_text_embeddings = lambda *a, **k: calls.append(1)
        try:
            text_encoder({"token_ids": self.token_ids})  # the wrapper does count
            self.assertLen(calls, 1)
            calls.clear()
            context = teacher.prefix(self.x)
            teacher.suffix(self.question, context)
            teacher.suffix(teacher.native_question(self.x, context), context)
            tf.function(teacher.suffix)(self.question, context)
            teacher(self.x)
            self.assertEmpty(calls)
        finally:
            del text_encoder.call
            del self.backbone.get_text_embeddings

    @parameterized.named_parameters(*MODES)
    def test_another_question_changes_the_answer(self, suffix_mode):
        teacher = self._teacher(suffix_mode=suffix_mode)
        hidden, prediction = self.check_another_question_changes_the_answer(
            teacher, answer_dim=PROJECTION_DIM
        )
        # The prediction is the zero-shot head on the answer.
        self.assertAllClose(prediction, teacher.zero_shot_logits(hidden), atol=0, rtol=0)

    @parameterized.named_parameters(("absorbed", True), ("projected", False))
    def test_modes_differ_only_through_the_other_tokens(self, absorb_attention):
        def answers(injection_layer):
            return self.answers_by_suffix_mode(injection_layer, absorb_attention)

        (exact_hidden, exact_logits), (query_hidden, query_logits) = answers(NUM_LAYERS - 1)
        self.assertAllClose(query_hidden, exact_hidden, atol=ATOL, rtol=0)
        self.assertAllClose(query_logits, exact_logits, atol=1e-4, rtol=0)
        (exact_hidden, _), (query_hidden, _) = answers(1)
        self.assertGreater(float(tf.reduce_max(tf.abs(exact_hidden - query_hidden))), 1e-4)

    def test_absorbed_and_projected_query_token_suffixes_agree(self):
        absorbed_out, projected_out, absorbed_gradient, projected_gradient = (
            self.absorbed_and_projected_outputs()
        )
        self.assertAllClose(absorbed_out[0], projected_out[0], atol=ATOL, rtol=0)
        self.assertAllClose(absorbed_out[1], projected_out[1], atol=1e-4, rtol=0)
        self.assertAllClose(absorbed_gradient, projected_gradient, atol=1e-4, rtol=0)

    @parameterized.named_parameters(*MODES)
    def test_gradient_reaches_the_question_never_frozen_weights(self, suffix_mode):
        self.check_gradient_reaches_the_question_never_frozen_weights(
            suffix_mode, prediction_loss=lambda logits: tf.reduce_sum(logits[:, 0])
        )

    @parameterized.named_parameters(*MODES)
    def test_gathered_context_rows_give_the_same_answers(self, suffix_mode):
        teacher = self._teacher(suffix_mode=suffix_mode)
        context = teacher.prefix(self.x)
        for leaf in tf.nest.flatten(context):
            self.assertEqual(leaf.shape[:2], (BATCH, NUM_TOKENS))
        self.check_gathered_context_rows(teacher, context, prediction_atol=1e-4)

    def test_frozen_through_a_distillation_step(self):
        teachers = [self._teacher(name="clip_exact"),
                    self._teacher(suffix_mode="query_token", name="clip_query")]
        keras.utils.set_random_seed(7)
        student = ViTStudent.tiny(image_shape=IMAGE_SHAPE, patch_size=PATCH_SIZE,
                                  num_classes=NUM_CLASSES)
        model = DistillationModel(student, teachers, embedding_dim=8, num_components=2,
                                  intermediate_dim=8)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=LOGITS_LOSS)
        for teacher in teachers:
            self.assertEmpty(teacher.trainable_weights)
        watched = self.backbone.weights + [t.class_embeddings for t in teachers]
        before = [np.array(w) for w in watched]
        student_before = [np.array(w) for w in student.weights]
        y = self.rng.integers(0, NUM_CLASSES, BATCH).astype("int32")
        logs = model.train_on_batch(self.x, y, return_dict=True)
        for name in ("loss", "task_loss", "reg_loss"):
            self.assertTrue(np.isfinite(logs[name]), (name, logs[name]))
        for weight, value in zip(watched, before):
            np.testing.assert_array_equal(np.array(weight), value)
        self.assertTrue(any(not np.allclose(np.array(w), b)
                            for w, b in zip(student.weights, student_before)))

    def test_class_names_through_a_clip_tokenizer(self):
        vocabulary, merges = _tiny_bpe(["a", "photo", "of", "cat", "dog", "."])
        tokenizer = keras_hub.models.CLIPTokenizer(vocabulary=vocabulary, merges=merges)
        keras.utils.set_random_seed(3)
        teacher = CLIPTeacher.tiny(vocabulary_size=len(vocabulary), sequence_length=10,
                                   class_names=["Cat", "dog"], preprocessor=tokenizer)
        v = vocabulary
        start, end = v["<|startoftext|>"], v["<|endoftext|>"]
        expected = [
            [start, v["a</w>"], v["photo</w>"], v["of</w>"], v["a</w>"], v[word + "</w>"],
             v[".</w>"], end, 0, 0]
            for word in ("cat", "dog")  # the preprocessor lower-cases
        ]
        self.assertAllEqual(teacher.class_token_ids, expected)
        self.assertEqual(teacher.class_names, ["Cat", "dog"])
        self.assertEqual(teacher.num_classes, 2)
        images = self.rng.random((2,) + IMAGE_SHAPE).astype("float32")
        self.assertAllClose(teacher({"images": images}),
                            _kerashub_logits(teacher.backbone, images, np.array(expected)),
                            atol=1e-4, rtol=0)
        # A CLIPPreprocessor packs the same way at its own length.
        preprocessor = keras_hub.models.CLIPPreprocessor(tokenizer, sequence_length=9)
        other = CLIPTeacher(teacher.backbone, class_names=["cat", "dog"],
                            preprocessor=preprocessor, template="a photo of a {label}.")
        self.assertAllEqual(other.class_token_ids, np.array(expected)[:, :9])
        self.assertAllClose(other.class_embeddings, teacher.class_embeddings, atol=ATOL, rtol=0)

    def test_from_a_local_preset_folder(self):
        vocabulary, merges = _tiny_bpe(["a", "photo", "of", "cat", "dog", "."])
        tokenizer = keras_hub.models.CLIPTokenizer(vocabulary=vocabulary, merges=merges)
        keras.utils.set_random_seed(5)
        original = CLIPTeacher.tiny(vocabulary_size=len(vocabulary), sequence_length=10,
                                    class_names=["cat", "dog"], preprocessor=tokenizer)
        folder = os.path.join(self.get_temp_dir(), "tiny_clip")
        original.backbone.save_to_preset(folder)
        keras_hub.models.CLIPPreprocessor(tokenizer, sequence_length=10).save_to_preset(folder)
        teacher = CLIPTeacher.from_preset(folder, ["dog", "cat"], suffix_mode="query_token",
                                          injection_layer=0)
        self.assertEqual((teacher.suffix_mode, teacher.injection_layer), ("query_token", 0))
        self.assertAllEqual(teacher.class_token_ids, original.class_token_ids[::-1])
        images = self.rng.random((2,) + IMAGE_SHAPE).astype("float32")
        self.assertAllClose(teacher({"images": images}),
                            np.asarray(original({"images": images}))[:, ::-1], atol=1e-5, rtol=0)

    def test_serialization_and_keras_file_round_trip(self):
        teacher = self._teacher(suffix_mode="query_token", injection_layer=1,
                                absorb_attention=False, class_names=["a", "b", "c"])
        revived, reloaded = self.check_keras_file_round_trip(teacher, CLIPTeacher)
        self.assertEqual(
            (revived.suffix_mode, revived.injection_layer, revived.absorb_attention,
             revived.class_names),
            ("query_token", 1, False, ["a", "b", "c"]),
        )
        self.assertAllEqual(revived.class_token_ids, self.token_ids)
        self.assertAllClose(reloaded.class_embeddings, teacher.class_embeddings, atol=0, rtol=0)

    def test_bad_arguments_raise(self):
        self.check_split_argument_errors(layer_noun="vision layers")
        with pytest.raises(ValueError, match="CLIPBackbone"):
            CLIPTeacher(keras.Sequential([keras.layers.Dense(1)]), class_token_ids=self.token_ids)
        with pytest.raises(ValueError, match="class_names` with a `preprocessor"):
            CLIPTeacher(self.backbone)
        with pytest.raises(ValueError, match=r"int array \(num_classes, sequence_length\)"):
            self._teacher(class_token_ids=self.token_ids[0])
        with pytest.raises(ValueError, match="at most 6 tokens"):
            self._teacher(class_token_ids=random_prompt_token_ids(2, 7, VOCABULARY_SIZE))
        with pytest.raises(ValueError, match="2 `class_names` for 3 rows"):
            self._teacher(class_names=["a", "b"])
        with pytest.raises(ValueError, match="preprocessor"):
            CLIPTeacher(self.backbone, class_names=["a"], preprocessor=object())
        with pytest.raises(ValueError, match="local preset folder"):
            CLIPTeacher.from_preset("clip_vit_base_patch32_not_here", ["cat"])
