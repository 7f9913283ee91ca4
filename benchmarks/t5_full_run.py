#!/usr/bin/env python
"""Times a whole `bin/train` run with MLP-L + a T5-small-shaped teacher on ML-100K.

Flan-T5 weights cannot be downloaded here, so the teacher is a randomly
initialised `T5Backbone` of Flan-T5-small's shape (vocabulary 32128, 6+6
layers, 8 heads, hidden 512, gated-GELU feedforward 1024; 70.7M parameters),
written once as a local KerasHub preset folder and passed to bin/train with
`--t5_preset`. Time does not depend on the weights, so the phases' wall
times are those of the real model; its MSE means nothing (random encoder +
ridge head) and is not reported as a result.

The run is `configs/movielens_t5_mlp.cfg` with `--lm_finetune=head` (frozen
T5 + ridge head: fine-tuning all of T5 for 2,500 steps takes hours on 2
cores and is a one-off cached phase, not the distillation) and one seed.
The script prints and saves (JSON) every phase's wall time from
`metrics.json`, the process CPU time of the run and the load average.

    python benchmarks/t5_full_run.py                          # float32 teachers
    python benchmarks/t5_full_run.py --mixed_precision=bf16   # bf16 teachers
"""

import json
import os
import resource
import subprocess
import sys
import time

from absl import app, flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = flags.FLAGS
flags.DEFINE_string("preset_dir", os.path.join(REPO, "runs", "t5_small_shaped_preset"),
                    "Where the random T5-small-shaped preset is written (once).")
flags.DEFINE_string("output_dir", "", "bin/train's output folder "
                    "(default runs/t5_full_run_<mixed_precision>).")
flags.DEFINE_enum("mixed_precision", "float32", ["float32", "bf16"], "bin/train --mixed_precision.")
flags.DEFINE_string("movielens_dir", "../shared/data/ml-100k", "The ml-100k folder.")
flags.DEFINE_multi_string("job_flags", [], "More bin/train flags.")
flags.DEFINE_string("output_json", "", "Where the timings go "
                    "(default benchmarks/results/t5_full_run_<mixed_precision>.json).")

T5_SMALL_SHAPE = dict(vocabulary_size=32128, num_layers=6, num_heads=8, hidden_dim=512,
                      intermediate_dim=1024, key_value_dim=64, activation="gelu",
                      use_gated_activation=True, tie_embedding_weights=False, dropout=0.1)


def write_preset(folder):
    """A random T5-small-shaped backbone saved as a KerasHub preset (no tokenizer)."""
    if os.path.exists(os.path.join(folder, "config.json")):
        return
    import keras
    import keras_hub

    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.T5Backbone(**T5_SMALL_SHAPE)
    backbone.save_to_preset(folder)
    print(f"wrote {backbone.count_params() / 1e6:.1f}M-parameter preset to {folder}")


def main(argv):
    del argv
    write_preset(FLAGS.preset_dir)
    output_dir = FLAGS.output_dir or os.path.join(REPO, "runs",
                                                  f"t5_full_run_{FLAGS.mixed_precision}")
    command = [sys.executable, os.path.join(REPO, "bin", "train"),
               "--flagfile=configs/movielens_t5_mlp.cfg", f"--t5_preset={FLAGS.preset_dir}",
               "--lm_finetune=head", "--seeds=0", f"--mixed_precision={FLAGS.mixed_precision}",
               f"--movielens_dir={FLAGS.movielens_dir}", f"--output_dir={output_dir}",
               "--noexport_student", *FLAGS.job_flags]
    print(" ".join(command))
    load_start = os.getloadavg()
    start = time.time()
    subprocess.run(command, cwd=REPO, check=True)
    wall = time.time() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(os.path.join(output_dir, "metrics.json")) as f:
        metrics = json.load(f)
    phases = metrics["wall_seconds"]
    result = {
        "command": "python benchmarks/t5_full_run.py " + " ".join(sys.argv[1:]),
        "bin_train": " ".join(c.replace(REPO + os.sep, "") for c in command[1:]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "cpus": os.cpu_count(),
        "load_average": {"start": list(load_start), "end": list(os.getloadavg())},
        "wall_seconds": wall,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "phases_seconds": phases,
    }
    path = FLAGS.output_json or os.path.join(
        REPO, "benchmarks", "results", f"t5_full_run_{FLAGS.mixed_precision}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    print(f"\nwall {wall / 60:.1f} min, CPU {result['cpu_seconds'] / 60:.1f} min "
          f"(idle 2 cores ~ {result['cpu_seconds'] / 120:.1f} min)")
    for name, seconds in phases.items():
        print(f"  {name:32s} {seconds / 60:6.1f} min")
    print(f"wrote {path}")


if __name__ == "__main__":
    app.run(main)
