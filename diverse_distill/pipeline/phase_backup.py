"""`BackupAndRestore` that resumes a phase exactly, state of every callback included."""

import json
import os
import shutil

import keras
import numpy as np

METADATA = "training_metadata.json"


def _seed_states(model):
    """The Keras `SeedGenerator` states (Dropout masks); `save_weights` leaves them out."""
    return [v for v in model.variables if "seed_generator_state" in v.path]


class PhaseBackup(keras.callbacks.BackupAndRestore):
    """Backs up a training phase at the end of every epoch, and restores it exactly.

    Keras' `BackupAndRestore` restores the weights of the model (both
    optimizers of a `DistillationModel` included: `module_optimizer` is a
    tracked attribute, so `save_weights` writes it) and the epoch to start
    from. To make a resumed `fit` identical to an uninterrupted one, this
    subclass also

    - saves the states of the Keras `SeedGenerator`s (Dropout), which
      `save_weights` does not write;
    - saves the state of the callbacks given as `state_callbacks` (each has
      `get_state() -> (json-able dict, dict of arrays)` and
      `set_state(state, arrays)`), e.g. the best student weights kept in
      memory by `BestStudentWeights`;
    - writes every checkpoint atomically: the files go into a new folder
      `epoch-<n>/`, then `training_metadata.json` (the pointer to it) is
      replaced with `os.replace`, so a process killed while saving leaves the
      previous checkpoint intact.

    It saves at the end of every epoch only (`save_freq="epoch"`): Keras
    restarts a restored run at an epoch boundary, so a checkpoint taken in
    the middle of an epoch would replay steps. To checkpoint every `c` steps,
    fit with `steps_per_epoch=c` (see `fit_with_schedule`). The training data
    must continue where it stopped: skip `initial_epoch() * steps_per_epoch`
    batches of a repeated dataset and pass `initial_epoch` to `fit`.

    Place it last in the callback list, so the other callbacks' `on_epoch_end`
    have run when it saves.

    Args:
        backup_dir: str. The folder of this phase's checkpoints.
        state_callbacks: dict name -> callback with `get_state`/`set_state`.
            Defaults to `None`.
        delete_checkpoint: bool. Delete `backup_dir` when `fit` ends.
            Defaults to `False` (the job deletes it once the phase's record
            is written).

    Example:
    ```python
    import tempfile
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    folder = tempfile.mkdtemp()
    model.fit(np.ones((8, 2)), np.ones((8, 1)), epochs=2, verbose=0,
              callbacks=[PhaseBackup(folder)])
    PhaseBackup(folder).initial_epoch()  # 2
    ```
    """

    def __init__(self, backup_dir, state_callbacks=None, delete_checkpoint=False):
        super().__init__(backup_dir, save_freq="epoch", delete_checkpoint=delete_checkpoint)
        self.state_callbacks = dict(state_callbacks or {})
        self._training_metadata_path = os.path.join(backup_dir, METADATA)

    # --- Reading ---------------------------------------------------------

    def metadata(self):
        """The pointer to the latest checkpoint, or `None` when there is none."""
        if not os.path.exists(self._training_metadata_path):
            return None
        try:
            with open(self._training_metadata_path) as f:
                metadata = json.load(f)
            folder = os.path.join(self.backup_dir, metadata["dir"])
            return metadata if os.path.isdir(folder) else None
        except (OSError, ValueError, KeyError) as error:
            raise ValueError(
                f"The checkpoint pointer {self._training_metadata_path} is unreadable ({error}). "
                "Delete that folder to restart the phase, or rerun with --noresume."
            ) from None

    def initial_epoch(self):
        """The epoch a restored `fit` starts from (0 without a checkpoint)."""
        metadata = self.metadata()
        return int(metadata["epoch"]) if metadata else 0

    # --- Keras hooks ---------------------------------------------------------

    def _load_model(self):
        metadata = self.metadata()
        if metadata is None:
            return
        folder = os.path.join(self.backup_dir, metadata["dir"])
        model = self.model
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        try:
            model.load_weights(os.path.join(folder, "model.weights.h5"))
            with open(os.path.join(folder, "state.json")) as f:
                state = json.load(f)
            with np.load(os.path.join(folder, "state.npz"), allow_pickle=False) as arrays:
                arrays = dict(arrays)
        except (OSError, ValueError) as error:
            raise ValueError(
                f"The checkpoint {folder} cannot be restored ({' '.join(str(error).split())}). "
                "Delete that folder's parent to restart the phase, or rerun with --noresume."
            ) from None
        for k, variable in enumerate(_seed_states(model)):
            variable.assign(arrays[f"seed_state/{k}"])
        for name, callback in self.state_callbacks.items():
            prefix = f"{name}/"
            callback.set_state(
                state["callbacks"][name],
                {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)},
            )
        model._initial_epoch = int(metadata["epoch"])

    def _save_model(self):
        epoch = self._current_epoch
        folder_name = f"epoch-{epoch:06d}"
        folder = os.path.join(self.backup_dir, folder_name)
        if os.path.exists(folder):
            shutil.rmtree(folder)
        os.makedirs(folder)
        self.model.save_weights(os.path.join(folder, "model.weights.h5"))
        arrays = {f"seed_state/{k}": np.asarray(v) for k, v in enumerate(_seed_states(self.model))}
        state = {"epoch": epoch, "callbacks": {}}
        for name, callback in self.state_callbacks.items():
            callback_state, callback_arrays = callback.get_state()
            state["callbacks"][name] = callback_state
            arrays.update({f"{name}/{k}": np.asarray(v) for k, v in callback_arrays.items()})
        np.savez(os.path.join(folder, "state.npz"), **arrays)
        with open(os.path.join(folder, "state.json"), "w") as f:
            json.dump(state, f)
        tmp = self._training_metadata_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"epoch": epoch, "dir": folder_name}, f)
        os.replace(tmp, self._training_metadata_path)
        for name in os.listdir(self.backup_dir):  # older checkpoints, and any half-written one
            if name.startswith("epoch-") and name != folder_name:
                shutil.rmtree(os.path.join(self.backup_dir, name), ignore_errors=True)

    def on_train_end(self, logs=None):
        if self.delete_checkpoint and os.path.exists(self.backup_dir):
            shutil.rmtree(self.backup_dir)
