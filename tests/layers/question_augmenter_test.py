import keras
import numpy as np
import pytest

from diverse_distill.layers import QuestionAugmenter
from tests.test_case import TestCase


class QuestionAugmenterTest(TestCase):
    def test_layer_behaviors(self):
        self.run_layer_test(
            cls=QuestionAugmenter,
            init_kwargs={"injection_dims": [16, 32], "embedding_dim": 8, "num_components": 3},
            input_data=np.random.default_rng(0).normal(size=(4, 10)).astype("float32"),
            expected_output_shape=([(4, 16), (4, 32)], (4, 2)),
            # E, W, 2 x (hidden kernel+bias, output kernel+bias), 2 x readout kernel+bias
            expected_num_trainable_weights=2 + 2 * 4 + 2 * 2,
        )

    def test_softmax_alignment_and_linear_mlps(self):
        self.run_layer_test(
            cls=QuestionAugmenter,
            init_kwargs={
                "injection_dims": [5],
                "embedding_dim": 4,
                "num_components": 2,
                "intermediate_dim": 0,
                "alignment": "softmax",
            },
            input_data=np.random.default_rng(1).normal(size=(3, 6)).astype("float32"),
            expected_output_shape=([(3, 5)], (3, 1)),
            expected_num_trainable_weights=2 + 2 + 2,
        )

    def test_values_match_numpy(self):
        rng = np.random.default_rng(2)
        s = rng.normal(size=(3, 5)).astype("float32")
        for alignment in ("dot", "softmax"):
            layer = QuestionAugmenter(
                [4, 6], embedding_dim=3, num_components=2, intermediate_dim=0, alignment=alignment
            )
            questions, importance = layer(s)
            E = np.array(layer.teacher_embeddings)
            W = np.array(layer.question_projection)
            P = np.einsum("bs,sme->bme", s, W)
            A = np.einsum("ke,bme->bkm", E, P)
            if alignment == "softmax":
                A = np.exp(A / np.sqrt(3))
                A = A / A.sum(-1, keepdims=True)
            Q = np.einsum("bkm,bme->bke", A, P)
            for k, width in enumerate([4, 6]):
                dense = layer.question_mlps[k][0]
                expected = Q[:, k] @ np.array(dense.kernel) + np.array(dense.bias)
                self.assertAllClose(questions[k], expected, atol=1e-5)
                readout = layer.importance_readouts[k]
                logit = Q[:, k] @ np.array(readout.kernel) + np.array(readout.bias)
                self.assertAllClose(importance[:, k], 1 / (1 + np.exp(-logit[:, 0])), atol=1e-5)

    def test_importance_strictly_inside_unit_interval(self):
        layer = QuestionAugmenter([2], embedding_dim=2, num_components=1, intermediate_dim=0)
        layer.build((None, 1))
        layer.importance_readouts[0].bias.assign([1000.0])
        _, high = layer(np.ones((2, 1), "float32"))
        layer.importance_readouts[0].bias.assign([-1000.0])
        _, low = layer(np.ones((2, 1), "float32"))
        self.assertAllLess(high, 1.0)
        self.assertAllGreater(low, 0.0)

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="at least one teacher"):
            QuestionAugmenter([])
        with pytest.raises(ValueError, match="alignment"):
            QuestionAugmenter([4], alignment="cosine")
        with pytest.raises(ValueError, match="positive"):
            QuestionAugmenter([0])
        with pytest.raises(ValueError, match=r"\(batch, d_s\)"):
            QuestionAugmenter([4])(np.ones((2, 3, 4), "float32"))
