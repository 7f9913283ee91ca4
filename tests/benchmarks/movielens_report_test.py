"""`benchmarks/movielens_report.py`: the committee table from bin/train's metrics.json files."""

import json
import os

import pytest

from tests.benchmarks.script_module import load_script


def report_module():
    return load_script("movielens_report")


def _write_run(folder, teachers, teacher_mse, s0, distilled, student_features="ids",
               final_step=True, **config):
    os.makedirs(folder)
    runs = [{"seed": i, "s0": {"test": {"mse": a}},
             "distilled": {"test": {"mse": b}, "validation": {"mse": b + 0.05}}}
            for i, (a, b) in enumerate(zip(s0, distilled))]
    if final_step:  # the model after its last step: 0.03 worse on both splits, per seed
        for run in runs:
            for model in ("s0", "distilled"):
                record = run[model]
                record["final_step"] = {split: {"mse": v["mse"] + 0.03 * (1 + run["seed"])}
                                        for split, v in record.items()}
    metrics = {
        "config": {"teachers": list(teachers), "seeds": list(range(len(s0))),
                   "importance_threshold": -1.0, "alpha": 0.5, "beta": 1.0,
                   "mlp_features": "all", "student_features": student_features, **config},
        "method": "diverse_distill",
        "teachers": {n: {"test": {"mse": m}} for n, m in zip(teachers, teacher_mse)},
        "best_teacher": teachers[min(range(len(teachers)), key=teacher_mse.__getitem__)],
        "runs": runs,
        "summary": {f"pass_fraction_{n}": {"mean": 1.0} for n in teachers},
        "wall_seconds": {"total": 600.0},
    }
    with open(os.path.join(folder, "metrics.json"), "w") as f:
        json.dump(metrics, f)


def test_row_values_are_computed_from_the_seeds(tmp_path):
    run = str(tmp_path / "ids_mlp_l")
    _write_run(run, ["mlp_l"], [0.80], s0=[0.90, 0.92, 0.88], distilled=[0.85, 0.86, 0.84])
    rows, raw = report_module().build_report([run])
    (row,) = rows
    assert row["s0"]["mean"] == pytest.approx(0.90)
    assert row["s0"]["std"] == pytest.approx(0.02)  # sample std of 0.88, 0.90, 0.92
    assert row["distilled"]["mean"] == pytest.approx(0.85)
    assert row["difference"]["values"] == pytest.approx([-0.05, -0.06, -0.04])
    # GRR of the means: (0.85 - 0.90) / (0.80 - 0.90) = 50 %.
    assert row["grr_of_means"] == pytest.approx(0.5)
    # Paired t of (-0.05, -0.06, -0.04): mean -0.05, std 0.01 -> -0.05 / (0.01 / sqrt(3)).
    assert row["paired_t"] == pytest.approx(-0.05 / (0.01 / 3 ** 0.5))
    assert row["student_features"] == "ids"
    assert row["distilled_validation"]["mean"] == pytest.approx(0.90)  # what tuning reads
    assert row["paper"] == (0.8358, 73.1)  # paper Table 4, MLP-L alone
    assert report_module()._paper_row("ld", ["mlp_l"]) == (0.8461, None)  # paper Table 3
    assert raw[run]["method"] == "diverse_distill"


def test_grr_is_undefined_when_no_teacher_beats_s0(tmp_path):
    run = str(tmp_path / "all_mlp_l")
    _write_run(run, ["mlp_l"], [0.81], s0=[0.80, 0.80], distilled=[0.79, 0.81],
               student_features="")
    (row,), _ = report_module().build_report([run])
    assert row["grr_of_means"] is None
    assert row["student_features"] == "all"  # "" means: as --mlp_features
    table = report_module().render([row], "t", "cmd")
    assert "| mlp_l | all | diverse_distill" in table
    assert "undefined" in table


def test_share_threshold_and_method_params_are_named(tmp_path):
    run = str(tmp_path / "share")
    _write_run(run, ["mlp_l", "mlp_m"], [0.80, 0.81], s0=[0.9, 0.9], distilled=[0.85, 0.85],
               importance_threshold=0.6, importance_threshold_on="share",
               method_params="question=native")
    (row,), _ = report_module().build_report([run])
    table = report_module().render([row], "t", "cmd")
    assert "| 0.60 on K·w/Σw |" in table
    assert "(α=0.5, β=1, question=native)" in table  # no variant in the config: none shown


def test_the_variant_of_diverse_distill_is_named(tmp_path):
    run = str(tmp_path / "tuned")
    _write_run(run, ["mlp_l"], [0.80], s0=[0.9, 0.9], distilled=[0.85, 0.85], variant="tuned")
    (row,), _ = report_module().build_report([run])
    assert "diverse_distill (variant=tuned, α=0.5, β=1)" in report_module().render([row], "t", "c")


def test_minilm_stands_in_for_t5_in_the_paper_column(tmp_path):
    run = str(tmp_path / "minilm")
    _write_run(run, ["mlp_l", "minilm"], [0.80, 1.10], s0=[0.9, 0.9], distilled=[0.8, 0.8])
    (row,), _ = report_module().build_report([run])
    assert row["paper"] == (0.8132, 114.2)  # MLP-L + T5
    assert row["grr_of_means"] == pytest.approx(1.0)


def test_final_step_protocol_reads_the_last_step_and_p_values_are_paired(tmp_path):
    run = str(tmp_path / "ids_mlp_l")
    _write_run(run, ["mlp_l"], [0.80], s0=[0.90, 0.92, 0.88], distilled=[0.85, 0.86, 0.84])
    module = report_module()
    (best,), _ = module.build_report([run])
    (final,), _ = module.build_report([run], protocol="final_step")
    # Final step: every seed's MSE + 0.03, 0.06, 0.09 for both models -> same differences.
    assert final["s0"]["values"] == pytest.approx([0.93, 0.98, 0.97])
    assert final["distilled"]["values"] == pytest.approx([0.88, 0.92, 0.93])
    assert final["difference"]["values"] == pytest.approx(best["difference"]["values"])
    assert final["distilled_validation"]["values"] == pytest.approx([0.93, 0.97, 0.98])
    # t = -0.05 / (0.01 / sqrt(3)) = -8.66 on 2 degrees of freedom: p = 0.0131.
    assert best["p_vs_s0"] == pytest.approx(0.01307, abs=5e-5)
    assert final["protocol"] == "final_step"
    table = module.render([final], "t", "cmd")
    assert "after its last step" in table
    assert "(t = -8.66, p = 0.013)" in table


def test_final_step_of_an_old_run_is_one_clear_error(tmp_path):
    run = str(tmp_path / "old")
    _write_run(run, ["mlp_l"], [0.80], s0=[0.9, 0.9], distilled=[0.85, 0.86], final_step=False)
    with pytest.raises(ValueError, match="no final-step evaluation"):
        report_module().build_report([run], protocol="final_step")
    with pytest.raises(ValueError, match="protocol must be one of"):
        report_module().build_report([run], protocol="last")
