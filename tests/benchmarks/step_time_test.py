"""`benchmarks/step_time.py --quick`: every row timed, and the cached rows never run the prefix."""

import json
import math
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STEP_ROWS = ("a_student", "b_limit", "c_naive", "d_cached", "e_skip", "f_cheap_suffix",
             "b_limit_f", "g_bf16", "skip_00", "skip_90", "b_honest", "b_honest_f", "f_xla",
             "f_topk", "f_topk_xla")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("step_time") / "step_time.json"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    # A subprocess: the benchmark sets op determinism and dtype policies globally.
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "benchmarks", "step_time.py"), "--quick", "--lm=t5",
         "--nodeterministic",  # else Keras turns the XLA rows' jit_compile off
         f"--output_json={path}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with open(path) as f:
        return json.load(f)


def test_every_row_has_positive_finite_times(quick_run):
    rows = quick_run["rows"]
    missing = [name for name in STEP_ROWS if name not in rows]
    assert not missing, f"rows missing from the JSON: {missing}"
    for name in STEP_ROWS:
        seconds = rows[name]["seconds"]
        assert seconds["n"] >= 3, name
        for key in ("median", "p25", "p75", "min"):
            assert math.isfinite(seconds[key]) and seconds[key] > 0, (name, key, seconds)
        assert math.isfinite(rows[name]["ratio_to_b"]) and rows[name]["ratio_to_b"] > 0
    for key in ("d_over_b", "c_over_d", "c_over_f", "f_over_b_f", "cpu_d_over_b", "cpu_c_over_d",
                "d_over_b_honest", "f_over_b_honest_f", "f_xla_over_f", "f_topk_over_f",
                "f_topk_xla_over_f"):
        value = quick_run["summary"][key]
        assert math.isfinite(value) and value > 0, key
    sizes = quick_run["cache_size_full_train_split"]
    assert set(sizes) == {"encoder_output", "with_cross_attention_caches"}
    assert sizes["with_cross_attention_caches"]["gib"]["float16"] > sizes["encoder_output"]["gib"]["float16"]


def test_cached_rows_never_run_the_prefix(quick_run):
    rows = quick_run["rows"]
    # The counter works: the naive row runs the language teacher's prefix once per step.
    assert rows["c_naive"]["prefix_python_calls"] >= 1
    assert rows["c_naive"]["prefix_executions_per_step"] == 1.0
    for name in ("b_limit", "d_cached", "e_skip", "f_cheap_suffix", "b_limit_f", "g_bf16",
                 "skip_00", "skip_90", "b_honest", "b_honest_f", "f_xla", "f_topk", "f_topk_xla"):
        assert rows[name]["prefix_python_calls"] == 0, name  # not even traced into the step
        assert rows[name]["prefix_executions"] == 0, name


def test_skipping_rows_skip_the_asked_fraction(quick_run):
    rows = quick_run["rows"]
    assert rows["d_cached"]["lm_pass_fraction"] == 1.0
    assert rows["skip_00"]["lm_pass_fraction"] == 1.0
    batch = quick_run["config"]["batch_size"]
    assert abs(rows["skip_90"]["lm_pass_fraction"] - 0.1) <= 1.0 / batch
    assert abs(rows["e_skip"]["lm_pass_fraction"] - 0.6) <= 1.0 / batch


def test_fixed_size_skipping_runs_the_asked_fraction_with_and_without_xla(quick_run):
    rows = quick_run["rows"]
    batch = quick_run["config"]["batch_size"]
    expected = math.ceil(0.5 * batch) / batch  # --keep_fraction's default, 0.5
    for name in ("f_topk", "f_topk_xla"):
        assert rows[name]["lm_pass_fraction"] == pytest.approx(expected), name
    assert rows["f_xla"]["lm_pass_fraction"] == 1.0
    assert rows["f_xla"]["jit_compile"] and rows["f_topk_xla"]["jit_compile"]
    assert not rows["f_topk"]["jit_compile"] and not rows["d_cached"]["jit_compile"]
