"""`--lm_finetune=last_layer` and `lora`: what each trains, exactness of the cached path,
the caches shared across fine-tuning runs, and the teacher store's bookkeeping."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from diverse_distill.data import load_movielens, write_synthetic_ml100k
from diverse_distill.distill.prefix_cache import PrefixCache
from diverse_distill.pipeline.job_config import LM_FINETUNE_OPTIONS, JobConfig
from diverse_distill.pipeline.lm_finetune import finetune_last_layer
from diverse_distill.pipeline import teacher_factory
from diverse_distill.pipeline.teacher_factory import TeacherStore
from diverse_distill.teachers.bert_teacher import BertTeacher
from diverse_distill.teachers.t5_teacher import T5Teacher

SPLITS = ("train", "validation", "test")


def ragged_tokens(num_rows, length, seed, vocabulary_size=64):
    """Token features with lengths from 3 to `length` (trailing padding), [CLS] = 1 first."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, length + 1, num_rows)
    mask = (np.arange(length)[None, :] < lengths[:, None]).astype("int32")
    ids = rng.integers(2, vocabulary_size, (num_rows, length)) * mask
    ids[:, 0] = 1
    return {"bert_token_ids": ids.astype("int32"), "bert_padding_mask": mask}


def tiny_teacher(seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    return BertTeacher.tiny(num_layers=3, initial_prediction=3.0, **kwargs)


def test_trimmed_prefix_cache_equals_the_prefix_on_every_token_and_keeps_rows_in_place():
    teacher = tiny_teacher(suffix_mode="query_token")
    x = ragged_tokens(37, 16, seed=1)
    reference = teacher.prefix(x)
    cache = PrefixCache(teacher, storage_dtype="float32",
                        padding_mask_key="bert_padding_mask").build(x, batch_size=8)
    context = cache.context({**x, **cache.features()})
    mask = x["bert_padding_mask"].astype(bool)
    np.testing.assert_array_equal(np.asarray(context["padding_mask"]), x["bert_padding_mask"])
    assert len(context["layer_inputs"]) == len(reference["layer_inputs"]) == 2
    for got, want in zip(context["layer_inputs"], reference["layer_inputs"]):
        got, want = np.asarray(got), np.asarray(want)
        assert got.shape == want.shape == (37, 16, 32)
        np.testing.assert_allclose(got[mask], want[mask], atol=1e-5)
    # The answers read only unmasked positions: equal to the untrimmed prefix's.
    question = teacher.native_question(x, reference)
    np.testing.assert_allclose(np.asarray(teacher.suffix(question, context)[0]),
                               np.asarray(teacher.suffix(question, reference)[0]), atol=1e-5)


def test_trimmed_cache_names_a_missing_mask_feature():
    teacher = tiny_teacher()
    cache = PrefixCache(teacher, padding_mask_key="bert_mask")
    with pytest.raises(ValueError, match="`padding_mask_key` 'bert_mask' is not a feature"):
        cache.build(ragged_tokens(4, 8, seed=0))


def test_fine_tuning_names_missing_splits_and_bad_steps():
    teacher = tiny_teacher()
    x = ragged_tokens(8, 6, seed=0)
    y = np.full(8, 3.0, "float32")
    with pytest.raises(ValueError, match=r"needs the features and ratings of the splits "
                                         r"\['validation'\]; got features of \['train'\]"):
        finetune_last_layer(teacher, {"train": x}, {"train": y, "validation": y}, steps=1,
                            learning_rate=1e-3)
    with pytest.raises(ValueError, match="steps, batch_size and eval_every must be positive, "
                                         "got 0, 64 and 500"):
        finetune_last_layer(teacher, {"train": x, "validation": x},
                            {"train": y, "validation": y}, steps=0, learning_rate=1e-3)


def test_split_at_shares_every_weight_and_the_top_split_is_the_unsplit_teacher():
    teacher = tiny_teacher()
    top = teacher.split_at(2, suffix_mode="query_token")
    assert top.backbone is teacher.backbone and top.head is teacher.head
    assert top.injection_layer == 2 and top.suffix_mode == "query_token"
    x = ragged_tokens(9, 12, seed=2)
    context = top.prefix(x)
    _, prediction = top.suffix(top.native_question(x, context), context)
    np.testing.assert_allclose(np.asarray(prediction), np.asarray(teacher(x)), atol=1e-5)


def test_last_layer_fine_tuning_trains_only_the_last_layer_and_head_and_is_exact(tmp_path):
    teacher = tiny_teacher()
    rng = np.random.default_rng(3)
    features = {split: ragged_tokens(n, 14, seed=s) for split, n, s in
                (("train", 256, 4), ("validation", 64, 5), ("test", 48, 6))}
    # A target the last layer can read: whether token 7 occurs in the prompt.
    ratings = {split: np.where((f["bert_token_ids"] == 7).any(1), 4.5, 2.0).astype("float32")
               + rng.normal(0, 0.05, len(f["bert_token_ids"])).astype("float32")
               for split, f in features.items()}
    backbone = teacher.backbone
    lower = [v.numpy().copy() for layer in
             [backbone.token_embedding, backbone.position_embedding, backbone.segment_embedding,
              backbone.embeddings_layer_norm, *backbone.transformer_layers[:2]]
             for v in layer.weights]
    top_before = [v.numpy().copy() for v in backbone.transformer_layers[2].weights]
    before = np.asarray(teacher(features["validation"])).reshape(-1)

    result = finetune_last_layer(teacher, features, ratings, steps=150, learning_rate=3e-3,
                                 batch_size=32, eval_every=50, cache_dir=str(tmp_path),
                                 storage_dtype="float32", log=print)

    after_lower = [v.numpy() for layer in
                   [backbone.token_embedding, backbone.position_embedding,
                    backbone.segment_embedding, backbone.embeddings_layer_norm,
                    *backbone.transformer_layers[:2]] for v in layer.weights]
    for old, new in zip(lower, after_lower):  # not in the optimizer's list: exact
        np.testing.assert_array_equal(old, new)
    moved = [np.abs(old - v.numpy()).max() for old, v in
             zip(top_before, backbone.transformer_layers[2].weights)]
    assert max(moved) > 1e-4
    # Exact: the cached path's predictions are the fine-tuned teacher's own forward pass.
    for split in SPLITS:
        np.testing.assert_allclose(result["predictions"][split],
                                   np.asarray(teacher(features[split])).reshape(-1), atol=1e-4)
    # It learned the target: validation MSE well under the untrained teacher's.
    val = ratings["validation"]
    assert result["history"]["step"] == [50, 100, 150]
    best = min(result["history"]["val_mse"])
    assert result["history"]["val_mse"][[50, 100, 150].index(result["best_step"])] == best
    assert np.mean((result["predictions"]["validation"] - val) ** 2) == pytest.approx(best, rel=1e-4)
    assert best < 0.5 * np.mean((before - val) ** 2)
    # The layer inputs were cached once per split and are reused by a later run.
    for split in SPLITS:
        assert (tmp_path / split / "COMPLETE").exists()
    again = finetune_last_layer(teacher, features, ratings, steps=2, learning_rate=1e-3,
                                batch_size=32, eval_every=2, cache_dir=str(tmp_path),
                                storage_dtype="float32", log=print)
    assert again["cache_seconds"] == 0.0


def test_t5_fine_tunes_the_decoder_after_its_first_layer_exactly(tmp_path):
    keras.utils.set_random_seed(0)
    teacher = T5Teacher.tiny(initial_prediction=3.0, name="t5")
    rng = np.random.default_rng(7)

    def tokens(n, seed):
        x = ragged_tokens(n, 12, seed=seed)
        return {"t5_token_ids": x["bert_token_ids"], "t5_padding_mask": x["bert_padding_mask"]}

    features = {"train": tokens(96, 1), "validation": tokens(32, 2)}
    ratings = {s: rng.uniform(1, 5, 96 if s == "train" else 32).astype("float32")
               for s in features}
    backbone = teacher.backbone
    frozen = [backbone.token_embedding, *backbone.encoder_transformer_layers,
              backbone.encoder_layer_norm, backbone.decoder_transformer_layers[0]]
    before = [v.numpy().copy() for layer in frozen for v in layer.weights]
    trained_before = [v.numpy().copy() for v in backbone.decoder_transformer_layers[1].weights]
    result = finetune_last_layer(teacher, features, ratings, steps=20, learning_rate=1e-2,
                                 batch_size=16, eval_every=10, storage_dtype="float32",
                                 log=print)
    for old, new in zip(before, [v.numpy() for layer in frozen for v in layer.weights]):
        np.testing.assert_array_equal(old, new)
    assert max(np.abs(old - v.numpy()).max() for old, v in
               zip(trained_before, backbone.decoder_transformer_layers[1].weights)) > 1e-4
    for split in features:
        np.testing.assert_allclose(result["predictions"][split],
                                   np.asarray(teacher(features[split])).reshape(-1), atol=1e-4)


def test_lm_finetune_options_and_keys():
    assert LM_FINETUNE_OPTIONS == ("full", "head", "last_layer", "lora")
    with pytest.raises(ValueError, match=r"--lm_finetune must be one of \['full', 'head', "
                                         r"'last_layer', 'lora'\], got 'top'\."):
        JobConfig(lm_finetune="top")
    with pytest.raises(ValueError, match="--lm_lora_rank must be positive, got 0"):
        JobConfig(lm_lora_rank=0)
    base = JobConfig(teachers=("minilm",), lm_finetune="last_layer")
    # The inputs (tokens, frozen-layer states) do not depend on how the teacher is trained...
    for change in ({"lm_learning_rate": 1e-3}, {"lm_teacher_steps": 10},
                   {"lm_finetune": "lora"}, {"teacher_seed": 3}):
        assert JobConfig(**{**base.to_dict(), **change}).lm_inputs_key("minilm") == \
            base.lm_inputs_key("minilm")
    # ...but on the prompts and their length, and the teacher's weights on all of it.
    for change in ({"prompt_history": 5}, {"lm_sequence_length": 0}):
        other = JobConfig(**{**base.to_dict(), **change})
        assert other.lm_inputs_key("minilm") != base.lm_inputs_key("minilm")
        assert other.teacher_key("minilm") != base.teacher_key("minilm")
    lora = JobConfig(**{**base.to_dict(), "lm_finetune": "lora"})
    assert lora.teacher_key("minilm")[1]["lora_rank"] == 8
    assert "lora_rank" not in base.teacher_key("minilm")[1]
    assert lora.teacher_key("minilm") != JobConfig(
        **{**lora.to_dict(), "lm_lora_rank": 4}).teacher_key("minilm")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = write_synthetic_ml100k(str(tmp_path_factory.mktemp("ml") / "ml-100k"),
                                    num_users=30, num_movies=40, num_ratings=900, seed=0)
    return load_movielens(movielens_dir=folder, split_seed=42)


@pytest.mark.parametrize("name, finetune", [("tiny_bert", "last_layer"), ("tiny_bert", "lora"),
                                            ("tiny_t5", "last_layer")])
def test_teacher_store_fine_tunes_caches_and_records_predictions(data, tmp_path, name, finetune):
    config = JobConfig(teachers=(name,), lm_finetune=finetune, lm_teacher_steps=40,
                       lm_learning_rate=1e-3, eval_every=20, batch_size=32,
                       lm_sequence_length=24, cache_dir=str(tmp_path / "cache"),
                       output_dir=str(tmp_path / "out"))
    extra = {split: {} for split in SPLITS}
    teacher, info = TeacherStore(config, data, extra).get(name)
    assert not info["loaded_from_cache"]
    folder = tmp_path / "cache" / config.teacher_key(name)[0]
    stored = np.load(folder / "predictions.npz")
    for split in ("validation", "test"):
        mse = np.mean((stored[split] - getattr(data, split)["rating"]) ** 2)
        assert info[split]["mse"] == pytest.approx(mse, rel=1e-5)
    # The saved weights are the teacher that made those predictions, in a plain teacher.
    loaded, loaded_info = TeacherStore(config, data, {s: {} for s in SPLITS}).get(name)
    assert loaded_info["loaded_from_cache"]
    np.testing.assert_allclose(  # last_layer predicted from its float16 layer-input cache
        np.asarray(loaded(extra["test"])).reshape(-1), stored["test"],
        atol=1e-4 if finetune == "lora" else 5e-3)
    inputs = tmp_path / "cache" / config.lm_inputs_key(name)
    assert (inputs / "tokens.npz").exists()
    if finetune == "last_layer":
        assert info["best_epoch"] in (20, 40)
        assert sorted(os.listdir(inputs / "last_layer_inputs")) == sorted(SPLITS)
        assert info["history"]["step"] == [20, 40]
    else:
        lora_weights = [v for v in teacher.backbone.weights if "lora" in v.path]
        assert lora_weights, "enable_lora added no adapter"
    json.dumps(info)  # teacher.json is written from it


@pytest.mark.parametrize("suffix_mode, injection_layer, shared", [
    ("query_token", 1, True),  # the fine-tuning split (tiny_bert has 2 layers)
    ("query_token", 0, False), ("exact", 1, False)])
def test_a_distillation_split_equal_to_the_fine_tuning_one_reuses_its_cache(
        data, tmp_path, suffix_mode, injection_layer, shared):
    config = JobConfig(teachers=("tiny_bert",), lm_finetune="last_layer", lm_teacher_steps=20,
                       eval_every=20, batch_size=32, lm_sequence_length=24,
                       bert_suffix_mode=suffix_mode, bert_injection_layer=injection_layer,
                       cache_dir=str(tmp_path / "cache"), output_dir=str(tmp_path / "out"))
    extra = {split: {} for split in SPLITS}
    teacher, _ = TeacherStore(config, data, extra).get("tiny_bert")
    assert teacher.injection_layer == injection_layer
    inputs = os.path.join(teacher_factory.last_layer_inputs_dir(config, "tiny_bert"), "train")
    directory = teacher_factory.prefix_cache_dir(config, teacher)
    assert (directory == inputs) == shared
    # The outputs depend on the fine-tuned weights: always under the teacher's own key.
    assert teacher_factory.output_cache_dir(config, teacher).startswith(
        os.path.join(config.cache_dir, config.teacher_key("tiny_bert")[0]))
    cache = PrefixCache(teacher, storage_dtype=config.prefix_cache_dtype, directory=directory,
                        padding_mask_key=teacher.prefix_padding_mask_key)
    cache.open_or_build(extra["train"])
    assert (cache.seconds == 0.0) == shared  # opened, not rebuilt
    rows = np.arange(5)
    cached = cache.context({k: v[rows] for k, v in cache.features().items()})
    direct = teacher.prefix({k: v[rows] for k, v in extra["train"].items()})
    real = extra["train"]["tiny_bert_padding_mask"][rows].astype(bool)  # padding is not kept
    for got, want in zip(tf.nest.flatten(cached), tf.nest.flatten(direct)):
        got, want = np.asarray(got, "float32"), np.asarray(want, "float32")
        if got.ndim == 3:
            got, want = got[real], want[real]
        np.testing.assert_allclose(got, want, atol=2e-2)
