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
