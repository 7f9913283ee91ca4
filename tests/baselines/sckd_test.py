import keras
import numpy as np
import tensorflow as tf

from diverse_distill.baselines import LogitDistillation, StudentCustomizedDistillation
from tests.baselines.baseline_helpers import (
    clone_student,
    constant_teacher,
    make_data,
    make_student,
    make_teachers,
)
from tests.test_case import TestCase

LR = 0.05


def cosine_by_tape(student, teacher, x, y, alpha):
    """cos(∇ task, ∇ alpha·mse(ŷ_S, ŷ_T)) over the student's variables, independently."""
    variables = student.trainable_variables
    with tf.GradientTape(persistent=True) as tape:
        y_s = student(x)
        task = tf.reduce_mean(tf.square(y_s - y))
        distill = alpha * tf.reduce_mean(tf.square(y_s - teacher(x)))
    flat = [
        np.concatenate([np.ravel(tf.convert_to_tensor(g)) for g in tape.gradient(loss, variables)])
        for loss in (task, distill)
    ]
    return flat[0] @ flat[1] / np.linalg.norm(flat[0]) / np.linalg.norm(flat[1])


class SCKDTest(TestCase):
    def _step(self, teacher_value):
        """One SCKD step, one task-only step and one LD step from the same student."""
        student = make_student()
        teacher = constant_teacher(teacher_value)
        x, _ = make_data()
        # Labels above every prediction: the task gradient pushes all
        # predictions up; a teacher at +100 agrees, one at -100 conflicts.
        y = np.array(student(x)) + 1.0
        alpha = 0.1
        cosine = cosine_by_tape(student, teacher, x, y, alpha)
        plain, ld_student = clone_student(student), clone_student(student)
        sckd = StudentCustomizedDistillation(student, [teacher], alpha=alpha)
        ld = LogitDistillation(ld_student, [teacher], alpha=alpha)
        for model in (sckd, ld, plain):
            model.compile(optimizer=keras.optimizers.SGD(LR), loss="mse")
        logs = sckd.train_on_batch(x, y, return_dict=True)
        ld.train_on_batch(x, y)
        plain.train_on_batch(x, y)
        return cosine, logs, student.get_weights(), plain.get_weights(), ld_student.get_weights()

    def test_conflicting_term_is_dropped(self):
        cosine, logs, sckd, task_only, task_and_distill = self._step(-100.0)
        self.assertLess(cosine, 0.0)
        self.assertAllClose(logs["gradient_cosine"], cosine, atol=1e-5)
        self.assertEqual(logs["conflict_fraction"], 1.0)
        self.assertAllClose(logs["loss"], logs["task_loss"], rtol=1e-6)
        self.assertGreater(logs["distill_loss"], 0.0)
        for a, b in zip(sckd, task_only):
            self.assertAllClose(a, b, atol=1e-6, rtol=0)
        self.assertGreater(max(np.abs(a - b).max() for a, b in zip(sckd, task_and_distill)), 1e-3)

    def test_agreeing_term_is_kept(self):
        cosine, logs, sckd, task_only, task_and_distill = self._step(100.0)
        self.assertGreater(cosine, 0.0)
        self.assertAllClose(logs["gradient_cosine"], cosine, atol=1e-5)
        self.assertEqual(logs["conflict_fraction"], 0.0)
        self.assertAllClose(
            logs["loss"], logs["task_loss"] + 0.1 * logs["distill_loss"], rtol=1e-6
        )
        for a, b in zip(sckd, task_and_distill):
            self.assertAllClose(a, b, atol=1e-5, rtol=1e-6)
        self.assertGreater(max(np.abs(a - b).max() for a, b in zip(sckd, task_only)), 1e-3)

    def test_hidden_target_moves_the_projector_only_without_conflict(self):
        student, teachers = make_student(), make_teachers(num=2)
        model = StudentCustomizedDistillation(
            student, teachers, alpha=2.0, distill_target="hidden", teacher_index=1
        )
        model.compile(optimizer=keras.optimizers.SGD(LR), loss="mse", run_eagerly=True)
        self.assertEqual(model.projector.kernel.shape, (4, teachers[1].answer_dim))
        outcomes = []
        for seed in range(2):  # found to give one agreeing, then one conflicting step
            x, y = make_data(seed=seed)
            before = [np.array(v) for v in model.projector.weights]
            model.reset_metrics()  # train_on_batch accumulates the trackers
            logs = model.train_on_batch(x, y, return_dict=True)
            moved = any(
                not np.array_equal(b, np.array(a)) for b, a in zip(before, model.projector.weights)
            )
            self.assertIn(logs["conflict_fraction"], (0.0, 1.0))
            self.assertEqual(moved, logs["conflict_fraction"] == 0.0)
            self.assertEqual(logs["conflict_fraction"] == 1.0, logs["gradient_cosine"] < 0)
            outcomes.append(logs["conflict_fraction"])
        self.assertEqual(outcomes, [0.0, 1.0])
