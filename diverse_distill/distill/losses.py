"""Per-sample task losses for the DiverseDistill terms."""

import keras
import tensorflow as tf
from keras import ops


def num_replicas():
    """Replicas of the current `tf.distribute` strategy (1 without one)."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def global_mean(per_sample, sample_weight=None):
    """Mean over the *global* batch, as `keras.losses` reduce under tf.distribute."""
    return tf.nn.compute_average_loss(per_sample, sample_weight=sample_weight)


def per_sample_loss_fn(loss):
    """Returns `fn(y_true, y_pred) -> (batch,)`, the unreduced task loss.

    `loss` is a Keras loss name (`"mse"`), a `keras.losses.Loss` instance
    (its reduction is ignored: DiverseDistill weights every sample by its
    teachers' importances before reducing) or a function of
    `(y_true, y_pred)` returning one value per sample.

    Example:
    ```python
    fn = per_sample_loss_fn("mse")
    fn(np.array([[1.0], [2.0]]), np.array([[1.0], [4.0]]))  # [0.0, 4.0]
    ```
    """
    if loss is None:
        raise ValueError("DistillationModel.compile needs a task `loss`, e.g. loss='mse'.")
    if isinstance(loss, keras.losses.Loss):
        fn = loss.call
    else:
        fn = keras.losses.get(loss)
        if isinstance(fn, keras.losses.Loss):
            fn = fn.call

    def per_sample(y_true, y_pred):
        values = fn(ops.cast(y_true, y_pred.dtype), y_pred)
        while len(values.shape) > 1:
            values = ops.mean(values, axis=-1)
        return ops.cast(values, "float32")

    return per_sample


def classification_from_logits(loss):
    """`None` for a regression loss; for a categorical cross-entropy, whether it reads logits.

    A `keras.losses.SparseCategoricalCrossentropy` / `CategoricalCrossentropy` instance
    says so in its config; the names `"sparse_categorical_crossentropy"` and
    `"categorical_crossentropy"` read probabilities (Keras's default). Anything else (a
    name such as `"mse"`, another loss, a function) is a regression loss.

    Example:
    ```python
    classification_from_logits("mse")  # None
    classification_from_logits(
        keras.losses.SparseCategoricalCrossentropy(from_logits=True))  # True
    ```
    """
    classes = (keras.losses.SparseCategoricalCrossentropy, keras.losses.CategoricalCrossentropy)
    if isinstance(loss, classes):
        return bool(loss.get_config().get("from_logits", False))
    if isinstance(loss, str) and loss in ("sparse_categorical_crossentropy",
                                          "categorical_crossentropy"):
        return False
    return None


def soft_target_loss_fn(loss, temperature=1.0):
    """Returns `fn(target, prediction) -> (batch,)`: how far a prediction is from a soft target.

    The soft target is another model's prediction (a teacher's, or the student head's
    reading of a teacher's answer). For a regression task loss it is the per-sample mean
    squared difference over the non-batch axes (the prediction itself is the soft
    target); for a categorical cross-entropy task loss (see `classification_from_logits`)
    it is `T² · KL(p_target ‖ p_prediction)` of the class distributions, softened by the
    temperature `T` when the predictions are logits (Hinton et al., 2015).

    Args:
        loss: the task loss given to `compile` (what it is decides the soft-target loss).
        temperature: float > 0, default 1. Logits are divided by it before the softmax.

    Example:
    ```python
    mse = soft_target_loss_fn("mse")
    mse(np.array([[1.0], [2.0]]), np.array([[1.0], [4.0]]))  # [0.0, 4.0]
    kl = soft_target_loss_fn(keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    kl(np.array([[0.0, 1.0]]), np.array([[0.0, 1.0]]))  # [0.0]: the same distribution
    ```
    """
    if not float(temperature) > 0:
        raise ValueError(f"`temperature` must be > 0, got {temperature}.")
    from_logits = classification_from_logits(loss)
    if from_logits is None:
        def squared(target, prediction):
            diff = ops.square(ops.cast(target, "float32") - ops.cast(prediction, "float32"))
            while len(diff.shape) > 1:
                diff = ops.mean(diff, axis=-1)
            return diff

        return squared
    t = float(temperature)

    def distributions(values):
        values = ops.cast(values, "float32")
        if from_logits:
            return ops.log_softmax(values / t, axis=-1)
        return ops.log(ops.clip(values, 1e-7, 1.0))

    def kl(target, prediction):
        log_p, log_q = distributions(target), distributions(prediction)
        return (t * t if from_logits else 1.0) * ops.sum(ops.exp(log_p) * (log_p - log_q),
                                                         axis=-1)

    return kl
