"""Stops training at the first non-finite loss term, naming the term and the step."""

import math

import keras
import numpy as np

# Reported first, in this order; any other logged value is checked after them.
LOSS_TERMS = ("task_loss", "distill_loss", "reg_loss", "loss")


class NonFiniteLossError(RuntimeError):
    """Training produced a non-finite loss; the message names the terms and the step."""


class FiniteLossGuard(keras.callbacks.Callback):
    """Raises `NonFiniteLossError` after the first batch with a non-finite loss term.

    Keras' `TerminateOnNaN` looks at `loss` only and stops gracefully, which
    runs validation, `on_epoch_end` (and so the next backup, of broken
    weights) and `on_train_end`. This callback checks every loss term of the
    batch logs (`task_loss`, `distill_loss`, `reg_loss`, `loss`, and any other
    `*loss*` key) and raises out of `fit`, so no later checkpoint is written
    and the last good one stays on disk.

    The batch logs hold each term's running mean over the epoch, which turns
    non-finite at the first bad batch, so the reported step is exact.

    A step can also fail before it logs anything: Keras' Adagrad divides the
    sparse gradient of an embedding by its accumulator, and once that holds
    NaN it raises an `InvalidArgumentError` (an index out of range) inside
    the step. `diverged_error` turns that into the same clear message (with
    the weights that went non-finite and the loss terms they give on a
    training batch) when the model's weights are no longer finite; call it
    from an `except tf.errors.InvalidArgumentError` around `fit`.

    Args:
        phase: str. Named in the message (e.g. `"diverse_distill_seed0"`).
        steps_per_epoch: int. To count steps across epochs.
        checkpoint_note: callable returning a str, or `None`. Appended to the
            message (e.g. where the last good checkpoint is). Defaults to `None`.

    Example:
    ```python
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    y = np.array([[1.0], [np.nan]] * 4)
    try:
        model.fit(np.ones((8, 2)), y, batch_size=2, verbose=0,
                  callbacks=[FiniteLossGuard("demo", steps_per_epoch=4)])
    except NonFiniteLossError as error:
        message = str(error)  # "... non-finite loss=nan at step 1 ..."
    ```
    """

    def __init__(self, phase, steps_per_epoch, checkpoint_note=None):
        super().__init__()
        self.phase = phase
        self.steps_per_epoch = int(steps_per_epoch)
        self.checkpoint_note = checkpoint_note
        self._epoch = 0
        self.last_step = 0  # the last step that ended with finite losses

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self.last_step = epoch * self.steps_per_epoch

    def on_train_batch_end(self, batch, logs=None):
        self.last_step = self._epoch * self.steps_per_epoch + batch + 1
        bad = {}
        for key, value in (logs or {}).items():
            if "loss" not in key:
                continue
            value = float(np.asarray(value))
            if not math.isfinite(value):
                bad[key] = value
        if not bad:
            return
        raise self._error(f"non-finite {_terms(bad)} at step {self.last_step}")

    def _error(self, what):
        message = (
            f"training diverged in phase {self.phase}: {what}. Lower --learning_rate "
            "(or --alpha / --beta) and rerun with a new --output_dir or with --noresume."
        )
        if self.checkpoint_note is not None:
            message += " " + self.checkpoint_note()
        return NonFiniteLossError(message)

    def diverged_error(self, model, dataset):
        """A `NonFiniteLossError` for a step that failed, or `None` if the weights are finite."""
        bad = [v.path for v in model.trainable_variables
               if not np.all(np.isfinite(np.asarray(v)))]
        if not bad:
            return None
        terms = _loss_terms(model, dataset)
        bad_terms = {k: v for k, v in terms.items() if not math.isfinite(v)}
        listed = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        effect = (f"on a training batch they give non-finite {_terms(bad_terms)}" if bad_terms
                  else "the loss terms of a training batch stay finite")
        return self._error(
            f"step {self.last_step + 1} failed on non-finite gradients, which left "
            f"non-finite weights ({listed}); {effect}"
        )


def _terms(values):
    names = [k for k in LOSS_TERMS if k in values]
    names += sorted(k for k in values if k not in LOSS_TERMS)
    return ", ".join(f"{k}={values[k]}" for k in names)


def _loss_terms(model, dataset):
    """Each loss term of `model` on one batch of `dataset` (`{}` if it cannot be computed)."""
    try:
        x, y = next(iter(dataset))[:2]
        if hasattr(model, "compute_losses"):  # DistillationModel
            losses = model.compute_losses(x, y, training=False)
            terms = {k: float(np.asarray(losses[k])) for k in LOSS_TERMS if k in losses}
            terms["loss"] = sum(terms.values())
            return terms
        y_pred = model(x, training=False)
        return {"loss": float(np.mean(np.square(np.asarray(y_pred) - np.asarray(y))))}
    except Exception:  # noqa: BLE001 - a diagnosis only; the error itself is raised anyway
        return {}


class InjectNaN(keras.callbacks.Callback):
    """A fault for tests: sets `variables` to NaN before (1-based) optimizer step `step`.

    Args:
        variables: list of Keras variables.
        step: int. The step that will produce the first non-finite loss.
    """

    def __init__(self, variables, step):
        super().__init__()
        self.variables = list(variables)
        self.step = int(step)

    def on_train_batch_begin(self, batch, logs=None):
        if int(np.asarray(self.model.optimizer.iterations)) + 1 == self.step:
            for variable in self.variables:
                variable.assign(np.full(variable.shape, np.nan, variable.dtype))
