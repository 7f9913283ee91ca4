"""The job behind `bin/train`: data -> teachers -> S0 -> method -> test metrics, GRR, export.

Task-independent: what is learned (data, student, teachers, loss, metrics) is the job's
`Task` (`pipeline/task.py`; MovieLens: `movielens_task.py`, images: `image_task.py`).
"""

import dataclasses
import json
import os
import platform
import shutil
import time

import keras
import numpy as np
import tensorflow as tf

from diverse_distill.distill.distillation_model import DistillationModel
from diverse_distill.distill.prefix_cache import PrefixCache
from diverse_distill.distill.teacher_output_cache import TeacherOutputCache
from diverse_distill.pipeline.finite_loss_guard import InjectNaN
from diverse_distill.pipeline.importance_histograms import (
    ImportanceHistograms,
    importances,
    pass_fractions,
)
from diverse_distill.pipeline.method_params import method_class, method_kwargs
from diverse_distill.pipeline.run_state import RunState
from diverse_distill.pipeline.task import make_task, mean_std
from diverse_distill.pipeline.strategy import configure_runtime, make_strategy
from diverse_distill.pipeline.train_stream import train_stream
from diverse_distill.pipeline.workers import (
    WorkerRole,
    agree_on_state,
    lost_worker_error,
    peer_error,
    private_copy,
    state_summary,
)
from diverse_distill.pipeline.teacher_factory import (
    SPLITS,
    fit_with_schedule,
    output_cache_dir,
    prefix_cache_dir,
    predict_split,
)


def _versions():
    import keras_hub

    return {"python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "keras_hub": keras_hub.__version__,
            "numpy": np.__version__}


# A teacher constructor's argument -> the flag that sets it, for error messages.
_TEACHER_FLAGS = {"injection_layer": "--bert_injection_layer",
                  "sequence_length": "--lm_sequence_length",
                  "suffix_mode": "--bert_suffix_mode",
                  "preset": "--t5_preset / --bert_preset"}


def _teacher_error(name, error):
    """`ValueError` naming the teacher and the flags behind the constructor argument."""
    message = " ".join(str(error).split())
    if "cached teacher checkpoint" in message:
        return ValueError(message)
    named = [f for arg, f in _TEACHER_FLAGS.items() if f"`{arg}`" in message]
    hint = f" (set with {', '.join(named)})" if named else ""
    return ValueError(f"teacher {name!r}: {message}{hint}")


def _column(metric):
    """The width of a metric's column in the summary (13, or its name and 2 spaces)."""
    return max(13, len(metric) + 2)


class DistillationJob:
    """One `bin/train` run, of any `--task`.

    Args:
        config: `JobConfig` (its `task` picks the `Task`).
        log: callable taking a str. Defaults to `print`.
        comparison: whether another job's `--compare_methods` runs this one (it
            then prints no summary).
        strategy: a `tf.distribute.Strategy` to run under instead of making one
            from `--strategy` (a comparison shares its parent's: two mirrored
            strategies in one process mix up their collective ops).

    Example:
    ```python
    from diverse_distill.data import write_synthetic_ml100k
    from diverse_distill.pipeline.job import DistillationJob
    from diverse_distill.pipeline.job_config import JobConfig

    folder = write_synthetic_ml100k("/tmp/ml-100k", num_users=20, num_movies=30,
                                    num_ratings=400)
    config = JobConfig(movielens_dir=folder, output_dir="/tmp/job", cache_dir="/tmp/cache",
                       teachers=("mlp_s",), steps=20, teacher_steps=20, eval_every=10,
                       id_embedding_dim=8, student_hidden_units=(8,),
                       question_embedding_dim=4, num_components=2,
                       module_intermediate_dim=8, compare_methods=(),
                       export_student=False)
    metrics = DistillationJob(config, log=lambda line: None).run()  # like bin/train
    print(metrics["summary"]["s0"]["mse"]["mean"], metrics["summary"]["distilled"]["mse"]["mean"])
    ```
    """

    def __init__(self, config, log=print, comparison=False, strategy=None):
        self.config = config
        self.log = log
        self.task = make_task(config, log=log)
        self.comparison = comparison  # run by another job's --compare_methods: no summary
        self.timings = {}
        self.prefix_caches = []
        self.output_caches = []
        self.run_state = RunState(config, log=log)
        self.strategy = strategy  # made by `run` if None

    def _phase(self, name):
        job = self

        class _Timer:
            def __enter__(self):
                self.start = time.time()
                job.log(f"[{name}] ...")

            def __exit__(self, *exc):
                job.timings[name] = job.timings.get(name, 0.0) + time.time() - self.start
                if exc[0] is None:
                    job.log(f"[{name}] done in {time.time() - self.start:.1f} s")

        return _Timer()

    # --- Phases -------------------------------------------------------------

    def load_data(self):
        with self._phase("data"):
            data = self.task.load_data()
        self.log(f"data: {data}")
        return data

    def datasets(self, data, extra_features, seed, with_teacher_caches=False):
        """Train, validation and test datasets; with the teacher caches of `--method`.

        DiverseDistill reads the language teachers' cached prefixes, the
        baselines their cached outputs (`TeacherOutputCache`).
        """
        c = self.config
        caches = []
        if with_teacher_caches:
            caches = self.prefix_caches if c.method == "diverse_distill" else self.output_caches
        train_extra = extra_features["train"]
        if caches:  # each batch carries its row numbers; the cached prefixes are looked up
            train_extra = {**train_extra, "__row__": np.arange(data.num_examples["train"])}
        train = self.task.map_train(train_stream(data, c.batch_size, seed, train_extra), seed)
        for cache in caches:
            train = train.map(cache.dataset_lookup(), num_parallel_calls=1)
        val, test = (self.task.map_eval(data.as_dataset(split, 512,
                                                        extra_features=extra_features[split]))
                     for split in ("validation", "test"))
        return train, val, test

    def build_prefix_caches(self, teachers, extra_features):
        """Caches the teachers' prefixes over the train split (`--prefix_cache`), those
        whose prefix costs something (`Task.caches_prefix`)."""
        c = self.config
        caches = []
        if c.prefix_cache == "none":
            return caches
        features = self.task.teacher_inputs(self.data, extra_features, "train")
        for teacher in teachers:
            if not self.task.caches_prefix(teacher):
                continue
            directory = prefix_cache_dir(c, teacher) if c.prefix_cache == "disk" else None
            cache = PrefixCache(teacher, storage_dtype=c.prefix_cache_dtype, directory=directory,
                                padding_mask_key=teacher.prefix_padding_mask_key)
            self._fill(cache, directory, features, f"prefix_cache_{teacher.name}")
            self.log(f"prefix cache {teacher.name}: {cache.nbytes / 2**30:.2f} GiB "
                     f"({c.prefix_cache_dtype}, built in {cache.seconds:.0f} s)")
            caches.append(cache)
        return caches

    def _fill(self, cache, directory, features, phase):
        """Builds `cache` over `features` in memory, or opens/builds it under `directory`."""
        with self._phase(phase):
            if directory is None:
                cache.build(features, log=self.log)
            else:
                cache.open_or_build(features, log=self.log)

    def build_output_caches(self, teachers, extra_features):
        """The baselines' view of a frozen language teacher: its outputs, once per example.

        Every baseline reads only the unmodified teacher (prediction, last
        hidden state), which does not change during distillation, so its
        language teachers' outputs are computed once over the train split
        (from their prefix caches) and read instead of running the teacher
        at every step. Kept in memory or on disk as `--prefix_cache` says. A
        single-teacher method given `--teacher_index` reads that teacher alone,
        so only its cache is built.
        """
        c = self.config
        if c.method == "diverse_distill" or c.prefix_cache == "none":
            return []
        if c.teacher_index >= 0:  # JobConfig/method_kwargs: only single-teacher methods take it
            teachers = [teachers[c.teacher_index]]
        prefix_caches = {cache.name: cache for cache in self.prefix_caches}
        caches = []
        for teacher in teachers:
            if not self.task.caches_prefix(teacher):
                continue  # its forward pass is as cheap as reading a cache
            prefix_cache = prefix_caches.get(teacher.name)
            features = dict(self.task.teacher_inputs(self.data, extra_features, "train"))
            if prefix_cache is not None:
                features.update(prefix_cache.features())
            directory = output_cache_dir(c, teacher) if c.prefix_cache == "disk" else None
            cache = TeacherOutputCache(teacher, directory=directory, prefix_cache=prefix_cache)
            self._fill(cache, directory, features, f"output_cache_{teacher.name}")
            self.log(f"output cache {teacher.name}: {cache.nbytes / 2**20:.1f} MiB "
                     f"(built in {cache.seconds:.0f} s); {c.method} reads it instead of "
                     "running the teacher")
            caches.append(cache)
        return caches

    def build_student(self, data, seed):
        return self.task.build_student(data, seed)

    def build_method(self, student, teachers, seed=None):
        """`--method` on the committee: its flags, `--teacher_index` and `--method_params`."""
        c = self.config
        kwargs = method_kwargs(c, seed=seed)  # pipeline/method_params.py
        if c.method == "diverse_distill":
            return DistillationModel(student, teachers, prefix_caches=self.prefix_caches,
                                     name="diverse_distill", **kwargs)
        return method_class(c.method)(student, teachers, output_caches=self.output_caches,
                                      **kwargs)

    def callbacks(self, phase):
        return [keras.callbacks.TensorBoard(os.path.join(self.config.output_dir, "tensorboard", phase))]

    def _finished_student(self, data, extra_features, seed, phase, record, need_weights):
        """A phase finished by an earlier run: its record, and its student if needed."""
        self.log(f"[{phase}] finished earlier: loaded {self.run_state.phases_dir}/{phase}.json")
        if not need_weights:
            return None, record
        with self._scope():
            student = self.build_student(data, seed)
        _, val_ds, _ = self.datasets(data, extra_features, seed)
        student(next(iter(val_ds))[0], training=False)  # builds every sub-layer
        student.load_weights(self.run_state.weights_path(phase))
        return student, record

    def _scope(self):
        return (self.strategy or tf.distribute.get_strategy()).scope()

    def train_student(self, data, extra_features, seed, teachers=None):
        """S0 (`teachers=None`) or the distilled student; returns its record.

        A phase finished by an earlier run in the same output folder is not
        trained again (its record is loaded); one interrupted resumes from
        its last checkpoint.
        """
        c = self.config
        phase = f"s0_seed{seed}" if teachers is None else f"{c.method}_seed{seed}"
        finished = self.run_state.load(phase)
        s0_cache = os.path.join(c.cache_dir, c.s0_key(seed), "record.json")
        if teachers is None and finished is None and os.path.exists(s0_cache):
            # S0 does not depend on the method or the committee: train it once per seed.
            with open(s0_cache) as f:
                record = json.load(f)
            self.log(f"[{phase}] loaded from the S0 cache {s0_cache}")
            return None, record
        if finished is not None:
            need_weights = teachers is not None and c.export_student and seed == c.seeds[0]
            return self._finished_student(data, extra_features, seed, phase, finished, need_weights)
        keras.utils.set_random_seed(seed)  # the same shuffle seeds in a rerun
        train_ds, val_ds, test_ds = self.datasets(
            data, extra_features, seed, with_teacher_caches=teachers is not None
        )
        with self._scope():
            student = self.build_student(data, seed)
        with self._phase(phase):
            with self._scope():
                model = student if teachers is None else self.build_method(student, teachers, seed)
                compile_kwargs = {}
                if c.method == "diverse_distill" and teachers is not None:
                    compile_kwargs["jit_compile"] = c.use_xla
                    compile_kwargs["module_optimizer"] = self.task.optimizer(
                        c.module_learning_rate if c.module_learning_rate > 0 else c.learning_rate,
                        c.steps)
                model.compile(optimizer=self.task.optimizer(c.learning_rate, c.steps),
                              loss=self.task.loss(), **compile_kwargs)
            callbacks = self.callbacks(phase)
            if teachers is not None and hasattr(model, "question_augmenter"):
                callbacks.append(ImportanceHistograms(
                    os.path.join(c.output_dir, "tensorboard", phase), val_ds))
                if c.inject_nan_at_step:
                    callbacks.append(InjectNaN(model.answer_augmenter.trainable_variables,
                                               c.inject_nan_at_step))
            history, best = fit_with_schedule(
                model, train_ds, val_ds, c.steps, c.eval_every, student, c.verbose,
                callbacks=callbacks, checkpoint_every=c.checkpoint_every,
                backup_dir=self.run_state.backup_dir(phase), phase=phase, log=self.log,
                restore_best=False,
            )
        # Two protocols from the same run: the student after the last step, then
        # the one with the best validation loss (docs/results/quality.md).
        final_step = self.evaluate(student, data, val_ds, test_ds)
        best.restore()
        record = {
            "seed": seed,
            "best_epoch": best.best_epoch,
            "history": {k: [float(v) for v in vals] for k, vals in history.items()},
            **self.evaluate(student, data, val_ds, test_ds),
            "final_step": final_step,
            "seconds": self.timings[phase],
        }
        if teachers is not None:
            for t in teachers:
                for key in (f"importance_{t.name}", f"pass_fraction_{t.name}"):
                    if key in history:
                        record[key] = float(np.mean(history[key]))
            stats = [k for k in getattr(model, "stat_names", list)() if k in history]
            if stats:  # a baseline's own logs (teacher weights, conflict fraction, ...)
                record["method_stats"] = {k: float(np.mean(history[k])) for k in stats}
            if hasattr(model, "question_augmenter"):
                record["validation_importance"] = self.save_importances(model, val_ds, phase)
        self.run_state.save(phase, record, student)
        self.run_state.clear_backup(phase)
        if teachers is None:
            os.makedirs(os.path.dirname(s0_cache), exist_ok=True)
            with open(s0_cache + ".tmp", "w") as f:
                json.dump(record, f)
            os.replace(s0_cache + ".tmp", s0_cache)
        return student, record

    def evaluate(self, model, data, val_ds, test_ds):
        """`{"test": metrics, "validation": metrics}` of `model` (`Task.metrics`)."""
        return {split: self.task.metrics(self.task.labels(data, split), predict_split(model, ds))
                for split, ds in (("test", test_ds), ("validation", val_ds))}

    def save_importances(self, model, val_ds, phase):
        """The final model's importances on the validation split: `.npz` and a summary."""
        values = importances(model, val_ds)
        path = os.path.join(self.config.output_dir, f"importance_{phase}.npz")
        np.savez(path, **values)
        passed = pass_fractions(model, values)
        return {
            name: {"file": os.path.basename(path), "mean": float(v.mean()),
                   "quantiles": [float(q) for q in np.quantile(v, [0.1, 0.5, 0.9])],
                   "pass_fraction": passed[name]}
            for name, v in values.items()
        }

    # --- The whole job --------------------------------------------------------

    def run(self):
        c = self.config
        configure_runtime(c.num_cpu_devices, c.deterministic)
        if self.strategy is None:
            self.strategy = make_strategy(c.strategy, c.num_cpu_devices)
        role = WorkerRole(self.strategy)
        if not role.multi or self.comparison:  # a side run works in its parent's folders
            return self._run()
        return self._run_as_worker(role)

    def _run_as_worker(self, role):
        """One worker of several (pipeline/workers.py): the chief writes OUTPUT_DIR and
        CACHE_DIR, the others a private copy; a lost peer ends the job with one line."""
        c = self.config
        private = None
        if role.is_chief:
            self.log(f"{role.name} of {role.num_workers} workers (the chief): "
                     f"writes {c.output_dir}")
        else:
            private, output_dir, cache_dir = private_copy(c, role)
            self.log(f"{role.name} of {role.num_workers} workers: works in a copy of the chief's "
                     f"folders, {private} (deleted at the end); the chief writes {c.output_dir}")
            self.config = dataclasses.replace(c, output_dir=output_dir, cache_dir=cache_dir)
            self.run_state = RunState(self.config, log=self.log)
        try:
            agree_on_state(self.strategy, role, state_summary(self.config))
            return self._run()
        except Exception as error:  # noqa: BLE001 - re-raised unless a peer was lost
            cause = peer_error(error)
            if cause is None:
                raise
            raise lost_worker_error(cause, role, c.output_dir) from error
        finally:
            if private:
                shutil.rmtree(private, ignore_errors=True)

    def _run(self):
        c = self.config
        replicas = self.strategy.num_replicas_in_sync
        if c.batch_size % replicas:
            raise ValueError(f"--batch_size={c.batch_size} (the global batch) must be a multiple "
                             f"of the {replicas} replicas of --strategy={c.strategy}.")
        if replicas > 1:
            self.log(f"strategy {c.strategy}: {replicas} replicas, "
                     f"{c.batch_size // replicas} rows per replica")
        os.makedirs(c.output_dir, exist_ok=True)
        self.run_state.start()
        start = time.time()
        data = self.data = self.load_data()
        extra_features = {split: {} for split in SPLITS}

        store = self.task.teacher_store(data, extra_features)
        teachers, teacher_info = [], {}
        for name in c.teachers:
            with self._phase(f"teacher_{name}"), self._scope():
                # --mixed_precision=bf16: teachers compute in bfloat16 (float32 weights); the
                # student and the augmenters stay float32, as every loss (docs/performance.md).
                keras.mixed_precision.set_global_policy(
                    "mixed_bfloat16" if c.mixed_precision == "bf16" else "float32")
                try:
                    teacher, info = store.get(name)
                except ValueError as error:
                    raise _teacher_error(name, error) from error
                finally:
                    keras.mixed_precision.set_global_policy("float32")
            teachers.append(teacher)
            teacher_info[name] = info
            metric = self.task.primary_metric
            how = ("cached" if info["loaded_from_cache"]
                   else "zero-shot" if info.get("zero_shot") else "trained")
            self.log(f"teacher {name}: test {self.task.metric_label(metric)} "
                     f"{self.task.format_metric(metric, info['test'][metric])} ({how}, "
                     f"{info['num_params'] / 1e6:.2f}M params)")
        best_teacher = self.task.best_teacher(teacher_info)
        if c.only_teachers:
            with open(os.path.join(c.output_dir, "teachers.json"), "w") as f:
                json.dump(teacher_info, f, indent=2)
            return {"teachers": teacher_info}
        self.prefix_caches = self.build_prefix_caches(teachers, extra_features)
        self.output_caches = self.build_output_caches(teachers, extra_features)

        runs = []
        for seed in c.seeds:
            student, s0 = self.train_student(data, extra_features, seed)
            student, distilled = self.train_student(data, extra_features, seed, teachers)
            grr = {m: self.task.grr(m, distilled["test"][m], s0["test"][m],
                                    teacher_info[best_teacher]["test"][m])
                   for m in self.task.metric_names}
            runs.append({"seed": seed, "s0": s0, "distilled": distilled, "grr": grr})
            m, label = self.task.primary_metric, self.task.metric_label(self.task.primary_metric)
            self.log(f"seed {seed}: S0 {label} {self.task.format_metric(m, s0['test'][m])}  "
                     f"distilled {label} {self.task.format_metric(m, distilled['test'][m])}  GRR "
                     + ("undefined" if grr[m] is None else f"{100 * grr[m]:.1f} %"))
            if c.export_student and seed == c.seeds[0]:
                path = os.path.join(c.output_dir, "student")
                from diverse_distill.export import export_student

                export_student(student, path)
                self.log(f"student SavedModel: {path}")

        comparisons = self.run_comparisons(teacher_info, best_teacher)
        metrics = self.summarise(data, teacher_info, best_teacher, runs, time.time() - start)
        if comparisons:
            metrics["comparisons"] = comparisons
        curves = None if self.comparison else self.plot_learning_curves(runs, comparisons)
        if curves:
            metrics["learning_curves"] = curves
        path = os.path.join(c.output_dir, "metrics.json")
        with open(path + ".tmp", "w") as f:
            json.dump(metrics, f, indent=2)
        os.replace(path + ".tmp", path)
        if not self.comparison:
            self.log(self.summary_text(metrics))
        return metrics

    def run_comparisons(self, teacher_info, best_teacher):
        """`--compare_methods`: each method on the same teachers, S0 and seeds.

        Each runs as a job of its own under OUTPUT_DIR/compare_<method> (cached teachers
        and S0 are reused; it resumes like the main job), at its defaults except alpha:
        the one chosen for it on validation (`COMPARISON_ALPHAS`, else `--alpha`). A
        single-teacher method distils the committee's best teacher. Returns
        `{method: its summary}`.
        """
        c = self.config
        comparisons = {}
        for method in c.compare_methods:
            from diverse_distill.pipeline.method_params import (COMPARISON_ALPHAS, method_class,
                                                                takes_argument)

            teacher_index = -1
            if takes_argument(method_class(method), "teacher_index") and len(c.teachers) > 1:
                teacher_index = list(c.teachers).index(best_teacher)
            config = dataclasses.replace(
                c, method=method, method_params="", teacher_index=teacher_index,
                alpha=COMPARISON_ALPHAS.get(method, c.alpha),
                compare_methods=(), export_student=False,
                output_dir=os.path.join(c.output_dir, f"compare_{method}"))
            self.log(f"[compare_{method}] {method} (alpha {config.alpha:g}) on the same "
                     f"teachers, S0 and seeds ({config.output_dir})")
            metrics = DistillationJob(config, log=lambda m, p=f"  [{method}] ": self.log(p + m),
                                      comparison=True, strategy=self.strategy).run()
            comparisons[method] = {
                "output_dir": config.output_dir,
                "alpha": config.alpha,
                "teacher": (c.teachers[teacher_index] if teacher_index >= 0
                            else "+".join(c.teachers)),
                "summary": {k: metrics["summary"][k] for k in
                            ("distilled", "grr_of_means", "paired_difference")},
                "val_loss": [r["distilled"]["history"].get("val_loss", [])
                             for r in metrics["runs"]],
            }
        return comparisons

    def plot_learning_curves(self, runs, comparisons):
        """OUTPUT_DIR/learning_curves.png: validation loss per evaluation, S0 vs distilled."""
        c = self.config
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        curves = {"S0": [r["s0"]["history"].get("val_loss", []) for r in runs],
                  f"{c.method} ({'+'.join(c.teachers)})":
                      [r["distilled"]["history"].get("val_loss", []) for r in runs]}
        for method, info in comparisons.items():
            curves[f"{method} ({info['teacher']})"] = info["val_loss"]
        if not any(len(v) for seeds in curves.values() for v in seeds):
            return None
        fig, ax = plt.subplots(figsize=(6, 4))
        for label, per_seed in curves.items():
            per_seed = [v for v in per_seed if v]
            length = min(len(v) for v in per_seed)
            mean = np.mean([v[:length] for v in per_seed], axis=0)
            ax.plot([c.eval_every * (i + 1) for i in range(length)], mean, marker="o", label=label)
        ax.set_xlabel("step")
        ax.set_ylabel("validation loss" + (" (mean over seeds)" if len(runs) > 1 else ""))
        ax.set_title(f"{self.task.title}: learning curves")
        ax.legend()
        fig.tight_layout()
        path = os.path.join(c.output_dir, "learning_curves.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path

    def summarise(self, data, teacher_info, best_teacher, runs, seconds):
        c = self.config
        names = self.task.metric_names
        summary = {
            "s0": {m: mean_std([r["s0"]["test"][m] for r in runs]) for m in names},
            "distilled": {m: mean_std([r["distilled"]["test"][m] for r in runs]) for m in names},
            # GRR per seed is undefined where S0 beats the teacher (None); the GRR of the
            # seed means is the more stable summary when the gap is small.
            "grr": {m: mean_std([r["grr"][m] for r in runs if r["grr"][m] is not None])
                    for m in names},
            "grr_of_means": {m: self.task.grr(m, np.mean([r["distilled"]["test"][m] for r in runs]),
                                              np.mean([r["s0"]["test"][m] for r in runs]),
                                              teacher_info[best_teacher]["test"][m])
                             for m in names},
            "paired_difference": {m: mean_std([r["distilled"]["test"][m] - r["s0"]["test"][m]
                                               for r in runs]) for m in names},
        }
        for name in c.teachers:
            for key in (f"importance_{name}", f"pass_fraction_{name}"):
                values = [r["distilled"][key] for r in runs if key in r["distilled"]]
                if values:
                    summary[key] = mean_std(values)
        return {
            "config": c.to_dict(),
            "task": self.task.name,
            "metric_names": list(names),
            "method": c.method,
            "teachers": {n: {k: v for k, v in i.items() if k != "history"} for n, i in teacher_info.items()},
            "best_teacher": best_teacher,
            "num_examples": data.num_examples,
            "runs": runs,
            "summary": summary,
            "wall_seconds": {**self.timings, "total": seconds},
            "versions": _versions(),
        }

    def summary_text(self, metrics):
        """The summary `bin/train` prints: every model's test metrics, GRR, the notes."""
        s, task = metrics["summary"], self.task
        names, m = task.metric_names, task.primary_metric
        lines = ["", "=" * 72, f"{task.title}  method={metrics['method']}  "
                 f"seeds={metrics['config']['seeds']}  test split "
                 f"({metrics['num_examples']['test']} {task.example_noun})",
                 "-" * 72, f"{'model':<28}{names[0].upper():>18}"
                 + "".join(f"{n.upper():>{_column(n)}}" for n in names[1:])]

        def row_text(label, first, first_std, rest):
            spread = "" if first_std is None else f" ± {first_std:.4f}"
            return (f"{label:<28}{first:>{18 - len(spread)}.4f}{spread}"
                    + "".join(f"{v:>{_column(n)}.4f}" for n, v in zip(names[1:], rest)))

        for name, info in metrics["teachers"].items():
            t = info["test"]
            lines.append(row_text(f"teacher {name}", t[m], None, [t[n] for n in names[1:]]))
        rows = [("S0 (no distillation)", s["s0"]), ("distilled student", s["distilled"])]
        for method, info in metrics.get("comparisons", {}).items():
            alpha = f" α={info['alpha']:g}" if info.get("alpha") is not None else ""
            rows.append((f"{method}{alpha} ({info['teacher']})", info["summary"]["distilled"]))
        for label, row in rows:
            lines.append(row_text(label, row[m]["mean"], row[m]["std"],
                                  [row[n]["mean"] for n in names[1:]]))

        def grr_text(g):
            return "undefined: the best teacher does not beat S0" if g is None else f"{100 * g:.1f} %"

        g, d = s["grr_of_means"][m], s["paired_difference"][m]
        lines.append(f"distilled - S0 ({m.upper()}, paired by seed): {d['mean']:+.4f} ± {d['std']:.4f}")
        lines.append(f"GRR ({m.upper()} of the seed means, vs {metrics['best_teacher']}): {grr_text(g)}")
        for method, info in metrics.get("comparisons", {}).items():
            lines.append(f"GRR of {method} ({info['teacher']}): "
                         f"{grr_text(info['summary']['grr_of_means'][m])}")
        if metrics.get("learning_curves"):
            lines.append(f"learning curves: {metrics['learning_curves']}")
        for key, value in s.items():
            if key.startswith(("importance_", "pass_fraction_")):
                lines.append(f"{key}: {value['mean']:.3f}")
        note = task.schedule_note()
        if note:
            lines.append(note)
        lines.append(f"wall time: {metrics['wall_seconds']['total']:.0f} s")
        lines.append("=" * 72)
        return "\n".join(lines)
