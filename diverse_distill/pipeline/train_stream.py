"""The endless, resumable stream of shuffled training batches of a job."""

import tensorflow as tf


def train_stream(data, batch_size, seed, extra_features=None, split="train"):
    """Training batches whose order depends on `(seed, epoch)` alone.

    `ds.shuffle(n, seed, reshuffle_each_iteration=True).repeat()` draws a new
    order for every iterator made from it, so the stream depends on how many
    iterators were made before (Keras makes one more under `tf.distribute`
    than without, and a resumed run one more or less). Here the order of
    epoch `e` is `stateless_shuffle(range(n), seed=(seed, e))`: every
    iterator yields the same stream, `stream.skip(k)` continues it exactly
    after `k` batches (one small gather per skipped batch), and one device
    equals `MirroredStrategy`. Batches run across epoch
    boundaries, as with `shuffle().repeat().batch()`.

    Args:
        data: `MovieLensData`.
        batch_size: int. The global batch.
        seed: int.
        extra_features: dict name -> array aligned with the split, or `None`.
        split: str. Defaults to `"train"`.

    Returns:
        An endless `tf.data.Dataset` of `(features, rating (batch, 1))`.

    Example:
    ```python
    import tempfile
    from diverse_distill.data import load_movielens, write_synthetic_ml100k
    data = load_movielens(movielens_dir=write_synthetic_ml100k(tempfile.mkdtemp()))
    ds = train_stream(data, batch_size=32, seed=0)
    a = [y.numpy() for _, y in ds.take(3)]
    b = [y.numpy() for _, y in ds.skip(2).take(1)]
    (a[2] == b[0]).all()  # True
    ```
    """
    n = data.num_examples[split]
    whole = next(iter(data.as_dataset(split, batch_size=n, extra_features=extra_features)))

    def epoch_order(epoch):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int64), seed=tf.stack([tf.cast(seed, tf.int64), epoch])
        )
        return tf.data.Dataset.from_tensor_slices(order)

    indices = tf.data.Dataset.range(2**62).flat_map(epoch_order).batch(batch_size)
    return indices.map(
        lambda idx: tf.nest.map_structure(lambda t: tf.gather(t, idx), whole),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True,
    ).prefetch(tf.data.AUTOTUNE)
