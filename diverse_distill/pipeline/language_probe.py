"""A language-model teacher's regression head fitted on its frozen answers (a linear probe)."""

import numpy as np
import tensorflow as tf

from diverse_distill.metrics import regression_metrics

RIDGE_PENALTIES = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


def _answers(teacher, batches):
    """The teacher's own answers (last-layer hidden states) over `batches` of (x, context)."""
    run = tf.function(
        lambda x, ctx: teacher.suffix(teacher.native_question(x, ctx), ctx)[0],
        reduce_retracing=True,
    )
    return np.concatenate([np.asarray(run(x, ctx), np.float64) for x, ctx in batches])


def _batches(features, batch_size, context_fn):
    n = len(next(iter(features.values())))
    for begin in range(0, n, batch_size):
        x = {k: v[begin:begin + batch_size] for k, v in features.items()}
        yield x, context_fn(x)


def fit_probe_head(teacher, data, extra_features, train_cache=None, batch_size=256, log=print):
    """Fits `teacher.head` by ridge regression on the frozen teacher's answers.

    The backbone stays as pretrained; only the `Dense(1)` regression head is
    fitted, in closed form, with the ridge penalty chosen on the validation
    split. Train answers come from `train_cache` (a built `PrefixCache`)
    when given, so the prefix pass is shared with distillation.

    Returns:
        dict with the chosen penalty and the validation MSE of each penalty.
    """
    if train_cache is not None:
        train_features = {**extra_features["train"], **train_cache.features()}
        train_batches = _batches(train_features, batch_size, train_cache.context)
    else:
        train_batches = _batches(extra_features["train"], batch_size, teacher.prefix)
    h_train = _answers(teacher, train_batches)
    log(f"probe {teacher.name}: train answers {h_train.shape}")
    h_val = _answers(teacher, _batches(extra_features["validation"], batch_size, teacher.prefix))
    y_train = data.train["rating"].astype(np.float64)
    y_val = data.validation["rating"].astype(np.float64)

    mean_h, mean_y = h_train.mean(0), y_train.mean()
    centred = h_train - mean_h
    gram = centred.T @ centred
    moment = centred.T @ (y_train - mean_y)
    scores, solutions = {}, {}
    for penalty in RIDGE_PENALTIES:
        w = np.linalg.solve(gram + penalty * len(y_train) * np.eye(len(gram)), moment)
        b = mean_y - mean_h @ w
        scores[penalty] = regression_metrics(y_val, h_val @ w + b)["mse"]
        solutions[penalty] = (w, b)
    best = min(scores, key=scores.get)
    w, b = solutions[best]
    teacher.head.set_weights([w[:, None].astype("float32"), np.array([b], "float32")])
    log(f"probe {teacher.name}: ridge penalty {best}, validation MSE {scores[best]:.4f}")
    return {"ridge_penalty": best, "validation_mse_by_penalty": {str(k): v for k, v in scores.items()}}
