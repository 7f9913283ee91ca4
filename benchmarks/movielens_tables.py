#!/usr/bin/env python3
"""The paper's Tables 3, 4 and 5 (and ablations) on our MovieLens-100K split.

    # the paper-size run (hours; its cost: docs/results/tables_cost.md):
    python benchmarks/movielens_tables.py --ablations
    # a tiny version in a few minutes (synthetic ml-100k folder, tiny models):
    python benchmarks/movielens_tables.py --quick --output_dir=/tmp/tables_quick
    # the cost of a run, from step times measured at full size (no training; tables_cost.md):
    python benchmarks/movielens_tables.py --estimate_only --ablations

Tables (METHOD.md; the paper's MovieLens experiments):
- Table 3, one teacher: LD, FD, SCKD and DiverseDistill, on MLP-L and on the
  language-model teacher (`--language_teacher`, default all-MiniLM-L6-v2, the offline
  stand-in for Flan-T5);
- Table 4, DiverseDistill on each committee (`--committees`);
- Table 5, multi-teacher: MT, AMTML, AutoSKD, AEKD and DiverseDistill on the
  committee MLP-L + language model (`--table5_committee`);
- `--ablations`: DiverseDistill on the Table 5 committee (or `--ablation_committee`)
  without importance (`importance=uniform`: every w_k = 1), with raw w in L_reg
  (`--importance_normalization=none`), with softmax alignment (`--alignment=softmax`)
  and with a fixed question (`question=native`: each teacher answers its own
  hidden state; no Question Augmenter questions).

Protocol. Every run is one `MovieLensJob` (the library behind `bin/train`), in this
process, with the schedule of `--base_flagfile` (+ `--job_flags`): the same steps,
batch, learning rate, student and teachers for every method (teachers and S0 are
trained once and cached). Each method (each row) gets the same number of
hyper-parameter trials, `--trials`: trial 0 is the method's default configuration
and the others are drawn without replacement from its grid (`SEARCH_SPACES`,
seeded by `--search_seed`); each trial runs the first seed of `--seeds`, and the
configuration with the lowest VALIDATION MSE of that seed is chosen (the test split
is never used to choose). The chosen configuration then runs the other seeds (its
first-seed run is reused: every seed's run is independent of the others). Results:
test MSE mean ± std over the seeds, GRR (METHOD.md Eq. 5, against the committee's
best teacher, per seed), and a paired t-test over the seeds of each method's test MSE
against DiverseDistill on the same teachers (two-sided; `diverse_distill.stats`).

Outputs in `--output_dir` (default docs/results; with `--quick` a new temporary
folder, and never docs/ unless `--overwrite_docs`): tables.md (the tables and the
commands), tables.json (every number, every trial) and tables_grr.png (GRR with
error bars). Runs go to `--work_dir` (default runs/tables; with `--quick`
OUTPUT_DIR/runs); rerunning the same command reuses finished runs (also a finished run
of the same configuration on more seeds). Started twice or more at once, the copies share
the rows: each row is locked (`WORK_DIR/ROW.lock`) by the copy that runs it, and a copy
that finds a row locked does the others first, then waits for it and reuses its runs.
"""

import dataclasses
import datetime
import itertools
import json
import os
import re
import shlex
import sys
import tempfile
import time
import zlib

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from absl import app, flags  # noqa: E402

from benchmarks.job_runs import (  # noqa: E402, F401 (reusable, CONFIG_FIELDS: tests)
    CONFIG_FIELDS,
    claim,
    job_config,
    reusable,
    run_job,
    run_units,
)
from diverse_distill.paper_results import BEST_TEACHER_MSE, S0_MSE, paper_mse  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_boolean("quick", False, "A tiny version: synthetic ml-100k folder in a temporary "
                     "folder, tiny models, a few steps, 2 seeds, 1 trial (a few minutes).")
flags.DEFINE_string("output_dir", "", "Where tables.md/.json/_grr.png go (default docs/results; "
                    "with --quick a new temporary folder).")
flags.DEFINE_boolean("overwrite_docs", False, "Let --quick write into docs/.")
flags.DEFINE_string("work_dir", "", "Where the runs go (default runs/tables; --quick: "
                    "OUTPUT_DIR/runs).")
flags.DEFINE_string("base_flagfile", "configs/movielens_ids_student_minilm_mlp.cfg",
                    "bin/train flagfile with the shared schedule (ignored with --quick); the "
                    "default is the paper's ids-only student, the setting with a gap to "
                    "recover (docs/results/movielens.md).")
flags.DEFINE_multi_string("job_flags", [], "More bin/train flags after the flagfile, e.g. "
                          "--job_flags=--steps=4000 (repeatable).")
flags.DEFINE_string("language_teacher", "", "The language-model teacher (default minilm; "
                    "--quick: tiny_bert).")
flags.DEFINE_list("tables", ["3", "4", "5"], "Which tables to produce.")
flags.DEFINE_boolean("ablations", False, "Also the DiverseDistill ablations.")
flags.DEFINE_list("single_teachers", ["mlp_l", "lm"], "Table 3 teachers ('lm' = "
                  "--language_teacher).")
flags.DEFINE_list("committees", ["mlp_l", "mlp_m", "lm", "mlp_l+mlp_m", "mlp_m+lm", "mlp_l+lm",
                                 "mlp_l+mlp_m+lm"],
                  "Table 4 committees, teachers joined by '+' (--quick default: mlp_l, lm, "
                  "mlp_l+lm).")
flags.DEFINE_string("table5_committee", "mlp_l+lm", "The multi-teacher committee of Table 5 "
                    "(and of the ablations unless --ablation_committee).")
flags.DEFINE_string("ablation_committee", "", "The committee of the ablations (default: "
                    "--table5_committee).")
flags.DEFINE_list("seeds", [], "Seeds (default 0,1,2; --quick: 0,1). The first one tunes.")
flags.DEFINE_integer("trials", 0, "Hyper-parameter configurations per method (default 8; "
                     "--quick: 1).")
flags.DEFINE_integer("search_seed", 0, "Seed of the random search.")
flags.DEFINE_enum("search", "random", ["random", "listed"], "How the trials are chosen: "
                  "'random' (defaults, then a seeded draw from SEARCH_SPACES) or 'listed' "
                  "(the first --trials of LISTED_SEARCH, the same number for every method).")
flags.DEFINE_list("row_trials", [], "With --search=listed: rows that try only some of the "
                  "listed configurations, as ROW:I+J (e.g. 'diverse_distill-mlp_l+mlp_m:0+4': "
                  "the paper's reading and the configuration chosen on MLP-L). Their trial "
                  "folders keep the listed index; tables.md counts the trials they ran.")
flags.DEFINE_string("quality_json", "", "Also write one entry per (committee, method, "
                    "protocol) to this file (docs/results/quality.json), keeping its entries "
                    "of other ones.")
flags.DEFINE_enum("ablation_protocol", "tuned", ["tuned", "fixed"], "Ablations: 'tuned' "
                  "(each variant tuned like a method, --trials configurations) or 'fixed' (each "
                  "variant runs the full DiverseDistill's chosen configuration on every seed: "
                  "one part removed, nothing else changed).")
flags.DEFINE_string("notes", "", "A markdown file whose text goes into tables.md after the "
                    "protocol (e.g. the discussion of the numbers).")
flags.DEFINE_boolean("wait", True, "Wait for the rows another copy of the command is running "
                     "(then write the tables); --nowait skips them and writes nothing.")
flags.DEFINE_boolean("estimate_only", False, "Train nothing: measure the step time of every "
                     "method at the configured size and write the plan and its cost "
                     "(tables_cost.md, tables_cost.json).")
flags.DEFINE_integer("measure_steps", 20, "Timed steps per method with --estimate_only.")

MULTI_TEACHER_METHODS = ("mt", "amtml", "autoskd", "aekd")
SINGLE_TEACHER_METHODS = ("ld", "fd", "sckd")
METHOD_LABELS = {"ld": "LD", "fd": "FD", "sckd": "SCKD", "mt": "MT", "amtml": "AMTML",
                 "autoskd": "AutoSKD", "aekd": "AEKD", "diverse_distill": "DiverseDistill"}
ALPHAS = (0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
# Hyper-parameter grids. `alpha`, `beta` are bin/train flags; the rest go to --method_params.
SEARCH_SPACES = {
    "ld": {"alpha": ALPHAS},
    "fd": {"alpha": ALPHAS},
    "sckd": {"alpha": ALPHAS, "distill_target": ("prediction", "hidden")},
    "mt": {"alpha": ALPHAS},
    "amtml": {"alpha": ALPHAS, "beta": (0.1, 0.5, 1.0, 2.0)},
    "autoskd": {"alpha": ALPHAS, "policy_learning_rate": (0.1, 1.0, 10.0),
                "baseline_momentum": (0.5, 0.9)},
    "aekd": {"alpha": ALPHAS, "max_weight": (0.6, 0.8, 1.0)},
    "diverse_distill": {"alpha": ALPHAS, "beta": (0.1, 0.5, 1.0, 2.0)},
}
# Trial 0 of every method: its default configuration.
DEFAULTS = {"alpha": 0.5, "beta": 1.0, "distill_target": "prediction",
            "policy_learning_rate": 1.0, "baseline_momentum": 0.9, "max_weight": 1.0}
# --search=listed: the configurations each method is given, in order (trial 0 first). The
# same number for every method; DiverseDistill's list walks through the fixes of the three
# causes in docs/results/quality.md (each a JobConfig field), the baselines' through alpha.
LISTED_ALPHAS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
LISTED_SEARCH = {
    **{method: [{"alpha": a} for a in LISTED_ALPHAS]
       for method in ("ld", "fd", "mt", "amtml", "aekd")},
    "sckd": [{"alpha": a, "distill_target": "prediction"} for a in LISTED_ALPHAS[:3]]
    + [{"alpha": a, "distill_target": "hidden"} for a in LISTED_ALPHAS[:3]],
    "autoskd": [{"alpha": a} for a in LISTED_ALPHAS],
    "diverse_distill": [
        {"variant": "paper", "alpha": 0.5},  # the method as published (our defaults before)
        {"variant": "paper", "alpha": 0.5, "distance": "sum"},  # cause 2: D's scale (x64)
        # cause 1: the teacher answers its own input (+ the question); H7: a_k fits its belief
        {"variant": "paper", "alpha": 0.5, "injection": "add", "answer_target": "teacher"},
        # + a prediction-space term (the student's head is asked to agree with the answers);
        # its weight multiplies sg(w) (~0.5), so 4 and 16 are about LD's alpha 2 and 8
        {"variant": "paper", "alpha": 0.5, "injection": "add", "answer_target": "teacher",
         "prediction_weight": 4.0},
        {"variant": "paper", "alpha": 0.5, "injection": "add", "answer_target": "teacher",
         "prediction_weight": 16.0},
        # + cause 3 (a question path with gradients of its inputs' size) and importance that
        # learns with one teacher
        {"variant": "paper", "alpha": 0.5, "injection": "add", "answer_target": "teacher",
         "prediction_weight": 16.0, "alignment": "normalized",
         "importance_objective": "relative"},
    ],
}
# The ablations: (name, description, JobConfig overrides, --method_params).
ABLATIONS = (
    ("full", "DiverseDistill (learned w, sum-normalised in L_reg, dot alignment, augmented "
     "questions)", {}, {}),
    ("no_importance", "no importance: w_k = 1 (importance=uniform)", {},
     {"importance": "uniform"}),
    ("raw_w", "raw w in L_reg (--importance_normalization=none)",
     {"importance_normalization": "none"}, {}),
    ("softmax_alignment", "softmax alignment (--alignment=softmax)", {"alignment": "softmax"}, {}),
    ("fixed_question", "fixed question: each teacher answers its own hidden state "
     "(question=native)", {}, {"question": "native"}),
)
QUICK_JOB_FLAGS = ["--max_train_examples=1200", "--id_embedding_dim=16",
                   "--attribute_embedding_dim=4", "--student_hidden_units=16,8", "--steps=10",
                   "--eval_every=10", "--teacher_steps=20", "--lm_teacher_steps=10",
                   "--lm_sequence_length=24", "--lm_finetune=full", "--batch_size=32",
                   "--question_embedding_dim=8", "--num_components=2",
                   "--module_intermediate_dim=16", "--teacher_dropout=0.0",
                   "--student_features="]
FULL_COMMAND = "python benchmarks/movielens_tables.py --ablations"


# --- Plan --------------------------------------------------------------------------------


@dataclasses.dataclass
class Unit:
    """One row of a table: a method on a committee (+ an ablation variant), tuned and run."""

    method: str
    teachers: tuple
    variant: str = "full"
    overrides: dict = dataclasses.field(default_factory=dict)
    method_params: dict = dataclasses.field(default_factory=dict)

    @property
    def slug(self):
        tail = "" if self.variant == "full" else f"-{self.variant}"
        return f"{self.method}-{'+'.join(self.teachers)}{tail}"


def committee(text, language_teacher):
    names = [language_teacher if t == "lm" else t for t in text.split("+") if t]
    return tuple(names)


def plan(tables, ablations, single_teachers, committees, table5, language_teacher,
         ablation_committee=None):
    """`(units by slug, rows)`: each row names a table, its unit and its reference unit."""
    units, rows = {}, []

    def add(table, unit, reference=None):
        units.setdefault(unit.slug, unit)
        rows.append({"table": table, "unit": unit.slug, "reference": reference})

    if "3" in tables:
        for teacher in single_teachers:
            teachers = committee(teacher, language_teacher)
            reference = Unit("diverse_distill", teachers).slug
            for method in SINGLE_TEACHER_METHODS + ("diverse_distill",):
                add("3", Unit(method, teachers), reference)
    if "4" in tables:
        for text in committees:
            add("4", Unit("diverse_distill", committee(text, language_teacher)), None)
    if "5" in tables:
        teachers = committee(table5, language_teacher)
        reference = Unit("diverse_distill", teachers).slug
        for method in MULTI_TEACHER_METHODS + ("diverse_distill",):
            add("5", Unit(method, teachers), reference)
    if ablations:
        teachers = committee(ablation_committee or table5, language_teacher)
        reference = Unit("diverse_distill", teachers).slug
        for variant, _, overrides, params in ABLATIONS:
            add("ablations", Unit("diverse_distill", teachers, variant, dict(overrides),
                                  dict(params)), reference)
    return units, rows


def search_configurations(method, num_teachers, trials, search_seed, slug, search="random"):
    """`trials` configurations of `method`: its defaults first, then a seeded random draw
    (`search="random"`), or the first `trials` of `LISTED_SEARCH[method]` (`"listed"`)."""
    if search == "listed":
        listed = LISTED_SEARCH[method]
        if trials > len(listed):
            raise ValueError(f"--search=listed has {len(listed)} configurations of {method}, "
                             f"--trials={trials} asks for more.")
        return [dict(c) for c in listed[:trials]]
    space = dict(SEARCH_SPACES[method])
    if "max_weight" in space:  # AEKD: the cap must leave a feasible simplex
        space["max_weight"] = tuple(v for v in space["max_weight"] if v * num_teachers >= 1.0)
    names = sorted(space)
    grid = [dict(zip(names, values)) for values in itertools.product(*(space[n] for n in names))]
    default = {n: DEFAULTS[n] for n in names}
    rest = [g for g in grid if g != default]
    import numpy as np

    rng = np.random.default_rng([search_seed, zlib.crc32(slug.encode())])
    order = rng.permutation(len(rest))
    return [default] + [rest[i] for i in order[: max(0, trials - 1)]]


# --- Running -----------------------------------------------------------------------------


def seed_records(metrics):
    """Per seed: the test/validation numbers the tables need, from one `metrics.json`."""
    best = metrics["best_teacher"]
    records = {}
    for run in metrics["runs"]:
        distilled = run["distilled"]
        records[int(run["seed"])] = {
            "test_mse": distilled["test"]["mse"],
            "test_rmse": distilled["test"]["rmse"],
            "test_mae": distilled["test"]["mae"],
            "validation_mse": distilled["validation"]["mse"],
            "s0_test_mse": run["s0"]["test"]["mse"],
            # The model after the last step (runs before the final-step record: None).
            "final_test_mse": distilled.get("final_step", {}).get("test", {}).get("mse"),
            "final_validation_mse": distilled.get("final_step", {}).get("validation", {})
            .get("mse"),
            "s0_final_test_mse": run["s0"].get("final_step", {}).get("test", {}).get("mse"),
            "grr": run["grr"]["mse"],
            "seconds": distilled.get("seconds"),
            "method_stats": distilled.get("method_stats", {}),
            **{k: distilled[k] for k in distilled
               if k.startswith(("importance_", "pass_fraction_"))},
            "best_teacher": best,
        }
    return records


def parse_row_trials(entries):
    """`--row_trials` entries `ROW:I+J` -> {row slug: [I, J]}."""
    subsets = {}
    for entry in entries:
        slug, _, indices = entry.rpartition(":")
        if not slug or not re.fullmatch(r"\d+(\+\d+)*", indices):
            raise ValueError(f"--row_trials entry {entry!r} is not ROW:I+J (e.g. "
                             "'diverse_distill-mlp_l+mlp_m:0+4').")
        subsets[slug] = sorted({int(i) for i in indices.split("+")})
    return subsets


def tune_and_run(unit, base, seeds, trials, search_seed, work_dir, log, configurations=None,
                 search="random", subset=None):
    """Tunes `unit` on the validation MSE of `seeds[0]`, then runs the choice on every seed.

    `configurations`: the hyper-parameter configurations to choose from (default: `trials`
    of them from `search_configurations`); a single one runs every seed at once. `subset`:
    the indices of those configurations to try (default all; trial folders keep them)."""
    configs = configurations or search_configurations(unit.method, len(unit.teachers), trials,
                                                      search_seed, unit.slug, search)
    indices = list(range(len(configs))) if subset is None else list(subset)
    if not indices or indices[-1] >= len(configs) or indices[0] < 0:
        raise ValueError(f"{unit.slug}: trials {indices} are not among its {len(configs)} "
                         "configurations.")
    configs = [configs[i] for i in indices]
    folder = os.path.join(work_dir, unit.slug)
    trial_results = []
    for i, params in zip(indices, configs):
        # One configuration: nothing to choose, so it runs every seed at once.
        trial_seeds = seeds if len(configs) == 1 else seeds[:1]
        config = job_config(base, unit, params, trial_seeds, os.path.join(folder, f"trial{i}"))
        start = time.time()
        metrics, reused = run_job(config, os.path.join(folder, f"trial{i}.log"))
        records = seed_records(metrics)
        record = records[seeds[0]]
        trial_results.append({"params": params, "validation_mse": record["validation_mse"],
                              "test_mse": record["test_mse"], "output_dir": config.output_dir,
                              "metrics": metrics, "record": record, "records": records})
        log(f"  {unit.slug} trial {i} {params}: validation MSE {record['validation_mse']:.4f}"
            f" ({'reused' if reused else f'{time.time() - start:.0f} s'})")
    chosen = min(range(len(trial_results)), key=lambda i: trial_results[i]["validation_mse"])
    best = trial_results[chosen]
    per_seed = dict(best["records"])
    teacher_test = {n: i["test"]["mse"] for n, i in best["metrics"]["teachers"].items()}
    if any(s not in per_seed for s in seeds):
        missing = [s for s in seeds if s not in per_seed]
        config = job_config(base, unit, best["params"], missing, os.path.join(folder, "final"))
        metrics, _ = run_job(config, os.path.join(folder, "final.log"))
        per_seed.update(seed_records(metrics))
    log(f"  {unit.slug}: chose trial {chosen} {best['params']}; test MSE per seed "
        f"{[round(per_seed[s]['test_mse'], 4) for s in seeds]}")
    config = job_config(base, unit, best["params"], seeds, folder)
    return {
        "unit": dataclasses.asdict(unit),
        "slug": unit.slug,
        "trials": [{**{k: t[k] for k in ("params", "validation_mse", "test_mse", "output_dir")},
                    "final_validation_mse": t["record"]["final_validation_mse"]}
                   for t in trial_results],
        "chosen_trial": chosen,
        "chosen_params": best["params"],
        "method_params": config.method_params,
        "seeds": list(seeds),
        "per_seed": {str(s): per_seed[s] for s in seeds},
        "teachers_test_mse": teacher_test,
        "best_teacher": best["metrics"]["best_teacher"],
        "steps": base.steps,
        "batch_size": base.batch_size,
    }


# --- Statistics and rendering --------------------------------------------------------------


def mean_std(values):
    """Mean ± std (ddof=1) of the defined values; `None` entries (an undefined GRR: the
    committee's best teacher does not beat S0 on that seed) are left out and counted."""
    import numpy as np

    defined = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if defined.size == 0:
        return {"mean": None, "std": None, "values": list(values), "undefined": len(values)}
    std = float(defined.std(ddof=1)) if defined.size > 1 else 0.0
    return {"mean": float(defined.mean()), "std": std,
            "values": [None if v is None else float(v) for v in values],
            "undefined": len(values) - int(defined.size)}


def build_rows(row_plan, results, seeds):
    """Every table row: mean ± std, GRR, and the paired t-tests."""
    from diverse_distill.stats import paired_t_test

    rows = []
    for entry in row_plan:
        result = results[entry["unit"]]
        unit = result["unit"]
        per_seed = [result["per_seed"][str(s)] for s in seeds]
        test = [r["test_mse"] for r in per_seed]
        row = {
            "table": entry["table"],
            "unit": entry["unit"],
            "method": unit["method"],
            "label": METHOD_LABELS[unit["method"]],
            "teachers": list(unit["teachers"]),
            "variant": unit["variant"],
            "test_mse": mean_std(test),
            "test_rmse": mean_std([r["test_rmse"] for r in per_seed]),
            "test_mae": mean_std([r["test_mae"] for r in per_seed]),
            "grr": mean_std([r["grr"] for r in per_seed]),
            "s0_test_mse": mean_std([r["s0_test_mse"] for r in per_seed]),
            "validation_mse_tuning_seed": per_seed[0]["validation_mse"],
            "train_seconds": mean_std([r["seconds"] or 0.0 for r in per_seed]),
            "chosen_params": result["chosen_params"],
            "method_params": result["method_params"],
            "trials": len(result["trials"]),
            "search": [{"params": t["params"], "validation_mse": t["validation_mse"],
                        "final_validation_mse": t.get("final_validation_mse"),
                        "chosen": i == result["chosen_trial"]}
                       for i, t in enumerate(result["trials"])],
            "best_teacher": result["best_teacher"],
            "teachers_test_mse": result["teachers_test_mse"],
            "vs_s0": paired_t_test(test, [r["s0_test_mse"] for r in per_seed]),
            "reference": entry["reference"],
            "vs_reference": None,
        }
        if entry["reference"] and entry["reference"] != entry["unit"]:
            reference = [results[entry["reference"]]["per_seed"][str(s)]["test_mse"]
                         for s in seeds]
            row["vs_reference"] = paired_t_test(test, reference)
        row["final_step"] = final_step_stats(entry, results, seeds)
        rows.append(row)
    return rows


def _grr_or_none(distilled, s0, teacher):
    from diverse_distill.metrics import gap_recovery_rate

    try:
        return gap_recovery_rate(distilled, s0, teacher, higher_is_better=False)
    except ValueError:  # the teacher does not beat S0
        return None


def final_step_stats(entry, results, seeds):
    """The row under the final-step protocol (the model after the last step, S0 too), or
    `None` for runs made before the final step was recorded."""
    from diverse_distill.stats import paired_t_test

    result = results[entry["unit"]]
    per_seed = [result["per_seed"][str(s)] for s in seeds]
    test = [r.get("final_test_mse") for r in per_seed]
    s0 = [r.get("s0_final_test_mse") for r in per_seed]
    if None in test or None in s0:
        return None
    teacher = result["teachers_test_mse"][result["best_teacher"]]
    stats = {"test_mse": mean_std(test), "s0_test_mse": mean_std(s0),
             "grr": mean_std([_grr_or_none(t, z, teacher) for t, z in zip(test, s0)]),
             "grr_of_means": _grr_or_none(float(np.mean(test)), float(np.mean(s0)), teacher),
             "vs_s0": paired_t_test(test, s0), "vs_reference": None}
    if entry["reference"] and entry["reference"] != entry["unit"]:
        reference = [results[entry["reference"]]["per_seed"][str(s)].get("final_test_mse")
                     for s in seeds]
        if None not in reference:
            stats["vs_reference"] = paired_t_test(test, reference)
    return stats


def quality_entries(rows, seeds):
    """docs/results/quality.json: one entry per (committee, method, protocol)."""
    entries = []
    for r in rows:
        if r["variant"] != "full":
            continue
        teacher = r["teachers_test_mse"][r["best_teacher"]]
        protocols = [("best_validation", r["test_mse"], r["s0_test_mse"], r["vs_s0"])]
        if r["final_step"]:
            f = r["final_step"]
            protocols.append(("final_step", f["test_mse"], f["s0_test_mse"], f["vs_s0"]))
        for protocol, test, s0, vs_s0 in protocols:
            entry = {"committee": "+".join(r["teachers"]), "method": r["method"],
                     "variant": r["method_params"] or _params(r["chosen_params"]),
                     "chosen_params": r["chosen_params"], "table": r["table"],
                     "protocol": protocol, "seeds": list(seeds), "test_mse": test["values"],
                     "s0_test_mse": s0["values"], "best_teacher": r["best_teacher"],
                     "best_teacher_test_mse": teacher,
                     "grr_of_means": _grr_or_none(test["mean"], s0["mean"], teacher),
                     "p_vs_s0": vs_s0.get("p_value") if vs_s0 else None}
            entries.append(entry)
    return dedupe_quality_entries(entries)


def _quality_ident(entry):
    return entry["committee"], entry["method"], entry["protocol"]


def dedupe_quality_entries(entries):
    """One entry per (committee, method, protocol): a row in several tables (DiverseDistill
    on MLP-L is in Tables 3 and 4, from the same runs) keeps its first entry, whose
    `"tables"` lists every table it is in."""
    first = {}
    for entry in entries:
        key = _quality_ident(entry)
        tables = entry.get("tables") or [entry.get("table")]
        if key not in first:
            first[key] = {**entry, "tables": list(tables)}
        else:
            first[key]["tables"] += [t for t in tables if t not in first[key]["tables"]]
    return list(first.values())


def merge_quality_entries(kept, new):
    """`new` plus the entries of `kept` for other (committee, method, protocol): a command
    that runs some committees adds to docs/results/quality.json, replacing its own."""
    replaced = {_quality_ident(e) for e in new}
    return dedupe_quality_entries([e for e in kept if _quality_ident(e) not in replaced]
                                  + list(new))


def _pm(stat, scale=1.0, digits=4):
    if stat["mean"] is None:
        return "undefined (teacher ≥ S0)"
    text = f"{scale * stat['mean']:.{digits}f} ± {scale * stat['std']:.{digits}f}"
    if stat.get("undefined"):
        text += f" ({stat['undefined']} seed(s) undefined)"
    return text


def _p(test):
    if not test or test.get("p_value") is None:
        return "—"
    return f"{test['p_value']:.3f} (t={test['t']:+.2f})"


def _params(params):
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in sorted(params.items()))


def render_markdown(rows, summary):
    lines = [f"# MovieLens-100K: Tables 3, 4, 5{' and ablations' if summary['ablations'] else ''}"
             " on our split", ""]
    if summary["quick"]:
        lines += ["**Quick run** (synthetic ml-100k folder, tiny models, a few steps): checks "
                  "the pipeline only; the numbers mean nothing.", ""]
    lines += ["Generated by", "", "```bash", summary["command"], "```", ""]
    if not summary["quick"] and summary["command"] != FULL_COMMAND:
        lines += ["The paper-size protocol (every committee with the language teacher, 8 "
                  "trials; see its cost with `--estimate_only`):", "", "```bash", FULL_COMMAND,
                  "```", ""]
    lines += [f"Protocol: every method with the same schedule ({summary['steps']} steps, batch "
              f"{summary['batch_size']}, the same student, teachers and S0), {summary['trials']} "
              "hyper-parameter configuration(s) per method ("
              + ("the first ones of its list in `LISTED_SEARCH`, benchmarks/movielens_tables.py"
                 if summary.get("search") == "listed" else
                 "its defaults, then a seeded random draw from its grid")
              + "), chosen on the validation MSE of seed "
              f"{summary['seeds'][0]}; the choice then runs seeds {summary['seeds']}. Test MSE "
              "mean ± std over the seeds; GRR (METHOD.md Eq. 5) against the committee's best "
              "teacher; p: two-sided paired t-test over the seeds of the test MSE against "
              "DiverseDistill on the same teachers (Table 4: against S0, the undistilled "
              "student). Two protocols from the same runs: every model (S0 too) at its best "
              "validation MSE (evaluated every 1,000 steps), and the final-step columns: every "
              "model after its last step.", ""]
    if summary.get("notes"):
        lines += [summary["notes"].strip(), ""]
    first = rows[0] if rows else None
    if first:
        teachers = {}
        for r in rows:
            teachers.update(r["teachers_test_mse"])
        lines += [f"S0 (no distillation): test MSE {_pm(first['s0_test_mse'])}. Teachers' "
                  "test MSE: " + ", ".join(f"{n} {v:.4f}" for n, v in sorted(teachers.items()))
                  + f". (The paper: S0 {S0_MSE:.4f}, MLP-L {BEST_TEACHER_MSE:.4f}.)", ""]

    def table(title, key, columns, render_row):
        selected = [r for r in rows if r["table"] == key]
        if not selected:
            return
        lines.extend([f"## {title}", "", "| " + " | ".join(columns) + " |",
                      "|" + "---|" * len(columns)])
        lines.extend("| " + " | ".join(render_row(r)) + " |" for r in selected)
        lines.append("")

    common = ["test MSE", "GRR %", "p vs DiverseDistill", "final-step MSE", "final-step GRR %",
              "final-step p vs DiverseDistill", "paper MSE", "chosen (trials)"]
    language = summary["language_teacher"]

    def final(r, key):
        f = r.get("final_step")
        if not f:
            return "—"
        if key == "test_mse":
            return _pm(f["test_mse"])
        if key == "grr":
            return _pm(f["grr"], 100, 1)
        return _p(f[key])

    table("Table 3: one teacher", "3", ["teacher", "method"] + common, lambda r: [
        r["teachers"][0], r["label"], _pm(r["test_mse"]), _pm(r["grr"], 100, 1),
        _p(r["vs_reference"]), final(r, "test_mse"), final(r, "grr"), final(r, "vs_reference"),
        _paper(r["method"], r["teachers"], language),
        f"{_params(r['chosen_params'])} ({r['trials']})"])
    table("Table 4: DiverseDistill per committee", "4",
          ["committee", "test MSE", "GRR %", "p vs S0", "final-step MSE", "final-step GRR %",
           "final-step p vs S0", "paper MSE (GRR %)", "chosen (trials)"],
          lambda r: [" + ".join(r["teachers"]), _pm(r["test_mse"]), _pm(r["grr"], 100, 1),
                     _p(r["vs_s0"]), final(r, "test_mse"), final(r, "grr"), final(r, "vs_s0"),
                     _paper("diverse_distill", r["teachers"], language),
                     f"{_params(r['chosen_params'])} ({r['trials']})"])
    table("Table 5: multi-teacher methods on " + " + ".join(summary["table5_committee"]), "5",
          ["method"] + common, lambda r: [
              r["label"], _pm(r["test_mse"]), _pm(r["grr"], 100, 1), _p(r["vs_reference"]),
              final(r, "test_mse"), final(r, "grr"), final(r, "vs_reference"),
              _paper(r["method"], r["teachers"], language),
              f"{_params(r['chosen_params'])} ({r['trials']})"])
    descriptions = {name: text for name, text, _, _ in ABLATIONS}
    fixed = summary.get("ablation_protocol") == "fixed"
    table("Ablations (DiverseDistill on " + " + ".join(
        summary.get("ablation_committee", summary["table5_committee"])) + ")"
          + (": every variant at the full model's chosen configuration" if fixed else ""),
          "ablations", ["variant"] + common[:2] + ["p vs full DiverseDistill",
                                                   "chosen (trials)"], lambda r: [
              descriptions[r["variant"]], _pm(r["test_mse"]), _pm(r["grr"], 100, 1),
              _p(r["vs_reference"]), f"{_params(r['chosen_params'])} ({r['trials']})"])
    lines += search_markdown(rows, summary["seeds"][0])
    lines += ["![GRR per method, mean ± std over the seeds](tables_grr.png)", "",
              f"Wall time of this command: {summary['wall_seconds'] / 60:.1f} min (finished "
              "runs are reused, not rerun). Every trial, seed and number: tables.json.", ""]
    return "\n".join(lines)


def search_markdown(rows, tuning_seed):
    """Every configuration tried, per row, with its validation MSE (both protocols)."""
    lines = [f"## The search: every configuration tried (validation MSE, seed {tuning_seed})",
             "", "Chosen (**bold**) on the best-validation MSE; test MSE was not looked at "
             "to choose. The final-step column is the same run after its last step.", "",
             "| row | configuration | validation MSE (best) | validation MSE (final step) |",
             "|---|---|---|---|"]
    listed = set()
    for r in rows:
        if r["unit"] in listed:  # the same row in two tables (e.g. DiverseDistill on MLP-L)
            continue
        listed.add(r["unit"])
        for trial in r.get("search", []):
            best = f"{trial['validation_mse']:.4f}"
            final = trial.get("final_validation_mse")
            final = "—" if final is None else f"{final:.4f}"
            if trial["chosen"]:
                best = f"**{best}**"
            lines.append(f"| {r['unit']} | {_params(trial['params'])} | {best} | {final} |")
    return lines + [""]


def _paper(method, teachers, language_teacher):
    """The paper's MSE (GRR %) for `method` on `teachers` (its language model: ours)."""
    row = paper_mse(method, ["lm" if t == language_teacher else t for t in teachers])
    if row is None:
        return "—"
    return f"{row[0]:.4f}" + (f" ({row[1]:.1f})" if row[1] is not None else "")


def plot_grr(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [(key, title) for key, title in (("3", "Table 3 (one teacher)"),
                                              ("4", "Table 4 (committees)"),
                                              ("5", "Table 5 (multi-teacher)"),
                                              ("ablations", "Ablations"))
              if any(r["table"] == key for r in rows)]
    fig, axes = plt.subplots(1, max(1, len(groups)), figsize=(4.5 * max(1, len(groups)), 4.2),
                             squeeze=False)
    for ax, (key, title) in zip(axes[0], groups):
        selected = [r for r in rows if r["table"] == key]
        labels = []
        for r in selected:
            if key == "3":
                labels.append(f"{r['label']}\n{r['teachers'][0]}")
            elif key == "4":
                labels.append("+".join(r["teachers"]))
            elif key == "ablations":
                labels.append(r["variant"])
            else:
                labels.append(r["label"])
        means = [100 * (r["grr"]["mean"] or 0.0) for r in selected]  # undefined GRR: no bar
        stds = [100 * (r["grr"]["std"] or 0.0) for r in selected]
        colors = ["tab:red" if r["method"] == "diverse_distill" else "tab:blue" for r in selected]
        ax.bar(range(len(selected)), means, yerr=stds, capsize=3, color=colors)
        ax.axhline(0.0, color="black", linewidth=0.8)
        for i, r in enumerate(selected):
            if r["grr"]["mean"] is None:  # the teacher is no better than S0
                ax.text(i, 0.0, "n/a", ha="center", va="bottom", fontsize=7, rotation=90)
        ax.set_xticks(range(len(selected)))
        ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("GRR (MSE) %")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --- Cost estimate ------------------------------------------------------------------------


def measure_step_times(base, units, steps, log):
    """Seconds per training step of S0 and of every unit's method, at `base`'s size.

    Untrained teachers (the step time does not depend on their weights), a 2,048-row
    subsample of the train split, the prefix cache of the language teachers in memory
    (as the job uses it; the baselines read the teachers' output cache instead), `steps` timed `train_on_batch` calls after 3 warm-up steps.
    """
    import keras
    import numpy as np

    from diverse_distill.distill.prefix_cache import PrefixCache
    from diverse_distill.distill.teacher_output_cache import TeacherOutputCache
    from diverse_distill.pipeline.job_config import MLP_TEACHERS
    from diverse_distill.pipeline.movielens_job import MovieLensJob
    from diverse_distill.pipeline.movielens_task import subsample_train
    from diverse_distill.pipeline.strategy import configure_runtime
    from diverse_distill.pipeline.teacher_factory import _build_language_teacher, build_mlp
    from diverse_distill.teachers.mlp_teacher import MLPTeacher

    configure_runtime(0, base.deterministic)
    job = MovieLensJob(base, log=lambda m: None)
    data = subsample_train(job.load_data(), 2048, base.split_seed)
    names = sorted({t for u in units.values() for t in u.teachers})
    extra = {"train": {}, "validation": {}, "test": {}}
    teachers, caches, output_caches = {}, {}, {}
    for name in names:
        keras.utils.set_random_seed(base.teacher_seed)
        if name in MLP_TEACHERS:
            model = build_mlp(base, data, MLP_TEACHERS[name], name=f"{name}_model",
                              dropout=base.teacher_dropout)
            teachers[name] = MLPTeacher(model, name=name)
            continue
        teacher = _build_language_teacher(name, base, data)
        prompts = list(data.prompts("train"))
        if getattr(teacher, "tokenizer", None) is None:
            from diverse_distill.pipeline.teacher_factory import hash_tokenize

            tokens = hash_tokenize(prompts, teacher.backbone.vocabulary_size,
                                   base.lm_sequence_length, f"{name}_token_ids",
                                   f"{name}_padding_mask")
        else:
            tokens = {k: np.asarray(v) for k, v in
                      teacher.preprocess(prompts, base.lm_sequence_length).items()}
        extra["train"].update(tokens)
        teachers[name] = teacher
        caches[name] = PrefixCache(teacher, storage_dtype=base.prefix_cache_dtype).build(tokens)
        output_caches[name] = TeacherOutputCache(teacher, prefix_cache=caches[name]).build(
            {**tokens, **caches[name].features()})
        log(f"  step times: built {name}, its prefix cache and its output cache (baselines)")

    def time_model(model, dataset):
        iterator = iter(dataset)
        for _ in range(3):
            x, y = next(iterator)
            model.train_on_batch(x, y)
        times = []
        for _ in range(steps):
            x, y = next(iterator)
            start = time.perf_counter()
            model.train_on_batch(x, y)
            times.append(time.perf_counter() - start)
        return float(np.median(times))

    results = {}
    job.prefix_caches, job.output_caches = [], []
    train, _, _ = job.datasets(data, extra, 0)
    student = job.build_student(data, 0)
    student.compile(optimizer=keras.optimizers.Adagrad(base.learning_rate), loss="mse")
    results["s0"] = time_model(student, train)
    log(f"  step time s0: {1000 * results['s0']:.1f} ms")
    for slug, unit in units.items():
        key = f"{unit.method}-{'+'.join(unit.teachers)}"
        if key in results:
            results[slug] = results[key]
            continue
        config = job_config(base, unit, {}, base.seeds, base.output_dir)
        job.config = config
        job.prefix_caches = [caches[t] for t in unit.teachers if t in caches]
        job.output_caches = [output_caches[t] for t in unit.teachers if t in output_caches]
        train, _, _ = job.datasets(data, extra, 0, with_teacher_caches=True)
        student = job.build_student(data, 0)
        model = job.build_method(student, [teachers[t] for t in unit.teachers], seed=0)
        model.compile(optimizer=keras.optimizers.Adagrad(config.learning_rate), loss="mse")
        results[key] = results[slug] = time_model(model, train)
        log(f"  step time {key}: {1000 * results[key]:.1f} ms")
        keras.backend.clear_session()
    return results


def one_off_status(base, units):
    """Per teacher: whether it (and a language teacher's prefix cache) is cached already."""
    status = {}
    for name in sorted({t for u in units.values() for t in u.teachers}):
        key, _ = base.teacher_key(name)
        info_path = os.path.join(base.cache_dir, key, "teacher.json")
        entry = {"key": key, "cached": os.path.exists(info_path)}
        if entry["cached"]:
            with open(info_path) as f:
                entry["train_seconds"] = json.load(f).get("train_seconds")
        prefix = [d for d in (os.listdir(os.path.join(base.cache_dir, key))
                              if os.path.isdir(os.path.join(base.cache_dir, key)) else [])
                  if d.startswith("prefix_")]
        if prefix:
            entry["prefix_cache_complete"] = os.path.exists(
                os.path.join(base.cache_dir, key, prefix[0], "COMPLETE"))
        status[name] = entry
    return status


def cost_estimate(units, step_times, base, trials, seeds):
    """Training steps × step time × (trials + extra seeds) per unit, plus S0 per seed."""
    per_unit = {}
    for slug, unit in units.items():
        space = len(search_configurations(unit.method, len(unit.teachers), trials, 0, slug))
        runs = space + len(seeds) - 1
        seconds = runs * base.steps * step_times[slug]
        per_unit[slug] = {"runs": runs, "trials": space, "step_seconds": step_times[slug],
                          "seconds": seconds}
    s0 = len(seeds) * base.steps * step_times["s0"]
    total = s0 + sum(u["seconds"] for u in per_unit.values())
    return {"per_unit": per_unit, "s0_seconds": s0, "total_seconds": total,
            "steps": base.steps, "batch_size": base.batch_size, "trials": trials,
            "seeds": list(seeds)}


def render_estimate(estimate, summary, base):
    lines = ["# MovieLens-100K: Tables 3, 4, 5 and ablations on our split", "",
             "The estimated cost of the run below (no training was done to write this page; "
             "the tables themselves are in tables.md).", "",
             "Run (from the repository root; reuses cached teachers and S0 under "
             f"`{base.cache_dir}`, resumable):", "",
             "```bash", summary["command"].replace(" --estimate_only", ""), "```", "",
             "A tiny end-to-end check of the same code path (a few minutes, writes to a "
             "temporary folder):", "", "```bash",
             "python benchmarks/movielens_tables.py --quick --ablations "
             "--output_dir=/tmp/tables_quick", "```", "",
             "## Protocol", "",
             f"- Schedule of `{summary['base_flagfile']}` for every method: {base.steps} steps, "
             f"batch {base.batch_size}, Adagrad lr {base.learning_rate}, student "
             f"{list(base.student_hidden_units)} with {base.id_embedding_dim}-wide id "
             f"embeddings; language teacher `{summary['language_teacher']}`.",
             f"- {estimate['trials']} hyper-parameter configurations per method (trial 0 = its "
             "defaults, then a seeded random draw without replacement from its grid, "
             "`SEARCH_SPACES` in benchmarks/movielens_tables.py), each on seed "
             f"{estimate['seeds'][0]}; chosen by validation MSE; the choice runs seeds "
             f"{estimate['seeds']} (its seed-{estimate['seeds'][0]} run reused).",
             "- Test MSE mean ± std over seeds, GRR, paired two-sided t-test over seeds "
             "against DiverseDistill on the same teachers (Table 4: against S0).", "",
             "## Estimated cost", "",
             "cost = Σ over rows of (trials + seeds − 1) × steps × measured step time, plus S0 "
             "(seeds × steps × its step time). Step time: the median of "
             f"{summary['measure_steps']} `train_on_batch` calls at full size (untrained "
             "teachers of the real shapes, the language teacher's prefix cached as in the "
             "job), measured on this machine (2 CPU cores shared with other jobs: load "
             f"average {summary['load_average']}), by `{summary['command']}`. Not counted: "
             "evaluations (every 1,000 steps), tracing, and the one-off teacher training and "
             "prefix-cache build when they are not cached yet.", "",
             "| row (method-committee[-ablation]) | step (ms) | runs | steps | hours |",
             "|---|---|---|---|---|",
             f"| S0 (per seed, shared) | {1000 * summary['s0_step']:.1f} | "
             f"{len(estimate['seeds'])} | {estimate['steps']} | "
             f"{estimate['s0_seconds'] / 3600:.2f} |"]
    for slug, unit in estimate["per_unit"].items():
        lines.append(f"| {slug} | {1000 * unit['step_seconds']:.1f} | {unit['runs']} | "
                     f"{estimate['steps']} | {unit['seconds'] / 3600:.2f} |")
    total = estimate["total_seconds"]
    lines += ["", f"**Total: about {total / 3600:.1f} hours ({total / 86400:.1f} days) of "
              "training on this machine**, one run at a time.", "",
              f"One-off (not in the total), under `{base.cache_dir}` when this was written:", ""]
    for name, entry in summary["one_off"].items():
        text = (f"cached (trained in {entry['train_seconds'] / 60:.0f} min)"
                if entry["cached"] and entry.get("train_seconds") else
                "cached" if entry["cached"] else "not cached yet: trained by the first run")
        if "prefix_cache_complete" in entry:
            text += ("; prefix cache complete" if entry["prefix_cache_complete"]
                     else "; prefix cache not complete yet")
        lines.append(f"- `{name}` (`{entry['key']}`): {text}.")
    language = summary["language_teacher"]
    lm_rows = sum(u["seconds"] for slug, u in estimate["per_unit"].items() if language in slug)
    no_lm = estimate["s0_seconds"] + sum(u["seconds"] for slug, u in estimate["per_unit"].items()
                                         if language not in slug)
    load = summary["load_average"]
    lines += ["", "Notes:", "",
              f"- The rows with the language teacher take {lm_rows / 3600:.1f} of the "
              f"{total / 3600:.1f} hours, nearly all of it DiverseDistill's: it runs the "
              f"`{language}` suffix forward and backward at every step (the question is "
              "trained through it), while the baselines read the frozen teacher's prediction "
              "and hidden state from its `TeacherOutputCache` and cost what the MLP rows cost.",
              f"- Load average while measuring: {load} (2 cores). Step times measured beside "
              "other jobs can be up to 2× too high. The ablation rows reuse the step time of "
              "the full DiverseDistill row on the same committee.",
              f"- Without the language teacher (`--tables=3,4 --single_teachers=mlp_l "
              f"--committees=mlp_l,mlp_m,mlp_l+mlp_m`) the cost is about "
              f"{no_lm / 3600:.1f} hours.",
              "- Fewer trials or seeds scale the cost linearly in (trials + seeds − 1); "
              "`--job_flags=--steps=N` scales it in N (every method keeps the same steps). "
              "Copies of the command started at once share the rows (per-row locks).", ""]
    return "\n".join(lines)


# --- Main ----------------------------------------------------------------------------------


def base_config(quick, data_dir, work_dir):
    from diverse_distill.pipeline.flags import config_from_flags, define_job_flags

    job_flags = flags.FlagValues()
    define_job_flags(job_flags)
    argv = ["movielens_tables"]
    if quick:
        argv += QUICK_JOB_FLAGS + [f"--movielens_dir={data_dir}",
                                   f"--cache_dir={os.path.join(work_dir, 'cache')}"]
    else:
        argv.append(f"--flagfile={FLAGS.base_flagfile}")
    argv += list(FLAGS.job_flags)
    argv.append("--compare_methods=")  # every method is a row here: no side runs of LD
    job_flags(argv)
    return config_from_flags(job_flags)


def main(argv):
    del argv
    start = time.time()
    command = "python benchmarks/movielens_tables.py " + " ".join(
        shlex.quote(a) for a in sys.argv[1:])
    quick = FLAGS.quick
    output_dir = FLAGS.output_dir or (tempfile.mkdtemp(prefix="movielens_tables_") if quick
                                      else os.path.join(REPO, "docs", "results"))
    output_dir = os.path.abspath(output_dir)
    docs = os.path.join(os.path.realpath(REPO), "docs")
    if quick and not FLAGS.overwrite_docs and (
            os.path.realpath(output_dir) + os.sep).startswith(docs + os.sep):
        raise app.UsageError(f"--quick would write into {output_dir} (docs/): give another "
                             "--output_dir, or --overwrite_docs.")
    work_dir = os.path.abspath(FLAGS.work_dir or (os.path.join(output_dir, "runs") if quick
                                                  else os.path.join(REPO, "runs", "tables")))
    os.chdir(REPO)  # the flagfiles' relative paths
    language_teacher = FLAGS.language_teacher or ("tiny_bert" if quick else "minilm")
    seeds = [int(s) for s in FLAGS.seeds] or ([0, 1] if quick else [0, 1, 2])
    trials = FLAGS.trials or (1 if quick else 8)
    committees = FLAGS.committees
    if quick and committees == flags.FLAGS["committees"].default:
        committees = ["mlp_l", "lm", "mlp_l+lm"]
    data_dir = None
    if quick:
        from diverse_distill.data import write_synthetic_ml100k

        data_dir = write_synthetic_ml100k(os.path.join(work_dir, "ml-100k"), num_users=40,
                                          num_movies=60, num_ratings=1500, seed=0)
    base = base_config(quick, data_dir, work_dir)
    units, row_plan = plan(FLAGS.tables, FLAGS.ablations, FLAGS.single_teachers, committees,
                           FLAGS.table5_committee, language_teacher, FLAGS.ablation_committee)
    os.makedirs(output_dir, exist_ok=True)
    summary = {"command": command, "quick": quick, "ablations": FLAGS.ablations,
               "language_teacher": language_teacher, "seeds": seeds, "trials": trials,
               "steps": base.steps, "batch_size": base.batch_size,
               "table5_committee": list(committee(FLAGS.table5_committee, language_teacher)),
               "ablation_protocol": FLAGS.ablation_protocol, "search": FLAGS.search,
               "ablation_committee": list(committee(
                   FLAGS.ablation_committee or FLAGS.table5_committee, language_teacher)),
               "base_flagfile": None if quick else FLAGS.base_flagfile,
               "job_flags": (QUICK_JOB_FLAGS if quick else []) + list(FLAGS.job_flags),
               "date": datetime.datetime.now().isoformat(timespec="seconds")}
    if FLAGS.notes:
        with open(FLAGS.notes) as f:
            summary["notes"] = f.read()
    print(f"{len(units)} rows to tune ({trials} trial(s) each) and run on seeds {seeds}; "
          f"runs in {work_dir}; outputs in {output_dir}", flush=True)

    if FLAGS.estimate_only:
        summary.update(measure_steps=FLAGS.measure_steps, load_average=[
            round(v, 1) for v in os.getloadavg()])
        step_times = measure_step_times(base, units, FLAGS.measure_steps, print)
        summary["s0_step"] = step_times["s0"]
        summary["one_off"] = one_off_status(base, units)
        estimate = cost_estimate(units, step_times, base, trials, seeds)
        with open(os.path.join(output_dir, "tables_cost.md"), "w") as f:
            f.write(render_estimate(estimate, summary, base))
        with open(os.path.join(output_dir, "tables_cost.json"), "w") as f:
            json.dump({"status": "not generated: cost estimate only", "summary": summary,
                       "plan": {s: dataclasses.asdict(u) for s, u in units.items()},
                       "rows": row_plan, "step_seconds": step_times, "estimate": estimate,
                       "base_config": base.to_dict()}, f, indent=1)
        print(f"estimated cost: {estimate['total_seconds'] / 3600:.1f} h -> "
              f"{output_dir}/tables_cost.md", flush=True)
        return

    def log(message):
        print(message, flush=True)

    done = {}  # slug -> result of the rows this copy ran
    row_trials = parse_row_trials(FLAGS.row_trials)

    def run(unit):
        if unit.variant == "full" or FLAGS.ablation_protocol == "tuned":
            done[unit.slug] = tune_and_run(unit, base, seeds, trials, FLAGS.search_seed,
                                           work_dir, log, search=FLAGS.search,
                                           subset=row_trials.get(unit.slug))
            return done[unit.slug]
        # "fixed": the full model's chosen configuration (its row from this copy, else
        # reused from another copy's finished runs, or run first).
        full = Unit(unit.method, unit.teachers)
        if full.slug not in done:
            with claim(work_dir, full.slug, wait=True):
                done[full.slug] = tune_and_run(full, base, seeds, trials, FLAGS.search_seed,
                                               work_dir, log, search=FLAGS.search)
        return tune_and_run(unit, base, seeds, trials, FLAGS.search_seed, work_dir, log,
                            configurations=[done[full.slug]["chosen_params"]])

    results = run_units(units, run, work_dir, log, FLAGS.wait)
    if len(results) < len(units):
        print(f"{len(units) - len(results)} row(s) left to another process "
              f"({', '.join(s for s in units if s not in results)}); rerun without --nowait to "
              "write the tables.", flush=True)
        return
    rows = build_rows(row_plan, results, seeds)
    summary["wall_seconds"] = time.time() - start
    with open(os.path.join(output_dir, "tables.json"), "w") as f:
        json.dump({"summary": summary, "rows": rows, "units": results,
                   "base_config": base.to_dict()}, f, indent=1)
    with open(os.path.join(output_dir, "tables.md"), "w") as f:
        f.write(render_markdown(rows, summary))
    plot_grr(rows, os.path.join(output_dir, "tables_grr.png"))
    if FLAGS.quality_json:
        kept = []
        if os.path.exists(FLAGS.quality_json):
            with open(FLAGS.quality_json) as f:
                kept = json.load(f)
        with open(FLAGS.quality_json, "w") as f:
            json.dump(merge_quality_entries(kept, quality_entries(rows, seeds)), f, indent=1)
    print(render_markdown(rows, summary), flush=True)
    print(f"wrote {output_dir}/tables.md, tables.json, tables_grr.png "
          f"({summary['wall_seconds'] / 60:.1f} min)", flush=True)


if __name__ == "__main__":
    app.run(main)
