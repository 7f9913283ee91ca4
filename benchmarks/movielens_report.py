#!/usr/bin/env python3
"""Collects `bin/train` runs into docs/results/movielens.{md,json}.

    python benchmarks/movielens_report.py --runs runs/mlp_l runs/mlp_l_mlp_m ... \
        --out docs/results/movielens [--protocol=final_step]

Each run folder holds the `metrics.json` that `bin/train` wrote; the table shows, per committee,
every teacher's test MSE, S0 and the distilled student (mean ± std over the run's seeds), GRR
(METHOD.md Eq. 5, against the committee's best teacher), pass fractions and wall times, next to
the paper's Table 4 where it has a row. `--protocol` picks the model each run reports: the
checkpoint with the best validation MSE (ours) or the model after the last step (the paper's
apparent protocol); both come from the same runs.
"""

import json
import os
import shlex
import sys

import numpy as np
from absl import app, flags

from diverse_distill.metrics import gap_recovery_rate
from diverse_distill.paper_results import paper_mse
from diverse_distill.stats import paired_t_test
from diverse_distill.pipeline.job_config import LANGUAGE_TEACHERS

PROTOCOLS = ("best_validation", "final_step")

flags.DEFINE_list("runs", [], "Run folders (each with a metrics.json).")
flags.DEFINE_string("out", "docs/results/movielens", "Output path without extension.")
flags.DEFINE_string("title", "MovieLens-100K: DiverseDistill committees", "Title of the page.")
flags.DEFINE_enum("protocol", "best_validation", list(PROTOCOLS),
                  "Which model of each run: best validation MSE, or after the last step.")
FLAGS = flags.FLAGS


def _paper_row(method, teachers):
    """The paper's row; any language-model teacher stands in for its Flan-T5 ("lm")."""
    return paper_mse(method, ["lm" if t in LANGUAGE_TEACHERS else t for t in teachers])


def _fmt(stat, scale=1.0, digits=4, sign=""):
    return f"{scale * stat['mean']:{sign}.{digits}f} ± {scale * stat['std']:.{digits}f}"


def _stat(values):
    values = np.asarray(values, np.float64)
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "values": values.tolist()}


def _paired_t(differences):
    """t statistic of the paired differences (distilled - S0) over seeds."""
    d = np.asarray(differences, np.float64)
    if len(d) < 2 or d.std(ddof=1) == 0:
        return None
    return float(d.mean() / (d.std(ddof=1) / np.sqrt(len(d))))


def _evaluation(record, protocol):
    """One model's `{"test": ..., "validation": ...}` under `protocol`."""
    if protocol == "best_validation":
        return record
    if "final_step" not in record:
        raise ValueError("A run has no final-step evaluation (it predates --protocol="
                         "final_step); report it with --protocol=best_validation.")
    return record["final_step"]


def build_report(run_dirs, protocol="best_validation"):
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}.")
    rows, raw = [], {}
    for run_dir in run_dirs:
        with open(os.path.join(run_dir, "metrics.json")) as f:
            metrics = json.load(f)
        config = metrics["config"]
        teachers = tuple(config["teachers"])
        summary = metrics["summary"]
        runs = metrics["runs"]
        s0 = [_evaluation(r["s0"], protocol)["test"]["mse"] for r in runs]
        distilled_evaluations = [_evaluation(r["distilled"], protocol) for r in runs]
        distilled = [e["test"]["mse"] for e in distilled_evaluations]
        distilled_val = [e["validation"]["mse"] for e in distilled_evaluations
                         if "validation" in e]
        best = metrics["teachers"][metrics["best_teacher"]]["test"]["mse"]
        try:
            grr = gap_recovery_rate(np.mean(distilled), np.mean(s0), best, higher_is_better=False)
        except ValueError:
            grr = None
        paper = _paper_row(metrics["method"], teachers)
        passes = ", ".join(
            f"{n} {summary[f'pass_fraction_{n}']['mean']:.2f}"
            for n in teachers if f"pass_fraction_{n}" in summary
        )
        rows.append({
            "committee": " + ".join(teachers),
            "student_features": config.get("student_features") or config.get("mlp_features", "all"),
            "method": metrics["method"],
            "tau": config["importance_threshold"],
            "threshold_on": config.get("importance_threshold_on", "importance"),
            "method_params": config.get("method_params", ""),
            "teachers": {n: i["test"]["mse"] for n, i in metrics["teachers"].items()},
            "s0": _stat(s0),
            "distilled": _stat(distilled),
            "distilled_validation": _stat(distilled_val) if distilled_val else None,
            "difference": _stat(np.subtract(distilled, s0)),
            "paired_t": _paired_t(np.subtract(distilled, s0)),
            "p_vs_s0": paired_t_test(distilled, s0)["p_value"],
            "protocol": protocol,
            "grr_of_means": grr,
            "best_teacher": metrics["best_teacher"],
            "seeds": config["seeds"],
            "passes": passes,
            "paper": paper,
            "minutes": metrics["wall_seconds"]["total"] / 60,
            "run_dir": run_dir,
            "alpha": config["alpha"],
            "variant": config.get("variant") if metrics["method"] == "diverse_distill" else None,
            "beta": config["beta"],
        })
        raw[run_dir] = metrics
    return rows, raw


PROTOCOL_TEXT = {
    "best_validation": "each student at its best validation MSE (ours)",
    "final_step": "each student after its last step (the paper's apparent protocol)",
}


def _p(p):
    return "p —" if p is None else ("p < 0.001" if p < 0.001 else f"p = {p:.3f}")


def render(rows, title, command):
    lines = [f"# {title}", "", "Generated by", "", "```bash", command, "```", "",
             "Test split of our deterministic 80/10/10 split (`--split_seed=42`, 10,000 ratings); "
             "mean ± std over the seeds listed (S0 and the distilled student are retrained per "
             "seed with the same seed; teachers are trained once with `--teacher_seed=0`). "
             f"Protocol: {PROTOCOL_TEXT[rows[0]['protocol'] if rows else 'best_validation']}. "
             "Δ = MSE(distilled) − MSE(S0) paired by seed (negative is better), t = its paired "
             "t statistic, p its two-sided p-value. GRR = (MSE(distilled) − MSE(S0)) / (MSE(best teacher) − MSE(S0)) on the "
             "seed means; undefined where the best teacher does not beat S0.", "",
             "Student features: `all` = ids + user/movie attributes (as the teachers), `ids` = user "
             "and movie ids only (`--student_features=ids`).", "",
             "| committee | student features | method | τ | teachers' test MSE | S0 MSE | "
             "distilled MSE | Δ (t) | GRR | pass fraction | distilled validation MSE | "
             "paper MSE (GRR) | seeds | wall |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        teachers = ", ".join(f"{n} {v:.4f}" for n, v in r["teachers"].items())
        paper = "—" if r["paper"] is None else (
            f"{r['paper'][0]:.4f}" + (f" ({r['paper'][1]:.1f} %)" if r["paper"][1] else ""))
        tau = "—" if r["tau"] is None or r["tau"] < 0 else f"{r['tau']:.2f}"
        if tau != "—" and r.get("threshold_on") == "share":
            tau += " on K·w/Σw"
        params = f", {r['method_params']}" if r.get("method_params") else ""
        variant = f"variant={r['variant']}, " if r.get("variant") else ""
        grr = "undefined" if r["grr_of_means"] is None else f"{100 * r['grr_of_means']:.1f} %"
        t = "" if r["paired_t"] is None else f" (t = {r['paired_t']:.2f}, {_p(r['p_vs_s0'])})"
        val = "—" if r.get("distilled_validation") is None else _fmt(r["distilled_validation"])
        lines.append(
            f"| {r['committee']} | {r['student_features']} | {r['method']} ({variant}α={r['alpha']:g}, β={r['beta']:g}{params}) | {tau} | "
            f"{teachers} | {_fmt(r['s0'])} | {_fmt(r['distilled'])} | "
            f"{_fmt(r['difference'], sign='+')}{t} | {grr} | {r['passes'] or '—'} | {val} | {paper} | "
            f"{','.join(map(str, r['seeds']))} | {r['minutes']:.0f} min |")
    return "\n".join(lines) + "\n"


def main(argv):
    del argv
    if not FLAGS.runs:
        raise app.UsageError("--runs names no run folder.")
    rows, raw = build_report(FLAGS.runs, FLAGS.protocol)
    command = "python benchmarks/movielens_report.py " + " ".join(
        shlex.quote(a) for a in sys.argv[1:])
    os.makedirs(os.path.dirname(FLAGS.out) or ".", exist_ok=True)
    with open(FLAGS.out + ".table.md", "w") as f:
        f.write(render(rows, FLAGS.title, command))
    with open(FLAGS.out + ".json", "w") as f:
        json.dump({"rows": rows, "runs": raw}, f, indent=1)
    print(render(rows, FLAGS.title, command))


if __name__ == "__main__":
    app.run(main)
