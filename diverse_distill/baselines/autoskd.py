"""AutoSKD-style stochastic distillation: one teacher per step from a learned distribution."""

import tensorflow as tf
from keras import ops

from diverse_distill.baselines.baseline_distiller import (
    BaselineDistiller,
    all_reduce_sum,
)
from diverse_distill.baselines.registry import register_method
from diverse_distill.distill.losses import global_mean
from diverse_distill.students.student import student_features


@register_method("autoskd")
class StochasticTeacherDistillation(BaselineDistiller):
    """Stochastic distillation with a learned categorical teacher distribution.

    Every step one teacher is sampled from `π = softmax(θ)`, a categorical
    distribution over the K teachers with logits `θ` (the non-trainable
    variable `policy_logits`); only that teacher runs, and the student
    minimises the LD-style loss on it,

    `L = ℓ(y, ŷ_S) + alpha · mean((ŷ_S − sg(ŷ_k))²)`,   `k ~ π`.

    **Sampling.** `k = stateless_categorical(θ, seed=(seed, t))`, where `t`
    is the optimizer's iteration count before the step: the same seed gives
    the same teacher sequence, identical on every replica.

    **Distribution update** (AutoSKDBERT's exact rule is not public; this
    is the project's, REINFORCE with a moving-average baseline). After the
    optimizer step the student is run again on the same batch (with
    `training=True`, like the step itself) and the reward is the decrease
    of the task loss that the step achieved,

    `r = ℓ_before − ℓ_after`   (global-batch means, all-reduced),

    then, with the baseline `b` (the variable `reward_baseline`, starting at
    0), the learning rate `η = policy_learning_rate` and momentum
    `m = baseline_momentum`,

    `θ ← θ + η · (r − b) · (onehot(k) − π)`   (the gradient of `log π_k`),
    `b ← m · b + (1 − m) · r`.

    So the sampled teacher's probability rises when its step lowered the
    task loss more than recent steps did (`r > b`) and falls otherwise; the
    others move the opposite way. This follows "learns a weight for each
    teacher based on student progress", as the DiverseDistill paper
    describes AutoSKDBert (Ding et al., 2023); the original is for BERT
    classification with a KL on softened logits, replaced here by the mean
    squared error on the predictions.

    Logged metrics: `loss`, `task_loss`, `distill_loss`, `reward` (mean `r`),
    and per teacher `teacher_weight_<name>` (its probability `π_k` after
    the update, averaged over steps) and `selected_<name>` (the fraction of
    steps it was sampled; these sum to 1).

    Args:
        student: a student (`diverse_distill.students.Student` contract).
        teachers: list of teachers with unique names; any frozen Keras
            models mapping `x` to a prediction, all of the same output shape.
        alpha: float >= 0. Weight of the distillation term. Defaults to `1.0`.
        policy_learning_rate: float >= 0. `η`. Defaults to `1.0`.
        baseline_momentum: float in [0, 1). `m`. Defaults to `0.9`.
        seed: int. Seed of the teacher sampling. Defaults to `0`.
        initial_logits: list of K floats or `None` (uniform). Defaults to
            `None`.
        **kwargs: passed to `keras.Model`.

    Example:
    ```python
    features = {"user_id": 10, "item_id": 20}
    student = MLPStudent(features, embedding_dims=4, hidden_units=(8,))
    teachers = [
        MLPTeacher(MLPRecommender(features, embedding_dims=8, hidden_units=(16,)),
                   name="mlp_l"),
        MLPTeacher(MLPRecommender(features, embedding_dims=6, hidden_units=(12,)),
                   name="mlp_m"),
    ]
    model = StochasticTeacherDistillation(student, teachers, seed=3)
    model.compile(optimizer=keras.optimizers.Adagrad(0.06), loss="mse")
    x = {"user_id": np.arange(8) % 10, "item_id": np.arange(8)}
    logs = model.fit(x, np.ones((8, 1)), epochs=1, verbose=0).history
    logs["selected_mlp_l"][0] + logs["selected_mlp_m"][0]  # 1.0
    ```

    Reference:
    - Ding, Jiang et al., "AutoSKDBERT: Learn to Stochastically Distill
      BERT", 2023; "SKDBERT: Compressing BERT via Stochastic Knowledge
      Distillation", AAAI 2023.
    """

    def __init__(
        self,
        student,
        teachers,
        alpha=1.0,
        policy_learning_rate=1.0,
        baseline_momentum=0.9,
        seed=0,
        initial_logits=None,
        **kwargs,
    ):
        super().__init__(student, teachers, alpha=alpha, **kwargs)
        num = len(self.teachers)
        if policy_learning_rate is None or float(policy_learning_rate) < 0:
            raise ValueError(
                f"`policy_learning_rate` must be >= 0, got {policy_learning_rate}."
            )
        if baseline_momentum is None or not 0.0 <= float(baseline_momentum) < 1.0:
            raise ValueError(f"`baseline_momentum` must lie in [0, 1), got {baseline_momentum}.")
        if initial_logits is not None and len(initial_logits) != num:
            raise ValueError(
                f"`initial_logits` has {len(initial_logits)} values for {num} teachers."
            )
        self.policy_learning_rate = float(policy_learning_rate)
        self.baseline_momentum = float(baseline_momentum)
        self.seed = int(seed)
        self.initial_logits = None if initial_logits is None else [float(v) for v in initial_logits]
        self.policy_logits = self.add_weight(
            shape=(num,),
            initializer=(
                "zeros"
                if initial_logits is None
                else lambda shape, dtype=None: ops.convert_to_tensor(
                    self.initial_logits, dtype="float32"
                )
            ),
            trainable=False,
            aggregation="only_first_replica",
            name="policy_logits",
        )
        self.reward_baseline = self.add_weight(
            shape=(),
            initializer="zeros",
            trainable=False,
            aggregation="only_first_replica",
            name="reward_baseline",
        )

    def extra_loss_names(self):
        return []

    def stat_names(self):
        return (
            ["reward"]
            + [f"teacher_weight_{name}" for name in self.teacher_names]
            + [f"selected_{name}" for name in self.teacher_names]
        )

    def probabilities(self):
        """The current teacher distribution `π = softmax(θ)` (K,)."""
        return ops.softmax(ops.convert_to_tensor(self.policy_logits), axis=-1)

    def sample_teacher(self, iteration):
        """The teacher index drawn at `iteration` (a scalar int32 tensor)."""
        seed = tf.stack([tf.constant(self.seed, tf.int64), tf.cast(iteration, tf.int64)])
        logits = tf.convert_to_tensor(self.policy_logits)[None, :]
        return tf.cast(tf.random.stateless_categorical(logits, 1, seed=seed)[0, 0], tf.int32)

    def distillation_terms(self, x, y, student, sample_weight=None, training=True):
        prediction = student["prediction"]
        index = self.sample_teacher(self.optimizer.iterations)
        branches = [
            (lambda t=t: self.teacher_prediction(t, x, like=prediction)) for t in self.teachers
        ]
        target = tf.switch_case(index, branches) if len(branches) > 1 else branches[0]()
        stats = {"selected_index": index}
        return self.soft_target_fn(target, prediction), {}, stats

    def after_update(self, x, y, sample_weight, losses):
        index = losses["stats"].pop("selected_index")
        _, hidden = student_features(self.student, x, training=True)
        y_after = ops.cast(self.student.head(hidden), "float32")
        after = global_mean(self.task_loss_fn(y, y_after), sample_weight)
        reward = all_reduce_sum(losses["task_loss"] - after)
        logits = tf.convert_to_tensor(self.policy_logits)
        chosen = tf.one_hot(index, len(self.teachers), dtype=logits.dtype)
        advantage = reward - tf.convert_to_tensor(self.reward_baseline)
        new_logits = logits + self.policy_learning_rate * advantage * (
            chosen - tf.nn.softmax(logits)
        )
        self.policy_logits.assign(new_logits)
        m = self.baseline_momentum
        self.reward_baseline.assign(m * self.reward_baseline + (1.0 - m) * reward)
        probabilities = tf.nn.softmax(new_logits)
        losses["stats"]["reward"] = reward
        for k, name in enumerate(self.teacher_names):
            losses["stats"][f"teacher_weight_{name}"] = probabilities[k]
            losses["stats"][f"selected_{name}"] = chosen[k]
