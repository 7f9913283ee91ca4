#!/usr/bin/env python
"""The language teacher: its fine-tuning search, and whether it is diverse from MLP-L.

Usage (from the repository root; every job flag of bin/train is accepted):
    python benchmarks/lm_teacher.py --flagfile=configs/movielens_ids_student_minilm_mlp.cfg \\
        --search_prompt_history=5 --search_learning_rates=1e-4,3e-4,1e-3 \\
        --output_json=docs/results/lm_teacher.json --output_md=docs/results/lm_teacher.md

1. Search: one MiniLM teacher per (`--search_prompt_history` K, `--search_learning_rates`
   lr), each built (or loaded) by the job's `TeacherStore` with the job's other flags
   (`--lm_finetune`, `--lm_teacher_steps`, ...): cached under its key, so a rerun or a
   later `bin/train` with the same flags reuses it. The one with the lowest validation
   MSE is chosen; its test MSE is read after the choice.
2. Diversity of the committee MLP-L + the chosen teacher, on validation and test: each
   teacher's MSE, the correlation of their errors, the plain average's MSE, and the best
   fixed-weight blend `w * minilm + (1 - w) * mlp_l` (w on a 0.01 grid, chosen on
   validation).
"""

import dataclasses
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from diverse_distill.distill.prefix_cache import PrefixCache  # noqa: E402
from diverse_distill.pipeline.flags import config_from_flags, define_job_flags  # noqa: E402
from diverse_distill.pipeline.teacher_factory import (  # noqa: E402
    SPLITS, TeacherStore, last_layer_inputs_dir, predict_split, predictions_path)


def define_flags():
    """bin/train's job flags plus this script's (defined only when run as a script)."""
    define_job_flags()
    flags.DEFINE_list("search_prompt_history", ["5"], "K values tried.")
    flags.DEFINE_list("search_learning_rates", ["1e-4", "3e-4", "1e-3"], "Learning rates tried.")
    flags.DEFINE_list("search_pairs", [], "K:lr pairs tried instead of the whole grid of "
                      "--search_prompt_history x --search_learning_rates (e.g. 5:1e-4,0:3e-4).")
    flags.DEFINE_string("language_teacher", "minilm", "The language teacher searched.")
    flags.DEFINE_string("expert", "mlp_l", "The domain expert of the committee.")
    flags.DEFINE_string("output_json", "", "Where to write the results (JSON).")
    flags.DEFINE_string("output_md", "", "Where to write the results (Markdown).")


FLAGS = flags.FLAGS


def blend_analysis(expert, language, ratings):
    """MSEs, error correlation and the validation-chosen blend of two teachers' predictions.

    Args:
        expert, language: dict split -> predictions (`"validation"`, `"test"`).
        ratings: dict split -> true ratings.

    Returns:
        dict: per split the MSE of each teacher, of the plain average and of the blend,
        and the error correlation; `"blend_weight"` (the language teacher's weight).

    Example:
    ```python
    y = {"validation": np.array([1., 2., 3.]), "test": np.array([2., 3., 4.])}
    a = {s: v + [0.5, -0.5, 0.5] for s, v in y.items()}
    b = {s: v - [0.5, -0.5, 0.5] for s, v in y.items()}
    blend_analysis(a, b, y)["blend_weight"]  # 0.5: opposite errors cancel
    ```
    """
    weights = np.round(np.arange(0, 1.0001, 0.01), 2)

    def mse(p, split):
        return float(np.mean((np.asarray(p) - ratings[split]) ** 2))

    val_scores = [mse(w * language["validation"] + (1 - w) * expert["validation"],
                      "validation") for w in weights]
    w = float(weights[int(np.argmin(val_scores))])
    out = {"blend_weight": w}
    for split in ("validation", "test"):
        e, l = expert[split] - ratings[split], language[split] - ratings[split]
        out[split] = {
            "expert_mse": mse(expert[split], split),
            "language_mse": mse(language[split], split),
            "average_mse": mse((expert[split] + language[split]) / 2, split),
            "blend_mse": mse(w * language[split] + (1 - w) * expert[split], split),
            "error_correlation": float(np.corrcoef(e, l)[0, 1]),
        }
    return out


def _predictions(store, config, name):
    teacher, info = store.get(name)
    path = predictions_path(config, name)
    if os.path.exists(path):
        with np.load(path) as stored:
            return info, {s: stored[s] for s in ("validation", "test")}
    _, val_ds, test_ds = store._datasets(config.teacher_seed)
    return info, {"validation": predict_split(teacher, val_ds), "test": predict_split(teacher, test_ds)}


def cache_build_seconds(config, name):
    """Seconds the last_layer input caches of `name` took to build, from their markers
    (a trial that found them built reports 0 s of its own)."""
    folder = last_layer_inputs_dir(config, name)
    return sum(PrefixCache.recorded_seconds(os.path.join(folder, split)) for split in SPLITS)


def main(argv):
    del argv
    from diverse_distill.data import load_movielens

    base = config_from_flags(FLAGS)
    data = load_movielens(movielens_dir=base.movielens_dir, split_seed=base.split_seed)
    ratings = {s: getattr(data, s)["rating"].astype(np.float64) for s in SPLITS}
    name = FLAGS.language_teacher

    pairs = [pair.split(":") for pair in FLAGS.search_pairs] or [
        (k, lr) for k in FLAGS.search_prompt_history for lr in FLAGS.search_learning_rates]
    trials = []
    for k, lr in pairs:
        config = dataclasses.replace(base, teachers=(name,), prompt_history=int(k),
                                     lm_learning_rate=float(lr))
        start = time.time()
        info, predictions = _predictions(TeacherStore(config, data, {s: {} for s in SPLITS}),
                                         config, name)
        history = info.get("history", {})
        trials.append({
            "prompt_history": int(k), "learning_rate": float(lr),
            "finetune": config.lm_finetune, "steps": config.lm_teacher_steps,
            "validation_mse": info["validation"]["mse"],
            "best_step": info.get("best_epoch"),
            "train_seconds": info.get("train_seconds"),
            "cache_seconds": history.get("cache_seconds"),
            "step_ms": history.get("step_ms"),
            "key": config.teacher_key(name)[0],
            "_test_mse": info["test"]["mse"], "_predictions": predictions,
            "_config": config, "_seconds_here": time.time() - start,
        })
        print(f"{name} K={k} lr={lr}: validation MSE {info['validation']['mse']:.4f}",
              flush=True)
    chosen = min(trials, key=lambda t: t["validation_mse"])
    config = chosen["_config"]
    expert_config = dataclasses.replace(config, teachers=(FLAGS.expert,))
    expert_info, expert = _predictions(
        TeacherStore(expert_config, data, {s: {} for s in SPLITS}), expert_config, FLAGS.expert)
    analysis = blend_analysis(expert, chosen["_predictions"], ratings)
    test = analysis["test"]
    result = {
        "teacher": name, "finetune": config.lm_finetune,
        "prompt_history": config.prompt_history, "learning_rate": config.lm_learning_rate,
        "steps": config.lm_teacher_steps, "sequence_length": config.lm_sequence_length,
        "validation_mse": chosen["validation_mse"], "test_mse": chosen["_test_mse"],
        f"{FLAGS.expert}_test_mse": test["expert_mse"],
        f"{FLAGS.expert}_validation_mse": analysis["validation"]["expert_mse"],
        "error_correlation": test["error_correlation"],
        "validation_error_correlation": analysis["validation"]["error_correlation"],
        "average_test_mse": test["average_mse"],
        "blend_weight": analysis["blend_weight"], "blend_test_mse": test["blend_mse"],
        "blend_validation_mse": analysis["validation"]["blend_mse"],
        # Fine-tuning + validation/test predictions, plus the one-time layer-input caches
        # (however many trials shared them); tokenizing is not included.
        "build_seconds": (chosen["train_seconds"] or 0.0) - (chosen["cache_seconds"] or 0.0)
        + cache_build_seconds(config, name),
        "cache_seconds": cache_build_seconds(config, name),
        "teacher_key": chosen["key"],
        "search": [{k: v for k, v in t.items() if not k.startswith("_")} for t in trials],
    }
    print(json.dumps(result, indent=2))
    if FLAGS.output_json:
        with open(FLAGS.output_json, "w") as f:
            json.dump(result, f, indent=2)
    if FLAGS.output_md:
        with open(FLAGS.output_md, "w") as f:
            f.write(markdown(result, analysis))


def markdown(result, analysis):
    """The tables of docs/results/lm_teacher.md (the prose around them is kept by hand)."""
    lines = ["| K | learning rate | steps | best step | validation MSE | chosen |",
             "|---|---|---|---|---|---|"]
    for t in result["search"]:
        chosen = t["key"] == result["teacher_key"]
        lines.append(f"| {t['prompt_history']} | {t['learning_rate']:g} | {t['steps']} | "
                     f"{t['best_step']} | {t['validation_mse']:.4f} | {'**yes**' if chosen else ''} |")
    lines += ["", "| | validation | test |", "|---|---|---|"]
    for label, key in (("MLP-L", "expert_mse"), (result["teacher"], "language_mse"),
                       ("plain average", "average_mse"),
                       (f"blend (w = {analysis['blend_weight']:.2f} on {result['teacher']})",
                        "blend_mse"), ("error correlation", "error_correlation")):
        lines.append(f"| {label} | {analysis['validation'][key]:.4f} | "
                     f"{analysis['test'][key]:.4f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    define_flags()
    app.run(main)
