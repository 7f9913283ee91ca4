"""`benchmarks/step_scaling.py`: a tiny run end to end (its line fit: tests/stats_test.py)."""

import json
import os
import subprocess
import sys


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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
