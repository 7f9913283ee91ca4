"""Soft targets: the squared error for regression, the tempered KL for classification, and
every method distilling a classifier with it (DiverseDistill's default variant included)."""

import keras
import numpy as np
import pytest

from diverse_distill.baselines.registry import get_method
from diverse_distill.distill.distillation_model import DistillationModel
from diverse_distill.distill.losses import classification_from_logits, soft_target_loss_fn
from diverse_distill.students.vit_student import ViTStudent
from diverse_distill.teachers.vit_teacher import ViTTeacher

LOGITS_LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def np_kl(target_logits, prediction_logits, t=1.0):
    def log_softmax(z):
        z = z / t
        z = z - z.max(-1, keepdims=True)
        return z - np.log(np.exp(z).sum(-1, keepdims=True))

    log_p, log_q = log_softmax(target_logits), log_softmax(prediction_logits)
    return t * t * (np.exp(log_p) * (log_p - log_q)).sum(-1)


def test_regression_losses_get_the_squared_error_over_the_non_batch_axes():
    fn = soft_target_loss_fn("mse")
    a = np.array([[1.0, 2.0], [0.0, 0.0]], "float32")
    b = np.array([[1.0, 4.0], [3.0, 1.0]], "float32")
    np.testing.assert_allclose(np.asarray(fn(a, b)), [2.0, 5.0])
    assert classification_from_logits("mse") is None
    assert classification_from_logits(keras.losses.MeanAbsoluteError()) is None


def test_classification_gets_the_tempered_kl_of_the_class_distributions():
    # p = softmax([0, ln 3]) = [0.25, 0.75], q = [0.5, 0.5]:
    # KL = 0.25 ln 0.5 + 0.75 ln 1.5 = 0.130812
    target = np.array([[0.0, np.log(3.0)]], "float32")
    prediction = np.zeros((1, 2), "float32")
    kl = soft_target_loss_fn(LOGITS_LOSS)
    np.testing.assert_allclose(np.asarray(kl(target, prediction)), [0.130812], atol=1e-6)
    tempered = soft_target_loss_fn(LOGITS_LOSS, temperature=2.0)
    np.testing.assert_allclose(np.asarray(tempered(target, prediction)),
                               np_kl(target, prediction, 2.0), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(kl(target, target)), [0.0], atol=1e-7)
    # Probabilities (Keras's default for the names): KL of the given distributions.
    probabilities = soft_target_loss_fn("sparse_categorical_crossentropy")
    np.testing.assert_allclose(np.asarray(probabilities(np.array([[0.25, 0.75]]),
                                                        np.array([[0.5, 0.5]]))),
                               [0.130812], atol=1e-6)
    with pytest.raises(ValueError, match="temperature"):
        soft_target_loss_fn(LOGITS_LOSS, temperature=0.0)


def classifier_committee(num_teachers=1):
    keras.utils.set_random_seed(0)
    student = ViTStudent.tiny(num_classes=3)
    teachers = [ViTTeacher.tiny(num_classes=3, name=f"vit{k}") for k in range(num_teachers)]
    rng = np.random.default_rng(0)
    x = {"images": rng.uniform(0, 1, (8, 8, 8, 1)).astype("float32")}
    y = rng.integers(0, 3, 8).astype("int32")
    return student, teachers, x, y


def test_ld_on_a_classifier_distils_the_kl_of_teacher_and_student_logits():
    student, teachers, x, y = classifier_committee()
    model = get_method("ld")(student, teachers, alpha=1.0)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=LOGITS_LOSS, run_eagerly=True)
    expected = np_kl(np.asarray(teachers[0](x)), np.asarray(student(x))).mean()
    logs = model.train_on_batch(x, y, return_dict=True)
    np.testing.assert_allclose(logs["distill_loss"], expected, rtol=1e-5)


@pytest.mark.parametrize("method", ["mt", "aekd", "amtml", "autoskd", "sckd", "fd"])
def test_every_baseline_trains_a_classifier(method):
    student, teachers, x, y = classifier_committee(1 if method in ("sckd", "fd") else 2)
    model = get_method(method)(student, teachers)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss=LOGITS_LOSS, run_eagerly=True)
    logs = model.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"]) and logs["distill_loss"] >= 0.0


def test_diverse_distill_default_variant_trains_a_classifier():
    student, teachers, x, y = classifier_committee(2)
    model = DistillationModel(student, teachers, embedding_dim=4, num_components=2,
                              intermediate_dim=8)  # variant="tuned": soft targets on logits
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss=LOGITS_LOSS)
    before = [np.array(w) for w in student.weights]
    logs = model.train_on_batch(x, y, return_dict=True)
    for key in ("task_loss", "prediction_loss", "reg_loss"):
        assert np.isfinite(logs[key]), key
    assert logs["prediction_loss"] > 0.0
    assert any(not np.allclose(a, np.array(b)) for a, b in zip(before, student.weights))
