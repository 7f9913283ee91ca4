"""`--student_features` gives the student (and S0) its own inputs, the teachers keep theirs."""

import pytest

from diverse_distill.data import load_movielens, write_synthetic_ml100k
from diverse_distill.pipeline.job_config import JobConfig
from diverse_distill.pipeline.movielens_job import MovieLensJob
from diverse_distill.pipeline.teacher_factory import build_mlp


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ml")
    folder = write_synthetic_ml100k(str(root / "ml-100k"), num_users=20, num_movies=30,
                                    num_ratings=300, seed=0)
    return load_movielens(movielens_dir=folder)


def _config(**kwargs):
    return JobConfig(id_embedding_dim=8, attribute_embedding_dim=2, **kwargs)


def test_id_only_student_reads_ids_while_teachers_read_attributes(data):
    config = _config(student_features="ids")
    student = MovieLensJob(config).build_student(data, seed=0)
    teacher = build_mlp(config, data, (16,), name="mlp_l")
    assert set(student.categorical_features) == {"user_id", "movie_id"}
    assert not student.numeric_features
    assert set(teacher.categorical_features) > {"user_id", "movie_id"}
    assert teacher.numeric_features
    # Fewer inputs, fewer parameters: ids only is the smaller model.
    same = MovieLensJob(_config(student_features="")).build_student(data, seed=0)
    assert student.count_params() < same.count_params()


def test_s0_cache_key_follows_the_student_features():
    same = _config(student_features="")  # the student reads what the teachers read
    assert _config(student_features="all").s0_key(0) == same.s0_key(0)  # same inputs
    assert _config(student_features="ids").s0_key(0) != same.s0_key(0)
    assert _config().s0_key(0) == _config(student_features="ids").s0_key(0)  # the default
    # The teachers do not depend on the student's inputs.
    assert _config(student_features="ids").teacher_key("mlp_l") == same.teacher_key("mlp_l")


def test_unknown_student_features_is_a_clear_error():
    with pytest.raises(ValueError, match="--student_features"):
        _config(student_features="genres")
