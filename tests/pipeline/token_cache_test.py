"""The language teacher's tokens are computed once per teacher cache entry, then read back."""

import numpy as np

from diverse_distill.pipeline import teacher_factory
from diverse_distill.pipeline.job_config import JobConfig


class CountingTeacher:
    """Tokenizes by word length; counts how many prompts it was asked to tokenize."""

    name = "lm"
    tokenizer = object()

    def __init__(self):
        self.prompts_seen = 0

    def preprocess(self, prompts, sequence_length):
        self.prompts_seen += len(prompts)
        ids = np.zeros((len(prompts), sequence_length), np.int32)
        for row, prompt in enumerate(prompts):
            lengths = [len(word) for word in prompt.split()][:sequence_length]
            ids[row, :len(lengths)] = lengths
        return {"lm_token_ids": ids, "lm_padding_mask": ids > 0}


class Prompts:
    def __init__(self):
        self.by_split = {"train": ["a bb ccc", "dddd"], "validation": ["ee f"],
                         "test": ["ggg hh i", "j", "kk"]}

    def prompts(self, split, history=0):
        assert history == 0
        return self.by_split[split]


def test_tokens_are_written_once_and_read_back_identically(tmp_path):
    config = JobConfig(lm_sequence_length=4)
    data = Prompts()
    first_teacher = CountingTeacher()
    first = teacher_factory.cached_language_features(first_teacher, data, config, str(tmp_path))
    assert first_teacher.prompts_seen == 6
    np.testing.assert_array_equal(first["train"]["lm_token_ids"], [[1, 2, 3, 0], [4, 0, 0, 0]])
    assert (tmp_path / "tokens.npz").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("tmp-")]

    second_teacher = CountingTeacher()
    second = teacher_factory.cached_language_features(second_teacher, data, config,
                                                      str(tmp_path))
    assert second_teacher.prompts_seen == 0  # read from the cache, not tokenized again
    assert set(second) == set(first)
    for split in first:
        assert set(second[split]) == set(first[split])
        for key in first[split]:
            np.testing.assert_array_equal(second[split][key], first[split][key])
            assert second[split][key].dtype == first[split][key].dtype
