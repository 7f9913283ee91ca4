"""`bin/train --strategy=mirrored` over 2 logical CPUs equals one device (global batch
= --batch_size), through the whole job: S0 and DiverseDistill with skipping; a
`--compare_methods` side run (LD) shares the parent's strategy and S0."""

import json
import shutil

import numpy as np

from tests.pipeline import train_runner


def test_mirrored_job_equals_one_device(reference_run, tmp_path):
    # The reference's teacher, but not its cached S0 (which would skip S0 here).
    for folder in reference_run.cache.glob("mlp_s-*"):
        shutil.copytree(folder, tmp_path / "cache" / folder.name)
    result = train_runner.run("train", *reference_run.args, f"--output_dir={tmp_path / 'out'}",
                              f"--cache_dir={tmp_path / 'cache'}", "--strategy=mirrored",
                              "--num_cpu_devices=2", "--compare_methods=ld")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "strategy mirrored: 2 replicas, 32 rows per replica" in result.stdout
    assert "teacher mlp_s: test MSE" in result.stdout and "(cached" in result.stdout
    assert "S0 cache" not in result.stdout.split("[compare_ld]")[0]  # the side run reads it
    one = json.loads((reference_run.out / "metrics.json").read_text())["runs"][0]
    two = json.loads((tmp_path / "out" / "metrics.json").read_text())["runs"][0]
    for phase in ("s0", "distilled"):
        for key, values in one[phase]["history"].items():
            np.testing.assert_allclose(two[phase]["history"][key], values, atol=1e-5, rtol=0,
                                       err_msg=f"{phase} {key}")
        for m in ("mse", "mae"):
            np.testing.assert_allclose(two[phase]["test"][m], one[phase]["test"][m], atol=1e-5)
    # The LD side run ran under the same strategy (a second MirroredStrategy in the process
    # mixed up collective ops) and distilled the same S0.
    side = json.loads((tmp_path / "out" / "compare_ld" / "metrics.json").read_text())
    assert side["method"] == "ld" and side["config"]["strategy"] == "mirrored"
    np.testing.assert_allclose(side["runs"][0]["s0"]["test"]["mse"], two["s0"]["test"]["mse"],
                               atol=1e-6)
    assert np.isfinite(side["runs"][0]["distilled"]["test"]["mse"])
