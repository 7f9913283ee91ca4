"""Step time of DiverseDistill against the committee size and the batch, with and without skipping.

Issue #17 item 3: the cost of a cached DiverseDistill step must grow linearly in the number of
teachers actually run. The committee is K = 1..4 language teachers of the kind the configs run
(all-MiniLM-L6-v2, prefix cached, `query_token` suffix at `--injection_layer`; one backbone,
each teacher its own head and name, so each runs on its own), the student the paper's ids-only
MLP-S. Every (K, batch) is timed with every teacher on every row and with fixed-size skipping
(`keep_fraction`: each teacher runs its top rows by importance). A least-squares line
`ms = a + b·K` per batch and mode gives the cost per teacher (b) and how straight it is (R²).

Run (idle machine; ~10 min on 2 cores):

```bash
python benchmarks/step_scaling.py --update_doc=docs/performance.md
python benchmarks/step_scaling.py --quick --output_json=/tmp/s.json --output_png=/tmp/s.png
```

Writes `benchmarks/results/step_scaling.json`, `docs/step_scaling.png` and (with
`--update_doc`) the `step_scaling` block of docs/performance.md.
"""

import datetime
import json
import math
import os
import platform
import sys
import time

from absl import app, flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks.doc_blocks import cpu_model, replace_block  # noqa: E402
from diverse_distill.stats import linear_fit  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_boolean("quick", False, "Tiny BERT, small batches, few repeats (a smoke test).")
flags.DEFINE_list("teachers", ["1", "2", "3", "4"], "Committee sizes.")
flags.DEFINE_list("batch_sizes", ["32", "64", "128", "256"], "Batch sizes.")
flags.DEFINE_float("keep_fraction", 0.5, "Rows each teacher runs with fixed-size skipping.")
flags.DEFINE_integer("sequence_length", 149, "Prompt tokens (the configs' MiniLM prompts: 149).")
flags.DEFINE_integer("injection_layer", 5, "The layer the question enters (the configs: 5).")
flags.DEFINE_integer("repeats", 10, "Timed steps per cell.")
flags.DEFINE_integer("warmup", 2, "Untimed steps per cell first.")
flags.DEFINE_string("output_json", "", "Default benchmarks/results/step_scaling.json.")
flags.DEFINE_string("output_png", "", "Default docs/step_scaling.png.")
flags.DEFINE_string("update_doc", "", "A markdown file whose `step_scaling` block is replaced.")

MODES = (("all_rows", None), ("fixed_size_skipping", "keep_fraction"))


def build_committee(num_teachers, backbone, injection_layer):
    from diverse_distill.teachers.bert_teacher import BertTeacher

    return [BertTeacher(backbone, suffix_mode="query_token", injection_layer=injection_layer,
                        initial_prediction=3.5, name=f"lm{k}") for k in range(num_teachers)]


def main(argv):
    del argv
    import keras
    import numpy as np
    import tensorflow as tf

    from diverse_distill.distill.distillation_model import DistillationModel
    from diverse_distill.distill.prefix_cache import PrefixCache
    from diverse_distill.students.mlp_student import MLPStudent
    from diverse_distill.teachers.bert_teacher import BertTeacher

    start = time.time()
    log = lambda m: print(f"[{time.time() - start:6.1f} s] {m}", flush=True)
    sizes = sorted(int(k) for k in FLAGS.teachers)
    batches = sorted(int(b) for b in FLAGS.batch_sizes)
    if not sizes or not batches or min(sizes) < 1 or min(batches) < 1:
        raise app.UsageError("--teachers and --batch_sizes need positive integers.")
    if len(sizes) < 2:
        raise app.UsageError("--teachers needs two sizes or more to fit a line.")
    keras.utils.set_random_seed(0)
    if FLAGS.quick:
        backbone = BertTeacher.tiny(num_layers=2, max_sequence_length=32).backbone
        length, injection, users, movies, id_dim, units = 12, 1, 20, 30, 8, (8, 4)
    else:
        backbone = BertTeacher.from_minilm_wheel().backbone
        length, injection = FLAGS.sequence_length, FLAGS.injection_layer
        users, movies, id_dim, units = 944, 1643, 768, (128, 64)
    teachers = build_committee(max(sizes), backbone, injection)
    rng = np.random.default_rng(0)
    rows = 2 * max(batches)  # two distinct batches of the largest size, cycled
    lengths = rng.integers(max(2, (2 * length) // 3), length + 1, rows)
    mask = (np.arange(length)[None, :] < lengths[:, None]).astype("int32")
    features = {"user_id": rng.integers(0, users, rows).astype("int32"),
                "movie_id": rng.integers(0, movies, rows).astype("int32")}
    ratings = rng.integers(1, 6, (rows, 1)).astype("float32")
    for teacher in teachers:  # every teacher reads its own features and its own cache
        features[teacher.token_ids_key] = (rng.integers(2, backbone.vocabulary_size,
                                                        (rows, length)) * mask).astype("int32")
        features[teacher.padding_mask_key] = mask
    caches = []
    for teacher in teachers:
        cache = PrefixCache(teacher, storage_dtype="float16",
                            padding_mask_key=teacher.prefix_padding_mask_key)
        caches.append(cache.build({k: features[k] for k in teacher.feature_keys
                                   if k in features}, batch_size=64))
        features.update(cache.features())
    log(f"{len(teachers)} teachers, prefix caches of {rows} rows built")

    cells = []
    for batch in batches:
        data = [({k: tf.constant(v[i * batch:(i + 1) * batch]) for k, v in features.items()},
                 tf.constant(ratings[i * batch:(i + 1) * batch])) for i in range(2)]
        for k in sizes:
            for mode, _ in MODES:
                keras.utils.set_random_seed(0)
                student = MLPStudent({"user_id": users, "movie_id": movies}, id_dim,
                                     hidden_units=units, name="student")
                model = DistillationModel(
                    student, teachers[:k], prefix_caches=caches[:k],
                    keep_fraction=FLAGS.keep_fraction if mode != "all_rows" else None)
                model.compile(optimizer=keras.optimizers.Adagrad(0.06), loss="mse")
                for i in range(FLAGS.warmup):
                    model.train_on_batch(*data[i % 2])
                times = []
                for i in range(FLAGS.repeats):
                    t0 = time.perf_counter()
                    logs = model.train_on_batch(*data[i % 2], return_dict=True)
                    times.append(time.perf_counter() - t0)
                kept = float(np.mean([float(logs[f"pass_fraction_lm{j}"]) for j in range(k)]))
                cells.append({"batch": batch, "teachers": k, "mode": mode,
                              "ms_median": 1e3 * float(np.median(times)),
                              "ms_p25": 1e3 * float(np.percentile(times, 25)),
                              "ms_p75": 1e3 * float(np.percentile(times, 75)),
                              "pass_fraction": kept,
                              "teacher_rows_run": k * math.ceil(kept * batch - 1e-9)})
                log(f"batch {batch} K={k} {mode}: {cells[-1]['ms_median']:.1f} ms "
                    f"(rows run per teacher {kept:.0%})")

    fits = []
    for batch in batches:
        for mode, _ in MODES:
            mine = [c for c in cells if c["batch"] == batch and c["mode"] == mode]
            a, b, r2 = linear_fit([c["teachers"] for c in mine], [c["ms_median"] for c in mine])
            fits.append({"batch": batch, "mode": mode, "intercept_ms": a,
                         "ms_per_teacher": b, "r_squared": r2})
    output = {
        "command": " ".join([os.path.relpath(sys.argv[0], REPO)] + sys.argv[1:]),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": {"cpu": cpu_model(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "tensorflow": tf.__version__, "keras": keras.__version__},
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "config": {"quick": FLAGS.quick, "sequence_length": length, "injection_layer": injection,
                   "keep_fraction": FLAGS.keep_fraction, "repeats": FLAGS.repeats,
                   "warmup": FLAGS.warmup, "teachers": sizes, "batch_sizes": batches},
        "cells": cells,
        "fits": fits,
        "wall_seconds": time.time() - start,
    }
    json_path = FLAGS.output_json or os.path.join(REPO, "benchmarks", "results",
                                                  "step_scaling.json")
    png_path = FLAGS.output_png or os.path.join(REPO, "docs", "step_scaling.png")
    for path in (json_path, png_path):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(json_path, "w") as f:
        json.dump(output, f, indent=1)
    plot(output, png_path)
    table = markdown(output, os.path.relpath(png_path, os.path.join(REPO, "docs")))
    print(table)
    if FLAGS.update_doc:
        replace_block(FLAGS.update_doc, "step_scaling", table)
    log(f"wrote {json_path}, {png_path}")


def plot(output, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, batch in enumerate(output["config"]["batch_sizes"]):
        color = f"C{i}"
        for mode, style in (("all_rows", "-"), ("fixed_size_skipping", "--")):
            mine = [c for c in output["cells"] if c["batch"] == batch and c["mode"] == mode]
            label = f"batch {batch}" + ("" if mode == "all_rows" else
                                        f", top {output['config']['keep_fraction']:.0%} rows")
            ax.plot([c["teachers"] for c in mine], [c["ms_median"] for c in mine], style,
                    marker="o", color=color, label=label)
    ax.set_xlabel("language teachers in the committee")
    ax.set_ylabel("ms per DiverseDistill step (median)")
    ax.set_xticks(output["config"]["teachers"])
    ax.set_title("Cached DiverseDistill step vs committee size "
                 f"({output['machine']['cpus']} CPUs)")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(output, png):
    c = output["config"]
    lines = [f"Command: `{output['command']}`  ",
             f"Date: {output['date']}; {output['machine']['cpu']}, {output['machine']['cpus']} "
             f"CPUs, TF {output['machine']['tensorflow']}; load average at the end "
             f"{output['load_average_end']}; wall {output['wall_seconds']:.0f} s. Prompts of "
             f"{c['sequence_length']} tokens, query-token suffix from layer "
             f"{c['injection_layer']}, median of {c['repeats']} steps after {c['warmup']}.", "",
             f"![step time vs committee size]({png})", "",
             "| batch | mode | " + " | ".join(f"K={k} ms" for k in c["teachers"])
             + " | ms per teacher (slope) | R² |",
             "|---|---|" + "---:|" * (len(c["teachers"]) + 2)]
    for fit in output["fits"]:
        mine = [x for x in output["cells"]
                if x["batch"] == fit["batch"] and x["mode"] == fit["mode"]]
        mode = ("every row" if fit["mode"] == "all_rows"
                else f"top {c['keep_fraction']:.0%} rows")
        lines.append(f"| {fit['batch']} | {mode} | "
                     + " | ".join(f"{x['ms_median']:.1f}" for x in mine)
                     + f" | {fit['ms_per_teacher']:.1f} | {fit['r_squared']:.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    app.run(main)
