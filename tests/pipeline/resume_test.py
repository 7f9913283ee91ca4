"""Kill `bin/train` (SIGKILL) in teacher training and in distillation; the same command
resumes it and ends with the metrics of an uninterrupted run. And the pieces that make
that exact: `PhaseBackup` restores both optimizers and the best-weights state."""

import json
import math
import os

import keras
import numpy as np

from diverse_distill import DistillationModel, MLPRecommender, MLPStudent, MLPTeacher
from diverse_distill.pipeline.callbacks import BestStudentWeights
from diverse_distill.pipeline.phase_backup import PhaseBackup
from tests.pipeline import train_runner

# Wall-clock and provenance fields, which a resumed run legitimately changes.
_NOT_RESULTS = {"seconds", "train_seconds", "wall_seconds", "loaded_from_cache", "config"}


def _numbers(tree, prefix=""):
    """Flattens every number of a metrics.json tree, minus timings and provenance."""
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            if k not in _NOT_RESULTS:
                out.update(_numbers(v, f"{prefix}/{k}"))
        return out
    if isinstance(tree, list):
        out = {}
        for i, v in enumerate(tree):
            out.update(_numbers(v, f"{prefix}[{i}]"))
        return out
    if isinstance(tree, (int, float)) and not isinstance(tree, bool):
        return {prefix: float(tree)}
    return {}


def _checkpoint(out, phase_prefix):
    backup = out / "backup"
    if not backup.is_dir():
        return None
    for folder in backup.iterdir():
        if folder.name.startswith(phase_prefix) and (folder / "training_metadata.json").exists():
            return json.loads((folder / "training_metadata.json").read_text())
    return None


def test_sigkill_in_teacher_training_and_in_distillation_then_resume(reference_run, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = [*reference_run.args, f"--output_dir={out}", f"--cache_dir={cache}"]

    # 1. Killed in teacher training, right after its first checkpoint (step 10 of 40).
    process = train_runner.start("train", *args, log_path=tmp_path / "run1.log")
    assert train_runner.kill_when(process, lambda: _checkpoint(out, "teacher_") is not None)
    teacher_checkpoint = _checkpoint(out, "teacher_")
    assert 1 <= teacher_checkpoint["epoch"] < 4, teacher_checkpoint
    assert not any(cache.glob("*/teacher.json"))  # the teacher was not finished

    # 2. Same command: resumes the teacher, finishes it and S0, killed in distillation.
    process = train_runner.start("train", *args, log_path=tmp_path / "run2.log")
    assert train_runner.kill_when(process, lambda: _checkpoint(out, "diverse_distill") is not None)
    log2 = (tmp_path / "run2.log").read_text()
    assert "[teacher_mlp_s] resuming from the checkpoint at step" in log2
    assert (out / "phases" / "s0_seed0.json").exists()
    assert not (out / "phases" / "diverse_distill_seed0.json").exists()
    assert not (out / "metrics.json").exists()

    # 3. Same command again: S0 is not retrained, distillation resumes, the run ends.
    final = train_runner.run("train", *args)
    assert final.returncode == 0, final.stderr[-3000:]
    assert "[s0_seed0] finished earlier" in final.stdout
    assert "[diverse_distill_seed0] resuming from the checkpoint at step" in final.stdout
    assert not any((out / "backup").iterdir())  # finished phases leave no checkpoint behind

    reference = json.loads((reference_run.out / "metrics.json").read_text())
    assert 0 < reference["summary"]["pass_fraction_mlp_s"]["mean"] < 1  # skipping was on
    expected = _numbers(reference)
    resumed = _numbers(json.loads((out / "metrics.json").read_text()))
    assert set(resumed) == set(expected)
    assert any("/history/" in k for k in expected) and any("validation_importance" in k
                                                           for k in expected)
    far = {k: (expected[k], resumed[k]) for k in expected
           if not math.isclose(expected[k], resumed[k], rel_tol=0, abs_tol=1e-6)}
    assert not far, far
    exported = [n for n in os.listdir(out / "student")]
    assert "saved_model.pb" in exported


def _tiny_distillation(seed):
    keras.utils.set_random_seed(seed)
    features = {"user_id": 10, "item_id": 20}
    student = MLPStudent(features, embedding_dims=4, hidden_units=(8,))
    teacher = MLPTeacher(MLPRecommender(features, embedding_dims=8, hidden_units=(16,)),
                         name="mlp_m")
    model = DistillationModel(student, [teacher], importance_threshold=0.3)
    model.compile(optimizer=keras.optimizers.Adagrad(0.1), loss="mse")
    return model


def test_phase_backup_restores_both_optimizers_and_best_weights(tmp_path):
    rng = np.random.default_rng(0)
    x = {"user_id": rng.integers(0, 10, 64), "item_id": rng.integers(0, 20, 64)}
    y = rng.uniform(1, 5, (64, 1)).astype("float32")
    model = _tiny_distillation(seed=1)
    best = BestStudentWeights(model.student)
    backup = PhaseBackup(str(tmp_path / "backup"), state_callbacks={"best": best})
    model.fit(x, y, batch_size=16, epochs=3, validation_data=(x, y), verbose=0,
              callbacks=[best, backup])
    assert backup.initial_epoch() == 3
    assert int(model.module_optimizer.iterations) == 12

    fresh = _tiny_distillation(seed=2)  # other initial weights
    fresh_best = BestStudentWeights(fresh.student)
    restore = PhaseBackup(str(tmp_path / "backup"), state_callbacks={"best": fresh_best})
    restore.set_model(fresh)
    restore.on_train_begin()
    assert fresh._initial_epoch == 3
    for a, b in zip(model.module_optimizer.variables, fresh.module_optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # accumulators, iterations
    for a, b in zip(model.optimizer.variables, fresh.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for a, b in zip(model.weights, fresh.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert (fresh_best.best, fresh_best.best_epoch) == (best.best, best.best_epoch)
    for a, b in zip(best.best_weights, fresh_best.best_weights):
        np.testing.assert_array_equal(a, b)
