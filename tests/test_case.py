"""A shared layer-test helper, modelled on keras-hub's `TestCase.run_layer_test`."""

import json
import os
import tempfile

import keras
import numpy as np
import tensorflow as tf


# How far a weight must move in a one-step test to count as trained. A gradient
# that is zero in exact arithmetic (e.g. through a softmax over one key, or a
# bias that shifts every attention score alike) comes out as exactly 0 on one
# CPU and as rounding noise on another (~1e-11 for BertTeacher's key biases on
# an Intel Xeon; T5's decoder self-attention query/key get 0 there but not on
# an AMD EPYC): the suite must give the same answer on both. With plain SGD a
# weight moves by lr * gradient, so noise moves it far less than this and a
# real gradient far more. Adam (and RMSprop) normalise the step, so noise gets
# a full-size step there: assert "did not move" only after SGD steps.
MOVED_ATOL = 1e-6


def _flatten(structure):
    return [np.asarray(t) for t in tf.nest.flatten(structure)]


class TestCase(tf.test.TestCase):
    """`tf.test.TestCase` with helpers shared by every layer and model test."""

    # tf.test.TestCase defines a deprecated `test_session`; keep pytest off it.
    test_session = None

    def setUp(self):
        super().setUp()
        keras.utils.set_random_seed(1337)
        keras.config.set_floatx("float32")

    def assertUnmoved(self, variables, before, expected, atol=MOVED_ATOL):
        """The `variables` that moved by at most `atol` since `before` are exactly `expected`.

        Args:
            variables: the variables after the step.
            before: their values (arrays) before it, in the same order.
            expected: the paths (a list: a repeated path counts twice) of the
                variables that get no gradient; every other one must move by
                more than `atol` (largest absolute change).
            atol: see `MOVED_ATOL`; pick the SGD learning rate so that real
                gradients move every weight well above it.
        """
        moves = [
            (v.path, float(np.max(np.abs(np.asarray(v) - b), initial=0.0)))
            for v, b in zip(variables, before)
        ]
        unmoved = [path for path, move in moves if move <= atol]
        self.assertEqual(sorted(unmoved), sorted(expected), f"largest changes: {moves}")

    def run_serialization_test(self, instance):
        """JSON config round trip: same class, same config."""
        config = instance.get_config()
        revived = instance.__class__.from_config(json.loads(json.dumps(config)))
        self.assertEqual(revived.get_config(), config)
        serialized = keras.saving.serialize_keras_object(instance)
        revived = keras.saving.deserialize_keras_object(json.loads(json.dumps(serialized)))
        self.assertIsInstance(revived, instance.__class__)
        self.assertEqual(revived.get_config(), config)
        return revived

    def run_layer_test(
        self,
        cls,
        init_kwargs,
        input_data,
        expected_output_shape,
        expected_num_trainable_weights,
    ):
        """Config round trip, eager and symbolic calls, shapes, a fit step, `.keras` save/load."""
        layer = cls(**init_kwargs)
        self.run_serialization_test(layer)

        output = layer(input_data)
        output_shapes = tf.nest.map_structure(lambda t: tuple(t.shape), output)
        self.assertEqual(output_shapes, expected_output_shape)
        self.assertLen(layer.trainable_weights, expected_num_trainable_weights)
        for t in tf.nest.flatten(output):
            self.assertEqual(keras.backend.standardize_dtype(t.dtype), "float32")

        # A symbolic call (batch unknown) gives the same per-sample shapes.
        symbolic_inputs = tf.nest.map_structure(
            lambda a: keras.Input(shape=np.shape(a)[1:]), input_data
        )
        symbolic_output = cls(**init_kwargs)(symbolic_inputs)
        self.assertEqual(
            tf.nest.map_structure(lambda t: tuple(t.shape)[1:], symbolic_output),
            tf.nest.map_structure(lambda t: tuple(t.shape)[1:], output),
        )

        # One fit step moves every trainable weight.
        # Outputs are flattened: Keras' compiled loss trips on nested 1-lists.
        model = keras.Model(symbolic_inputs, tf.nest.flatten(symbolic_output))
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        before = [np.array(w) for w in model.trainable_weights]
        targets = tf.nest.map_structure(lambda t: np.ones(t.shape, "float32"), model(input_data))
        batch_size = len(tf.nest.flatten(input_data)[0])
        model.fit(input_data, targets, epochs=1, batch_size=batch_size, verbose=0)
        self.assertUnmoved(model.trainable_weights, before, [])

        # `.keras` save/load gives equal outputs.
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.keras")
            model.save(path)
            reloaded = keras.saving.load_model(path)
        for a, b in zip(_flatten(model(input_data)), _flatten(reloaded(input_data))):
            self.assertAllClose(a, b, atol=1e-6)
        return layer


class SharedBackboneTestCase(TestCase):
    """Tests over one tiny backbone per test class, restored after each test.

    A subclass implements the classmethod `make_backbone`, which sets `cls.backbone`
    (and whatever else it needs); it is built once, under seed 1337, and after every test
    its weights and trainability are put back (a test may `freeze()` or train a teacher
    over it). Each test gets `self.rng`, seeded with 0.
    """

    @classmethod
    def make_backbone(cls):
        raise NotImplementedError

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        keras.utils.set_random_seed(1337)
        cls.make_backbone()
        cls.initial_weights = cls.backbone.get_weights()

    def setUp(self):
        super().setUp()
        self.rng = np.random.default_rng(0)

    def tearDown(self):
        self.backbone.trainable = True  # undo `freeze()`, recursively
        self.backbone.set_weights(self.initial_weights)
        super().tearDown()
