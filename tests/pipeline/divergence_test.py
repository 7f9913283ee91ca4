"""A non-finite loss stops the run with the term and the step, keeps the last good
checkpoint, and exits with status 3."""

import json
import re

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from diverse_distill import DistillationModel, MLPRecommender, MLPStudent, MLPTeacher
from diverse_distill.pipeline.finite_loss_guard import FiniteLossGuard, NonFiniteLossError
from tests.pipeline import train_runner


def test_injected_nan_in_distillation_stops_the_run(reference_run, tmp_path):
    out = tmp_path / "out"
    result = train_runner.run("train", *reference_run.args, f"--output_dir={out}",
                              f"--cache_dir={reference_run.cache}", "--inject_nan_at_step=25")
    assert result.returncode == 3, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    errors = train_runner.error_lines(result.stderr)
    assert len(errors) == 1 and result.stderr.rstrip().endswith(errors[0]), result.stderr[-2000:]
    message = errors[0]
    assert "training diverged in phase diverse_distill_seed0" in message
    assert "step 25" in message and re.search(r"(task|distill|reg)_loss=nan", message)
    assert "last good checkpoint (step 20)" in message

    backup = out / "backup" / "diverse_distill_seed0"
    pointer = json.loads((backup / "training_metadata.json").read_text())
    assert pointer["epoch"] == 2  # 2 epochs of 10 steps
    with h5py.File(backup / pointer["dir"] / "model.weights.h5", "r") as f:
        arrays = []
        f.visititems(lambda _, o: arrays.append(o[()]) if isinstance(o, h5py.Dataset) else None)
    assert arrays and all(np.all(np.isfinite(a)) for a in arrays if a.dtype.kind == "f")
    assert not (out / "metrics.json").exists()


def test_guard_names_each_non_finite_term_and_the_step():
    keras.utils.set_random_seed(0)
    features = {"user_id": 10, "item_id": 20}
    student = MLPStudent(features, embedding_dims=4, hidden_units=(8,))
    teacher = MLPTeacher(MLPRecommender(features, embedding_dims=8, hidden_units=(16,)),
                         name="mlp_m")
    model = DistillationModel(student, [teacher])
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")  # SGD: NaN never raises
    rng = np.random.default_rng(0)
    x = {"user_id": rng.integers(0, 10, 32), "item_id": rng.integers(0, 20, 32)}
    y = rng.uniform(1, 5, (32, 1)).astype("float32")
    y[21] = np.nan  # batch 3 of 4 (batch size 8) has a NaN label
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    guard = FiniteLossGuard("unit", steps_per_epoch=4)
    with pytest.raises(NonFiniteLossError) as raised:
        model.fit(ds, epochs=1, verbose=0, callbacks=[guard])
    message = str(raised.value)
    # The label enters the task loss and the regulariser, not the distillation term.
    assert "task_loss=nan" in message and "reg_loss=nan" in message and "step 3" in message
    assert "distill_loss" not in message
