#!/usr/bin/env python3
"""The vision experiment (issue #15): S0, each teacher, DiverseDistill and the baselines on
an image task, at the same tuning budget, over seeds; tables, JSON and a chart.

    # Fashion-MNIST, CPU-scaled (configs/fashion_mnist_vit_cnn.cfg; hours on 2 cores):
    python benchmarks/vision_table.py --output_dir=docs/results/vision
    # a tiny version in a minute or two (synthetic idx files, tiny models):
    python benchmarks/vision_table.py --quick --output_dir=/tmp/vision_quick

Protocol (as benchmarks/movielens_tables.py's, with accuracy): every method runs the
schedule, student, teachers and S0 of `--base_flagfile` (+ `--job_flags`); each gets the
same number of listed configurations (`--trials`, the first ones of `LISTED_SEARCH`), each
run on the first seed of `--seeds`; the configuration with the best VALIDATION accuracy of
that seed is chosen (ties: the lower validation cross-entropy), then runs the other seeds.
The test split is read once per seed, after the choice. Single-teacher methods (LD, FD)
distil the committee's best teacher by validation accuracy. Reported: test accuracy mean ±
std, GRR against the best teacher (by test accuracy, as the paper), two-sided paired t-tests
over the seeds against S0 and against DiverseDistill; each model both at its best
validation loss and after its last step.

Outputs in `--output_dir`: vision_tables.md, vision.json (every number, every trial),
vision_accuracy.png. Runs go to `--work_dir` (default runs/vision); a rerun reuses finished
runs, and copies started at once share the rows (benchmarks/job_runs.py).
"""

import datetime
import json
import os
import shlex
import sys
import tempfile
import time


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from absl import app, flags  # noqa: E402

from benchmarks.job_runs import run_units  # noqa: E402
from benchmarks.vision_results import (  # noqa: E402
    SINGLE_TEACHER,
    Row,
    build_teachers,
    plot,
    render_markdown,
    table_rows,
    tune_and_run,
)

FLAGS = flags.FLAGS
flags.DEFINE_string("base_flagfile", "configs/fashion_mnist_vit_cnn.cfg",
                    "The bin/train flagfile every run starts from.")
flags.DEFINE_multi_string("job_flags", [], "More bin/train flags after the flagfile.")
flags.DEFINE_string("work_dir", "", "Where the runs go (default runs/vision; --quick: "
                    "OUTPUT_DIR/runs).")
flags.DEFINE_string("output_dir", "", "Where vision_tables.md/.json/.png go (default "
                    "docs/results/vision; --quick: a new temporary folder).")
flags.DEFINE_list("seeds", [], "Seeds (default 0,1,2; --quick: 0,1). The first one tunes.")
flags.DEFINE_integer("trials", 0, "Listed configurations per method (default 3; --quick: 1).")
flags.DEFINE_list("methods", ["diverse_distill", "ld", "fd", "mt", "aekd"],
                  "The methods (rows), each on the committee (LD, FD: its best teacher).")
flags.DEFINE_boolean("quick", False, "A tiny version on synthetic idx files (numbers mean "
                     "nothing; checks the pipeline).")
flags.DEFINE_float("keep_fraction", 0.5, "Also DiverseDistill's chosen configuration with "
                   "fixed-size skipping: each teacher runs on this fraction of each batch (its "
                   "rows of highest importance); <= 0: no such row.")
flags.DEFINE_boolean("wait", True, "Wait for rows another copy of the command is running.")

QUICK_JOB_FLAGS = ["--patch_size=7", "--student_layers=2", "--student_heads=2",
                   "--student_hidden_dim=8", "--student_mlp_dim=16", "--vit_teacher_layers=2",
                   "--vit_teacher_heads=2", "--vit_teacher_hidden_dim=8",
                   "--vit_teacher_mlp_dim=16", "--cnn_filters=4,8", "--steps=6",
                   "--teacher_steps=6", "--eval_every=3", "--batch_size=16",
                   "--question_embedding_dim=4", "--num_components=2",
                   "--module_intermediate_dim=8"]


def base_config(quick, data_dir, work_dir):
    from diverse_distill.pipeline.flags import config_from_flags, define_job_flags

    job_flags = flags.FlagValues()
    define_job_flags(job_flags)
    argv = ["vision_table", f"--flagfile={FLAGS.base_flagfile}"]
    if quick:
        argv += QUICK_JOB_FLAGS + [f"--image_dir={data_dir}"]
    argv += [f"--cache_dir={os.path.join(work_dir, 'cache')}"] if quick else []
    argv += list(FLAGS.job_flags) + ["--compare_methods="]  # every method is a row here
    job_flags(argv)
    return config_from_flags(job_flags)


def main(argv):
    del argv
    start = time.time()
    command = "python benchmarks/vision_table.py " + " ".join(
        shlex.quote(a) for a in sys.argv[1:])
    quick = FLAGS.quick
    output_dir = os.path.abspath(FLAGS.output_dir or (
        tempfile.mkdtemp(prefix="vision_table_") if quick
        else os.path.join(REPO, "docs", "results", "vision")))
    work_dir = os.path.abspath(FLAGS.work_dir or (os.path.join(output_dir, "runs") if quick
                                                  else os.path.join(REPO, "runs", "vision")))
    os.chdir(REPO)  # the flagfiles' relative paths
    seeds = [int(s) for s in FLAGS.seeds] or ([0, 1] if quick else [0, 1, 2])
    trials = FLAGS.trials or (1 if quick else 3)
    data_dir = None
    if quick:
        from diverse_distill.data import write_synthetic_fashion_mnist

        data_dir = write_synthetic_fashion_mnist(os.path.join(work_dir, "fmnist"),
                                                 num_train=64, num_test=24)
    base = base_config(quick, data_dir, work_dir)

    def log(message):
        print(message, flush=True)

    teachers = build_teachers(base, work_dir, lambda m: log(f"  {m}"))
    best_validation = max(teachers, key=lambda n: teachers[n]["validation"]["accuracy"])
    rows = {}
    for method in FLAGS.methods:
        committee = (best_validation,) if method in SINGLE_TEACHER else tuple(base.teachers)
        row = Row(method, committee)
        rows[row.slug] = row
    full = Row("diverse_distill", tuple(base.teachers))
    if FLAGS.keep_fraction > 0 and full.slug in rows:
        skipping = Row("diverse_distill", full.teachers,
                       overrides={"keep_fraction": FLAGS.keep_fraction})
        rows[skipping.slug] = skipping
    log(f"{len(rows)} rows, {trials} configuration(s) each, seeds {seeds}; runs in {work_dir}")

    def run(row):
        if not row.overrides:
            return tune_and_run(row, base, seeds, trials, work_dir, log)
        # Skipping: DiverseDistill's chosen configuration (its finished runs are reused).
        chosen = tune_and_run(full, base, seeds, trials, work_dir, lambda m: None)
        return tune_and_run(row, base, seeds, trials, work_dir, log,
                            configurations=[chosen["chosen_params"]])

    results = run_units(rows, run, work_dir, log, FLAGS.wait)
    if len(results) < len(rows):
        log("rows left to another process; rerun without --nowait to write the tables")
        return
    from diverse_distill.pipeline.image_task import TITLES

    table, best = table_rows(results, teachers, seeds)
    summary = {"command": command, "quick": quick, "title": TITLES[base.task], "seeds": seeds,
               "trials": trials, "steps": base.steps, "batch_size": base.batch_size,
               "base_flagfile": FLAGS.base_flagfile,
               "job_flags": (QUICK_JOB_FLAGS if quick else []) + list(FLAGS.job_flags),
               "best_teacher": best, "single_teacher_methods_distil": best_validation,
               "date": datetime.datetime.now().isoformat(timespec="seconds"),
               "wall_seconds": time.time() - start}
    os.makedirs(output_dir, exist_ok=True)
    teacher_summary = {n: {k: i[k] for k in ("num_params", "validation", "test", "key")}
                       for n, i in teachers.items()}
    with open(os.path.join(output_dir, "vision.json"), "w") as f:
        json.dump({"summary": summary, "teachers": teacher_summary, "rows": table,
                   "base_config": base.to_dict()}, f, indent=1)
    text = render_markdown(table, teachers, best, summary)
    with open(os.path.join(output_dir, "vision_tables.md"), "w") as f:
        f.write(text)
    plot(table, teachers, summary, os.path.join(output_dir, "vision_accuracy.png"))
    print(text, flush=True)
    log(f"wrote {output_dir}/vision_tables.md, vision.json, vision_accuracy.png "
        f"({summary['wall_seconds'] / 60:.1f} min)")


if __name__ == "__main__":
    app.run(main)
