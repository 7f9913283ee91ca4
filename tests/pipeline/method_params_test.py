"""`--method`, `--teacher_index`, `--method_params`: every method is buildable from the job."""

import dataclasses

import keras
import numpy as np
import pytest

from diverse_distill.baselines import available_methods
from diverse_distill.baselines.registry import get_method
from diverse_distill.models.mlp_recommender import MLPRecommender
from diverse_distill.pipeline.job_config import JobConfig
from diverse_distill.pipeline.method_params import method_kwargs, parse_method_params
from diverse_distill.pipeline.movielens_job import MovieLensJob
from diverse_distill.students.mlp_student import MLPStudent
from diverse_distill.teachers.mlp_teacher import MLPTeacher

FEATURES = {"user_id": 7, "item_id": 11}
ALL_METHODS = ("ld", "fd", "sckd", "mt", "amtml", "autoskd", "aekd", "diverse_distill")


def config(**kwargs):
    kwargs.setdefault("movielens_dir", "unused")
    return JobConfig(**kwargs)


def committee(names=("mlp_l", "mlp_m")):
    keras.utils.set_random_seed(0)
    student = MLPStudent(FEATURES, embedding_dims=3, hidden_units=(5, 4), name="student")
    teachers = [MLPTeacher(MLPRecommender(FEATURES, embedding_dims=4, hidden_units=(6,)),
                           name=n) for n in names]
    return student, teachers


def test_every_method_is_registered():
    assert set(ALL_METHODS) <= set(available_methods())


def test_parse_method_params():
    assert parse_method_params("") == {}
    assert parse_method_params(" max_weight=0.8 , seed=3,") == {"max_weight": "0.8", "seed": "3"}
    with pytest.raises(ValueError, match="not key=value"):
        parse_method_params("max_weight")
    with pytest.raises(ValueError, match="twice"):
        parse_method_params("seed=1,seed=2")


@pytest.mark.parametrize("method", ALL_METHODS)
def test_build_method_trains_every_method(method, tmp_path):
    names = ("mlp_l",) if method in ("ld", "fd", "sckd") else ("mlp_l", "mlp_m")
    c = config(method=method, teachers=names, alpha=0.3, output_dir=str(tmp_path))
    student, teachers = committee(names)
    model = MovieLensJob(c).build_method(student, teachers, seed=4)
    assert isinstance(model, get_method(method))
    assert model.alpha == pytest.approx(0.3)
    model.compile(optimizer=keras.optimizers.Adagrad(0.05), loss="mse")
    x = {"user_id": np.arange(8) % 7, "item_id": np.arange(8) % 11}
    logs = model.train_on_batch(x, np.ones((8, 1), "float32"), return_dict=True)
    assert all(np.isfinite(float(v)) for v in logs.values())


def test_typed_method_params_reach_the_constructor(tmp_path):
    cases = {
        "aekd": ("max_weight=0.8", {"max_weight": 0.8}),
        "amtml": ("detach_features=false", {"detach_features": False}),
        "autoskd": ("policy_learning_rate=2,baseline_momentum=0.5,initial_logits=0:1",
                    {"policy_learning_rate": 2.0, "baseline_momentum": 0.5,
                     "initial_logits": [0.0, 1.0]}),
        "diverse_distill": ("importance=uniform,question=native",
                            {"importance": "uniform", "question": "native"}),
    }
    for method, (text, expected) in cases.items():
        c = config(method=method, teachers=("mlp_l", "mlp_m"), method_params=text,
                   output_dir=str(tmp_path))
        model = MovieLensJob(c).build_method(*committee(), seed=0)
        for key, value in expected.items():
            assert getattr(model, key) == value, (method, key)


def test_sckd_distill_target_and_teacher_index(tmp_path):
    c = config(method="sckd", teachers=("mlp_l", "mlp_m"), teacher_index=1,
               method_params="distill_target=hidden", output_dir=str(tmp_path))
    student, teachers = committee()
    model = MovieLensJob(c).build_method(student, teachers)
    assert model.distill_target == "hidden"
    assert model.teacher.name == "mlp_m"


def test_autoskd_gets_the_run_seed_unless_given():
    assert method_kwargs(config(method="autoskd", teachers=("mlp_l", "mlp_m")), seed=7)[
        "seed"] == 7
    given = config(method="autoskd", teachers=("mlp_l", "mlp_m"), method_params="seed=3")
    assert method_kwargs(given, seed=7)["seed"] == 3


def test_beta_flag_reaches_amtml_and_diverse_distill():
    for method in ("amtml", "diverse_distill"):
        assert method_kwargs(config(method=method, teachers=("mlp_l", "mlp_m"), beta=0.25))[
            "beta"] == 0.25
    assert "beta" not in method_kwargs(config(method="mt", teachers=("mlp_l", "mlp_m")))


def test_variant_flags_reach_diverse_distill():
    kwargs = method_kwargs(config(variant="paper", injection="add", prediction_weight=2.0))
    assert kwargs["variant"] == "paper"
    assert (kwargs["injection"], kwargs["prediction_weight"]) == ("add", 2.0)
    # Empty / negative flags are left to the variant.
    for name in ("distance", "answer_target", "module_warmup_steps", "importance_objective",
                 "alignment"):
        assert name not in kwargs
    student, teachers = committee()
    model = get_method("diverse_distill")(student, teachers, **kwargs)
    assert (model.injection, model.prediction_weight, model.answer_target) == ("add", 2.0,
                                                                               "label")


def test_keep_fraction_reaches_diverse_distill_without_the_threshold_warmup():
    kwargs = method_kwargs(config(keep_fraction=0.25))
    assert (kwargs["keep_fraction"], kwargs["importance_threshold"]) == (0.25, None)
    assert kwargs["importance_warmup_steps"] == 0  # the warm-up is threshold skipping's
    student, teachers = committee()
    assert get_method("diverse_distill")(student, teachers, **kwargs).keep_fraction == 0.25
    threshold = method_kwargs(config(importance_threshold=0.5))
    assert threshold["keep_fraction"] is None
    assert threshold["importance_warmup_steps"] == JobConfig.importance_warmup_steps


@pytest.mark.parametrize("kwargs,message", [
    (dict(keep_fraction=1.5), "--keep_fraction must lie in"),
    (dict(keep_fraction=0.5, importance_threshold=0.5), "two skipping rules"),
    (dict(variant="best"), "--variant must be one of"),
    (dict(distance="l1"), "--distance must be one of"),
    (dict(injection="mix"), "--injection"),
    (dict(alignment="cosine"), "--alignment"),
    (dict(method="diverse_distill", method_params="injection=add"), "--injection"),
    (dict(method="ld", teachers=("mlp_l", "mlp_m")), "--teacher_index"),
    (dict(method="ld", teachers=("mlp_l", "mlp_m"), teacher_index=2), "out of range"),
    (dict(method="mt", teachers=("mlp_l", "mlp_m"), teacher_index=0), "single-teacher"),
    (dict(method="aekd", teachers=("mlp_l", "mlp_m"), method_params="max_wieght=0.8"),
     r"unknown key\(s\) \['max_wieght'\] for --method=aekd .*it takes: max_weight"),
    (dict(method="ld", method_params="temperature=2"), r"unknown key\(s\) \['temperature'\]"),
    (dict(method="aekd", teachers=("mlp_l", "mlp_m"), method_params="alpha=2"), "--alpha"),
    (dict(method="diverse_distill", method_params="alignment=softmax"), "--alignment"),
    (dict(method="aekd", teachers=("mlp_l", "mlp_m"), method_params="max_weight=big"),
     "takes a number"),
    (dict(method="amtml", teachers=("mlp_l", "mlp_m"), method_params="detach_features=maybe"),
     "true or false"),
    (dict(method="distill_everything"), "Unknown distillation method"),
])
def test_bad_method_flags_fail_at_config_time(kwargs, message):
    with pytest.raises(ValueError, match=message):
        config(**kwargs)


def test_new_fields_keep_old_runs_resumable(tmp_path):
    """A run started before --teacher_index/--method_params existed still resumes."""
    import json
    import os

    from diverse_distill.pipeline.run_state import RunState

    c = config(output_dir=str(tmp_path))
    state = RunState(c, log=lambda m: None)
    state.start()
    state.save("s0_seed0", {"test": {"mse": 1.0}})
    path = os.path.join(state.phases_dir, "config.json")
    with open(path) as f:
        old = json.load(f)
    del old["teacher_index"], old["method_params"]
    with open(path, "w") as f:
        json.dump(old, f)
    RunState(c, log=lambda m: None).start()  # no "different configuration" error
    changed = dataclasses.replace(c, method_params="importance=uniform")
    with pytest.raises(ValueError, match="different configuration"):
        RunState(changed, log=lambda m: None).start()


def test_bin_train_runs_a_baseline_on_one_teacher_of_a_committee(tiny_data, tmp_path):
    """`bin/train --method=sckd --teacher_index=1 --method_params=...` end to end."""
    import json

    from tests.pipeline import train_runner

    args = [a for a in train_runner.TINY_ARGS
            if not a.startswith(("--teachers=", "--importance_threshold="))]
    result = train_runner.run(
        "train", *args, "--teachers=mlp_s,mlp_m", "--method=sckd", "--teacher_index=1",
        "--method_params=distill_target=hidden", f"--movielens_dir={tiny_data}",
        f"--output_dir={tmp_path / 'out'}", f"--cache_dir={tmp_path / 'cache'}",
        "--noexport_student", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["method"] == "sckd"
    assert metrics["config"]["teacher_index"] == 1
    stats = metrics["runs"][0]["distilled"]["method_stats"]
    assert 0.0 <= stats["conflict_fraction"] <= 1.0
    assert np.isfinite(metrics["summary"]["distilled"]["mse"]["mean"])


def test_bin_train_unknown_method_param_is_one_line(tmp_path):
    from tests.pipeline import train_runner

    result = train_runner.run("train", "--method=aekd", "--teachers=mlp_s,mlp_m",
                              "--method_params=max_wieght=0.8", "--movielens_dir=unused",
                              f"--output_dir={tmp_path}", timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: --method_params: unknown key(s) ['max_wieght']")
    assert "max_weight" in lines[-1]
    assert "Traceback" not in result.stderr


def test_bin_train_baseline_reads_the_language_teachers_cached_outputs(tiny_data, tmp_path):
    """`--method=mt` with a language teacher: its outputs are cached once, on disk, and reused."""
    import json

    from tests.pipeline import train_runner

    args = [a for a in train_runner.TINY_ARGS
            if not a.startswith(("--teachers=", "--importance_threshold="))]
    common = [*args, "--teachers=mlp_s,tiny_bert", "--method=mt", "--lm_sequence_length=16",
              "--lm_teacher_steps=10", f"--movielens_dir={tiny_data}",
              f"--cache_dir={tmp_path / 'cache'}", "--noexport_student"]
    # The first run also runs LD on the committee's best teacher as a side run: LD reads
    # one teacher, so it builds (and is handed) that teacher's output cache alone.
    first = train_runner.run("train", *common, f"--output_dir={tmp_path / 'a'}",
                             "--compare_methods=ld", timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "output cache tiny_bert" in first.stdout + first.stderr
    outputs = list((tmp_path / "cache").glob("tiny_bert-*/outputs_from_prefix_*/COMPLETE"))
    assert len(outputs) == 1
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert np.isfinite(metrics["summary"]["distilled"]["mse"]["mean"])
    assert metrics["wall_seconds"]["output_cache_tiny_bert"] > 0
    side = json.loads((tmp_path / "a" / "compare_ld" / "metrics.json").read_text())
    assert side["config"]["teacher_index"] == ["mlp_s", "tiny_bert"].index(
        metrics["best_teacher"])
    assert np.isfinite(side["summary"]["distilled"]["mse"]["mean"])
    side_lines = [line for line in first.stdout.splitlines() if line.startswith("  [ld] ")]
    assert any("output cache tiny_bert" in line for line in side_lines) == (
        metrics["best_teacher"] == "tiny_bert")
    # A second run reopens the cache instead of computing it again.
    second = train_runner.run("train", *common, f"--output_dir={tmp_path / 'b'}", timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "built in 0 s" in second.stdout + second.stderr
    again = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert again["summary"]["distilled"]["mse"]["mean"] == pytest.approx(
        metrics["summary"]["distilled"]["mse"]["mean"], abs=1e-6)
