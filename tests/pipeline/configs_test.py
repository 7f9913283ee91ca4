"""Every config under configs/ parses into a valid `JobConfig` (as bin/train reads it)."""

import glob
import os

import pytest
from absl import flags

from diverse_distill.pipeline.flags import config_from_flags, define_job_flags

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "configs", "*.cfg")))


def parse(*args):
    flag_values = flags.FlagValues()
    define_job_flags(flag_values)
    flag_values(["bin/train", *args])
    return config_from_flags(flag_values)


@pytest.mark.parametrize("config", CONFIGS)
def test_config_parses(config, monkeypatch):
    monkeypatch.chdir(REPO)  # nested --flagfile paths are relative to the repository root
    job = parse(f"--flagfile={config}")
    assert job.teachers and job.steps > 0


def test_ids_student_configs_change_only_the_students_features(monkeypatch):
    monkeypatch.chdir(REPO)
    for committee in ("mlp_l", "mlp_l_mlp_m", "minilm_mlp"):
        full = parse(f"--flagfile=configs/movielens_{committee}.cfg").to_dict()
        ids = parse(f"--flagfile=configs/movielens_ids_student_{committee}.cfg").to_dict()
        assert {k for k in full if full[k] != ids[k]} == {"student_features"}
        assert ids["student_features"] == "ids" and ids["mlp_features"] == "all"


def test_xla_is_on_where_it_applies():
    from diverse_distill.pipeline.job_config import JobConfig

    assert not JobConfig().use_xla  # deterministic: Keras would run without XLA anyway
    assert JobConfig(deterministic=False).use_xla
    assert not JobConfig(deterministic=False, importance_threshold=0.3).use_xla
    assert JobConfig(deterministic=False, keep_fraction=0.5).use_xla  # static shapes
    assert not JobConfig(deterministic=False, method="ld").use_xla
    assert not JobConfig(deterministic=False, jit_compile="false").use_xla
    with pytest.raises(ValueError, match="--jit_compile=true needs --nodeterministic"):
        JobConfig(jit_compile="true")
    with pytest.raises(ValueError, match="--keep_fraction for skipping under XLA"):
        JobConfig(jit_compile="true", deterministic=False, importance_threshold=0.3)
