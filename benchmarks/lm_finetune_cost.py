#!/usr/bin/env python
"""What each `--lm_finetune` option costs on this machine, measured on real prompts.

Usage:
    python benchmarks/lm_finetune_cost.py --output_json=benchmarks/results/lm_finetune_cost.json
    python benchmarks/lm_finetune_cost.py --quick   # a tiny random BERT, ~20 s

For all-MiniLM-L6-v2 and MovieLens prompts with the user's history (`--prompt_history`,
K = 5 by default, packed to the longest train prompt: 149 tokens), batch 64, AdamW:

    full        one `train_on_batch` of the whole teacher (every weight)
    lora        the same with `backbone.enable_lora(rank)` (adapters + head train)
    last_layer  one step of `lm_finetune.finetune_last_layer` (the last layer's [CLS] path
                + head on cached inputs of the frozen lower layers)
    head        no step: a ridge head on the frozen answers (one forward pass per row)

and the one-time passes over the rows: the frozen layers below the last one
(`last_layer`'s cache, rows by length, batches trimmed) and the whole frozen model
(`head`'s answers). Each step time is the median of `--repeats` steps after a warm-up.
The projection: one pass over train + validation + test (100,000 rows) plus
`--project_steps` steps (default 10,000 of 64 rows: 8 epochs of the 80,000 train rows).
"""

import json
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from diverse_distill.distill.prefix_cache import PrefixCache  # noqa: E402
from diverse_distill.pipeline.lm_finetune import finetune_last_layer  # noqa: E402
from diverse_distill.teachers.bert_teacher import BertTeacher  # noqa: E402

flags.DEFINE_string("movielens_dir", "../shared/data/ml-100k", "ml-100k folder.")
flags.DEFINE_integer("prompt_history", 5, "K of the prompts.")
flags.DEFINE_integer("rows", 1024, "Prompts timed for the one-time passes.")
flags.DEFINE_integer("batch_size", 64, "Rows per fine-tuning step.")
flags.DEFINE_integer("repeats", 10, "Timed steps per option (after one warm-up step).")
flags.DEFINE_integer("lora_rank", 8, "Rank of the LoRA adapters.")
flags.DEFINE_integer("project_steps", 10000, "Steps in the projected wall time.")
flags.DEFINE_integer("project_rows", 100000, "Rows of the one-time passes in the projection.")
flags.DEFINE_bool("quick", False, "A tiny random BERT on random tokens (for the test).")
flags.DEFINE_string("output_json", "", "Where to write the results.")
FLAGS = flags.FLAGS


def _inputs():
    """`(teacher factory, features of FLAGS.rows prompts, ratings)`."""
    rng = np.random.default_rng(0)
    if FLAGS.quick:
        def make():
            keras.utils.set_random_seed(0)
            return BertTeacher.tiny(num_layers=3, name="minilm")
        lengths = rng.integers(8, 33, FLAGS.rows)
        mask = (np.arange(32)[None] < lengths[:, None]).astype("int32")
        x = {"minilm_token_ids": (rng.integers(2, 64, mask.shape) * mask).astype("int32"),
             "minilm_padding_mask": mask}
        return make, x, rng.uniform(1, 5, FLAGS.rows).astype("float32")
    from diverse_distill.data import load_movielens
    from diverse_distill.pipeline.teacher_factory import prompt_token_counts

    data = load_movielens(movielens_dir=FLAGS.movielens_dir, split_seed=42)
    make = BertTeacher.from_minilm_wheel
    teacher = make()
    prompts = list(data.prompts("train", history=FLAGS.prompt_history))
    length = int(prompt_token_counts(teacher, prompts).max())  # --lm_sequence_length=0
    rows = rng.choice(len(prompts), FLAGS.rows, replace=False)
    x = teacher.preprocess([prompts[i] for i in rows], length)
    x = {k: np.asarray(v) for k, v in x.items()}
    return make, x, data.train["rating"][rows].astype("float32")


def _median_step(step, repeats):
    step()  # warm-up (tracing)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _full_step_seconds(make, x, y, lora):
    teacher = make()
    if lora:
        teacher.backbone.enable_lora(FLAGS.lora_rank)
    teacher.compile(optimizer=keras.optimizers.AdamW(5e-5, weight_decay=0.01), loss="mse")
    b = FLAGS.batch_size
    batch = {k: v[:b] for k, v in x.items()}
    seconds = _median_step(lambda: teacher.train_on_batch(batch, y[:b]), FLAGS.repeats)
    trained = sum(int(np.prod(v.shape)) for v in teacher.trainable_weights)
    return seconds, trained


def main(argv):
    del argv
    make, x, y = _inputs()
    b, n = FLAGS.batch_size, FLAGS.rows
    results = {}
    for option, lora in (("full", False), ("lora", True)):
        seconds, trained = _full_step_seconds(make, x, y, lora)
        results[option] = {"step_seconds": seconds, "pass_rows_per_second": None,
                           "trained_parameters": trained}
        print(f"{option}: {1000 * seconds:.0f} ms/step, {trained:,} trained", flush=True)

    teacher = make()
    mask_key = teacher.padding_mask_key
    top = teacher.split_at(teacher.backbone.num_layers - 1, suffix_mode="query_token")
    start = time.perf_counter()
    PrefixCache(top, padding_mask_key=mask_key).build(x, batch_size=128)
    cache_rate = n / (time.perf_counter() - start)
    features = {"train": x, "validation": {k: v[:b] for k, v in x.items()}}
    ratings = {"train": y, "validation": y[:b]}
    steps = FLAGS.repeats * 5
    result = finetune_last_layer(teacher, features, ratings, steps=steps, learning_rate=1e-4,
                                 batch_size=b, eval_every=steps, log=lambda *_: None)
    trained = sum(int(np.prod(v.shape)) for v in
                  teacher.backbone.transformer_layers[-1].trainable_weights
                  + teacher.head.trainable_weights)
    results["last_layer"] = {"step_seconds": result["train_seconds"] / steps,
                             "pass_rows_per_second": cache_rate, "trained_parameters": trained}
    print(f"last_layer: {result['step_ms']:.1f} ms/step (incl. tracing), cache pass "
          f"{cache_rate:.1f} rows/s", flush=True)

    whole = teacher.split_at(0, suffix_mode="exact")
    answers = PrefixCache(whole, padding_mask_key=mask_key)

    def frozen_answers(batch):  # the whole frozen model: what the ridge head reads
        context = whole.prefix(batch)
        return whole.suffix(whole.native_question(batch, context), context)[0]

    answers.compute = frozen_answers
    start = time.perf_counter()
    answers.build(x, batch_size=128)
    head_rate = n / (time.perf_counter() - start)
    results["head"] = {"step_seconds": 0.0, "pass_rows_per_second": head_rate,
                       "trained_parameters": teacher.backbone.hidden_dim + 1}
    print(f"head: forward pass {head_rate:.1f} rows/s", flush=True)

    for option, row in results.items():
        one_time = FLAGS.project_rows / row["pass_rows_per_second"] if row[
            "pass_rows_per_second"] else 0.0
        # full / lora predict validation and test with the whole model after training
        if option in ("full", "lora"):
            one_time = 20000 / head_rate
        row["projected_minutes"] = (one_time + FLAGS.project_steps * row["step_seconds"]) / 60
        row["one_time_pass_minutes"] = one_time / 60
    out = {
        "command": "python benchmarks/lm_finetune_cost.py" + (" --quick" if FLAGS.quick else ""),
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "prompt_history": FLAGS.prompt_history, "sequence_length": int(x[mask_key].shape[1]),
        "mean_tokens": float(x[mask_key].sum(1).mean()), "batch_size": b,
        "project_steps": FLAGS.project_steps, "project_rows": FLAGS.project_rows,
        "options": results,
    }
    print(json.dumps(out, indent=2))
    if FLAGS.output_json:
        os.makedirs(os.path.dirname(FLAGS.output_json) or ".", exist_ok=True)
        with open(FLAGS.output_json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    app.run(main)
