"""The job on an image task (`--task=fashion_mnist`): the same pipeline as MovieLens with the
image `Task`; tiny ViT/CNN teachers and ViT student on idx files the test writes."""

import json

import numpy as np
import pytest
import tensorflow as tf

from diverse_distill.data import write_synthetic_fashion_mnist
from diverse_distill.metrics import classification_metrics, gap_recovery_rate
from diverse_distill.models.cnn_classifier import HIDDEN_LAYER, block_name, cnn_classifier
from diverse_distill.pipeline.job import DistillationJob
from diverse_distill.pipeline.job_config import JobConfig
from diverse_distill.pipeline.task import make_task
from diverse_distill.teachers.keras_teacher import KerasTeacher

TINY = dict(task="fashion_mnist", teachers=("vit", "cnn"), patch_size=7, student_layers=2,
            student_heads=2, student_hidden_dim=8, student_mlp_dim=16, vit_teacher_layers=2,
            vit_teacher_heads=2, vit_teacher_hidden_dim=8, vit_teacher_mlp_dim=16,
            cnn_filters=(4, 8), steps=6, teacher_steps=6, eval_every=3, batch_size=16,
            question_embedding_dim=4, num_components=2, module_intermediate_dim=8,
            optimizer="adamw", learning_rate=3e-3, teacher_dropout=0.0, compare_methods=())


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("image_job")
    folder = write_synthetic_fashion_mnist(str(root / "fmnist"), num_train=64, num_test=24)
    config = JobConfig(image_dir=folder, output_dir=str(root / "out"),
                       cache_dir=str(root / "cache"), **TINY)
    lines = []
    metrics = DistillationJob(config, log=lines.append).run()
    return config, metrics, lines


def test_records_are_accuracy_and_cross_entropy_of_the_saved_student(image_run):
    config, metrics, _ = image_run
    assert metrics["task"] == "fashion_mnist"
    assert metrics["metric_names"] == ["accuracy", "cross_entropy"]
    data = make_task(config).load_data()
    # The exported student (best-validation weights, like the record) scores what was recorded.
    served = tf.saved_model.load(f"{config.output_dir}/student")
    logits = np.asarray(served.serve({"images": tf.constant(data.test["images"])}))
    assert logits.shape == (24, 10)
    expected = classification_metrics(data.test["label"], logits)
    recorded = metrics["runs"][0]["distilled"]["test"]
    assert recorded["accuracy"] == expected["accuracy"]
    assert recorded["cross_entropy"] == pytest.approx(expected["cross_entropy"], abs=1e-5)


def test_grr_and_best_teacher_follow_accuracy_upwards(image_run):
    _, metrics, _ = image_run
    teachers = metrics["teachers"]
    best = max(teachers, key=lambda n: teachers[n]["test"]["accuracy"])
    assert metrics["best_teacher"] == best
    run = metrics["runs"][0]
    s0, distilled = run["s0"]["test"], run["distilled"]["test"]
    for metric in ("accuracy", "cross_entropy"):
        teacher, higher = teachers[best]["test"][metric], metric == "accuracy"
        if (teacher - s0[metric]) * (1 if higher else -1) > 0:
            assert run["grr"][metric] == pytest.approx(
                gap_recovery_rate(distilled[metric], s0[metric], teacher))
        else:  # the teacher does not beat S0 in this metric's direction: undefined
            assert run["grr"][metric] is None
    difference = metrics["summary"]["paired_difference"]["accuracy"]["mean"]
    assert difference == pytest.approx(distilled["accuracy"] - s0["accuracy"])


def test_summary_and_progress_speak_of_the_task(image_run):
    config, metrics, lines = image_run
    text = DistillationJob(config).summary_text(metrics)
    assert "Fashion-MNIST  method=diverse_distill" in text and "(24 images)" in text
    assert "distilled - S0 (ACCURACY, paired by seed)" in text
    assert any("teacher vit: test accuracy" in line for line in lines)
    assert any("val loss" in line and "ETA" in line for line in lines)
    assert any(line.startswith("prefix cache cnn:") for line in lines)


def test_a_rerun_trains_nothing_and_reports_the_same(image_run):
    config, metrics, _ = image_run
    lines = []
    again = DistillationJob(config, log=lines.append).run()
    assert any("finished earlier" in line for line in lines)
    assert all(again["teachers"][n]["loaded_from_cache"] for n in config.teachers)
    assert again["runs"][0]["distilled"]["test"] == metrics["runs"][0]["distilled"]["test"]


def test_cnn_teacher_split_after_its_middle_block_equals_the_model():
    model = cnn_classifier((28, 28, 1), 10, filters=(4, 8, 16))
    teacher = KerasTeacher(model, injection_layer=block_name(1), answer_layer=HIDDEN_LAYER)
    x = {"images": np.random.default_rng(0).uniform(size=(3, 28, 28, 1)).astype("float32")}
    context = teacher.prefix(x)
    hidden, logits = teacher.suffix(teacher.native_question(x, context), context)
    assert teacher.injection_dim == 7 * 7 * 8 and teacher.answer_dim == 128
    np.testing.assert_allclose(np.asarray(logits), np.asarray(model(x)), atol=1e-5)
    assert hidden.shape == (3, 128)


def test_image_config_errors_name_the_flag():
    with pytest.raises(ValueError, match="Unknown teacher.*--task=fashion_mnist"):
        JobConfig(task="fashion_mnist", teachers=("mlp_l",))
    with pytest.raises(ValueError, match="--student_hidden_dim .* multiple of --student_heads"):
        JobConfig(task="fashion_mnist", teachers=("cnn",), student_hidden_dim=10,
                  student_heads=4)
    with pytest.raises(ValueError, match="--image_size must be 0"):
        JobConfig(task="fashion_mnist", teachers=("cnn",), image_size=30, patch_size=7)
    with pytest.raises(ValueError, match="--task must be one of"):
        JobConfig(task="mnist")


def test_movielens_keys_ignore_the_image_fields_and_image_keys_use_them():
    base = JobConfig()
    other = JobConfig(patch_size=9, student_layers=3, optimizer="sgd")
    assert base.s0_key(0) == other.s0_key(0)
    assert base.teacher_key("mlp_l") == other.teacher_key("mlp_l")
    image = JobConfig(task="fashion_mnist", teachers=("vit",))
    assert image.s0_key(0) != JobConfig(task="fashion_mnist", teachers=("vit",),
                                        student_layers=3).s0_key(0)
    assert image.teacher_key("vit") != JobConfig(task="fashion_mnist", teachers=("vit",),
                                                 vit_teacher_layers=3).teacher_key("vit")
    assert image.s0_key(0) != JobConfig(task="cifar10", teachers=("vit",)).s0_key(0)


def test_classification_metrics_by_hand():
    logits = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 3.0]])
    result = classification_metrics([0, 1], logits)
    log_p0 = 2.0 - np.log(np.exp(2.0) + 2.0)
    log_p1 = 1.0 - np.log(1.0 + np.exp(1.0) + np.exp(3.0))
    assert result["accuracy"] == 0.5
    assert result["cross_entropy"] == pytest.approx(-(log_p0 + log_p1) / 2, abs=1e-12)


def test_metrics_json_is_plain_json(image_run):
    config, _, _ = image_run
    with open(f"{config.output_dir}/metrics.json") as f:
        written = json.load(f)
    assert written["config"]["task"] == "fashion_mnist"


def test_a_missing_image_folder_is_one_bad_input_error(tmp_path):
    from diverse_distill.pipeline.cli import BAD_INPUT_ERRORS

    config = JobConfig(task="fashion_mnist", teachers=("cnn",), image_dir=str(tmp_path / "no"))
    with pytest.raises(BAD_INPUT_ERRORS) as error:
        make_task(config).load_data()
    assert str(tmp_path / "no") in str(error.value)


def test_clip_teacher_scores_zero_shot_what_kerashub_scores(tmp_path):
    import keras_hub

    from diverse_distill.pipeline.image_task import ImageClassificationTask
    from diverse_distill.teachers.clip_teacher import CLIP_PIXEL_STATS, CLIPTeacher

    vocabulary = {"<|pad|>": 0, "x</w>": 1, "y</w>": 2, "x": 3, "xy</w>": 4,
                  "<|startoftext|>": 5, "<|endoftext|>": 6}
    preset = str(tmp_path / "tiny_clip")
    CLIPTeacher.tiny(image_shape=(28, 28, 3), patch_size=7,
                     vocabulary_size=7).backbone.save_to_preset(preset)
    tokenizer = keras_hub.models.CLIPTokenizer(vocabulary=vocabulary, merges=["x y</w>"])
    keras_hub.models.CLIPPreprocessor(tokenizer, sequence_length=6).save_to_preset(preset)
    folder = write_synthetic_fashion_mnist(str(tmp_path / "fmnist"), num_train=20, num_test=12)
    config = JobConfig(**{**TINY, "teachers": ("clip",)}, clip_preset=preset, image_dir=folder,
                       output_dir=str(tmp_path / "out"), cache_dir=str(tmp_path / "cache"))
    task = ImageClassificationTask(config)
    data = task.load_data()
    teacher, info = task.teacher_store(data, {s: {} for s in ("train", "validation", "test")}
                                       ).get("clip")
    assert info["zero_shot"] and not info["loaded_from_cache"]
    # KerasHub's own image-text logits on the normalised, channel-repeated images.
    images = np.repeat(data.test["images"], 3, axis=-1)
    images = (images - np.array(CLIP_PIXEL_STATS["pixel_mean"])) / np.array(
        CLIP_PIXEL_STATS["pixel_std"])
    logits = teacher.backbone({"images": images.astype("float32"),
                               "token_ids": teacher.class_token_ids})["vision_logits"]
    expected = classification_metrics(data.test["label"], np.asarray(logits))
    assert info["test"]["accuracy"] == expected["accuracy"]
    assert info["test"]["cross_entropy"] == pytest.approx(expected["cross_entropy"], abs=1e-4)
    assert teacher.class_names == list(data.class_names)
    with pytest.raises(ValueError, match="--clip_preset"):
        JobConfig(**{**TINY, "teachers": ("clip",)})
