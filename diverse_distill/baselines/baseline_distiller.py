"""The life cycle every baseline distiller shares with `DistillationModel`."""

import keras
import tensorflow as tf
from keras import ops

from diverse_distill.distill.losses import (
    global_mean,
    num_replicas,
    per_sample_loss_fn,
    soft_target_loss_fn,
)
from diverse_distill.distill.student_distiller import StudentDistiller
from diverse_distill.students.student import student_features, validate_student

SPLIT_TEACHER_ATTRIBUTES = ("prefix", "suffix", "native_question", "answer_dim")


def all_reduce_sum(values):
    """Sums a (nested) value over the replicas; the identity on one replica.

    Per-replica losses are already divided by the global batch size, so the
    sum of a per-replica loss (or of its gradient) is its global value.
    """
    context = tf.distribute.get_replica_context()
    if context is None:  # cross-replica context: nothing to reduce
        return values
    return context.all_reduce(tf.distribute.ReduceOp.SUM, values)


squared_error = soft_target_loss_fn("mse")  # (a, b) -> (batch,): mean over non-batch axes


def dense_gradients(gradients, variables):
    """Gradients as dense tensors, zeros where a variable got none."""
    return [
        tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
        for g, v in zip(gradients, variables)
    ]


def select_single_teacher(teachers, teacher_index, method):
    """The one teacher of a single-teacher method.

    `teachers` is a teacher or a list; with more than one teacher,
    `teacher_index` must say which to use.
    """
    teachers = as_teacher_list(teachers)
    if teacher_index is None:
        if len(teachers) != 1:
            raise ValueError(
                f"{method} distils a single teacher, got {len(teachers)} "
                f"({[getattr(t, 'name', t) for t in teachers]}). Pass one teacher, or "
                "`teacher_index=` to pick one from the committee."
            )
        return teachers[0]
    if not 0 <= int(teacher_index) < len(teachers):
        raise ValueError(
            f"`teacher_index` {teacher_index} is out of range for {len(teachers)} teacher(s)."
        )
    return teachers[int(teacher_index)]


def as_teacher_list(teachers):
    if teachers is None:
        return []
    if isinstance(teachers, (list, tuple)):
        return list(teachers)
    return [teachers]


class BaselineDistiller(StudentDistiller):
    """Base class of the baselines: a student distilled from frozen teachers.

    It gives every baseline the life cycle of `DistillationModel`:
    `Cls(student, teachers, **hparams)`, `compile(optimizer, loss,
    metrics=None)`, `fit`, `evaluate` (the student alone: `loss` =
    `task_loss` and the compiled metrics), `predict`/`call` (the student) and
    `export_student(path)`.

    One training step minimises `task_loss + alpha * distill_loss` (plus the
    student's own regularisation losses) over the student's trainable
    variables and the method's auxiliary variables (projectors, weighting
    layers), with the single optimizer given to `compile`, built there on
    that explicit list. Teachers are frozen on construction and always
    called with `training=False`; their outputs enter under stop-gradient.

    Losses are per-sample values reduced with `tf.nn.compute_average_loss`
    (a mean over the *global* batch, honouring `sample_weight`); the loss
    trackers multiply by the number of replicas so that logs report the
    per-batch mean, as `DistillationModel` does. Quantities a method derives
    from the whole batch (a gradient cosine, a teacher weighting) are
    all-reduced over replicas, so every replica takes the same decision.

    Subclasses implement `distillation_terms` and may add auxiliary layers
    (`auxiliary_variables`), statistics (`stat_names`) and extra losses
    (`extra_loss_names`), each logged under its name during training.

    Args:
        student: a student following the student contract
            (`diverse_distill.students.Student`).
        teachers: a teacher or a list of teachers with unique names.
        alpha: float >= 0. Weight of the distillation term. Defaults to `1.0`.
        needs_split_teachers: bool. Whether the method reads the teachers'
            hidden states (split-teacher contract). Defaults to `False`:
            only `teacher(x)` is used, so any frozen Keras model works.
        output_caches: list of `TeacherOutputCache` or `None`. Teachers
            whose outputs are cached: on a batch that carries a cache's
            features (its train split), the teacher's hidden state and
            prediction are read from them and the teacher is not run.
            Defaults to `None`.
        **kwargs: passed to `keras.Model`.
    """

    def __init__(self, student, teachers, alpha=1.0, needs_split_teachers=False,
                 output_caches=None, **kwargs):
        super().__init__(**kwargs)
        method = type(self).__name__
        validate_student(student)
        teachers = as_teacher_list(teachers)
        if not teachers:
            raise ValueError(f"`teachers` is empty: {method} needs at least one teacher.")
        for teacher in teachers:
            if needs_split_teachers:
                missing = [a for a in SPLIT_TEACHER_ATTRIBUTES if not hasattr(teacher, a)]
                if missing:
                    raise ValueError(
                        f"Teacher {getattr(teacher, 'name', teacher)!r} lacks {missing}: "
                        f"{method} reads the teachers' hidden states, so they must follow "
                        "the split-teacher contract (diverse_distill.teachers.SplitTeacher)."
                    )
            elif not callable(teacher):
                raise ValueError(f"Teacher {teacher!r} is not callable.")
        names = [getattr(t, "name", f"teacher_{k}") for k, t in enumerate(teachers)]
        if len(set(names)) != len(names):
            raise ValueError(f"Teacher names must be unique, got {names}.")
        if alpha is None or float(alpha) < 0:
            raise ValueError(f"`alpha` must be >= 0, got {alpha}.")

        caches = {cache.name: cache for cache in output_caches or []}
        unknown = sorted(set(caches) - set(names))
        if unknown:
            raise ValueError(f"`output_caches` of {unknown} match no teacher (teachers: {names}).")

        # === Config ===
        self.alpha = float(alpha)
        self.teacher_names = names
        self.output_caches = caches

        # === Models ===
        self.student = student
        self.teachers = teachers
        for teacher in teachers:
            if hasattr(teacher, "freeze"):
                teacher.freeze()
            else:
                teacher.trainable = False

        # === Loss trackers (history keys) ===
        self.total_loss_tracker = keras.metrics.Mean(name="loss")
        self.task_loss_tracker = keras.metrics.Mean(name="task_loss")
        self.distill_loss_tracker = keras.metrics.Mean(name="distill_loss")
        self.extra_loss_trackers = [
            keras.metrics.Mean(name=name) for name in self.extra_loss_names()
        ]
        self.stat_trackers = [keras.metrics.Mean(name=name) for name in self.stat_names()]
        self.built = True

    # --- What a method adds -----------------------------------------------

    def extra_loss_names(self):
        """Names of additional loss terms (global-batch means) to log."""
        return []

    def stat_names(self):
        """Names of additional statistics (plain means) to log."""
        return []

    def distillation_terms(self, x, y, student, sample_weight=None, training=True):
        """The method's distillation term.

        Args:
            x, y, sample_weight: the batch.
            student: dict with the student's `representation`, `hidden` and
                `prediction` for `x`.
            training: whether this is a training step.

        Returns:
            `(distill_per_sample, extra_losses, stats)`: the per-sample
            distillation loss (batch,), a dict of per-sample extra losses
            (named as `extra_loss_names`) and a dict of statistics (named as
            `stat_names`; tensors of any shape, averaged).
        """
        raise NotImplementedError

    # --- Variable groups -------------------------------------------------

    @property
    def student_variables(self):
        return self.student.trainable_variables

    @property
    def auxiliary_variables(self):
        """Variables the method trains with the student (projectors, weightings)."""
        return []

    @property
    def trained_variables(self):
        return self.student_variables + self.auxiliary_variables

    # --- Teachers ---------------------------------------------------------

    def _cached_outputs(self, teacher, x):
        cache = self.output_caches.get(getattr(teacher, "name", None))
        if cache is None or not isinstance(x, dict) or not cache.covers(x):
            return None
        return cache.outputs(x)

    def teacher_prediction(self, teacher, x, like=None):
        """`sg(teacher(x))`, the unmodified teacher's prediction, shaped like `like`.

        Read from the teacher's `TeacherOutputCache` when `x` carries it.
        """
        cached = self._cached_outputs(teacher, x)
        if cached is None:
            prediction = ops.cast(teacher(x, training=False), "float32")
        else:
            prediction = cached[1]
        if like is not None:
            prediction = ops.reshape(prediction, ops.shape(like))
        return ops.stop_gradient(prediction)

    def teacher_hidden_and_prediction(self, teacher, x):
        """`sg` of the teacher's own last hidden state and prediction.

        `suffix(native_question(x, prefix(x)), prefix(x))`: the teacher's
        unmodified forward pass, read at its answer point (or read from the
        teacher's `TeacherOutputCache` when `x` carries it).
        """
        cached = self._cached_outputs(teacher, x)
        if cached is None:
            context = teacher.prefix(x)
            cached = teacher.suffix(teacher.native_question(x, context), context)
        hidden, prediction = cached
        return (
            ops.stop_gradient(ops.cast(hidden, "float32")),
            ops.stop_gradient(ops.cast(prediction, "float32")),
        )

    # --- Keras API --------------------------------------------------------

    def compile(self, optimizer="adagrad", loss="mse", metrics=None, **kwargs):
        """Configures training.

        Args:
            optimizer: the optimizer of the student and the method's
                auxiliary layers (name or instance).
            loss: the task loss `ℓ` (name, function or `keras.losses.Loss`),
                used per sample.
            metrics: metrics of the student's prediction (as in Keras).
            **kwargs: passed to `keras.Model.compile` (e.g. `jit_compile`,
                `run_eagerly`).
        """
        if loss is None:
            raise ValueError(
                f"{type(self).__name__}.compile needs a task `loss`, e.g. loss='mse'."
            )
        super().compile(optimizer=optimizer, metrics=metrics, **kwargs)
        self.task_loss_fn = per_sample_loss_fn(loss)
        # Predictions against soft targets: squared error, or KL for a classification loss.
        self.soft_target_fn = soft_target_loss_fn(loss)
        # Build the optimizer here on its explicit variables: building inside
        # the replicated train step fails under tf.distribute.
        self.optimizer.build(self.trained_variables)

    def loss_trackers(self):
        return [
            self.total_loss_tracker,
            self.task_loss_tracker,
            self.distill_loss_tracker,
            *self.extra_loss_trackers,
            *self.stat_trackers,
        ]

    # --- The training step -------------------------------------------------

    def compute_losses(self, x, y, sample_weight=None, training=True):
        """All loss terms for one batch (per replica, scaled to the global batch).

        Returns a dict with `y_pred`, `task_loss`, `distill_loss`,
        `regularization_loss`, `extra_losses` (dict of scalars) and `stats`.
        """
        representation, hidden = student_features(self.student, x, training=training)
        # Losses in float32 whatever the dtype policy (e.g. mixed_bfloat16).
        y_pred = ops.cast(self.student.head(hidden), "float32")
        task_per_sample = self.task_loss_fn(y, y_pred)
        student = {"representation": representation, "hidden": hidden, "prediction": y_pred}
        distill_per_sample, extra, stats = self.distillation_terms(
            x, y, student, sample_weight=sample_weight, training=training
        )
        regularization = (
            tf.nn.scale_regularization_loss(tf.add_n(self.student.losses))
            if self.student.losses
            else tf.constant(0.0)
        )
        return {
            "y_pred": y_pred,
            "task_loss": global_mean(task_per_sample, sample_weight),
            "distill_loss": global_mean(distill_per_sample, sample_weight),
            "regularization_loss": regularization,
            "extra_losses": {
                name: global_mean(value, sample_weight) for name, value in extra.items()
            },
            "stats": dict(stats),
        }

    def student_objective(self, losses):
        return losses["task_loss"] + self.alpha * losses["distill_loss"] + losses[
            "regularization_loss"
        ]

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        variables = self.trained_variables
        with tf.GradientTape() as tape:
            losses = self.compute_losses(x, y, sample_weight, training=True)
            loss = self.student_objective(losses)
        gradients = dense_gradients(tape.gradient(loss, variables), variables)
        self.optimizer.apply(gradients, variables)
        self.after_update(x, y, sample_weight, losses)
        return self.finish_train_step(x, y, sample_weight, losses, loss)

    def after_update(self, x, y, sample_weight, losses):
        """Hook run after the optimizer step (may add to `losses['stats']`)."""

    def finish_train_step(self, x, y, sample_weight, losses, loss):
        # Losses are divided by the number of replicas (global-batch means);
        # the trackers report the per-batch mean, so multiply it back.
        n = num_replicas()
        self.total_loss_tracker.update_state(loss * n)
        self.task_loss_tracker.update_state(losses["task_loss"] * n)
        self.distill_loss_tracker.update_state(losses["distill_loss"] * n)
        for tracker in self.extra_loss_trackers:
            tracker.update_state(losses["extra_losses"][tracker.name] * n)
        for tracker in self.stat_trackers:
            tracker.update_state(losses["stats"][tracker.name])
        self.compute_metrics(x, y, losses["y_pred"], sample_weight)
        return self._logs(training=True)
