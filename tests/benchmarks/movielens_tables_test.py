"""`benchmarks/movielens_tables.py`: the `--quick` path end to end, and its protocol pieces."""

import json
import math
import os
import subprocess
import sys

import pytest

from tests.benchmarks.script_module import load_script

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "benchmarks", "movielens_tables.py")
ALL_METHODS = ("ld", "fd", "sckd", "diverse_distill", "mt", "amtml", "autoskd", "aekd")


def tables_module():
    return load_script("movielens_tables")


def run_script(*args, timeout=900):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """Every method once: Table 3 on MLP-L, Table 5 on MLP-L + MLP-M; 2 seeds, 1 trial.

    (The default --quick adds the tiny language teacher, Table 4 and the
    ablations; this subset keeps the test short while covering every method.)
    """
    out = tmp_path_factory.mktemp("tables")
    result = run_script("--quick", f"--output_dir={out}", "--tables=3,5",
                        "--single_teachers=mlp_l", "--table5_committee=mlp_l+mlp_m")
    assert result.returncode == 0, result.stderr[-4000:]
    with open(out / "tables.json") as f:
        return out, json.load(f), result


def _finite(stat):
    return all(math.isfinite(v) for v in [stat["mean"], stat["std"], *stat["values"]])


def test_json_has_every_method_row_with_finite_values(quick_run):
    _, tables, _ = quick_run
    rows = tables["rows"]
    assert {r["method"] for r in rows} == set(ALL_METHODS)
    assert sorted(r["method"] for r in rows if r["table"] == "3") == sorted(
        ["ld", "fd", "sckd", "diverse_distill"])
    assert sorted(r["method"] for r in rows if r["table"] == "5") == sorted(
        ["mt", "amtml", "autoskd", "aekd", "diverse_distill"])
    for row in rows:
        for key in ("test_mse", "test_rmse", "test_mae", "grr", "s0_test_mse"):
            assert _finite(row[key]), (row["unit"], key, row[key])
            assert len(row[key]["values"]) == 2  # one per seed
        assert math.isfinite(row["validation_mse_tuning_seed"])
        assert row["trials"] == 1


def test_p_values_lie_in_zero_one(quick_run):
    _, tables, _ = quick_run
    tested = 0
    for row in tables["rows"]:
        for test in (row["vs_s0"], row["vs_reference"]):
            if test is None or test["p_value"] is None:
                continue
            assert 0.0 <= test["p_value"] <= 1.0, (row["unit"], test)
            assert test["df"] == 1
            tested += 1
        if row["method"] != "diverse_distill":
            assert row["vs_reference"]["p_value"] is not None, row["unit"]
    assert tested >= len(ALL_METHODS)


def test_markdown_and_chart_are_written(quick_run):
    out, _, _ = quick_run
    text = (out / "tables.md").read_text()
    for heading in ("Table 3", "Table 5", "--quick", "python benchmarks/movielens_tables.py",
                    "The search: every configuration tried"):
        assert heading in text
    with open(out / "tables_grr.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_quick_refuses_docs(tmp_path):
    result = run_script("--quick", f"--output_dir={os.path.join(REPO, 'docs', 'results')}",
                        timeout=120)
    assert result.returncode != 0
    assert "docs" in result.stderr


def test_every_method_gets_the_same_number_of_trials():
    tables = tables_module()
    for trials in (1, 3, 8):
        for method in tables.SEARCH_SPACES:
            configs = tables.search_configurations(method, 2, trials, 0, f"{method}-x")
            assert len(configs) == trials, method
            assert configs[0] == {k: tables.DEFAULTS[k] for k in tables.SEARCH_SPACES[method]}
            assert len({json.dumps(c, sort_keys=True) for c in configs}) == trials
            again = tables.search_configurations(method, 2, trials, 0, f"{method}-x")
            assert configs == again  # seeded
    aekd = tables.search_configurations("aekd", 3, 8, 0, "aekd-x")
    assert all(c["max_weight"] * 3 >= 1 for c in aekd)


def test_plan_references_diverse_distill_on_the_same_teachers():
    tables = tables_module()
    units, rows = tables.plan(["3", "4", "5"], True, ["mlp_l", "lm"], ["mlp_l", "mlp_l+lm"],
                              "mlp_l+lm", "minilm")
    for row in rows:
        unit = units[row["unit"]]
        if row["reference"]:
            reference = units[row["reference"]]
            assert reference.method == "diverse_distill" and reference.variant == "full"
            assert reference.teachers == unit.teachers
    assert units["diverse_distill-mlp_l+minilm"].teachers == ("mlp_l", "minilm")
    # Shared rows are tuned and run once.
    assert sum(r["unit"] == "diverse_distill-mlp_l+minilm" for r in rows) == 3
    assert len(units) == len({r["unit"] for r in rows})


def test_ablation_committee_moves_only_the_ablations():
    tables = tables_module()
    units, rows = tables.plan(["5"], True, [], [], "mlp_l+lm", "minilm",
                              ablation_committee="mlp_l+mlp_m")
    table5 = {units[r["unit"]].teachers for r in rows if r["table"] == "5"}
    ablations = [r for r in rows if r["table"] == "ablations"]
    assert table5 == {("mlp_l", "minilm")}
    assert {units[r["unit"]].teachers for r in ablations} == {("mlp_l", "mlp_m")}
    assert {r["reference"] for r in ablations} == {"diverse_distill-mlp_l+mlp_m"}


def test_a_finished_run_on_more_seeds_is_reused_but_not_another_config():
    import dataclasses

    from diverse_distill.pipeline.job_config import JobConfig

    tables = tables_module()
    finished = JobConfig(seeds=(0, 1, 2), output_dir="a").to_dict()
    assert tables.reusable(finished, JobConfig(seeds=(0,), output_dir="b"))
    assert tables.reusable(finished, JobConfig(seeds=(1, 2)))
    assert not tables.reusable(finished, JobConfig(seeds=(0, 3)))
    assert not tables.reusable(finished, dataclasses.replace(JobConfig(seeds=(0,)), alpha=0.25))


def test_copies_share_rows_through_locks(tmp_path):
    import threading

    tables = tables_module()
    units = {"a": "unit a", "b": "unit b", "c": "unit c"}
    ran = []

    def run(unit):
        ran.append(unit)
        return unit.upper()

    held = tables.claim(str(tmp_path), "b", wait=False)  # another copy runs row b
    assert held is not None and tables.claim(str(tmp_path), "b", wait=False) is None
    assert tables.run_units(units, run, str(tmp_path), lambda m: None, wait=False) == {
        "a": "UNIT A", "c": "UNIT C"}
    assert ran == ["unit a", "unit c"]
    # Waiting: row b comes last, once its holder lets go.
    ran.clear()
    threading.Timer(0.3, held.close).start()
    results = tables.run_units(units, run, str(tmp_path), lambda m: None, wait=True)
    assert ran == ["unit a", "unit c", "unit b"]
    assert list(results) == ["a", "b", "c"] and results["b"] == "UNIT B"


def test_cost_estimate_counts_trials_plus_extra_seeds_per_row():
    import types

    tables = tables_module()
    units, _ = tables.plan(["3"], False, ["mlp_l"], [], "mlp_l+lm", "minilm")
    step_times = {slug: 0.01 * (k + 1) for k, slug in enumerate(units)}
    step_times["s0"] = 0.005
    base = types.SimpleNamespace(steps=1000, batch_size=64)
    estimate = tables.cost_estimate(units, step_times, base, trials=4, seeds=[0, 1, 2])
    for slug, unit in estimate["per_unit"].items():
        assert unit["runs"] == 4 + 3 - 1
        assert unit["seconds"] == 6 * 1000 * step_times[slug]
    assert estimate["s0_seconds"] == 3 * 1000 * 0.005
    assert estimate["total_seconds"] == estimate["s0_seconds"] + sum(
        u["seconds"] for u in estimate["per_unit"].values())


def test_reuse_ignores_language_fields_only_without_a_language_teacher():
    import dataclasses

    from diverse_distill.pipeline.job_config import JobConfig

    tables = tables_module()
    mlp = JobConfig(teachers=("mlp_l",), seeds=(0,))
    older = mlp.to_dict()
    del older["importance_threshold_on"]  # written before the field existed: its default
    older["lm_sequence_length"] = 48  # no language teacher reads it
    assert tables.reusable(older, mlp)
    assert not tables.reusable({**older, "importance_threshold_on": "share"}, mlp)
    with_lm = dataclasses.replace(mlp, teachers=("mlp_l", "minilm"))
    assert not tables.reusable({**older, "teachers": ["mlp_l", "minilm"]}, with_lm)
    assert tables.reusable({**with_lm.to_dict(), "seeds": [0, 1]}, with_lm)


def test_a_single_given_configuration_runs_every_seed_at_once(monkeypatch, tmp_path):
    from diverse_distill.pipeline.job_config import JobConfig

    tables = tables_module()
    calls = []

    def fake_run_job(config, log_path):
        calls.append(config)
        runs = [{"seed": s, "s0": {"test": {"mse": 1.0}},
                 "grr": {"mse": 0.5},
                 "distilled": {"test": {"mse": 0.9 + config.alpha, "rmse": 0.0, "mae": 0.0},
                               "validation": {"mse": 0.8 + config.alpha}}}
                for s in config.seeds]
        return {"runs": runs, "best_teacher": "mlp_l",
                "teachers": {"mlp_l": {"test": {"mse": 0.8}}}}, False

    monkeypatch.setattr(tables, "run_job", fake_run_job)
    unit = tables.Unit("diverse_distill", ("mlp_l",), "raw_w",
                       {"importance_normalization": "none"}, {})
    chosen = {"alpha": 1.5, "beta": 0.1}
    result = tables.tune_and_run(unit, JobConfig(), [0, 1, 2], 8, 0, str(tmp_path),
                                 lambda m: None, configurations=[chosen])
    assert len(calls) == 1  # no tuning: one run over every seed
    assert calls[0].seeds == (0, 1, 2) and calls[0].alpha == 1.5 and calls[0].beta == 0.1
    assert calls[0].importance_normalization == "none"  # the ablated part
    assert result["chosen_params"] == chosen and len(result["trials"]) == 1
    assert [result["per_seed"][str(s)]["test_mse"] for s in (0, 1, 2)] == [2.4, 2.4, 2.4]


def test_search_lists_every_trial_with_the_chosen_one_in_bold():
    module = tables_module()
    rows = [{"unit": "ld-mlp_l", "search": [
        {"params": {"alpha": 0.5}, "validation_mse": 0.87101, "final_validation_mse": 0.8765,
         "chosen": False},
        {"params": {"alpha": 4.0}, "validation_mse": 0.84219, "final_validation_mse": None,
         "chosen": True}]},
        {"unit": "s0-only"}]
    rows.append(dict(rows[0]))  # the same row in another table: listed once
    lines = module.search_markdown(rows, tuning_seed=0)
    assert "seed 0" in lines[0]
    assert "| ld-mlp_l | alpha=0.5 | 0.8710 | 0.8765 |" in lines
    assert "| ld-mlp_l | alpha=4 | **0.8422** | — |" in lines
    assert sum(line.startswith("| ld-mlp_l") for line in lines) == 2


def test_row_trials_restrict_a_row_to_listed_indices(tmp_path):
    module = tables_module()
    assert module.parse_row_trials(["diverse_distill-mlp_l+mlp_m:4+0", "ld-mlp_l:2"]) == {
        "diverse_distill-mlp_l+mlp_m": [0, 4], "ld-mlp_l": [2]}
    for bad in ("diverse_distill-mlp_l", "ld-mlp_l:x", ":3"):
        with pytest.raises(ValueError, match="ROW:I"):
            module.parse_row_trials([bad])
    unit = module.Unit("ld", ("mlp_l",))
    with pytest.raises(ValueError, match="not among its 6 configurations"):
        module.tune_and_run(unit, None, [0], 6, 0, str(tmp_path), print, search="listed",
                            subset=[0, 6])


def test_quality_json_keeps_the_entries_of_other_committees():
    tables = tables_module()
    def entry(committee, method, protocol, mse):
        return {"table": "4", "committee": committee, "method": method, "protocol": protocol,
                "test_mse": [mse]}

    kept = [entry("mlp_l", "diverse_distill", "best_validation", 0.81),
            entry("mlp_l+minilm", "diverse_distill", "best_validation", 0.90)]
    new = [entry("mlp_l+minilm", "diverse_distill", "best_validation", 0.80),
           entry("mlp_l+minilm", "diverse_distill", "final_step", 0.79)]
    merged = tables.merge_quality_entries(kept, new)
    assert merged == [{**e, "tables": ["4"]} for e in [kept[0]] + new]


def test_quality_json_has_one_entry_per_committee_method_and_protocol():
    tables = tables_module()
    in_3 = {"table": "3", "committee": "mlp_l", "method": "diverse_distill",
            "protocol": "best_validation", "test_mse": [0.81]}
    in_4 = {**in_3, "table": "4"}
    other = {**in_3, "protocol": "final_step"}
    merged = tables.merge_quality_entries([in_3, other], [in_4])
    assert merged == [{**other, "tables": ["3"]}, {**in_4, "tables": ["4"]}]
    assert tables.dedupe_quality_entries([in_3, in_4]) == [{**in_3, "tables": ["3", "4"]}]
