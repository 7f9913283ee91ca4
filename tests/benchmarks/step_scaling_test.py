"""`benchmarks/step_scaling.py`: the straight-line fit, and a tiny run end to end."""

import json
import os
import subprocess
import sys

import pytest

from tests.benchmarks.script_module import load_script

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_linear_fit_matches_the_hand_computed_least_squares_line():
    scaling = load_script("step_scaling")
    # mean x 2.5, mean y 4.75, Sxx 5, Sxy 9.5: slope 1.9, intercept 0; residuals
    # 0.1, 0.2, -0.7, 0.4 (SSR 0.70) against SST 18.75.
    intercept, slope, r2 = scaling.linear_fit([1, 2, 3, 4], [2, 4, 5, 8])
    assert slope == pytest.approx(1.9)
    assert intercept == pytest.approx(0.0, abs=1e-12)
    assert r2 == pytest.approx(1 - 0.70 / 18.75)


def test_a_tiny_run_times_every_cell_and_writes_json_png_and_doc(tmp_path):
    doc = tmp_path / "performance.md"
    doc.write_text("# Performance\n\nBefore.\n")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "benchmarks", "step_scaling.py"), "--quick",
         "--teachers=1,2", "--batch_sizes=8", "--repeats=2", "--warmup=1",
         f"--output_json={tmp_path / 's.json'}", f"--output_png={tmp_path / 's.png'}",
         f"--update_doc={doc}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    output = json.loads((tmp_path / "s.json").read_text())
    cells = {(c["teachers"], c["mode"]): c for c in output["cells"]}
    assert set(cells) == {(k, m) for k in (1, 2) for m in ("all_rows", "fixed_size_skipping")}
    for (k, mode), cell in cells.items():
        assert cell["ms_median"] > 0
        assert cell["pass_fraction"] == (1.0 if mode == "all_rows" else 0.5)
        assert cell["teacher_rows_run"] == k * (8 if mode == "all_rows" else 4)
    assert len(output["fits"]) == 2
    assert (tmp_path / "s.png").stat().st_size > 1000
    text = doc.read_text()
    assert text.startswith("# Performance\n\nBefore.\n")
    assert "<!-- BEGIN step_scaling -->" in text and "| 8 | top 50% rows |" in text
