"""Bad input to `bin/train` fails at once: exit status 2 and one line `error: <what is
wrong and how to fix it>` on stderr, no Python traceback (unless --debug)."""

import concurrent.futures
import dataclasses
import os
import shutil

import pytest

from diverse_distill.data import load_movielens
from diverse_distill.models.mlp_recommender import MLPRecommender
from diverse_distill.pipeline import cli
from diverse_distill.pipeline.job_config import JobConfig
from tests.pipeline import train_runner


def _config(args):
    """The `JobConfig` of `--name=value` arguments (enough of absl for the tests)."""
    fields = {f.name: f for f in dataclasses.fields(JobConfig)}
    values = {}
    for arg in args:
        name, value = arg[2:].split("=", 1)
        default = fields[name].default
        if isinstance(default, bool):
            values[name] = value.lower() == "true"
        elif isinstance(default, tuple):
            values[name] = tuple(value.split(","))
        else:
            values[name] = type(default)(value)
    return JobConfig(**values)


def _teacher_folder(cache, args):
    key, _ = _config(args).teacher_key("mlp_s")
    folder = os.path.join(cache, key)
    os.makedirs(folder)
    with open(os.path.join(folder, "teacher.json"), "w") as f:
        f.write("{}")
    return os.path.join(folder, "teacher.weights.h5")


# name -> (extra args, what the one line must say)
CASES = {
    "misspelled_flag": (["--stpes=3"], "Did you mean: steps"),
    "wrong_type": (["--steps=abc"], "--steps=abc"),
    "missing_data_folder": (["--movielens_dir={tmp}/nowhere"], "MovieLens folder not found"),
    "rating_outside_1_to_5": (["--movielens_dir={tmp}/bad_rating"],
                              "line 3: rating must be a number in 1..5, got '7'"),
    "malformed_line": (["--movielens_dir={tmp}/malformed"],
                       "line 5: expected 4 '\\t'-separated fields"),
    "missing_preset": (["--teachers=t5", "--t5_preset={tmp}/no_t5"],
                       "must be a local preset folder"),
    "corrupt_teacher_checkpoint": (["--cache_dir={tmp}/corrupt_cache"],
                                   "Delete that folder to retrain the teacher"),
    "teacher_checkpoint_of_other_dims": (["--cache_dir={tmp}/other_dims_cache"],
                                         "cannot be loaded"),
    "teacher_does_not_fit_config": (["--teachers=minilm", "--bert_injection_layer=6"],
                                    "set with --bert_injection_layer"),
    "changed_config_in_a_run_folder": (["--output_dir={reference}", "--steps=30"],
                                       "holds a run with a different configuration"),
}


@pytest.fixture(scope="module")
def results(reference_run, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad")
    for name, line, replace in (("bad_rating", 3, ("\t", "\t7\t")), ("malformed", 5, None)):
        shutil.copytree(reference_run.data, tmp / name)
        lines = (tmp / name / "u.data").read_text().splitlines()
        if replace:
            fields = lines[line - 1].split("\t")
            lines[line - 1] = "\t".join(fields[:2] + ["7"] + fields[3:])
        else:
            lines[line - 1] = "garbage line"
        (tmp / name / "u.data").write_text("\n".join(lines) + "\n")
    base = [*reference_run.args, f"--cache_dir={tmp}/cache"]
    with open(_teacher_folder(tmp / "corrupt_cache", base), "wb") as f:
        f.write(b"not an HDF5 file")
    data = load_movielens(movielens_dir=reference_run.data, split_seed=42)
    other = MLPRecommender(data.categorical_vocab_sizes, 4, hidden_units=(4,))
    other.save_weights(_teacher_folder(tmp / "other_dims_cache", base))

    def run(name):
        extra, _ = CASES[name]
        extra = [a.format(tmp=tmp, reference=reference_run.out) for a in extra]
        output = [] if any(a.startswith("--output_dir") for a in extra) else [
            f"--output_dir={tmp}/out_{name}"]
        return name, train_runner.run("train", *base, *output, *extra, timeout=240)

    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        return dict(pool.map(run, CASES))


@pytest.mark.parametrize("name", sorted(CASES))
def test_one_clear_line_and_exit_2(results, name):
    result = results[name]
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = train_runner.error_lines(result.stderr)
    assert len(errors) == 1, result.stderr[-3000:]
    assert result.stderr.rstrip().endswith(errors[0])  # the last thing printed
    assert "\n" not in errors[0] and CASES[name][1] in errors[0], errors[0]


def test_debug_adds_the_traceback(capsys):
    try:
        raise ValueError("what is wrong,\n  and how to fix it")
    except ValueError as error:
        with pytest.raises(SystemExit) as exited:
            cli.fail(error, debug=True)
    assert exited.value.code == cli.EXIT_BAD_INPUT
    stderr = capsys.readouterr().err
    assert "Traceback (most recent call last)" in stderr
    assert stderr.rstrip().splitlines()[-1] == "error: what is wrong, and how to fix it"


def test_debug_is_read_from_the_command_line():
    assert cli._debug_requested(["bin/train", "--debug"])
    assert cli._debug_requested(["bin/train", "--verbosity=1"])
    assert not cli._debug_requested(["bin/train", "--verbosity=0", "--steps=3"])


def test_reference_run_folder_is_untouched_by_a_refused_rerun(results, reference_run):
    assert results["changed_config_in_a_run_folder"].returncode == 2
    assert '"steps": 40' in (reference_run.out / "phases" / "config.json").read_text()


def test_threshold_range_follows_what_it_is_compared_with():
    with pytest.raises(ValueError, match=r"\[0, 1\] with --importance_threshold_on=importance"):
        JobConfig(teachers=("mlp_l", "mlp_m"), importance_threshold=1.5)
    share = JobConfig(teachers=("mlp_l", "mlp_m"), importance_threshold=1.5,
                      importance_threshold_on="share")
    assert share.threshold == 1.5
    with pytest.raises(ValueError, match=r"\[0, 2\] with --importance_threshold_on=share"):
        JobConfig(teachers=("mlp_l", "mlp_m"), importance_threshold=2.5,
                  importance_threshold_on="share")
    with pytest.raises(ValueError, match="--importance_threshold_on must be one of"):
        JobConfig(importance_threshold_on="ratio")
