"""Fine-tunes the top of a language teacher on cached states of its frozen rest.

`--lm_finetune=last_layer`. The teacher says which part learns (`fine_tuning_split()`):

- BERT (`BertTeacher`): the last transformer layer and the head. The layers below stay
  as pretrained, so the token states input to the last layer are computed once per
  example and cached (`PrefixCache`, each batch trimmed to its longest prompt). Only the
  [CLS] row of the last layer feeds the head, and it depends only on [CLS] and the other
  tokens' cached states, so the layer runs for the [CLS] token alone
  (`suffix_mode="query_token"`, keys/values folded into the query): a few MFLOP per
  example instead of a pass through the whole model.
- T5 (`T5Teacher`): the decoder layers after the first, its final layer norm and the
  head, on the cached encoder output and first decoder layer (the teacher's own prefix):
  the decoder runs one token, so this is cheap too.

Both are exact, not approximations: the fine-tuned teacher's own forward pass gives the
same predictions (tested), and what the cache holds stays what the frozen layers compute.
For BERT the distillation prefix cache (states input to the middle and later layers) is
also unchanged by this fine-tuning.
"""

import os
import time

import keras
import numpy as np
import tensorflow as tf

from diverse_distill.distill.prefix_cache import PrefixCache, trim_to_longest

# The storage dtype of the frozen-layer caches `bin/train` builds (its `--prefix_cache_dtype`
# default, so a distillation split equal to the fine-tuning one reuses them).
LAST_LAYER_STORAGE_DTYPE = "float16"


def _context_batches(cache, rows, batch_size):
    """Yields `(rows, context)` over `rows` of a built `PrefixCache`, each batch trimmed to
    its longest prompt: the context's integer 2-D leaf is the padding mask, and every leaf
    with the prompt on axis 1 is cut to the batch's longest row."""
    leaves = cache.leaves
    if cache.padding_mask_key is None:  # a teacher whose context cannot be trimmed
        for begin in range(0, len(rows), batch_size):
            chunk = np.sort(rows[begin:begin + batch_size])
            yield chunk, cache.context(
                {key: np.asarray(leaf[chunk]) for key, leaf in zip(cache.keys, leaves)})
        return
    mask_index = next(i for i, leaf in enumerate(leaves)
                      if leaf.ndim == 2 and np.issubdtype(leaf.dtype, np.integer))
    for begin in range(0, len(rows), batch_size):
        chunk = np.sort(rows[begin:begin + batch_size])
        values = [np.asarray(leaf[chunk]) for leaf in leaves]
        yield chunk, cache.context(dict(zip(cache.keys, trim_to_longest(values, values[mask_index]))))


def finetune_last_layer(teacher, features, ratings, steps, learning_rate, batch_size=64,
                        eval_every=500, cache_dir=None, seed=0, weight_decay=0.01,
                        storage_dtype=LAST_LAYER_STORAGE_DTYPE, log=print):
    """Fine-tunes the top of `teacher` (see the module docstring); keeps the best on validation.

    Args:
        teacher: a `BertTeacher` or `T5Teacher` (anything with `fine_tuning_split()`).
        features: dict split -> dict of the teacher's token features (`"train"` and
            `"validation"` needed; other splits are predicted at the end).
        ratings: dict split -> float array of targets, for `"train"` and `"validation"`.
        steps: int. AdamW steps on batches of `batch_size` random train rows.
        learning_rate: float.
        batch_size: int, default 64.
        eval_every: int, default 500. Validation MSE every this many steps; the
            weights of the best evaluation are restored at the end.
        cache_dir: str or `None`. Where to memory-map the cached layer inputs (one
            folder per split, reused when complete); `None` keeps them in memory.
        seed: int, default 0. Order of the train rows.
        weight_decay: float, default 0.01.
        storage_dtype: str, default `"float16"`. Of the cached layer inputs (half the
            disk; predictions then differ from the teacher's own float32 pass by ~1e-3).
        log: callable for progress lines (with an ETA).

    Returns:
        dict: `"history"` (`step`, `loss`, `val_mse` lists), `"best_step"`,
        `"cache_seconds"`, `"train_seconds"`, `"step_ms"`, and `"predictions"`
        (split -> the fine-tuned teacher's predictions, float32 arrays).

    Example:
    ```python
    teacher = BertTeacher.tiny(num_layers=2, initial_prediction=3.0)
    x = {"bert_token_ids": np.random.randint(1, 64, (64, 10)),
         "bert_padding_mask": np.ones((64, 10), "int32")}
    y = np.random.uniform(1, 5, 64).astype("float32")
    result = finetune_last_layer(teacher, {"train": x, "validation": x},
                                 {"train": y, "validation": y}, steps=20,
                                 learning_rate=1e-3, batch_size=16, eval_every=10)
    result["predictions"]["validation"].shape  # (64,)
    ```
    """
    missing = [split for split in ("train", "validation")
               if split not in features or split not in ratings]
    if missing:
        raise ValueError(f"finetune_last_layer needs the features and ratings of the splits "
                         f"{missing}; got features of {sorted(features)} and ratings of "
                         f"{sorted(ratings)}.")
    if steps <= 0 or batch_size <= 0 or eval_every <= 0:
        raise ValueError(f"steps, batch_size and eval_every must be positive, got {steps}, "
                         f"{batch_size} and {eval_every}.")
    top, variables = teacher.fine_tuning_split()
    caches, cache_seconds = {}, 0.0
    for split, split_features in features.items():
        cache = PrefixCache(top, storage_dtype=storage_dtype,
                            directory=os.path.join(cache_dir, split) if cache_dir else None,
                            padding_mask_key=top.prefix_padding_mask_key)
        wanted = {k: v for k, v in split_features.items() if k in top.feature_keys}
        if cache_dir:
            cache.open_or_build(wanted, log=log)
        else:
            cache.build(wanted, log=log)
        caches[split] = cache
        cache_seconds += cache.seconds
        log(f"{teacher.name}: {split} inputs of the fine-tuned layers cached "
            f"({cache.seconds / 60:.1f} min, {cache.nbytes / 2**30:.2f} GiB)")

    optimizer = keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay)
    optimizer.build(variables)

    def predict(context, training):
        question = top.native_question(None, context)
        return tf.reshape(top.suffix(question, context, training=training)[1], [-1])

    @tf.function(reduce_retracing=True)
    def train_step(context, y):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(tf.cast(predict(context, True), tf.float32) - y))
        optimizer.apply(tape.gradient(loss, variables), variables)
        return loss

    predict_fn = tf.function(lambda context: predict(context, False), reduce_retracing=True)

    def predictions(split):
        cache = caches[split]
        out = np.empty(len(cache.leaves[0]), np.float32)
        for rows, context in _context_batches(cache, np.arange(len(out)), 512):
            out[rows] = np.asarray(predict_fn(context), np.float32)
        return out

    y_train = np.asarray(ratings["train"], np.float32).reshape(-1)
    y_val = np.asarray(ratings["validation"], np.float32).reshape(-1)
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(len(y_train))
                            for _ in range(-(-steps * batch_size // len(y_train)))])
    history = {"step": [], "loss": [], "val_mse": []}
    best = (np.inf, 0, [v.numpy() for v in variables])
    losses, start = [], time.time()
    for step, (rows, context) in enumerate(
            _context_batches(caches["train"], order[:steps * batch_size], batch_size), start=1):
        losses.append(float(train_step(context, y_train[rows])))
        if step % eval_every == 0 or step == steps:
            val_mse = float(np.mean((predictions("validation") - y_val) ** 2))
            history["step"].append(step)
            history["loss"].append(float(np.mean(losses)))
            history["val_mse"].append(val_mse)
            losses = []
            if val_mse < best[0]:
                best = (val_mse, step, [v.numpy() for v in variables])
            elapsed = time.time() - start
            log(f"[{teacher.name} last_layer] step {step}/{steps}: loss "
                f"{history['loss'][-1]:.4f}, validation MSE {val_mse:.4f} (best {best[0]:.4f} "
                f"at {best[1]}), ETA {elapsed / step * (steps - step) / 60:.1f} min")
    train_seconds = time.time() - start
    for variable, value in zip(variables, best[2]):
        variable.assign(value)
    return {
        "history": history,
        "best_step": best[1],
        "cache_seconds": cache_seconds,
        "train_seconds": train_seconds,
        "step_ms": 1000 * train_seconds / max(steps, 1),
        "predictions": {split: predictions(split) for split in caches},
    }
