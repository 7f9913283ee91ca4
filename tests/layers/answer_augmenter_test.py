import numpy as np
import pytest

from diverse_distill.layers import AnswerAugmenter
from tests.test_case import TestCase


class AnswerAugmenterTest(TestCase):
    def test_layer_behaviors(self):
        rng = np.random.default_rng(0)
        self.run_layer_test(
            cls=AnswerAugmenter,
            init_kwargs={"hidden_dim": 8, "answer_dims": [16, 32]},
            input_data=[
                rng.normal(size=(4, 16)).astype("float32"),
                rng.normal(size=(4, 32)).astype("float32"),
            ],
            expected_output_shape=(4, 2, 8),
            expected_num_trainable_weights=8,
        )

    def test_project_matches_call_and_numpy(self):
        rng = np.random.default_rng(1)
        answers = [rng.normal(size=(3, 5)).astype("float32"), rng.normal(size=(3, 7)).astype("float32")]
        layer = AnswerAugmenter(hidden_dim=4, answer_dims=[5, 7], intermediate_dim=6)
        stacked = layer(answers)
        for k, h in enumerate(answers):
            hidden, out = layer.answer_mlps[k]
            expected = np.maximum(h @ np.array(hidden.kernel) + np.array(hidden.bias), 0)
            expected = expected @ np.array(out.kernel) + np.array(out.bias)
            self.assertAllClose(layer.project(k, h), expected, atol=1e-5)
            self.assertAllClose(stacked[:, k], expected, atol=1e-5)

    def test_bad_input(self):
        layer = AnswerAugmenter(hidden_dim=4, answer_dims=[5, 7])
        with pytest.raises(ValueError, match="Expected 2 answers"):
            layer([np.ones((2, 5), "float32")])
        with pytest.raises(ValueError, match="width 6"):
            layer.project(0, np.ones((2, 6), "float32"))
        with pytest.raises(ValueError, match="at least one teacher"):
            AnswerAugmenter(hidden_dim=4, answer_dims=[])
