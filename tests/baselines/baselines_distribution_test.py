import keras
import tensorflow as tf

from tests.conftest import shared_mirrored_strategy

from diverse_distill.baselines import get_method
from tests.baselines.baseline_helpers import make_data, make_student, make_teachers
from tests.test_case import TestCase

# The methods that take a decision from the whole batch (all-reduced).
CASES = {
    "sckd": {"distill_target": "hidden"},
    "aekd": {"max_weight": 0.7},
    "autoskd": {"seed": 3},
}


class MirroredStrategyTest(TestCase):
    def _run(self, strategy, name):
        x, y = make_data(n=32, seed=3)
        with strategy.scope():
            teachers = make_teachers(num=1 if name == "sckd" else 2)
            model = get_method(name)(make_student(seed=5), teachers, alpha=2.0, **CASES[name])
            model.compile(optimizer=keras.optimizers.Adagrad(0.1), loss="mse")
        dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
        history = model.fit(dataset, epochs=2, verbose=0).history
        return history, model.student.get_weights()

    def test_two_replicas_equal_one(self):
        devices = tf.config.list_logical_devices("CPU")
        self.assertGreaterEqual(len(devices), 2, "conftest should create 2 logical CPUs")
        # One MirroredStrategy for every model: fresh strategies in one process
        # restart TF's collective instance keys, and collectives of different
        # shapes then collide ("Shape mismatch in the collective instance").
        mirrored = shared_mirrored_strategy()
        one_device = tf.distribute.OneDeviceStrategy("/cpu:0")
        for name in CASES:
            one, one_weights = self._run(one_device, name)
            two, two_weights = self._run(mirrored, name)
            self.assertEqual(sorted(one), sorted(two))
            for key in one:
                self.assertAllClose(one[key], two[key], atol=1e-5, rtol=0, msg=f"{name} {key}")
            for a, b in zip(one_weights, two_weights):
                self.assertAllClose(a, b, atol=1e-5, rtol=0, msg=name)
