"""`benchmarks/step_time.py --lm=vit`: the vision distillation step with and without the
ViT teacher's patch-token prefix cache (issue #15's target: caching >= 3x cheaper).

A library module (no flags of its own): step_time.py calls `measure` and `markdown`.

Rows, each a DiverseDistill train step (`train_on_batch`) of a ViT student on a ViT teacher
at the sizes of configs/fashion_mnist_vit_cnn.cfg (28x28x1 images, patch 7):
- `a_student`: the student alone (S0's step), the floor;
- `c_whole`: the teacher run whole at every step (patch embedding and the blocks below the
  injection point, then the suffix), no cache;
- `d_cached_exact`: the prefix read from a `PrefixCache`, every token runs the suffix;
- `f_cached_query_token`: the prefix cache of every block from the injection point on, only
  the question token runs the suffix (`suffix_mode="query_token"`).
"The teacher's part" of a step is its time minus `a_student`'s.
"""

import statistics
import time

SIZES = {
    "full": dict(image_shape=(28, 28, 1), patch_size=7, batch_size=128, num_classes=10,
                 student=dict(num_layers=4, num_heads=4, hidden_dim=96, mlp_dim=192),
                 teacher=dict(num_layers=6, num_heads=4, hidden_dim=128, mlp_dim=256),
                 repeats=20, warmup=3),
    "quick": dict(image_shape=(14, 14, 1), patch_size=7, batch_size=8, num_classes=3,
                  student=dict(num_layers=2, num_heads=2, hidden_dim=8, mlp_dim=16),
                  teacher=dict(num_layers=2, num_heads=2, hidden_dim=8, mlp_dim=16),
                  repeats=3, warmup=1),
}
DESCRIPTIONS = {
    "a_student": "student alone (S0 step)",
    "c_whole": "ViT teacher run whole every step (no cache)",
    "d_cached_exact": "prefix cache, every token runs the suffix (exact)",
    "f_cached_query_token": "prefix cache, only the question token runs the suffix",
}


def measure(quick=False, batch_size=0, repeats=0, warmup=0, num_batches=2, log=print):
    """Times the rows; returns `{"config", "rows": {name: {...}}, "summary"}`."""
    import keras
    import keras_hub
    import numpy as np

    from diverse_distill.distill.distillation_model import DistillationModel
    from diverse_distill.distill.prefix_cache import PrefixCache
    from diverse_distill.students.vit_student import ViTStudent
    from diverse_distill.teachers.vit_teacher import ViTTeacher

    cfg = dict(SIZES["quick" if quick else "full"])
    for key, value in (("batch_size", batch_size), ("repeats", repeats), ("warmup", warmup)):
        if value:
            cfg[key] = value
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    n = cfg["batch_size"] * num_batches
    images = rng.uniform(size=(n, *cfg["image_shape"])).astype("float32")
    labels = rng.integers(0, cfg["num_classes"], n)

    def teacher(suffix_mode):
        keras.utils.set_random_seed(1)
        backbone = keras_hub.models.ViTBackbone(
            image_shape=cfg["image_shape"], patch_size=cfg["patch_size"], **cfg["teacher"])
        return ViTTeacher(backbone, num_classes=cfg["num_classes"], suffix_mode=suffix_mode,
                          name="vit")

    def student():
        keras.utils.set_random_seed(2)
        return ViTStudent(cfg["image_shape"], patch_size=cfg["patch_size"],
                          num_classes=cfg["num_classes"], **cfg["student"])

    def batches(extra=None):
        out = []
        for b in range(num_batches):
            rows = slice(b * cfg["batch_size"], (b + 1) * cfg["batch_size"])
            x = {"images": images[rows]}
            x.update({k: v[rows] for k, v in (extra or {}).items()})
            out.append((x, labels[rows]))
        return out

    def compiled(model):
        model.compile(optimizer=keras.optimizers.AdamW(1e-3),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      jit_compile=False)
        return model

    exact, query_token = teacher("exact"), teacher("query_token")
    caches = {m: PrefixCache(t, storage_dtype="float16").build({"images": images},
                                                               batch_size=cfg["batch_size"])
              for m, t in (("exact", exact), ("query_token", query_token))}
    setups = {
        "a_student": (compiled(student()), batches()),
        "c_whole": (compiled(DistillationModel(student(), [exact], name="dd")), batches()),
        "d_cached_exact": (compiled(DistillationModel(student(), [exact],
                                                      prefix_caches=[caches["exact"]],
                                                      name="dd")),
                           batches(caches["exact"].features())),
        "f_cached_query_token": (compiled(DistillationModel(
            student(), [query_token], prefix_caches=[caches["query_token"]], name="dd")),
            batches(caches["query_token"].features())),
    }
    rows = {}
    for name, (model, data) in setups.items():
        for i in range(cfg["warmup"]):
            model.train_on_batch(*data[i % num_batches])
        times, cpu_times = [], []
        for i in range(cfg["repeats"]):
            start, cpu_start = time.perf_counter(), time.process_time()
            model.train_on_batch(*data[i % num_batches])
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
        rows[name] = {"ms_median": 1000 * statistics.median(times),
                      "ms_min": 1000 * min(times),
                      # CPU time of this process (all its threads): steadier on a loaded machine
                      "cpu_ms_median": 1000 * statistics.median(cpu_times),
                      "description": DESCRIPTIONS[name]}
        log(f"{name}: {rows[name]['ms_median']:.1f} ms/step, CPU "
            f"{rows[name]['cpu_ms_median']:.1f} ms (medians of {cfg['repeats']})")
    summary = summarise(rows)
    summary["by_cpu_time"] = summarise(rows, "cpu_ms_median")
    params = {"student": int(setups["a_student"][0].count_params()),
              "teacher": int(exact.count_params())}
    return {"config": {**{k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()},
                       "lm": "vit", "quick": quick, "params": params},
            "rows": rows, "summary": summary,
            "cache_mib": {m: c.nbytes / 2**20 / n for m, c in caches.items()}}


def summarise(rows, key="ms_median"):
    """Whole-teacher step over each cached step, for the whole step and for the teacher's
    part (the step minus the student's alone; `None` where a cached part is not positive),
    by wall time (`key="ms_median"`) or CPU time (`"cpu_ms_median"`)."""
    floor = rows["a_student"][key]
    whole = rows["c_whole"][key]
    summary = {}
    for name in ("d_cached_exact", "f_cached_query_token"):
        summary[f"step_ratio_whole_over_{name}"] = whole / rows[name][key]
        part = rows[name][key] - floor
        summary[f"teacher_part_ratio_whole_over_{name}"] = (
            (whole - floor) / part if part > 0 else None)
    return summary


def markdown(output):
    """The result as a markdown table (the `step_time vit` block of docs/performance.md)."""
    cfg, rows, summary = output["config"], output["rows"], output["summary"]
    lines = [f"ViT student ({cfg['params']['student'] / 1e6:.2f}M params) distilled from a ViT "
             f"teacher ({cfg['params']['teacher'] / 1e6:.2f}M), images "
             f"{'x'.join(str(d) for d in cfg['image_shape'])}, patch {cfg['patch_size']}, "
             f"batch {cfg['batch_size']}; median of {cfg['repeats']} steps"
             + (f"; {output['cpu']}" if output.get("cpu") else "")
             + (f"; load {output['load_average']}" if output.get("load_average") else "") + ".",
             "", "| row | ms/step | teacher's part (ms) | CPU ms/step | teacher's part (CPU ms) |",
             "|---|---|---|---|---|"]
    # Wall time always; CPU time where it was measured (rows and summary of older runs lack it).
    keys = ["ms_median"] + (["cpu_ms_median"] if "cpu_ms_median" in rows["a_student"] else [])
    summaries = [summary] + ([summary["by_cpu_time"]] if "by_cpu_time" in summary else [])
    for name, row in rows.items():
        cells = []
        for key in keys:  # the step, and the teacher's part: the step minus the student's
            cells += [f"{row[key]:.1f}", "—" if name == "a_student"
                      else f"{row[key] - rows['a_student'][key]:.1f}"]
        cells += ["—", "—"] * (2 - len(keys))
        lines.append(f"| {name}: {row['description']} | " + " | ".join(cells) + " |")
    lines += ["", "| cached row | step: whole / cached | teacher's part: whole / cached |"
              + (" by CPU time: step | teacher's part |" if len(summaries) > 1 else ""),
              "|---|---|---|" + "---|---|" * (len(summaries) - 1)]

    def ratio(value):
        return "—" if value is None else f"{value:.2f}x"

    for name in ("d_cached_exact", "f_cached_query_token"):
        cells = [ratio(s[f"{kind}_ratio_whole_over_{name}"])
                 for s in summaries for kind in ("step", "teacher_part")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
