"""Keras callbacks used by the jobs."""

import math

import keras
import numpy as np


class BestStudentWeights(keras.callbacks.Callback):
    """Keeps the student's weights of the epoch with the best `monitor` and restores them.

    Model selection on the validation split, the same rule for every model
    of a job (teachers, S0, distilled students), so budgets stay equal.
    Only the student's weights are copied (not the teachers').

    Args:
        student: the Keras model whose weights are kept.
        monitor: str. The log key to minimise. Defaults to `"val_loss"`.

    Example:
    ```python
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    best = BestStudentWeights(model)
    model.fit(np.ones((8, 2)), np.ones((8, 1)), validation_data=(np.ones((4, 2)), np.ones((4, 1))),
              epochs=3, verbose=0, callbacks=[best])
    best.best_epoch in (0, 1, 2)  # True
    ```
    """

    def __init__(self, student, monitor="val_loss"):
        super().__init__()
        self.student = student
        self.monitor = monitor
        self.best = math.inf
        self.best_epoch = None
        self.best_weights = None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            raise ValueError(
                f"BestStudentWeights monitors {self.monitor!r}, which the logs lack "
                f"(keys: {sorted(logs or {})}); pass validation_data to fit."
            )
        if np.isfinite(value) and value < self.best:
            self.best, self.best_epoch = float(value), epoch
            self.best_weights = [np.array(w) for w in self.student.get_weights()]

    def on_train_end(self, logs=None):
        if self.best_weights is not None:
            self.student.set_weights(self.best_weights)
