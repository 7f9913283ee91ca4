"""What a job learns: the per-task part of `DistillationJob` (data, student, teachers, scores)."""

import numpy as np

from diverse_distill.metrics import gap_recovery_rate


class Task:
    """The per-task part of a `DistillationJob`; the job itself is task-independent.

    A task loads its data, builds the student and a teacher store, and says
    how models are trained (loss, optimiser) and scored (metrics and their
    direction). The job runs teachers -> S0 -> method -> evaluation -> GRR
    -> export with it, the same for every task. Subclasses set the class
    attributes and implement the methods that raise `NotImplementedError`.

    Class attributes:
        name: str. The `--task` value.
        title: str. What the summary and the charts call the task.
        metric_names: tuple of str. Test metrics of every model; the first is
            the primary one (best teacher, GRR headline, learning curves).
        higher_is_better: dict metric -> bool.
        label_key: str. The key of the labels in a split of the data.
        example_noun: str. What one test example is called ("ratings").

    Args:
        config: `JobConfig`.
        log: callable taking a str. Defaults to `print`.

    Example:
    ```python
    from diverse_distill.pipeline.job_config import JobConfig
    from diverse_distill.pipeline.task import make_task

    task = make_task(JobConfig(task="fashion_mnist", teachers=("vit",)))
    task.primary_metric, task.higher_is_better["accuracy"]  # ('accuracy', True)
    task.best_teacher({"vit": {"test": {"accuracy": 0.9}},
                       "cnn": {"test": {"accuracy": 0.92}}})  # 'cnn'
    ```
    """

    name = ""
    title = ""
    metric_names = ()
    higher_is_better = {}
    label_key = ""
    example_noun = "examples"

    def __init__(self, config, log=print):
        self.config = config
        self.log = log

    @property
    def primary_metric(self):
        return self.metric_names[0]

    # --- What subclasses provide --------------------------------------------

    def load_data(self):
        """The data: an object with `num_examples`, `train`/`validation`/`test` dicts
        and `as_dataset(split, batch_size, extra_features=...)`."""
        raise NotImplementedError

    def build_student(self, data, seed):
        raise NotImplementedError

    def teacher_store(self, data, extra_features):
        """An object whose `get(name)` returns `(teacher, info)` (info: metrics per split)."""
        raise NotImplementedError

    def loss(self):
        """The task loss every model trains with (a Keras loss or its name)."""
        raise NotImplementedError

    def optimizer(self, learning_rate, steps):
        """A new optimiser for `steps` steps at `learning_rate`."""
        raise NotImplementedError

    def metrics(self, labels, outputs):
        """`{metric: float}` of the model outputs `outputs` against `labels`."""
        raise NotImplementedError

    def caches_prefix(self, teacher):
        """Whether the job caches `teacher`'s prefix (worth it when the prefix costs)."""
        raise NotImplementedError

    def teacher_inputs(self, data, extra_features, split):
        """The features a teacher reads for every example of `split` (for its caches)."""
        raise NotImplementedError

    # --- Shared ---------------------------------------------------------------

    def labels(self, data, split):
        return getattr(data, split)[self.label_key]

    def map_train(self, dataset, seed):
        """The train stream after the task's own per-batch steps (none by default)."""
        del seed
        return dataset

    def map_eval(self, dataset):
        """A validation/test dataset after the task's own per-batch steps (none by default)."""
        return dataset

    def schedule_note(self):
        """A line for the summary when the run is shortened; `None` by default."""
        return None

    def best_teacher(self, teacher_info):
        """The name of the teacher with the best primary test metric."""
        sign = 1 if self.higher_is_better[self.primary_metric] else -1
        return max(teacher_info, key=lambda n: sign * teacher_info[n]["test"][self.primary_metric])

    def grr(self, metric, distilled, undistilled, best_teacher):
        """GRR of `metric` in its direction; `None` where the teacher does not beat S0."""
        try:
            return gap_recovery_rate(distilled, undistilled, best_teacher,
                                     higher_is_better=self.higher_is_better[metric])
        except ValueError:
            return None

    def metric_label(self, metric):
        """What messages call `metric` ("MSE", "accuracy")."""
        return metric.upper() if metric in ("mse", "rmse", "mae") else metric.replace("_", "-")

    def format_metric(self, metric, value):
        return f"{100 * value:.2f} %" if metric == "accuracy" else f"{value:.4f}"


def make_task(config, log=print):
    """The `Task` of `config.task`."""
    if config.task == "movielens":
        from diverse_distill.pipeline.movielens_task import MovieLensTask

        return MovieLensTask(config, log=log)
    from diverse_distill.pipeline.image_task import ImageClassificationTask

    return ImageClassificationTask(config, log=log)


def mean_std(values):
    """`{"mean", "std" (ddof 1; 0 for one value), "values"}` of a list of floats."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return {"mean": None, "std": None, "values": []}
    return {"mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "values": [float(v) for v in values]}
