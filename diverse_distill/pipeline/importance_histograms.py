"""Per-teacher importance distributions: TensorBoard histograms and saved samples."""

import os

import keras
import numpy as np
import tensorflow as tf

from diverse_distill.students.student import student_features


def importances(model, dataset, max_rows=None):
    """The Question Augmenter's importance of each teacher on `dataset`'s rows.

    Args:
        model: a `DistillationModel`.
        dataset: batches of `(features, label)`.
        max_rows: int or `None`. Stop after this many rows. Defaults to `None` (all).

    Returns:
        dict teacher name -> float32 array `(rows,)`.
    """
    chunks, rows = [], 0
    for x, _ in dataset:
        representation, _ = student_features(model.student, x, training=False)
        _, importance = model.question_augmenter(representation, training=False)
        importance = np.asarray(importance)
        if getattr(model, "importance", "learned") == "uniform":  # the "no importance" ablation
            importance = np.ones_like(importance)
        chunks.append(importance)
        rows += chunks[-1].shape[0]
        if max_rows is not None and rows >= max_rows:
            break
    values = np.concatenate(chunks)[:max_rows]
    return {name: values[:, k].astype("float32") for k, name in enumerate(model.teacher_names)}


def pass_fractions(model, values):
    """The share of rows each teacher runs on at the model's threshold (no warm-up).

    Args:
        model: a `DistillationModel`.
        values: what `importances` returns: teacher name -> `(rows,)`.

    Returns:
        dict teacher name -> float in [0, 1] (1.0 without a threshold).
    """
    names = list(values)
    keep = np.asarray(model.kept(np.stack([values[n] for n in names], axis=1)))
    return {name: float(keep[:, k].mean()) for k, name in enumerate(names)}


class ImportanceHistograms(keras.callbacks.Callback):
    """Writes each teacher's importance distribution to TensorBoard after each evaluation.

    On a fixed validation sample (the same rows every time), at the end of
    every epoch with a validation (`val_loss` in the logs), at the optimizer
    step reached: `tf.summary.histogram("importance/<teacher>")`,
    and the fraction of the sample at or above the threshold as the scalar
    `pass_fraction_val/<teacher>`. The loss terms and the training-batch
    `importance_<teacher>` / `pass_fraction_<teacher>` means are written by
    `keras.callbacks.TensorBoard` (every key of the logs).

    Args:
        log_dir: str. Event files go to `log_dir/importance`.
        dataset: batches of `(features, label)` (validation data).
        max_rows: int. Size of the sample. Defaults to `512`.

    Example:
    ```python
    student = MLPStudent({"user_id": 10, "item_id": 20}, embedding_dims=4, hidden_units=(8,))
    teacher = MLPTeacher(MLPRecommender({"user_id": 10, "item_id": 20},
                         embedding_dims=8, hidden_units=(16,)), name="mlp_m")
    model = DistillationModel(student, [teacher])
    model.compile(optimizer="adagrad", loss="mse")
    x = {"user_id": np.arange(8) % 10, "item_id": np.arange(8)}
    ds = tf.data.Dataset.from_tensor_slices((x, np.ones((8, 1)))).batch(4)
    model.fit(ds, validation_data=ds, epochs=1, verbose=0,
              callbacks=[ImportanceHistograms("/tmp/tb", ds)])
    ```
    """

    def __init__(self, log_dir, dataset, max_rows=512):
        super().__init__()
        self.log_dir = os.path.join(log_dir, "importance")
        self.dataset = dataset.unbatch().take(max_rows).batch(max_rows)
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        if "val_loss" not in (logs or {}):
            return
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        values = importances(self.model, self.dataset)
        passed = pass_fractions(self.model, values)
        step = int(np.asarray(self.model.optimizer.iterations))
        with self._writer.as_default():
            for name, v in values.items():
                tf.summary.histogram(f"importance/{name}", v, step=step)
                tf.summary.scalar(f"pass_fraction_val/{name}", passed[name], step=step)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
