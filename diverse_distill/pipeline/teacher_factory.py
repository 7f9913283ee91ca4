"""Builds MovieLens teachers, trains them once, and caches their weights on disk."""

import json
import math
import os
import shutil
import time

import keras
import numpy as np
import tensorflow as tf

from diverse_distill.metrics import regression_metrics
from diverse_distill.models.mlp_recommender import MLPRecommender
from diverse_distill.pipeline.callbacks import BestStudentWeights, EvaluationHistory, PhaseProgress
from diverse_distill.pipeline.finite_loss_guard import FiniteLossGuard
from diverse_distill.pipeline.job_config import MLP_TEACHERS
from diverse_distill.pipeline.lm_finetune import LAST_LAYER_STORAGE_DTYPE, finetune_last_layer
from diverse_distill.pipeline.phase_backup import PhaseBackup
from diverse_distill.pipeline.train_stream import train_stream
from diverse_distill.teachers.mlp_teacher import MLPTeacher

SPLITS = ("train", "validation", "test")


ID_FEATURES = ("user_id", "movie_id")


def mlp_inputs(config, data, features=None):
    """`(categorical vocab sizes, embedding dims, numeric dims)` of the MLP models.

    `features="ids"` keeps the user and movie ids only (the paper's
    parameter counts); `"all"` adds the user and movie attributes. Defaults
    to `config.mlp_features`.
    """
    features = features or config.mlp_features
    vocab = {n: v for n, v in data.categorical_vocab_sizes.items()
             if features == "all" or n in ID_FEATURES}
    dims = {n: config.id_embedding_dim if n in ID_FEATURES else config.attribute_embedding_dim
            for n in vocab}
    numeric = data.numeric_feature_dims if features == "all" else None
    return vocab, dims, numeric


def build_mlp(config, data, hidden_units, name, dropout=0.0, cls=MLPRecommender, features=None):
    vocab, dims, numeric = mlp_inputs(config, data, features)
    return cls(vocab, dims, numeric_features=numeric, hidden_units=hidden_units,
               dropout=dropout, name=name)


def _build_language_teacher(name, config, data):
    from diverse_distill.teachers.bert_teacher import BertTeacher
    from diverse_distill.teachers.t5_teacher import T5Teacher

    mean = data.mean_rating
    if name == "t5":
        return T5Teacher.from_preset(config.t5_preset, initial_prediction=mean, name=name)
    injection = None if config.bert_injection_layer < 0 else config.bert_injection_layer
    bert_kwargs = dict(initial_prediction=mean, suffix_mode=config.bert_suffix_mode,
                       injection_layer=injection, name=name)
    if name == "minilm":
        if config.bert_preset == "minilm":
            return BertTeacher.from_minilm_wheel(**bert_kwargs)
        return BertTeacher.from_preset(config.bert_preset, **bert_kwargs)
    keras.utils.set_random_seed(config.teacher_seed)
    if name == "tiny_t5":
        return T5Teacher.tiny(vocabulary_size=128, num_layers=2, hidden_dim=32,
                              initial_prediction=mean, name=name)
    if name == "tiny_bert":
        return BertTeacher.tiny(vocabulary_size=128, num_layers=2, hidden_dim=32,
                                max_sequence_length=max(config.lm_sequence_length, 32)
                                if config.lm_sequence_length else 512,  # 0: from the data
                                suffix_mode=config.bert_suffix_mode, injection_layer=injection,
                                initial_prediction=mean, name=name)
    raise ValueError(f"Unknown language teacher {name!r}.")


def hash_tokenize(prompts, vocabulary_size, sequence_length, token_ids_key, padding_mask_key):
    """Word-hashing token ids for tiny random-initialised teachers that have no tokenizer."""
    words = tf.strings.split(tf.constant(prompts))
    ids = tf.strings.to_hash_bucket_fast(words, vocabulary_size - 2) + 2
    ids = ids.to_tensor(default_value=0, shape=[None, sequence_length])
    ids = tf.cast(ids, "int32").numpy()
    return {token_ids_key: ids, padding_mask_key: (ids > 0).astype("int32")}


def split_prompts(data, split, config):
    """The prompts a language teacher reads for `split`: `data.prompts(split, history=K)`,
    `K = config.prompt_history` (0: the prompts without history)."""
    return list(data.prompts(split, history=config.prompt_history))


def prompt_token_counts(teacher, prompts, chunk=4096):
    """How many tokens each prompt packs into untruncated, special tokens included.

    Hash-tokenized teachers (no tokenizer) count one token per word. Otherwise the
    teacher's tokenizer counts the text's tokens, and `teacher.preprocess([""], 8)` the
    special tokens its packer adds (`[CLS]`, `[SEP]` for BERT; `</s>` for T5).

    Returns:
        int64 array `(len(prompts),)`, or `None` when the teacher's tokenizer cannot be
        called on its own.
    """
    tokenizer = getattr(teacher, "tokenizer", None)
    if tokenizer is None:
        if not prompts:
            return np.zeros(0, np.int64)
        return tf.strings.split(tf.constant(prompts)).row_lengths().numpy().astype(np.int64)
    if not callable(tokenizer):
        return None
    empty = teacher.preprocess([""], 8)
    special = sum(int(np.asarray(v).sum()) for k, v in empty.items()
                  if k.endswith("padding_mask"))
    counts = []
    for start in range(0, len(prompts), chunk):
        tokens = tokenizer(prompts[start:start + chunk])
        if hasattr(tokens, "row_lengths"):
            counts.append(np.asarray(tokens.row_lengths()))
        else:
            counts.append(np.array([len(ids) for ids in tokens], np.int64))
    return np.concatenate(counts).astype(np.int64) + special if counts else np.zeros(0, np.int64)


def resolve_sequence_length(teacher, config, train_counts):
    """`--lm_sequence_length`, or with 0 the longest train prompt's token count, capped at
    the teacher's position table (`backbone.max_sequence_length`, where it has one)."""
    if config.lm_sequence_length:
        return config.lm_sequence_length
    if train_counts is None:
        raise ValueError(
            f"--lm_sequence_length=0 sets the length from the token counts of the prompts, "
            f"and teacher {teacher.name!r} cannot count them (its tokenizer cannot be called "
            "on its own): give a positive --lm_sequence_length."
        )
    length = max(int(train_counts.max(initial=0)), 1)
    cap = getattr(getattr(teacher, "backbone", None), "max_sequence_length", None)
    return min(length, int(cap)) if cap else length


def language_features(teacher, data, config, log=print):
    """Token features of every split for one language teacher: split -> dict of arrays.

    The prompts are `data.prompts(split, history=--prompt_history)`. The sequence length
    is `--lm_sequence_length` (0: the longest train prompt's, see
    `resolve_sequence_length`); longer prompts are truncated at their end (where the movie
    asked about is), and how many were is logged for each split.
    """
    prompts = {split: split_prompts(data, split, config) for split in SPLITS}
    counts = {split: prompt_token_counts(teacher, prompts[split]) for split in SPLITS}
    length = resolve_sequence_length(teacher, config, counts["train"])
    if not config.lm_sequence_length:
        log(f"{teacher.name}: --lm_sequence_length=0 -> {length} tokens (the longest train "
            f"prompt: {int(counts['train'].max(initial=0))})")
    for split in SPLITS:
        if counts[split] is None or not len(counts[split]):
            continue
        cut = int((counts[split] > length).sum())
        if cut:
            log(f"{teacher.name}: {cut:,} of {len(counts[split]):,} {split} prompts "
                f"({cut / len(counts[split]):.1%}) are longer than {length} tokens (longest "
                f"{int(counts[split].max())}) and lose their end to truncation; "
                "--lm_sequence_length=0 fits the longest train prompt")
    features = {}
    for split in SPLITS:
        if getattr(teacher, "tokenizer", None) is None:
            vocab = teacher.backbone.vocabulary_size
            features[split] = hash_tokenize(
                prompts[split], vocab, length,
                f"{teacher.name}_token_ids", f"{teacher.name}_padding_mask",
            )
            continue
        chunks = []
        for start in range(0, len(prompts[split]), 4096):
            out = teacher.preprocess(prompts[split][start:start + 4096], length)
            chunks.append({k: np.asarray(v) for k, v in out.items()})
        features[split] = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    return features


def cached_language_features(teacher, data, config, folder):
    """`language_features`, read from `folder/tokens.npz` when an earlier run wrote it.

    The teacher's cache key (`JobConfig.teacher_key`) covers everything the tokens depend
    on (the data, the preset and so its tokenizer, the sequence length, `--prompt_history`),
    so a run that loads a cached teacher skips tokenizing every prompt again (about a
    minute for all-MiniLM-L6-v2 on MovieLens-100K on 2 cores; longer with history).
    """
    path = os.path.join(folder, "tokens.npz")
    if os.path.exists(path):
        with np.load(path) as stored:
            features = {split: {} for split in SPLITS}
            for name in stored.files:
                split, key = name.split("/", 1)
                features[split][key] = stored[name]
        return features
    features = language_features(teacher, data, config)
    os.makedirs(folder, exist_ok=True)
    tmp_path = os.path.join(folder, f"tmp-{os.getpid()}-tokens.npz")
    np.savez(tmp_path, **{f"{split}/{key}": value for split, arrays in features.items()
                          for key, value in arrays.items()})
    os.replace(tmp_path, path)  # atomic: a killed run leaves no half-written file
    return features


def predict_split(model, dataset):
    """Outputs of `model` over a `(features, label)` dataset: one row per example, a
    flat array where the model outputs one value per example (a rating), else
    `(n, width)` (class logits)."""
    batches = [np.asarray(model(x, training=False)) for x, _ in dataset]
    outputs = np.concatenate([o.reshape(len(o), -1) for o in batches])
    return outputs.reshape(-1) if outputs.shape[1] == 1 else outputs


def fit_with_schedule(model, train_ds, val_ds, steps, eval_every, student, verbose, callbacks=(),
                      checkpoint_every=0, backup_dir=None, phase="fit", log=print,
                      restore_best=True):
    """`steps` optimiser steps, validation every `eval_every`; best-validation student restored.

    Every `checkpoint_every` steps (a divisor of the evaluation period; 0 =
    at each evaluation) one Keras epoch ends, and with `backup_dir` a
    `PhaseBackup` saves the whole training state there; a rerun restores it,
    skips the batches already consumed by the (repeated, seeded)
    `train_ds` and continues as if never stopped. A non-finite loss term
    raises `NonFiniteLossError` (the last good checkpoint stays). With
    `restore_best=False` the student keeps its last step's weights and the
    caller restores the best ones with `best.restore()` (to score both).

    Returns:
        `(history, best)`: one history entry per evaluation, and the
        `BestStudentWeights` callback.
    """
    eval_steps = min(eval_every, steps)
    num_evals = max(1, steps // eval_every)
    chunk = math.gcd(checkpoint_every or eval_steps, eval_steps)
    per_eval = eval_steps // chunk
    best = BestStudentWeights(student, every=per_eval, restore_on_train_end=restore_best)
    record = EvaluationHistory(every=per_eval)
    backup = None
    if backup_dir:
        backup = PhaseBackup(backup_dir, state_callbacks={"best": best, "history": record})

    def checkpoint_note():
        if backup is None:
            return "No checkpoint is kept (no backup folder)."
        done = backup.initial_epoch()
        if not done:
            return f"No checkpoint was written yet ({backup_dir})."
        return f"The last good checkpoint (step {done * chunk}) is kept in {backup_dir}."

    guard = FiniteLossGuard(phase, chunk, checkpoint_note)
    initial_epoch = backup.initial_epoch() if backup else 0
    if initial_epoch:
        log(f"[{phase}] resuming from the checkpoint at step {initial_epoch * chunk} "
            f"in {backup_dir}")
        train_ds = train_ds.skip(initial_epoch * chunk)  # the batches already trained on
    try:
        model.fit(
            train_ds, validation_data=val_ds, steps_per_epoch=chunk, epochs=num_evals * per_eval,
            initial_epoch=initial_epoch, validation_freq=per_eval, verbose=verbose,
            shuffle=False,  # the stream is already in its seeded order (train_stream.py)
            callbacks=[guard, *callbacks, best, record,
                       PhaseProgress(phase, chunk, num_evals * per_eval, log=log)]
            + ([backup] if backup else []),
        )
    except tf.errors.InvalidArgumentError as error:  # a step that failed on NaN gradients
        diverged = guard.diverged_error(model, train_ds)
        if diverged is None:
            raise
        raise diverged from error
    return record.history, best


def prefix_cache_dir(config, teacher):
    """Where the memory-mapped prefix cache of a language teacher lives.

    With `--lm_finetune=last_layer`, a teacher split where its fine-tuning split is
    (same `prefix_spec`; MiniLM at `--bert_injection_layer=5 --bert_suffix_mode=query_token`)
    has the prefix of the frozen layers that fine-tuning cached over the train split: that
    cache is reused (its rows are the same examples in the same order; float16 both).
    """
    if (config.lm_finetune == "last_layer"
            and config.prefix_cache_dtype == LAST_LAYER_STORAGE_DTYPE
            and teacher.prefix_spec is not None
            and teacher.prefix_spec == teacher.fine_tuning_split()[0].prefix_spec):
        return os.path.join(last_layer_inputs_dir(config, teacher.name), "train")
    return _own_prefix_cache_dir(config, teacher)


def _own_prefix_cache_dir(config, teacher):
    key, _ = config.teacher_key(teacher.name)
    mode = getattr(teacher, "suffix_mode", "decoder")
    return os.path.join(config.cache_dir, key, f"prefix_{mode}_{config.prefix_cache_dtype}")


def last_layer_inputs_dir(config, name):
    """Where `--lm_finetune=last_layer` caches language teacher `name`'s frozen-layer
    states: with its tokens, under a key of the prompts alone (shared by every run)."""
    return os.path.join(config.cache_dir, config.lm_inputs_key(name), "last_layer_inputs")


def predictions_path(config, name):
    """Where a built language teacher's validation/test predictions are stored."""
    return os.path.join(config.cache_dir, config.teacher_key(name)[0], "predictions.npz")


def output_cache_dir(config, teacher):
    """Where the memory-mapped output cache of a language teacher lives (for the baselines).

    The outputs are computed from the teacher's prefix cache (as DiverseDistill
    sees the teacher), so the folder names that cache's suffix mode and dtype.
    """
    own = _own_prefix_cache_dir(config, teacher)  # the outputs depend on the teacher's weights
    return os.path.join(os.path.dirname(own), "outputs_from_" + os.path.basename(own))


class TeacherStore:
    """Trains each teacher once and caches its weights under a key of (config, seed).

    A rerun with the same configuration loads the cached weights instead of
    training again; the key changes with anything that changes the weights.

    Args:
        config: `JobConfig`.
        data: `MovieLensData`.
        extra_features: dict split -> dict of arrays; language teachers add
            their token features to it.
    """

    def __init__(self, config, data, extra_features):
        self.config = config
        self.data = data
        self.extra_features = extra_features

    def _datasets(self, seed):
        c = self.config
        train = train_stream(self.data, c.batch_size, seed, self.extra_features["train"])
        val = self.data.as_dataset("validation", 512, extra_features=self.extra_features["validation"])
        test = self.data.as_dataset("test", 512, extra_features=self.extra_features["test"])
        return train, val, test

    def _fit_probe(self, teacher):
        """Frozen language model + ridge head; shares its train prefix pass with the cache."""
        from diverse_distill.distill.prefix_cache import PrefixCache
        from diverse_distill.pipeline.language_probe import fit_probe_head

        c = self.config
        cache = None
        if c.prefix_cache == "disk":
            cache = PrefixCache(teacher, storage_dtype=c.prefix_cache_dtype,
                                directory=prefix_cache_dir(c, teacher),
                                padding_mask_key=teacher.prefix_padding_mask_key)
            cache.open_or_build(self.extra_features["train"], log=print)
        result = fit_probe_head(teacher, self.data, self.extra_features, train_cache=cache)
        sample = {k: v[:2] for k, v in self.extra_features["validation"].items()}
        teacher(sample, training=False)  # marks the teacher built (for count_params and saving)
        return result

    def _fit_last_layer(self, teacher):
        """The last layer's [CLS] path + head on cached inputs of the frozen lower layers;
        the cache lives with the tokens (it does not depend on the training flags)."""
        c = self.config
        keras.utils.set_random_seed(c.teacher_seed)
        result = finetune_last_layer(
            teacher, {split: self.extra_features[split] for split in SPLITS},
            {split: getattr(self.data, split)["rating"] for split in ("train", "validation")},
            steps=c.lm_teacher_steps, learning_rate=c.lm_learning_rate,
            batch_size=c.batch_size, eval_every=c.eval_every, seed=c.teacher_seed,
            cache_dir=last_layer_inputs_dir(c, teacher.name),
        )
        sample = {k: v[:2] for k, v in self.extra_features["validation"].items()}
        teacher(sample, training=False)  # marks the teacher built (for count_params and saving)
        history = {**result["history"], **{k: result[k] for k in
                                           ("cache_seconds", "train_seconds", "step_ms")}}
        return history, result["best_step"], result["predictions"]

    def get(self, name):
        """Returns `(teacher, info)`: a `SplitTeacher` and its metrics and provenance."""
        c = self.config
        key, spec = c.teacher_key(name)
        folder = os.path.join(c.cache_dir, key)
        if name in MLP_TEACHERS:
            keras.utils.set_random_seed(c.teacher_seed)
            model = build_mlp(c, self.data, MLP_TEACHERS[name], name=f"{name}_model",
                              dropout=c.teacher_dropout)
            teacher = MLPTeacher(model, name=name)
            trainable, steps = model, c.teacher_steps
            optimizer = keras.optimizers.Adagrad(c.learning_rate)
        else:
            teacher = _build_language_teacher(name, c, self.data)
            if c.lm_finetune == "lora":
                teacher.backbone.enable_lora(c.lm_lora_rank)
            tokens = cached_language_features(teacher, self.data, c,
                                              os.path.join(c.cache_dir, c.lm_inputs_key(name)))
            for split in SPLITS:
                self.extra_features[split].update(tokens[split])
            trainable, steps = teacher, c.lm_teacher_steps
            optimizer = keras.optimizers.AdamW(c.lm_learning_rate, weight_decay=0.01)
        keras.utils.set_random_seed(c.teacher_seed)  # the same shuffle seeds in a rerun
        train_ds, val_ds, test_ds = self._datasets(c.teacher_seed)

        info = load_cached_teacher(trainable, val_ds, folder)
        if info is not None:
            return teacher, info

        start = time.time()
        backup_dir = os.path.join(c.output_dir, "backup", f"teacher_{key}")
        predictions = {}
        if name not in MLP_TEACHERS and c.lm_finetune == "head":
            history, best_epoch = self._fit_probe(teacher), None
        elif name not in MLP_TEACHERS and c.lm_finetune == "last_layer":
            history, best_epoch, predictions = self._fit_last_layer(teacher)
        else:
            keras.utils.set_random_seed(c.teacher_seed)
            trainable.compile(optimizer=optimizer, loss="mse")
            history, best = fit_with_schedule(
                trainable, train_ds, val_ds, steps, c.eval_every, trainable, c.verbose,
                checkpoint_every=c.checkpoint_every, backup_dir=backup_dir,
                phase=f"teacher_{name}",
            )
            best_epoch = best.best_epoch
        info = {
            "name": name,
            "key": key,
            "spec": spec,
            "num_params": int(trainable.count_params()),
            "train_seconds": time.time() - start,
            "best_epoch": best_epoch,
            "history": {k: [float(v) for v in vals] if isinstance(vals, list) else vals
                        for k, vals in history.items()},
        }
        for split, dataset in (("validation", val_ds), ("test", test_ds)):
            if split not in predictions:
                predictions[split] = predict_split(teacher, dataset)
            info[split] = regression_metrics(getattr(self.data, split)["rating"],
                                             predictions[split])
        os.makedirs(folder, exist_ok=True)
        if name not in MLP_TEACHERS:  # what a language teacher predicts costs minutes to redo
            np.savez(predictions_path(c, name),
                     **{split: np.asarray(predictions[split], np.float32)
                        for split in ("validation", "test")})
        write_cached_teacher(trainable, info, folder)
        shutil.rmtree(backup_dir, ignore_errors=True)
        return teacher, info


WEIGHTS_FILE = "teacher.weights.h5"
INFO_FILE = "teacher.json"


def load_cached_teacher(trainable, dataset, folder):
    """Loads a teacher cached under `folder` into `trainable`; its info, or `None` if absent.

    Args:
        trainable: the Keras model whose weights were saved.
        dataset: a dataset of `(features, label)` batches; one batch builds the model.
        folder: the teacher's cache folder (`WEIGHTS_FILE`, `INFO_FILE`).

    Returns:
        The info dict with `"loaded_from_cache": True`, or `None` when the folder holds
        no complete entry. A checkpoint that does not load raises a `ValueError` that
        says to delete the folder.
    """
    weights_path = os.path.join(folder, WEIGHTS_FILE)
    info_path = os.path.join(folder, INFO_FILE)
    if not (os.path.exists(weights_path) and os.path.exists(info_path)):
        return None
    try:
        sample, _ = next(iter(dataset.take(1)))
        trainable(sample, training=False)  # builds every sub-layer
        trainable.load_weights(weights_path)
    except Exception as error:  # noqa: BLE001 - re-raised with the fix
        raise ValueError(
            f"The cached teacher checkpoint {weights_path} cannot be loaded "
            f"({' '.join(str(error).split())[:300]}). "
            "Delete that folder to retrain the teacher."
        ) from None
    with open(info_path) as f:
        info = json.load(f)
    info["loaded_from_cache"] = True
    return info


def write_cached_teacher(trainable, info, folder):
    """Writes `trainable`'s weights and `info` under `folder`, atomically (a process
    killed here leaves no half-written entry); sets `info["loaded_from_cache"] = False`."""
    os.makedirs(folder, exist_ok=True)
    tmp_weights = os.path.join(folder, f"tmp-{os.getpid()}.weights.h5")
    trainable.save_weights(tmp_weights)
    os.replace(tmp_weights, os.path.join(folder, WEIGHTS_FILE))
    info_path = os.path.join(folder, INFO_FILE)
    with open(info_path + ".tmp", "w") as f:
        json.dump(info, f, indent=2)
    os.replace(info_path + ".tmp", info_path)
    info["loaded_from_cache"] = False
