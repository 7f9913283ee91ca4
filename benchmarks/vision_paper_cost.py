#!/usr/bin/env python3
"""What one step of the paper's vision setting (configs/cifar10_paper_vit.cfg) costs here.

    python benchmarks/vision_paper_cost.py --batch_size=2 --output_json=benchmarks/results/vision_paper_cost.json

Times, with random weights (the cost does not depend on them) at the paper's sizes on
224x224x3 images: a ViT-B/16 student train step (forward + backward + SGD), a ViT-L/16
teacher forward and a CLIP ViT-L/14 image-tower forward, each at `--batch_size` (CPU memory
allows small batches only), and scales them linearly to the paper's batch of 128 and 10,000
steps. The DiverseDistill step also runs each teacher's suffix backward into the question; it
is bounded here by one more teacher forward each (the backward through half the blocks costs
about two forwards of that half). An estimate, stated as such in docs/results/vision.md.
"""

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("batch_size", 2, "Images per timed call.")
flags.DEFINE_integer("repeats", 2, "Timed calls per model (after one untimed).")
flags.DEFINE_string("output_json", "", "Where the JSON goes (default: print only).")

PAPER_BATCH, PAPER_STEPS = 128, 10_000


def _time(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv):
    del argv
    import keras
    import keras_hub
    import numpy as np

    from benchmarks.doc_blocks import cpu_model
    from diverse_distill.students.vit_student import ViTStudent

    n = FLAGS.batch_size
    images = np.random.default_rng(0).uniform(size=(n, 224, 224, 3)).astype("float32")
    labels = np.zeros((n,), "int32")
    student = ViTStudent((224, 224, 3), patch_size=16, num_layers=12, num_heads=12,
                         hidden_dim=768, mlp_dim=3072, num_classes=10)
    student.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    seconds = {"student_train_step": _time(
        lambda: student.train_on_batch({"images": images}, labels), FLAGS.repeats)}
    params = {"student": int(student.count_params())}
    del student
    vit_l = keras_hub.models.ViTBackbone(image_shape=(224, 224, 3), patch_size=16,
                                         num_layers=24, num_heads=16, hidden_dim=1024,
                                         mlp_dim=4096)
    seconds["vit_l16_forward"] = _time(lambda: vit_l(images, training=False), FLAGS.repeats)
    params["vit_l16"] = int(vit_l.count_params())
    del vit_l
    clip_l = keras_hub.models.CLIPVisionEncoder(patch_size=14, hidden_dim=1024, num_layers=24,
                                                num_heads=16, intermediate_dim=4096,
                                                image_shape=(224, 224, 3))
    seconds["clip_l14_vision_forward"] = _time(lambda: clip_l(images, training=False),
                                               FLAGS.repeats)
    params["clip_l14_vision"] = int(clip_l.count_params())
    scale = PAPER_BATCH / n
    step = scale * (seconds["student_train_step"]
                    + 2 * (seconds["vit_l16_forward"] + seconds["clip_l14_vision_forward"]))
    output = {"cpu": cpu_model(), "cpus": os.cpu_count(), "load_average": os.getloadavg(),
              "batch_size": n, "seconds_per_call": seconds, "params": params,
              "paper_step_seconds_estimate": step,
              "paper_run_days_estimate": step * PAPER_STEPS / 86400}
    print(json.dumps(output, indent=2))
    if FLAGS.output_json:
        with open(FLAGS.output_json, "w") as f:
            json.dump(output, f, indent=2)


if __name__ == "__main__":
    app.run(main)
