"""What every distiller of this library shares: the student is the model.

`DistillationModel` and every baseline (`diverse_distill.baselines`) train a
student from frozen teachers, and outside training they *are* that student:
`call`/`predict` run it, `evaluate` scores it alone (the teachers are never
called), and `export_student` writes it without any teacher. This base class
holds that common part; each subclass brings its own training step and its
loss trackers.
"""

import keras

from diverse_distill.distill.losses import global_mean, num_replicas


class StudentDistiller(keras.Model):
    """Base class: a Keras model whose inference and evaluation are the student's.

    Subclasses set `self.student`, `self.task_loss_fn` (per-sample loss, set in
    `compile`), `self.total_loss_tracker` and `self.task_loss_tracker`, and
    implement `loss_trackers()`: every tracker they log, in log order. Trackers
    other than the total and task loss are logged during training only, since
    `test_step` runs the student alone.
    """

    def loss_trackers(self):
        """The model's own trackers, in log order (total and task loss first)."""
        raise NotImplementedError

    def call(self, x, training=False):
        return self.student(x, training=training)

    @property
    def metrics(self):
        own = self.loss_trackers()
        keras_loss_tracker = getattr(self, "_loss_tracker", None)
        others = [m for m in super().metrics if m is not keras_loss_tracker and m not in own]
        return own + others

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        y_pred = self.student(x, training=False)
        task_loss = global_mean(self.task_loss_fn(y, y_pred), sample_weight)
        # Global-batch means are divided by the number of replicas; the
        # trackers report the per-batch mean, so multiply it back.
        n = num_replicas()
        self.total_loss_tracker.update_state(task_loss * n)
        self.task_loss_tracker.update_state(task_loss * n)
        self.compute_metrics(x, y, y_pred, sample_weight)
        return self._logs(training=False)

    def _logs(self, training):
        evaluated = (self.total_loss_tracker, self.task_loss_tracker)
        training_only = [t for t in self.loss_trackers() if t not in evaluated]
        logs = {}
        for metric in self.metrics:
            if not training and metric in training_only:
                continue
            result = metric.result()
            if isinstance(result, dict):
                logs.update(result)
            else:
                logs[metric.name] = result
        return logs

    def export_student(self, filepath, input_signature=None):
        """Writes the student alone as a TensorFlow SavedModel.

        See `diverse_distill.export.export_student`.
        """
        from diverse_distill.export import export_student

        return export_student(self.student, filepath, input_signature=input_signature)
