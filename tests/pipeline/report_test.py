"""What a run shows: TensorBoard scalars for every loss term and importance histograms,
and `bin/report`'s PNGs (learning curves, importance distributions, τ sweep)."""

import json
import shutil

from tensorboard.backend.event_processing import event_accumulator

from diverse_distill.pipeline.report import PNG_SIGNATURE, tau_sweep_table, write_report
from tests.pipeline import train_runner


def _tags(folder):
    acc = event_accumulator.EventAccumulator(str(folder), size_guidance={"histograms": 0,
                                                                         "tensors": 0})
    acc.Reload()
    return acc.Tags()


def test_tensorboard_has_every_loss_term_and_importance_histograms(reference_run):
    board = reference_run.out / "tensorboard" / "diverse_distill_seed0"
    train_tags = set(_tags(board / "train")["tensors"])
    for term in ("loss", "task_loss", "distill_loss", "reg_loss", "importance_mlp_s",
                 "pass_fraction_mlp_s"):
        assert f"epoch_{term}" in train_tags, train_tags
    importance_tags = _tags(board / "importance")["tensors"]
    assert "importance/mlp_s" in importance_tags and "pass_fraction_val/mlp_s" in importance_tags


def test_bin_report_writes_pngs(reference_run):
    result = train_runner.run("report", reference_run.out, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("learning_curves.png", "importance.png"):
        path = reference_run.out / "report" / name
        assert str(path) in result.stdout
        data = path.read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000


def test_tau_sweep(reference_run, tmp_path):
    other = tmp_path / "sweep" / "tau_0.8"
    shutil.copytree(reference_run.out, tmp_path / "sweep" / "tau_0.5",
                    ignore=shutil.ignore_patterns("student", "tensorboard", "report"))
    shutil.copytree(tmp_path / "sweep" / "tau_0.5", other)
    metrics = json.loads((other / "metrics.json").read_text())
    metrics["config"]["importance_threshold"] = 0.8
    (other / "metrics.json").write_text(json.dumps(metrics))

    written = write_report([tmp_path / "sweep"])  # a folder of runs is a sweep
    assert str(tmp_path / "sweep" / "report" / "tau_sweep.png") in written
    assert all(open(p, "rb").read(8) == PNG_SIGNATURE for p in written)
    taus = [row[0] for row in tau_sweep_table([tmp_path / "sweep" / "tau_0.5", other])]
    assert taus == [0.5, 0.8]
