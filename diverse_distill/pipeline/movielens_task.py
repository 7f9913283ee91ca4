"""MovieLens-100K rating regression: the `Task` of `--task=movielens`."""

import keras
import numpy as np

from diverse_distill.data.movielens import load_movielens
from diverse_distill.metrics import regression_metrics
from diverse_distill.pipeline.task import Task
from diverse_distill.pipeline.teacher_factory import TeacherStore, build_mlp
from diverse_distill.students.mlp_student import MLPStudent
from diverse_distill.teachers.mlp_teacher import MLPTeacher


def subsample_train(data, n, seed):
    """Keeps `n` seeded train rows of a `MovieLensData` (all when `n` is 0 or too large)."""
    if not n or n >= data.num_examples["train"]:
        return data
    keep = np.sort(np.random.default_rng(seed).permutation(data.num_examples["train"])[:n])
    data.tables["train"] = data.tables["train"].take(keep)
    data.train = {k: v[keep] for k, v in data.train.items()}
    return data


class MovieLensTask(Task):
    """Rating prediction on MovieLens-100K: MLP student, MLP and language teachers, MSE.

    Every model trains with the squared error and Adagrad (the paper's); the
    test metrics are MSE (primary), RMSE and MAE, all lower-is-better.

    Example:
    ```python
    from diverse_distill.data import write_synthetic_ml100k
    from diverse_distill.pipeline.job_config import JobConfig
    from diverse_distill.pipeline.movielens_task import MovieLensTask

    folder = write_synthetic_ml100k("/tmp/ml-100k-task", num_users=20, num_movies=30,
                                    num_ratings=400)
    task = MovieLensTask(JobConfig(movielens_dir=folder, id_embedding_dim=8,
                                   student_hidden_units=(8,)))
    data = task.load_data()
    student = task.build_student(data, seed=0)
    task.metrics([3.0, 4.0], [3.5, 4.0])  # {'mse': 0.125, 'rmse': 0.3535..., 'mae': 0.25}
    ```
    """

    name = "movielens"
    title = "MovieLens-100K"
    metric_names = ("mse", "rmse", "mae")
    higher_is_better = {"mse": False, "rmse": False, "mae": False}
    label_key = "rating"
    example_noun = "ratings"

    def load_data(self):
        c = self.config
        data = load_movielens(
            movielens_dir=None if c.use_tfds else c.movielens_dir,
            use_tfds=c.use_tfds, split_seed=c.split_seed,
            tfds_data_dir=c.tfds_data_dir or None,
        )
        return subsample_train(data, c.max_train_examples, c.split_seed)

    def build_student(self, data, seed):
        keras.utils.set_random_seed(seed)
        c = self.config
        return build_mlp(c, data, c.student_hidden_units, name="student",
                         dropout=c.student_dropout, cls=MLPStudent,
                         features=c.student_feature_set)

    def teacher_store(self, data, extra_features):
        return TeacherStore(self.config, data, extra_features)

    def loss(self):
        return "mse"

    def optimizer(self, learning_rate, steps):
        del steps
        return keras.optimizers.Adagrad(learning_rate)

    def metrics(self, labels, outputs):
        return regression_metrics(labels, outputs)

    def caches_prefix(self, teacher):
        return not isinstance(teacher, MLPTeacher)  # nothing before an MLP's injection point

    def teacher_inputs(self, data, extra_features, split):
        return extra_features[split]  # a language teacher's tokens (MLPs are not cached)

    def schedule_note(self):
        c = self.config
        if (c.steps, c.teacher_steps) == (8000, 16000):
            return None
        return (f"shortened schedule: students {c.steps} steps, teachers {c.teacher_steps} "
                "(the paper's: 8,000 and 16,000; e.g. "
                "--flagfile=configs/movielens_ids_student_mlp_l.cfg)")
