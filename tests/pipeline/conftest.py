"""One tiny uninterrupted `bin/train` run shared by the pipeline tests of a session."""

import types

import pytest

from diverse_distill.data import write_synthetic_ml100k
from tests.pipeline import train_runner


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ml")
    return write_synthetic_ml100k(str(root / "ml-100k"), num_users=40, num_movies=60,
                                  num_ratings=1500, seed=0)


@pytest.fixture(scope="session")
def reference_run(tiny_data, tmp_path_factory):
    """`bin/train` on `TINY_ARGS`, never interrupted: output folder, teacher cache, args."""
    root = tmp_path_factory.mktemp("reference")
    args = [*train_runner.TINY_ARGS, f"--movielens_dir={tiny_data}"]
    result = train_runner.run("train", *args, f"--output_dir={root / 'out'}",
                              f"--cache_dir={root / 'cache'}")
    assert result.returncode == 0, result.stderr[-3000:]
    return types.SimpleNamespace(out=root / "out", cache=root / "cache", args=args,
                                 data=tiny_data, result=result)
