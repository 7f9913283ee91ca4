"""`benchmarks/vision_table.py`: the choice on validation, GRR and paired tests by hand (its
runs are `DistillationJob`s: tests/pipeline/image_job_test.py runs one end to end)."""

import numpy as np
import pytest

import benchmarks.vision_results as vision


def _record(test, final, s0, s0_final):
    return {"test_accuracy": test, "final_test_accuracy": final, "s0_test_accuracy": s0,
            "s0_final_test_accuracy": s0_final, "seconds": 10.0}


def _result(method, per_seed, overrides=None):
    row = vision.Row(method, ("vit", "cnn"), overrides=overrides or {})
    return {"method": method, "label": row.label, "teachers": ["vit", "cnn"],
            "overrides": row.overrides, "chosen_trial": 0, "chosen_params": {},
            "trials": [{"params": {}, "validation_accuracy": 0.5,
                        "validation_cross_entropy": 1.0}],
            "per_seed": {str(s): r for s, r in enumerate(per_seed)}}


def test_choice_is_the_best_validation_accuracy_then_the_lower_cross_entropy():
    trials = [{"validation_accuracy": 0.80, "validation_cross_entropy": 0.5},
              {"validation_accuracy": 0.82, "validation_cross_entropy": 0.7},
              {"validation_accuracy": 0.82, "validation_cross_entropy": 0.6}]
    assert vision.choose(trials) == 2


def test_rows_grr_and_paired_tests_by_hand():
    s0 = [0.80, 0.81, 0.79]
    dd = [0.84, 0.86, 0.83]
    ld = [0.82, 0.85, 0.80]
    results = {
        "diverse_distill-vit+cnn": _result("diverse_distill", [
            _record(d, d - 0.01, s, s - 0.02) for d, s in zip(dd, s0)]),
        "ld-cnn": _result("ld", [_record(v, v, s, s - 0.02) for v, s in zip(ld, s0)]),
    }
    teachers = {"vit": {"test": {"accuracy": 0.86}}, "cnn": {"test": {"accuracy": 0.90}}}
    rows, best = vision.table_rows(results, teachers, seeds=[0, 1, 2])
    assert best == "cnn"
    dd_row, ld_row = rows
    entry = dd_row["best_validation"]
    assert entry["test_accuracy"]["mean"] == pytest.approx(np.mean(dd))
    assert entry["test_accuracy"]["std"] == pytest.approx(np.std(dd, ddof=1))
    assert entry["grr_of_means"] == pytest.approx((np.mean(dd) - np.mean(s0))
                                                  / (0.90 - np.mean(s0)))
    d = np.subtract(dd, s0)
    t = d.mean() / (d.std(ddof=1) / np.sqrt(3))
    assert entry["vs_s0"]["t"] == pytest.approx(t)
    assert "vs_diverse_distill" not in entry  # DiverseDistill is the reference
    d = np.subtract(ld, dd)
    assert ld_row["best_validation"]["vs_diverse_distill"]["t"] == pytest.approx(
        d.mean() / (d.std(ddof=1) / np.sqrt(3)))
    final = dd_row["final_step"]
    assert final["test_accuracy"]["mean"] == pytest.approx(np.mean(dd) - 0.01)
    assert final["s0_test_accuracy"]["mean"] == pytest.approx(np.mean(s0) - 0.02)


def test_a_skipping_row_is_labelled_and_not_the_reference():
    row = vision.Row("diverse_distill", ("vit", "cnn"), overrides={"keep_fraction": 0.5})
    assert row.slug == "diverse_distill_keep50-vit+cnn"
    assert row.label == "DiverseDistill, top 50 % rows"
    s0 = [0.8, 0.8]
    results = {
        "diverse_distill-vit+cnn": _result("diverse_distill",
                                           [_record(0.85, 0.85, s, s) for s in s0]),
        row.slug: _result("diverse_distill", [_record(0.84, 0.84, s, s) for s in s0],
                          overrides={"keep_fraction": 0.5}),
    }
    teachers = {"vit": {"test": {"accuracy": 0.9}}, "cnn": {"test": {"accuracy": 0.88}}}
    rows, _ = vision.table_rows(results, teachers, seeds=[0, 1])
    assert rows[1]["best_validation"]["vs_diverse_distill"]["mean_difference"] == pytest.approx(
        -0.01)


def test_every_method_gets_the_same_number_of_listed_configurations():
    sizes = {m: len(c) for m, c in vision.LISTED_SEARCH.items()}
    assert len(set(sizes.values())) == 1, sizes


def test_vision_step_time_ratios_and_table_by_hand():
    import benchmarks.vision_step_time as step

    rows = {name: {"ms_median": ms, "description": step.DESCRIPTIONS[name]}
            for name, ms in (("a_student", 10.0), ("c_whole", 50.0), ("d_cached_exact", 20.0),
                             ("f_cached_query_token", 8.0))}
    summary = step.summarise(rows)
    assert summary["step_ratio_whole_over_d_cached_exact"] == 2.5
    assert summary["teacher_part_ratio_whole_over_d_cached_exact"] == 4.0  # 40 ms / 10 ms
    assert summary["step_ratio_whole_over_f_cached_query_token"] == 6.25
    assert summary["teacher_part_ratio_whole_over_f_cached_query_token"] is None
    table = step.markdown({"config": {"params": {"student": 300000, "teacher": 800000},
                                      "image_shape": [28, 28, 1], "patch_size": 7,
                                      "batch_size": 128, "repeats": 20},
                           "rows": rows, "summary": summary})
    assert "| d_cached_exact | 2.50x | 4.00x |" in table
    assert "| c_whole: ViT teacher run whole every step (no cache) | 50.0 | 40.0 |" in table


def test_vision_step_time_table_by_cpu_time_by_hand():
    import benchmarks.vision_step_time as step

    rows = {name: {"ms_median": ms, "cpu_ms_median": cpu, "description": step.DESCRIPTIONS[name]}
            for name, ms, cpu in (("a_student", 10.0, 15.0), ("c_whole", 50.0, 95.0),
                                  ("d_cached_exact", 20.0, 35.0),
                                  ("f_cached_query_token", 8.0, 25.0))}
    summary = step.summarise(rows)
    summary["by_cpu_time"] = step.summarise(rows, "cpu_ms_median")
    # CPU: whole 95 / exact 35; teacher's part (95 - 15) / (35 - 15) = 4; query token 80 / 10.
    assert summary["by_cpu_time"]["teacher_part_ratio_whole_over_f_cached_query_token"] == 8.0
    table = step.markdown({"config": {"params": {"student": 300000, "teacher": 800000},
                                      "image_shape": [28, 28, 1], "patch_size": 7,
                                      "batch_size": 128, "repeats": 20},
                           "rows": rows, "summary": summary})
    assert "| c_whole: ViT teacher run whole every step (no cache) | 50.0 | 40.0 | 95.0 | 80.0 |" \
        in table
    assert "| d_cached_exact | 2.50x | 4.00x | 2.71x | 4.00x |" in table
    assert "| f_cached_query_token | 6.25x | — | 3.80x | 8.00x |" in table
    assert "by CPU time: step | teacher's part |" in table
