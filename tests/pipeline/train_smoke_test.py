"""`bin/train` end to end on a tiny config: metrics.json, the SavedModel, the teacher cache."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from diverse_distill.data import load_movielens, write_synthetic_ml100k

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_train(*args, timeout=600):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "bin", "train"), *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    data_dir = write_synthetic_ml100k(str(root / "ml-100k"), num_users=40, num_movies=60,
                                      num_ratings=1500, seed=0)
    args = ["--flagfile=configs/movielens_tiny.cfg", f"--movielens_dir={data_dir}",
            f"--output_dir={root / 'out'}", f"--cache_dir={root / 'cache'}",
            "--importance_threshold=0.2"]
    first = run_train(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    # The same teachers again, into another output folder: read from the cache, then stop.
    second = run_train(*args, f"--output_dir={root / 'out2'}", "--only_teachers")
    assert second.returncode == 0, second.stderr[-3000:]
    return root, data_dir, first, second


def test_metrics_json_is_complete_and_finite(tiny_run):
    root, _, first, _ = tiny_run
    metrics = json.loads((root / "out" / "metrics.json").read_text())
    assert set(metrics["teachers"]) == {"mlp_m", "tiny_t5", "tiny_bert"}
    for info in metrics["teachers"].values():
        assert all(np.isfinite(v) for v in info["test"].values())
    summary = metrics["summary"]
    for key in ("s0", "distilled"):
        for m in ("mse", "rmse", "mae"):
            assert np.isfinite(summary[key][m]["mean"])
    for name in ("mlp_m", "tiny_t5", "tiny_bert"):
        assert 0.0 <= summary[f"pass_fraction_{name}"]["mean"] <= 1.0
        assert 0.0 < summary[f"importance_{name}"]["mean"] < 1.0
    run = metrics["runs"][0]
    best = metrics["teachers"][metrics["best_teacher"]]["test"]["mse"]
    s0, distilled = run["s0"]["test"]["mse"], run["distilled"]["test"]["mse"]
    if best < s0:  # the teacher beats S0: GRR is defined
        assert run["grr"]["mse"] == pytest.approx((distilled - s0) / (best - s0))
    else:  # no gap to recover: GRR is reported as undefined, never with a flipped sign
        assert run["grr"]["mse"] is None and summary["grr_of_means"]["mse"] is None
    assert summary["paired_difference"]["mse"]["mean"] == pytest.approx(distilled - s0)
    assert metrics["versions"]["tensorflow"] == tf.__version__
    assert metrics["config"]["teachers"] == ["mlp_m", "tiny_t5", "tiny_bert"]
    assert "total" in metrics["wall_seconds"] and "teacher_tiny_t5" in metrics["wall_seconds"]
    assert "GRR (MSE" in first.stdout  # the one-screen summary
    assert os.path.isdir(root / "out" / "tensorboard")


def test_student_savedmodel_reloads_and_predicts(tiny_run):
    root, data_dir, _, _ = tiny_run
    reloaded = tf.saved_model.load(str(root / "out" / "student"))
    data = load_movielens(movielens_dir=data_dir, split_seed=42)
    x = {k: tf.constant(v[:16]) for k, v in data.test.items() if k != "rating"}
    prediction = reloaded.serve(x).numpy()
    assert prediction.shape == (16, 1) and np.all(np.isfinite(prediction))
    names = " ".join(v.name for v in reloaded.variables)
    assert "tiny" not in names and "augmenter" not in names


def test_rerun_reuses_cached_teachers(tiny_run):
    root, _, _, second = tiny_run
    first = json.loads((root / "out" / "metrics.json").read_text())
    again = json.loads((root / "out2" / "teachers.json").read_text())
    assert set(again) == set(first["teachers"])
    for name, info in again.items():
        assert info["loaded_from_cache"] is True
        assert info["test"] == pytest.approx(first["teachers"][name]["test"], abs=1e-6)


def test_t5_without_local_preset_fails_fast(tmp_path):
    data_dir = write_synthetic_ml100k(str(tmp_path / "ml"), num_ratings=300)
    result = run_train("--teachers=t5", f"--movielens_dir={data_dir}",
                       f"--output_dir={tmp_path / 'o'}", f"--cache_dir={tmp_path / 'c'}",
                       "--steps=2", "--teacher_steps=2", timeout=120)
    assert result.returncode != 0
    assert "local" in (result.stderr + result.stdout)


def test_both_protocols_are_recorded_from_the_same_run(tiny_run):
    """Every phase scores the student after its last step and at its best validation MSE."""
    root, _, _, _ = tiny_run
    metrics = json.loads((root / "out" / "metrics.json").read_text())
    for phase in ("s0", "distilled"):
        record = metrics["runs"][0][phase]
        final, best = record["final_step"], record
        evaluations = len(record["history"]["val_loss"])
        assert evaluations == 2  # 40 steps, validation every 20
        # The best checkpoint is the lowest validation MSE, so the last step is no better.
        assert final["validation"]["mse"] >= best["validation"]["mse"] - 1e-4
        if record["best_epoch"] == evaluations - 1:  # the last step is the best one
            assert final["test"]["mse"] == pytest.approx(best["test"]["mse"], abs=1e-9)
        else:
            assert final["validation"]["mse"] > best["validation"]["mse"]
