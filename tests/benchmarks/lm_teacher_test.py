"""`benchmarks/lm_teacher.py`'s committee analysis and `lm_finetune_cost.py --quick`."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.benchmarks.script_module import REPO, load_script


def test_opposite_errors_blend_to_the_truth():
    analysis = load_script("lm_teacher").blend_analysis
    y = {"validation": np.array([1.0, 2.0, 3.0, 4.0]), "test": np.array([2.0, 3.0, 4.0, 5.0])}
    noise = np.array([0.5, -0.5, 0.5, -0.5])
    out = analysis({s: v + noise for s, v in y.items()}, {s: v - noise for s, v in y.items()}, y)
    assert out["blend_weight"] == 0.5
    for split in ("validation", "test"):
        assert out[split]["expert_mse"] == out[split]["language_mse"] == pytest.approx(0.25)
        assert out[split]["blend_mse"] == out[split]["average_mse"] == pytest.approx(0.0, abs=1e-12)
        assert out[split]["error_correlation"] == pytest.approx(-1.0)


@pytest.mark.filterwarnings("ignore:invalid value encountered in divide")
def test_weight_is_chosen_on_validation_and_only_applied_to_test():
    analysis = load_script("lm_teacher").blend_analysis
    y = {"validation": np.zeros(4), "test": np.zeros(4)}
    # On validation the expert is exact (w = 0); on test it is the worse one.
    expert = {"validation": np.zeros(4), "test": np.full(4, 2.0)}
    language = {"validation": np.array([1.0, -1.0, 1.0, -1.0]), "test": np.full(4, 0.5)}
    out = analysis(expert, language, y)
    assert out["blend_weight"] == 0.0
    assert out["test"]["blend_mse"] == out["test"]["expert_mse"] == pytest.approx(4.0)
    assert out["test"]["language_mse"] == pytest.approx(0.25)
    assert out["test"]["average_mse"] == pytest.approx(1.5625)  # ((2 + 0.5) / 2) ** 2


def test_cost_benchmark_times_every_option(tmp_path):
    path = tmp_path / "cost.json"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "benchmarks", "lm_finetune_cost.py"), "--quick",
         "--rows=32", "--repeats=1", f"--output_json={path}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    options = json.loads(path.read_text())["options"]
    assert set(options) == {"full", "lora", "last_layer", "head"}
    for option in ("full", "lora", "last_layer"):
        assert 0 < options[option]["step_seconds"] < 60, option
    for option in ("last_layer", "head"):
        assert options[option]["pass_rows_per_second"] > 0
    trained = {k: v["trained_parameters"] for k, v in options.items()}
    # tiny BERT: hidden 32, intermediate 64; the last layer has 4 * (32 * 32 + 32) attention,
    # 32 * 64 + 64 + 64 * 32 + 32 feedforward and 2 * 2 * 32 layer-norm weights; head 33.
    assert trained["last_layer"] == 4 * (32 * 32 + 32) + (32 * 64 + 64 + 64 * 32 + 32) + 128 + 33
    assert trained["head"] == 33
    assert trained["lora"] < trained["full"]
    for row in options.values():
        assert row["projected_minutes"] > 0
