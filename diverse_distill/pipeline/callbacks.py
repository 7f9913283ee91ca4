"""Keras callbacks used by the jobs."""

import math
import time

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
        every: int. Validation runs every `every` epochs (`fit(validation_freq=every)`);
            other epochs are ignored and `best_epoch` counts evaluations. Defaults to `1`.
        restore_on_train_end: bool. Restore the best weights when `fit` ends;
            `False` leaves the last step's weights until `restore()` is called
            (to score the final-step model too). Defaults to `True`.

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

    def __init__(self, student, monitor="val_loss", every=1, restore_on_train_end=True):
        super().__init__()
        self.restore_on_train_end = restore_on_train_end
        self.student = student
        self.monitor = monitor
        self.every = int(every)
        self.best = math.inf
        self.best_epoch = None
        self.best_weights = None

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return  # no validation this epoch (`fit(validation_freq=every)`)
        epoch = (epoch + 1) // self.every - 1  # counted in evaluations
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
        if self.restore_on_train_end:
            self.restore()

    def restore(self):
        """Sets the student's weights to the best ones seen (if any)."""
        if self.best_weights is not None:
            self.student.set_weights(self.best_weights)

    # --- State, for `PhaseBackup` (a resumed run restores the same best weights) ---

    def get_state(self):
        """`(json-able dict, dict of arrays)`."""
        arrays = {f"w{i}": w for i, w in enumerate(self.best_weights or [])}
        return {"best": self.best, "best_epoch": self.best_epoch,
                "has_weights": self.best_weights is not None}, arrays

    def set_state(self, state, arrays):
        self.best, self.best_epoch = float(state["best"]), state["best_epoch"]
        self.best_weights = (
            [arrays[f"w{i}"] for i in range(len(arrays))] if state["has_weights"] else None
        )


class EvaluationHistory(keras.callbacks.Callback):
    """The history of a `fit` whose epochs are shorter than its evaluation period.

    With `fit(steps_per_epoch=c, validation_freq=every)` (a checkpoint every
    `c` steps, validation every `every * c` steps) this keeps one entry per
    evaluation, as `keras.callbacks.History` would with `steps_per_epoch=every * c`:
    each training metric is the mean of the `every` epoch means (equal-sized
    epochs, so the mean over the whole period), each `val_` metric the evaluation.

    Args:
        every: int. Epochs per evaluation. Defaults to `1`.

    Example:
    ```python
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    record = EvaluationHistory(every=2)
    model.fit(np.ones((8, 2)), np.ones((8, 1)), validation_data=(np.ones((4, 2)), np.ones((4, 1))),
              epochs=4, validation_freq=2, verbose=0, callbacks=[record])
    len(record.history["loss"]), len(record.history["val_loss"])  # (2, 2)
    ```
    """

    def __init__(self, every=1):
        super().__init__()
        self.every = int(every)
        self.history = {}
        self.pending = {}

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            if not key.startswith("val_"):
                self.pending.setdefault(key, []).append(float(np.asarray(value)))
        if (epoch + 1) % self.every:
            return
        for key, values in self.pending.items():
            self.history.setdefault(key, []).append(float(np.mean(values)))
        for key, value in (logs or {}).items():
            if key.startswith("val_"):
                self.history.setdefault(key, []).append(float(np.asarray(value)))
        self.pending = {}

    def get_state(self):
        return {"history": self.history, "pending": self.pending}, {}

    def set_state(self, state, arrays):
        self.history, self.pending = state["history"], state["pending"]


class PhaseProgress(keras.callbacks.Callback):
    """One line per chunk of steps: progress, the last validation loss and an ETA.

    Args:
        phase: str. The phase's name (e.g. `"s0_seed0"`).
        steps_per_epoch: int. Optimiser steps in one Keras epoch.
        total_epochs: int. Epochs of the whole phase.
        log: callable taking a str. Defaults to `print`.

    Example:
    ```python
    lines = []
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(np.ones((8, 2)), np.ones((8, 1)), epochs=2, verbose=0,
              callbacks=[PhaseProgress("demo", 1, 2, log=lines.append)])
    lines[-1].startswith("[demo] step 2/2 (100 %)")  # True
    ```
    """

    def __init__(self, phase, steps_per_epoch, total_epochs, log=print):
        super().__init__()
        self.phase = phase
        self.steps_per_epoch = int(steps_per_epoch)
        self.total_epochs = int(total_epochs)
        self.log = log
        self.last_val = None

    def on_train_begin(self, logs=None):
        self.start = time.time()
        self.first_epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.first_epoch is None:
            self.first_epoch = epoch  # a resumed phase starts past 0

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if "val_loss" in logs:
            self.last_val = float(logs["val_loss"])
        done = epoch + 1
        run = done - (self.first_epoch or 0)
        elapsed = time.time() - self.start
        left = elapsed / max(run, 1) * (self.total_epochs - done)
        val = "" if self.last_val is None else f", val loss {self.last_val:.4f}"
        self.log(f"[{self.phase}] step {done * self.steps_per_epoch}/"
                 f"{self.total_epochs * self.steps_per_epoch} "
                 f"({100 * done // self.total_epochs} %){val}, "
                 f"{elapsed / 60:.1f} min, ETA {left / 60:.1f} min")
