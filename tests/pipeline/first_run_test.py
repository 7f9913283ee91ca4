"""`bin/train` on its embedded defaults (the README's first run), shrunk only in size: an
ids-only student, LD on the same teacher as a side run sharing S0, the one-screen table,
learning_curves.png and progress lines with an ETA. (Under `--strategy=mirrored` the side
run shares its parent's strategy: tests/pipeline/distribution_test.py.)"""

import json

import pytest

from diverse_distill.pipeline.method_params import COMPARISON_ALPHAS
from tests.pipeline import train_runner

SIZE_ONLY = ("--max_train_examples=800", "--id_embedding_dim=16", "--student_hidden_units=16,8",
             "--steps=40", "--teacher_steps=40", "--eval_every=20", "--checkpoint_every=20",
             "--question_embedding_dim=8", "--num_components=2", "--module_intermediate_dim=16",
             "--seeds=0", "--verbose=0")


@pytest.fixture(scope="module")
def first_run(tiny_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("first_run")
    result = train_runner.run("train", *SIZE_ONLY, f"--movielens_dir={tiny_data}",
                              f"--output_dir={root / 'out'}", f"--cache_dir={root / 'cache'}",
                              "--noexport_student",
                              timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "out", result.stdout


def test_defaults_are_an_ids_only_student_and_ld_on_the_same_teacher(first_run):
    out, _ = first_run
    main = json.loads((out / "metrics.json").read_text())
    assert main["config"]["student_features"] == "ids"
    assert main["config"]["teachers"] == ["mlp_l"] and main["method"] == "diverse_distill"
    side = json.loads((out / "compare_ld" / "metrics.json").read_text())
    assert side["method"] == "ld" and side["config"]["compare_methods"] == []
    # LD at the alpha chosen for it on validation (docs/results/quality.md), not DD's.
    assert side["config"]["alpha"] == COMPARISON_ALPHAS["ld"] != main["config"]["alpha"]
    # The side run distils the same teacher from the same S0 (read from the cache).
    assert side["teachers"]["mlp_l"]["test"] == pytest.approx(main["teachers"]["mlp_l"]["test"],
                                                              abs=1e-6)
    assert side["runs"][0]["s0"]["test"]["mse"] == pytest.approx(
        main["runs"][0]["s0"]["test"]["mse"], abs=1e-6)
    info = main["comparisons"]["ld"]
    assert info["teacher"] == "mlp_l"
    assert info["summary"]["distilled"]["mse"]["mean"] == pytest.approx(
        side["summary"]["distilled"]["mse"]["mean"])


def test_one_screen_summary_with_ld_row_curves_and_progress(first_run):
    out, stdout = first_run
    summary = stdout[stdout.rindex("=" * 72, 0, stdout.rindex("=" * 72)):]
    side = json.loads((out / "compare_ld" / "metrics.json").read_text())
    ld_mse = side["summary"]["distilled"]["mse"]["mean"]
    assert f"ld α={COMPARISON_ALPHAS['ld']:g} (mlp_l)" in summary and f"{ld_mse:.4f}" in summary
    assert "GRR of ld (mlp_l)" in summary
    assert "shortened schedule: students 40 steps, teachers 40" in summary
    assert f"learning curves: {out / 'learning_curves.png'}" in summary
    assert (out / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Every long phase reports its progress with an ETA: teacher, S0, the method, LD.
    for phase in ("[teacher_mlp_l] step", "[s0_seed0] step", "[diverse_distill_seed0] step",
                  "[ld] [ld_seed0] step"):
        lines = [l for l in stdout.splitlines() if phase in l and "ETA" in l]
        assert lines, (phase, stdout[-2000:])
