"""Running many `bin/train` jobs for a benchmark: configurations, reuse, shared rows.

Used by `movielens_tables.py` and `vision_table.py`: a job's `JobConfig` from a base config
and a row's hyper-parameters, a finished run reused when it answers the same configuration,
and row locks that let several copies of one command share the rows.
"""

import dataclasses
import json
import os

# Hyper-parameters that are `JobConfig` fields; the others go to `--method_params`.
CONFIG_FIELDS = ("alpha", "beta", "variant", "distance", "injection", "answer_target",
                 "prediction_weight", "module_warmup_steps", "importance_objective",
                 "alignment", "module_learning_rate")


def job_config(base, unit, params, seeds, output_dir):
    """The `JobConfig` of one run of `unit` with hyper-parameters `params`."""
    fields = {k: v for k, v in params.items() if k in CONFIG_FIELDS}
    method_params = {**unit.method_params,
                     **{k: v for k, v in params.items() if k not in CONFIG_FIELDS}}
    return dataclasses.replace(
        base, teachers=tuple(unit.teachers), method=unit.method, seeds=tuple(seeds),
        output_dir=output_dir, export_student=False, verbose=0, teacher_index=-1,
        method_params=",".join(f"{k}={v}" for k, v in sorted(method_params.items())),
        **{**unit.overrides, **fields},
    )


def _comparable(config_dict):
    """What determines a run's results: a `JobConfig` dict without its cosmetic fields, a
    field it lacks (written before the field existed) at its default, and without the
    language-teacher fields when it has no language teacher."""
    from diverse_distill.pipeline.job_config import (LANGUAGE_TEACHER_FIELDS,
                                                     LANGUAGE_TEACHERS, JobConfig)
    from diverse_distill.pipeline.run_state import COSMETIC_FIELDS

    config_dict = {**JobConfig().to_dict(), **config_dict}
    ignored = set(COSMETIC_FIELDS)
    if not set(config_dict["teachers"]) & set(LANGUAGE_TEACHERS):
        ignored.update(LANGUAGE_TEACHER_FIELDS)
    return json.loads(json.dumps({k: v for k, v in config_dict.items() if k not in ignored}))


def reusable(finished_config, config):
    """Whether a finished run of `finished_config` answers `config`: the same configuration
    on the same seeds or on more (every seed of a run is independent of the others)."""
    finished, wanted = _comparable(finished_config), _comparable(config.to_dict())
    finished_seeds, wanted_seeds = finished.pop("seeds", []), wanted.pop("seeds", [])
    return finished == wanted and set(wanted_seeds) <= set(finished_seeds)


def run_job(config, log_path):
    """`metrics.json` of a `DistillationJob` run of `config` (reused if already finished, also
    when the finished run covers more seeds)."""
    import keras

    from diverse_distill.pipeline.job import DistillationJob

    path = os.path.join(config.output_dir, "metrics.json")
    if os.path.exists(path):
        with open(path) as f:
            metrics = json.load(f)
        if reusable(metrics["config"], config):
            return metrics, True
        config = dataclasses.replace(config, resume=False)  # another config: start afresh
    os.makedirs(config.output_dir, exist_ok=True)
    with open(log_path, "a") as log_file:
        def log(message):
            log_file.write(f"{message}\n")
            log_file.flush()

        try:
            metrics = DistillationJob(config, log=log).run()
        finally:
            keras.backend.clear_session()
    return metrics, False


def claim(work_dir, slug, wait):
    """An exclusive lock on the row `slug` under `work_dir` (an open file: keep it until the
    row is done), or `None` when another process holds it and `wait` is false. Lets several
    copies of the same command share the rows (each takes the rows nobody else runs)."""
    import fcntl

    os.makedirs(work_dir, exist_ok=True)
    handle = open(os.path.join(work_dir, f"{slug}.lock"), "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        handle.close()
        return None
    return handle


def run_units(units, run, work_dir, log, wait=True):
    """`run(unit)` for every unit, in order, skipping the rows another process is running
    (claimed with `claim`) and coming back to them, waiting, once the rest are done (a row
    done by the other process is then reused from its finished runs). With `wait=False`
    the skipped rows are left out of the result."""
    results, deferred = {}, []
    for k, (slug, unit) in enumerate(units.items()):
        lock = claim(work_dir, slug, wait=False)
        if lock is None:
            log(f"[{k + 1}/{len(units)}] {slug}: run by another process, later")
            deferred.append(slug)
            continue
        with lock:
            log(f"[{k + 1}/{len(units)}] {slug}")
            results[slug] = run(unit)
    if not wait:
        return {slug: results[slug] for slug in units if slug in results}
    for slug in deferred:
        log(f"[{list(units).index(slug) + 1}/{len(units)}] {slug} (waiting for its lock)")
        with claim(work_dir, slug, wait=True):
            results[slug] = run(units[slug])
    return {slug: results[slug] for slug in units}
