"""DiverseDistill: a student learns from a committee of frozen, split teachers."""

import math

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
from diverse_distill.layers.answer_augmenter import AnswerAugmenter
from diverse_distill.layers.question_augmenter import QuestionAugmenter
from diverse_distill.students.student import student_features, validate_student

IMPORTANCE_NORMALIZATIONS = ("sum", "none")
THRESHOLD_ON = ("importance", "share")  # what `importance_threshold` is compared with
IMPORTANCES = ("learned", "uniform")  # ablations: see the class docstring
QUESTIONS = ("augmented", "native")
DISTANCES = ("mean", "sum", "l2")  # D(a, h) over the student's hidden dims
INJECTIONS = ("replace", "add")  # the question replaces, or is added to, the teacher's state
ANSWER_TARGETS = ("label", "teacher", "both")  # what head_S(a_k) is fitted to in L_reg
IMPORTANCE_OBJECTIVES = ("weighted", "relative")
# `variant` -> the defaults of the options that make the method teach (docs/method.md).
# "paper": the method as the paper describes it; "tuned": the combination chosen on the
# validation split (docs/results/quality.md: on MLP-L, seed 0, the best of the six listed
# configurations, validation MSE 0.8401 against the paper's 0.8904 and LD's best 0.8422).
# An argument given explicitly wins.
VARIANTS = {
    "paper": {"distance": "mean", "injection": "replace", "answer_target": "label",
              "prediction_weight": 0.0, "module_warmup_steps": 0,
              "importance_objective": "weighted", "alignment": "dot"},
    "tuned": {"distance": "mean", "injection": "add", "answer_target": "teacher",
              "prediction_weight": 16.0, "module_warmup_steps": 0,
              "importance_objective": "weighted", "alignment": "dot"},
}
_TEACHER_ATTRIBUTES = ("prefix", "suffix", "injection_dim", "answer_dim")


def _gather_rows(structure, indices):
    return tf.nest.map_structure(lambda t: tf.gather(t, indices), structure)


def _rows_mask(indices, num_rows):
    """float32 `(num_rows,)`: 1.0 at `indices`, 0.0 elsewhere."""
    return _scatter_rows(tf.ones_like(indices, "float32"), indices, num_rows)


def _scatter_rows(values, indices, num_rows):
    """`values` (one row per index) at rows `indices` of zeros with `num_rows` rows."""
    shape = tf.concat([[num_rows], tf.shape(values)[1:]], 0)
    return tf.scatter_nd(indices[:, None], values, shape)


class DistillationModel(StudentDistiller):
    """Distils a committee of frozen split teachers into a student.

    Each step (METHOD.md, Eq. 1–4): the Question Augmenter turns the
    student's representation `sg(s)` into one question `q_k` and one
    importance `w_k` per teacher; teacher k answers from its injection point
    (`suffix(q_k, prefix(x))`, frozen, `training=False`); the Answer
    Augmenter maps its answer to `a_k` in the student's hidden space. Then

    - the student minimises `L_task + alpha * L_distill` with
      `L_distill = Σ_k sg(w_k) · mean((sg(a_k) - h_S)²)`;
    - the distillation module (both augmenters) minimises `beta * L_reg` with
      `L_reg = Σ_k ŵ_k · [ℓ(y, ŷ_k^T) + ℓ(y, head_S(a_k))]`, where `ŷ_k^T` is
      the teacher's own prediction from its answer and `head_S` the student's
      head, whose weights this term never updates. `ŵ_k = w_k / Σ_j w_j`
      (`importance_normalization="sum"`, the default, which stops all
      importances collapsing to 0) or `ŵ_k = w_k` (`"none"`).

    Each variable group has its own tape and optimizer and sees only its own
    variables; teachers are frozen on construction and never updated.

    With `importance_threshold=τ`, teacher k runs only on the rows where
    `w_k ≥ τ` (`threshold_on="importance"`, the paper) or where its share of
    the committee's importance, scaled so that equal importances give 1,
    `K · w_k / Σ_j w_j ≥ τ` (`threshold_on="share"`): those rows are
    gathered, the teacher's prefix and suffix run on them alone, and their
    loss terms are scattered back; skipped pairs add nothing to `L_distill`
    or `L_reg` (and are left out of the normalisation of `ŵ`). A teacher that
    keeps no row of a batch runs on one stand-in row at zero weight. Gathering
    makes shapes data-dependent, so XLA (`jit_compile`) is turned off when a
    threshold is set. With `keep_fraction=f` instead, teacher k runs on a fixed
    number of rows, the `⌈f · batch⌉` with its largest `w_k` (ties: the first
    rows): the shapes are static, so the step compiles under XLA and on TPU.

    Logged metrics: `loss` (the sum of all terms), `task_loss`,
    `distill_loss`, `reg_loss`, and per teacher `importance_<name>` (mean w)
    and `pass_fraction_<name>` (fraction of rows the teacher ran on).
    `evaluate` reports the student alone (`loss` = `task_loss`).

    Args:
        student: a student exposing `representation(x)`, `hidden(x)`, `head`,
            `representation_dim` and `hidden_dim` (see
            `diverse_distill.students.Student`).
        teachers: list of split teachers (see
            `diverse_distill.teachers.SplitTeacher`), each with a unique name.
        question_augmenter: `QuestionAugmenter` or `None`. Built with
            `embedding_dim`, `num_components` and `intermediate_dim` when
            `None`.
        answer_augmenter: `AnswerAugmenter` or `None`. Built with
            `intermediate_dim` when `None`.
        alpha: float. Weight of `L_distill`. Defaults to `1.0`.
        beta: float. Weight of `L_reg`. Defaults to `1.0`.
        importance_threshold: float in [0, 1] or `None`. Defaults to `None`
            (every teacher runs on every row).
        keep_fraction: float in (0, 1] or `None`. Defaults to `None`. Fixed-size
            skipping: each teacher runs on its top `⌈keep_fraction · batch⌉`
            rows by importance. Not with `importance_threshold` or
            `importance_warmup_steps`.
        importance_warmup_steps: int. Skipping starts after this many
            optimizer steps; before, every teacher runs on every row, so the
            importances can move away from their initial value (a fresh
            sigmoid read-out gives 0.5: a threshold above it would otherwise
            switch every teacher off at step 0, for good). Defaults to `0`.
        importance_normalization: `"sum"` or `"none"`. Defaults to `"sum"`.
        threshold_on: `"importance"` or `"share"`. What `importance_threshold`
            is compared with. Under `importance_normalization="sum"` only the
            ratios of the importances train (`L_reg` sees `w / Σw`), so
            their common level drifts freely and a fixed τ on the raw `w`
            skips an arbitrary fraction (with one teacher, `w` gets no
            gradient at all). `"share"` compares τ with `K · ŵ_k` instead,
            which is scale-free: τ = 0.6 skips a teacher where it gets less
            than 60 % of an equal share; a lone teacher is never skipped.
            τ may then exceed 1 (up to K). Defaults to `"importance"`.
        importance: `"learned"` (the Question Augmenter's `w_k`, the method)
            or `"uniform"` (ablation "no importance": every `w_k = 1`, so
            `L_distill = Σ_k mean((sg(a_k) - h_S)²)` and `ŵ_k = 1/K` under
            `"sum"`; the importance read-outs then get no gradient).
            Defaults to `"learned"`.
        question: `"augmented"` (the Question Augmenter's `q_k`, the method)
            or `"native"` (ablation "fixed question": teacher k answers its
            own question `native_question(x, prefix(x))`, so its answer is
            its unmodified last hidden state and only the Answer Augmenter
            learns; the importances still come from the Question Augmenter).
            Defaults to `"augmented"`.
        embedding_dim, num_components, intermediate_dim, alignment: passed
            to the default augmenters. Defaults to `64`, `4`, `128`, `"dot"`.
        prefix_caches: list of `PrefixCache` or `None`. A teacher with a
            cache whose features are in the batch skips its `prefix` and
            reads its context from them. Defaults to `None`.
        **kwargs: passed to `keras.Model`.

    Example:
    ```python
    student = MLPStudent({"user_id": 10, "item_id": 20}, embedding_dims=4,
                         hidden_units=(8,))
    teacher = MLPTeacher(MLPRecommender({"user_id": 10, "item_id": 20},
                         embedding_dims=8, hidden_units=(16,)), name="mlp_m")
    model = DistillationModel(student, [teacher], alpha=0.5, beta=1.0)
    model.compile(optimizer=keras.optimizers.Adagrad(0.06), loss="mse")
    x = {"user_id": np.arange(8) % 10, "item_id": np.arange(8)}
    history = model.fit(x, np.ones((8, 1)), epochs=1, verbose=0)
    sorted(history.history)[:3]  # ['distill_loss', 'importance_mlp_m', 'loss']
    ```
    """

    def __init__(
        self,
        student,
        teachers,
        question_augmenter=None,
        answer_augmenter=None,
        alpha=1.0,
        beta=1.0,
        importance_threshold=None,
        keep_fraction=None,
        importance_warmup_steps=0,
        importance_normalization="sum",
        threshold_on="importance",
        importance="learned",
        question="augmented",
        embedding_dim=64,
        num_components=4,
        intermediate_dim=128,
        alignment=None,
        prefix_caches=None,
        variant="tuned",
        distance=None,
        injection=None,
        answer_target=None,
        prediction_weight=None,
        module_warmup_steps=None,
        importance_objective=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if variant not in VARIANTS:
            raise ValueError(f"`variant` must be one of {tuple(VARIANTS)}, got {variant!r}.")
        given = {"distance": distance, "injection": injection, "answer_target": answer_target,
                 "prediction_weight": prediction_weight,
                 "module_warmup_steps": module_warmup_steps,
                 "importance_objective": importance_objective, "alignment": alignment}
        options = {k: VARIANTS[variant][k] if v is None else v for k, v in given.items()}
        for label, value, allowed in (
            ("distance", options["distance"], DISTANCES),
            ("injection", options["injection"], INJECTIONS),
            ("answer_target", options["answer_target"], ANSWER_TARGETS),
            ("importance_objective", options["importance_objective"], IMPORTANCE_OBJECTIVES),
        ):
            if value not in allowed:
                raise ValueError(f"`{label}` must be one of {allowed}, got {value!r}.")
        if float(options["prediction_weight"]) < 0:
            raise ValueError(
                f"`prediction_weight` must be >= 0, got {options['prediction_weight']}."
            )
        if int(options["module_warmup_steps"]) < 0:
            raise ValueError(
                f"`module_warmup_steps` must be >= 0, got {options['module_warmup_steps']}."
            )
        self.variant = variant
        self.distance = options["distance"]
        self.injection = options["injection"]
        self.answer_target = options["answer_target"]
        self.prediction_weight = float(options["prediction_weight"])
        self.module_warmup_steps = int(options["module_warmup_steps"])
        self.importance_objective = options["importance_objective"]
        alignment = options["alignment"]
        validate_student(student)
        teachers = list(teachers or [])
        if not teachers:
            raise ValueError("`teachers` is empty: DiverseDistill needs at least one teacher.")
        for teacher in teachers:
            missing = [a for a in _TEACHER_ATTRIBUTES if not hasattr(teacher, a)]
            if missing:
                raise ValueError(
                    f"Teacher {getattr(teacher, 'name', teacher)!r} lacks {missing}: "
                    "teachers must follow the split-teacher contract "
                    "(diverse_distill.teachers.SplitTeacher)."
                )
        names = [t.name for t in teachers]
        if len(set(names)) != len(names):
            raise ValueError(f"Teacher names must be unique, got {names}.")
        for label, value in (("alpha", alpha), ("beta", beta)):
            if value is None or float(value) < 0:
                raise ValueError(f"`{label}` must be >= 0, got {value}.")
        if threshold_on not in THRESHOLD_ON:
            raise ValueError(f"`threshold_on` must be one of {THRESHOLD_ON}, got {threshold_on!r}.")
        most = 1.0 if threshold_on == "importance" else float(len(teachers))
        if importance_threshold is not None and not 0.0 <= float(importance_threshold) <= most:
            raise ValueError(
                f"`importance_threshold` must lie in [0, {most:g}] (threshold_on="
                f"{threshold_on!r}, {len(teachers)} teacher(s)) or be None, "
                f"got {importance_threshold}."
            )
        if keep_fraction is not None:
            if not 0.0 < float(keep_fraction) <= 1.0:
                raise ValueError(f"`keep_fraction` must lie in (0, 1] or be None, "
                                 f"got {keep_fraction}.")
            if importance_threshold is not None or int(importance_warmup_steps):
                raise ValueError(
                    "`keep_fraction` (fixed-size skipping) cannot be combined with "
                    "`importance_threshold` or `importance_warmup_steps`: choose one "
                    f"skipping rule (got importance_threshold={importance_threshold}, "
                    f"importance_warmup_steps={importance_warmup_steps})."
                )
        if importance_normalization not in IMPORTANCE_NORMALIZATIONS:
            raise ValueError(
                f"`importance_normalization` must be one of {IMPORTANCE_NORMALIZATIONS}, "
                f"got {importance_normalization!r}."
            )

        if importance not in IMPORTANCES:
            raise ValueError(f"`importance` must be one of {IMPORTANCES}, got {importance!r}.")
        if question not in QUESTIONS:
            raise ValueError(f"`question` must be one of {QUESTIONS}, got {question!r}.")

        # === Config ===
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.importance_threshold = (
            None if importance_threshold is None else float(importance_threshold)
        )
        if int(importance_warmup_steps) < 0:
            raise ValueError(
                f"`importance_warmup_steps` must be >= 0, got {importance_warmup_steps}."
            )
        self.importance_warmup_steps = int(importance_warmup_steps)
        self.keep_fraction = None if keep_fraction is None else float(keep_fraction)
        self.importance_normalization = importance_normalization
        self.threshold_on = threshold_on
        self.importance = importance
        self.question = question
        self.teacher_names = names
        self.prefix_caches = {}
        for cache in prefix_caches or []:
            if cache.name not in names:
                raise ValueError(f"A prefix cache belongs to {cache.name!r}, not a teacher of {names}.")
            self.prefix_caches[cache.name] = cache

        # === Models ===
        self.student = student
        self.teachers = teachers
        for teacher in teachers:
            if hasattr(teacher, "freeze"):
                teacher.freeze()
            else:
                teacher.trainable = False
        injection_dims = [t.injection_dim for t in teachers]
        answer_dims = [t.answer_dim for t in teachers]
        if question_augmenter is None:
            question_augmenter = QuestionAugmenter(
                injection_dims=injection_dims,
                embedding_dim=embedding_dim,
                num_components=num_components,
                intermediate_dim=intermediate_dim,
                alignment=alignment,
                # Residual injection: every question starts at 0, so each teacher
                # answers its real input at step 0.
                output_initializer="zeros" if self.injection == "add" else "glorot_uniform",
                name="question_augmenter",
            )
        if answer_augmenter is None:
            answer_augmenter = AnswerAugmenter(
                hidden_dim=student.hidden_dim,
                answer_dims=answer_dims,
                intermediate_dim=intermediate_dim,
                name="answer_augmenter",
            )
        self._check_widths(question_augmenter, answer_augmenter, injection_dims, answer_dims, student)
        self.question_augmenter = question_augmenter
        self.answer_augmenter = answer_augmenter
        if not question_augmenter.built:
            question_augmenter.build((None, student.representation_dim))
        if not answer_augmenter.built:
            answer_augmenter.build([(None, d) for d in answer_dims])

        # === Loss trackers (history keys) ===
        self.total_loss_tracker = keras.metrics.Mean(name="loss")
        self.task_loss_tracker = keras.metrics.Mean(name="task_loss")
        self.distill_loss_tracker = keras.metrics.Mean(name="distill_loss")
        self.reg_loss_tracker = keras.metrics.Mean(name="reg_loss")
        self.prediction_loss_tracker = keras.metrics.Mean(name="prediction_loss")
        self.importance_trackers = [keras.metrics.Mean(name=f"importance_{n}") for n in names]
        self.pass_fraction_trackers = [
            keras.metrics.Mean(name=f"pass_fraction_{n}") for n in names
        ]
        self.built = True

    @staticmethod
    def _check_widths(question_augmenter, answer_augmenter, injection_dims, answer_dims, student):
        if list(question_augmenter.injection_dims) != list(injection_dims):
            raise ValueError(
                "The QuestionAugmenter's question widths "
                f"{list(question_augmenter.injection_dims)} do not match the teachers' "
                f"injection widths {list(injection_dims)}."
            )
        if list(answer_augmenter.answer_dims) != list(answer_dims):
            raise ValueError(
                f"The AnswerAugmenter's answer widths {list(answer_augmenter.answer_dims)} "
                f"do not match the teachers' answer widths {list(answer_dims)}."
            )
        if answer_augmenter.hidden_dim != student.hidden_dim:
            raise ValueError(
                f"The AnswerAugmenter maps to width {answer_augmenter.hidden_dim}, the "
                f"student's last hidden layer has width {student.hidden_dim}."
            )

    # --- Variable groups -------------------------------------------------

    @property
    def student_variables(self):
        return self.student.trainable_variables

    @property
    def module_variables(self):
        return (
            self.question_augmenter.trainable_variables
            + self.answer_augmenter.trainable_variables
        )

    # --- Keras API --------------------------------------------------------

    def compile(
        self,
        optimizer="adagrad",
        loss="mse",
        metrics=None,
        module_optimizer=None,
        jit_compile="auto",
        **kwargs,
    ):
        """Configures training.

        Args:
            optimizer: the student's optimizer (name or instance).
            loss: the task loss `ℓ` (name, function or `keras.losses.Loss`);
                used per sample for `L_task` and both terms of `L_reg`.
            metrics: metrics of the student's prediction (as in Keras).
            module_optimizer: the distillation module's optimizer. Defaults
                to a fresh optimizer with the student optimizer's config.
            jit_compile: as in Keras; forced off when threshold skipping is on
                (`keep_fraction` compiles).
        """
        if self.importance_threshold is not None:
            if jit_compile is True:
                raise ValueError(
                    "jit_compile=True cannot run with `importance_threshold`: skipping "
                    "gathers a data-dependent number of rows, which XLA cannot compile."
                )
            jit_compile = False
        super().compile(optimizer=optimizer, metrics=metrics, jit_compile=jit_compile, **kwargs)
        self.task_loss_fn = per_sample_loss_fn(loss)
        # Predictions against soft targets (the teacher's, head_S(a_k)): the squared error,
        # or the KL of the class distributions for a classification loss.
        self.soft_target_fn = soft_target_loss_fn(loss)
        self._loss_config = loss
        if module_optimizer is None:
            module_optimizer = self.optimizer.__class__.from_config(self.optimizer.get_config())
        else:
            module_optimizer = keras.optimizers.get(module_optimizer)
        self.module_optimizer = module_optimizer
        # Build both optimizers here, each on its own variables: building
        # inside the replicated train step fails under tf.distribute.
        self.optimizer.build(self.student_variables)
        self.module_optimizer.build(self.module_variables)

    def loss_trackers(self):
        return [
            self.total_loss_tracker,
            self.task_loss_tracker,
            self.distill_loss_tracker,
            self.prediction_loss_tracker,
            self.reg_loss_tracker,
            *self.importance_trackers,
            *self.pass_fraction_trackers,
        ]

    # --- The DiverseDistill step -------------------------------------------

    def compute_losses(self, x, y, sample_weight=None, training=True):
        """All loss terms for one batch (per replica, scaled to the global batch).

        Returns a dict with `y_pred`, `task_loss`, `distill_loss`,
        `reg_loss`, `regularization_loss`, `importance` (batch, K) and
        `keep` (batch, K; 1.0 where the teacher ran).
        """
        representation, student_hidden = student_features(self.student, x, training=training)
        # Losses in float32 whatever the dtype policy (e.g. mixed_bfloat16).
        y_pred = ops.cast(self.student.head(student_hidden), "float32")
        task_per_sample = self.task_loss_fn(y, y_pred)

        questions, importance = self.question_augmenter(ops.stop_gradient(representation))
        importance = ops.cast(importance, "float32")
        if self.importance == "uniform":
            importance = ops.ones_like(importance)
        student_hidden = ops.cast(student_hidden, "float32")
        if self.keep_fraction is not None:
            top_rows, keep = self._top_rows_and_keep(importance)
        else:
            keep = self.kept(importance)
        if (self.importance_threshold is not None and self.importance_warmup_steps
                and getattr(self, "optimizer", None) is not None):
            warming_up = self.optimizer.iterations < self.importance_warmup_steps
            keep = ops.maximum(keep, ops.cast(warming_up, keep.dtype))
        reg_weights = importance * keep
        if self.importance_objective == "relative":
            # Q and A follow the (fixed) importances; the importances learn from
            # the answers' losses relative to their mean (see the class docstring).
            reg_weights = ops.stop_gradient(reg_weights)
        elif self.importance_normalization == "sum":
            reg_weights = reg_weights / ops.maximum(
                ops.sum(reg_weights, axis=1, keepdims=True), 1e-12
            )
        distill_weights = ops.stop_gradient(importance * keep)

        distill_per_sample = tf.zeros_like(task_per_sample)
        prediction_per_sample = tf.zeros_like(task_per_sample)
        reg_per_sample = tf.zeros_like(task_per_sample)
        for k, teacher in enumerate(self.teachers):
            if self.keep_fraction is not None:
                answer_k, reg_k, teacher_loss_k = self._teacher_terms_on_rows(
                    k, teacher, x, y, questions[k], top_rows[k], tf.shape(keep)[0]
                )
            elif self.importance_threshold is None:
                answer_k, reg_k, teacher_loss_k = self._teacher_terms(
                    k, teacher, x, y, questions[k]
                )
            else:
                answer_k, reg_k, teacher_loss_k = self._teacher_terms_on_kept_rows(
                    k, teacher, x, y, questions[k], keep[:, k]
                )
            # Skipped rows have keep = 0, so both their weights are 0.
            reg_per_sample += reg_weights[:, k] * reg_k
            if self.importance_objective == "relative":
                kept_k = keep[:, k]
                mean_loss = ops.sum(kept_k * teacher_loss_k) / ops.maximum(ops.sum(kept_k), 1.0)
                reg_per_sample += importance[:, k] * kept_k * ops.stop_gradient(
                    teacher_loss_k - mean_loss
                )
            # D(sg(a_k), h_S): the student's gradient never enters the teacher.
            answer_k = ops.stop_gradient(answer_k)
            distill_per_sample += distill_weights[:, k] * self._divergence(
                answer_k, student_hidden
            )
            if self.prediction_weight:
                target = ops.stop_gradient(ops.cast(self.student.head(answer_k), "float32"))
                prediction_per_sample += distill_weights[:, k] * self.soft_target_fn(
                    target, y_pred
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
            "prediction_loss": global_mean(prediction_per_sample, sample_weight),
            "reg_loss": global_mean(reg_per_sample, sample_weight),
            "regularization_loss": regularization,
            "importance": importance,
            "keep": keep,
        }

    def kept(self, importance):
        """1.0 where a teacher runs on a row, by the threshold alone (no warm-up).

        Args:
            importance: `(rows, K)` importances (a tensor or an array).

        Returns:
            float32 `(rows, K)`, all ones without a threshold.
        """
        importance = ops.cast(importance, "float32")
        if self.keep_fraction is not None:
            return self._top_rows_and_keep(importance)[1]
        if self.importance_threshold is None:
            return ops.ones_like(importance)
        score = importance
        if self.threshold_on == "share":
            total = ops.maximum(ops.sum(importance, axis=1, keepdims=True), 1e-12)
            score = len(self.teachers) * importance / total
        return ops.cast(score >= self.importance_threshold, "float32")

    def _top_rows_and_keep(self, importance):
        """Fixed-size skipping: each teacher's top row indices, and the `(rows, K)` mask."""
        top_rows = [self._top_rows(importance[:, k]) for k in range(importance.shape[1])]
        num_rows = tf.shape(importance)[0]
        return top_rows, ops.stack([_rows_mask(r, num_rows) for r in top_rows], axis=1)

    def _top_rows(self, importance_k):
        """int32 indices of the `⌈keep_fraction · rows⌉` rows with the largest importance.

        The count is a Python int when the batch size is static (XLA needs a constant).
        """
        rows = importance_k.shape[0]
        if rows is not None:
            count = max(1, min(rows, math.ceil(self.keep_fraction * rows - 1e-9)))
        else:
            rows = tf.shape(importance_k)[0]
            count = tf.clip_by_value(tf.cast(tf.math.ceil(
                self.keep_fraction * tf.cast(rows, "float32") - 1e-6), "int32"), 1, rows)
        return tf.math.top_k(importance_k, k=count, sorted=False).indices

    def _divergence(self, answer, student_hidden):
        """`D(a_k, h_S)` per row: mean, sum or L2 norm of the difference over the dims."""
        squared = ops.square(answer - student_hidden)
        if self.distance == "mean":
            return ops.mean(squared, axis=-1)
        if self.distance == "sum":
            return ops.sum(squared, axis=-1)
        return ops.sqrt(ops.sum(squared, axis=-1) + 1e-12)

    def _teacher_terms(self, k, teacher, x, y, question):
        """Per row: the projected answer a_k, the regulariser and the teacher's own loss.

        The regulariser is `ℓ(y, ŷ_k^T) + ℓ(target, head_S(a_k))` with the
        target `y` (`answer_target="label"`), `sg(ŷ_k^T)` (`"teacher"`) or both
        terms; the teacher's own loss is `ℓ(y, ŷ_k^T)`.
        """
        context = self.teacher_context(teacher, x)
        if self.question == "native":
            question = ops.stop_gradient(teacher.native_question(x, context))
        elif self.injection == "add":
            native = ops.stop_gradient(teacher.native_question(x, context))
            question = native + ops.cast(question, native.dtype)
        teacher_hidden, teacher_pred = teacher.suffix(question, context)
        teacher_pred = ops.cast(teacher_pred, "float32")
        answer = ops.cast(self.answer_augmenter.project(k, teacher_hidden), "float32")
        answer_pred = ops.cast(self.student.head(answer), "float32")
        teacher_loss = self.task_loss_fn(y, teacher_pred)
        regularizer = teacher_loss
        if self.answer_target in ("label", "both"):
            regularizer += self.task_loss_fn(y, answer_pred)
        if self.answer_target in ("teacher", "both"):
            regularizer += self.soft_target_fn(ops.stop_gradient(teacher_pred), answer_pred)
        return answer, regularizer, teacher_loss

    def _teacher_terms_on_kept_rows(self, k, teacher, x, y, question, keep_k):
        """`_teacher_terms` with the teacher run only on the rows where `keep_k > 0`.

        The kept rows are gathered and their outputs scattered back; skipped
        rows get zeros. With no row kept the teacher runs on row 0
        alone (KerasHub's T5 attention cannot run on 0 rows inside a
        tf.function), whose weights are 0. Not a `tf.cond`: TF differentiates a
        cond's branch for every tape, which made the step ~35 % dearer with
        nothing skipped.
        """
        batch_size = tf.shape(keep_k)[0]
        rows = tf.cast(tf.where(keep_k > 0)[:, 0], "int32")
        num_run = tf.minimum(tf.maximum(tf.size(rows), 1), batch_size)
        rows = tf.concat([rows, tf.zeros([1], "int32")], 0)[:num_run]
        return self._teacher_terms_on_rows(k, teacher, x, y, question, rows, batch_size)

    def _teacher_terms_on_rows(self, k, teacher, x, y, question, rows, batch_size):
        """`_teacher_terms` on the rows `rows` alone, scattered back (zeros elsewhere)."""
        x_k, y_k, q_k = _gather_rows((x, y, question), rows)
        outputs = self._teacher_terms(k, teacher, x_k, y_k, q_k)
        return tuple(_scatter_rows(t, rows, batch_size) for t in outputs)

    def teacher_context(self, teacher, x):
        """The teacher's prefix: from its `PrefixCache` when the batch carries it."""
        cache = self.prefix_caches.get(teacher.name)
        if cache is not None and cache.covers(x):
            return cache.context(x)
        return teacher.prefix(x)

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        student_vars = self.student_variables
        module_vars = self.module_variables
        with tf.GradientTape() as student_tape, tf.GradientTape() as module_tape:
            losses = self.compute_losses(x, y, sample_weight, training=True)
            ramp = self.distill_ramp()
            student_loss = (
                losses["task_loss"]
                + ramp * self.alpha * losses["distill_loss"]
                + ramp * self.prediction_weight * losses["prediction_loss"]
                + losses["regularization_loss"]
            )
            module_loss = self.beta * losses["reg_loss"]
        self.optimizer.apply(student_tape.gradient(student_loss, student_vars), student_vars)
        if self.beta > 0:
            module_grads = module_tape.gradient(module_loss, module_vars)
            module_grads = [
                g if g is not None else tf.zeros_like(v) for g, v in zip(module_grads, module_vars)
            ]
            self.module_optimizer.apply(module_grads, module_vars)
        self._update_trackers(losses, student_loss + module_loss)
        self.compute_metrics(x, y, losses["y_pred"], sample_weight)
        return self._logs(training=True)

    def distill_ramp(self):
        """The factor on `alpha` and `prediction_weight` at the current step.

        0 for the first `module_warmup_steps` steps (the distillation module
        trains alone on `L_reg`, the student on its task), then rising
        linearly to 1 over as many steps; 1 without a warm-up.
        """
        if not self.module_warmup_steps or getattr(self, "optimizer", None) is None:
            return 1.0
        step = ops.cast(self.optimizer.iterations, "float32")
        n = float(self.module_warmup_steps)
        return ops.clip((step - n) / n, 0.0, 1.0)

    def _update_trackers(self, losses, total_loss):
        # Losses are divided by the number of replicas (global-batch means);
        # the trackers report the per-batch mean, so multiply it back.
        n = num_replicas()
        self.total_loss_tracker.update_state(total_loss * n)
        self.task_loss_tracker.update_state(losses["task_loss"] * n)
        self.distill_loss_tracker.update_state(losses["distill_loss"] * n)
        self.prediction_loss_tracker.update_state(losses["prediction_loss"] * n)
        self.reg_loss_tracker.update_state(losses["reg_loss"] * n)
        for k in range(len(self.teachers)):
            self.importance_trackers[k].update_state(losses["importance"][:, k])
            self.pass_fraction_trackers[k].update_state(losses["keep"][:, k])
