#!/usr/bin/env python
"""Step time of DiverseDistill on CPU: student alone, its limit, naive, cached, skipping, ...

Usage:
    python benchmarks/step_time.py --lm=t5 --update_doc=docs/performance.md
    python benchmarks/step_time.py --lm=minilm --update_doc=docs/performance.md
    python benchmarks/step_time.py --lm=t5 --quick   # tiny models, ~40 s

Committee: MLP-L (the MovieLens shape: 944 users, 1643 movies, 768-wide id
embeddings, tower [1024, 512]) + a language teacher (`--lm=t5`: a randomly
initialised T5-small-shaped T5, vocabulary 32128, 6 layers, 8 heads, hidden
512, gated-GELU feedforward 1024; `--lm=minilm`: the real all-MiniLM-L6-v2 from
its wheel), prompts of 48 tokens, batch 64, MLP-S student [128, 64], Adagrad.
Random ids / tokens / ratings: the step time does not depend on the values.

Rows (each the median over interleaved repeats, so that the load of other
processes hits every row alike; docs/performance.md explains each):

    a  student alone (a plain Keras train step)
    b  the limit: student step + the teachers' suffix forward (cached
       context, no prefix, no backward through any teacher)
    c  naive DiverseDistill: teacher prefix + suffix at every step
    d  DiverseDistill with the prefix cached (PrefixCache features); for T5
       the suffix reads the encoder output with the reassociated
       cross-attention (`absorb_cross_attention=True`, the default);
       d_proj: the same with the keys/values projected (`False`)
    e  d + importance skipping at tau=0.6, the LM's importance read-out bias
       set before each step so that 50 % of the LM rows are skipped
    f  d with the cheap suffix: MiniLM `suffix_mode="query_token"`; T5
       `cache_cross_attention=True` (b_f is its own limit); f_proj (MiniLM):
       f with the query token's keys/values projected (`absorb_attention=False`)
    g  d under `mixed_bfloat16` (g_teachers: teachers only in bf16)
    skip_XX  d + skipping with XX % of the LM rows skipped (tau=0.6)

plus a profile of the pieces (prefix forward, suffix forward, suffix
forward+backward into the question), the rate of a prefix-cache build
(rows/s) and the size of a full ML-100K train-split cache (from shapes).
Every train step is one `train_on_batch` on in-memory tensors, XLA off (as
`compile(jit_compile="auto")` resolves on CPU and as skipping needs) except in
the rows (x) and (kx), op determinism on (as `bin/train --deterministic`, its
default). Keras compiles nothing with XLA under op determinism, so the XLA rows
run only with `--nodeterministic` (each row's JSON says what Keras resolved).
Times: wall (`perf_counter`) and CPU (`process_time`, all threads) per step.
Peak memory: the process's peak resident set size during the step
(`VmHWM` of /proc/self/status, reset before the step through
/proc/self/clear_refs), and that peak minus the resident size just before
the step (the step's transient memory), in one untimed step per row after
the timed rounds with glibc returning freed memory (see `memory_pass`);
`getrusage` `ru_maxrss` of the whole run is reported too.
"""

import datetime
import json
import os
import platform
import resource
import socket
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_enum("lm", "t5", ["t5", "minilm", "vit"], "The committee's language teacher; "
                  "'vit': the vision step, a ViT teacher with and without its prefix cache "
                  "(benchmarks/vision_step_time.py).")
flags.DEFINE_boolean("quick", False, "Tiny models and few repeats (a smoke test).")
flags.DEFINE_integer("repeats", 0, "Timed steps per row (0: 20, or 3 with --quick).")
flags.DEFINE_integer("warmup", 0, "Untimed steps per row first (0: 2, or 1 with --quick).")
flags.DEFINE_integer("batch_size", 0, "Batch size (0: 64, or 8 with --quick).")
flags.DEFINE_integer("sequence_length", 0, "Prompt length in tokens (0: 48, or 10 with --quick).")
flags.DEFINE_integer("num_batches", 2, "Distinct batches cycled through.")
flags.DEFINE_float("tau", 0.6, "Importance threshold of the skipping rows.")
flags.DEFINE_float("skip_fraction", 0.5, "Fraction of the LM rows skipped in row (e).")
flags.DEFINE_float("keep_fraction", 0.5, "Rows each teacher runs in the fixed-size skipping "
                   "rows (k, kx).")
flags.DEFINE_integer("injection_layer", -1, "MiniLM: the layer the query-token suffix (f) "
                     "injects at (-1: the middle; the configs use 5).")
flags.DEFINE_boolean("xla", True, "Measure the XLA rows (x, kx).")
flags.DEFINE_list("skip_sweep", ["0", "0.9"], "More skipped fractions for the skipping table.")
flags.DEFINE_boolean("bf16", True, "Measure the mixed_bfloat16 rows (g).")
flags.DEFINE_boolean("profile", True, "Time the pieces of a step and the prefix-cache rate "
                     "(off with --quick unless given).")
flags.DEFINE_integer("profile_every", 2, "Time the profile pieces every this many rounds.")
flags.DEFINE_integer("train_rows", 80000, "Rows of the train split the cache sizes are for.")
flags.DEFINE_boolean("deterministic", True, "tf.config.experimental.enable_op_determinism().")
flags.DEFINE_string("output_json", "", "Where the JSON goes (default: benchmarks/results/"
                    "step_time_<lm>[_quick].json).")
flags.DEFINE_string("render_json", "", "Only render this JSON of an earlier run as markdown "
                    "(and --update_doc with it), measuring nothing.")
flags.DEFINE_string("update_doc", "", "A markdown file whose `step_time <lm>` block is replaced "
                    "by the tables (e.g. docs/performance.md).")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks.doc_blocks import cpu_model, replace_block  # noqa: E402
from benchmarks import vision_step_time  # noqa: E402

FULL = dict(users=944, movies=1643, id_dim=768, teacher_units=(1024, 512),
            student_units=(128, 64), batch_size=64, sequence_length=48, repeats=20, warmup=2,
            t5=dict(vocabulary_size=32128, num_layers=6, num_heads=8, hidden_dim=512,
                    intermediate_dim=1024, activation="gelu", use_gated_activation=True,
                    tie_embedding_weights=False, dropout=0.1))
QUICK = dict(users=20, movies=30, id_dim=8, teacher_units=(32, 16), student_units=(8, 4),
             batch_size=8, sequence_length=10, repeats=3, warmup=1,
             t5=dict(vocabulary_size=96, num_layers=2, num_heads=2, hidden_dim=32,
                     intermediate_dim=64, activation="gelu", use_gated_activation=True,
                     tie_embedding_weights=False, dropout=0.1))

DESCRIPTIONS = {
    "a_student": "(a) student alone (plain Keras train step)",
    "b_limit": "(b) limit: student step + teachers' suffix forward (no prefix, no teacher backward)",
    "c_naive": "(c) naive DiverseDistill (prefix + suffix every step)",
    "d_cached": "(d) prefix cached (PrefixCache features)",
    "d_projected": "(d_proj) (d) with T5 cross-attention keys/values projected every step "
                   "(absorb_cross_attention=False)",
    "e_skip": "(e) cached + skipping, tau={tau}, {skip:.0%} of LM rows skipped",
    "f_cheap_suffix": "(f) cached + {cheap}",
    "b_limit_f": "(b_f) limit of (f): student + cheap-suffix forward",
    "b_honest": "(b*) honest limit: student step + teachers' suffix forward and backward into "
                "the question",
    "b_honest_f": "(b*_f) honest limit of (f): student + cheap-suffix forward and backward into "
                  "the question",
    "f_xla": "(x) (f) under XLA (jit_compile=True)",
    "f_topk": "(k) (f) + fixed-size skipping: each teacher runs its top {keep:.0%} of rows by "
              "importance (keep_fraction)",
    "f_topk_xla": "(kx) (k) under XLA",
    "f_projected": "(f_proj) (f) with the MiniLM query token's keys/values projected every step "
                   "(absorb_attention=False)",
    "g_bf16": "(g) (d) under mixed_bfloat16 (teachers, student, augmenters)",
    "g_bf16_teachers": "(g') (d) with bf16 teachers, float32 student and augmenters",
}


# --- Measuring -------------------------------------------------------------------


def read_status():
    """`(VmRSS, VmHWM)` of this process in MiB."""
    values = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                values[line.split(":")[0]] = int(line.split()[1]) / 1024
    return values.get("VmRSS", float("nan")), values.get("VmHWM", float("nan"))


def reset_peak():
    """Resets VmHWM to the current RSS; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def load_average():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def quantiles(values):
    import numpy as np

    values = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(values)), "p25": float(np.percentile(values, 25)),
            "p75": float(np.percentile(values, 75)), "min": float(values.min()),
            "n": int(len(values))}


class PrefixCounter:
    """Counts the calls of `teacher.prefix`: Python calls (traces) and graph executions."""

    def __init__(self, teacher):
        import tensorflow as tf

        self.python_calls = 0
        self.executions = tf.Variable(0, dtype=tf.int64, trainable=False)
        original = teacher.prefix

        def counted(*args, **kwargs):
            self.python_calls += 1
            self.executions.assign_add(1)
            return original(*args, **kwargs)

        teacher.prefix = counted

    def total(self):
        return int(self.executions.numpy())


# --- Models ------------------------------------------------------------------------


def build_lm(cfg):
    """The language teacher twice, on one backbone: `(main, cheap)` for rows c-e and f."""
    import keras_hub

    from diverse_distill.teachers.bert_teacher import BertTeacher
    from diverse_distill.teachers.t5_teacher import T5Teacher

    if cfg["lm"] == "t5":
        backbone = keras_hub.models.T5Backbone(**cfg["t5"])
        main = T5Teacher(backbone, initial_prediction=3.5, name="t5")
        cheap = T5Teacher(backbone, initial_prediction=3.5, cache_cross_attention=True, name="t5")
    elif cfg["quick"]:
        main = BertTeacher.tiny(num_layers=4, max_sequence_length=max(cfg["sequence_length"], 32),
                                initial_prediction=3.5, suffix_mode="exact", name="minilm")
        cheap = BertTeacher(main.backbone, initial_prediction=3.5, suffix_mode="query_token",
                            injection_layer=cfg["injection_layer"], name="minilm")
    else:
        main = BertTeacher.from_minilm_wheel(initial_prediction=3.5, suffix_mode="exact")
        cheap = BertTeacher(main.backbone, tokenizer=main.tokenizer, initial_prediction=3.5,
                            suffix_mode="query_token", injection_layer=cfg["injection_layer"],
                            name="minilm")
    return main, cheap


def build_committee(cfg):
    from diverse_distill.models.mlp_recommender import MLPRecommender
    from diverse_distill.teachers.mlp_teacher import MLPTeacher

    vocab = {"user_id": cfg["users"], "movie_id": cfg["movies"]}
    mlp = MLPTeacher(MLPRecommender(vocab, cfg["id_dim"], hidden_units=cfg["teacher_units"],
                                    name="mlp_l_model"), name="mlp_l")
    main, cheap = build_lm(cfg)
    return mlp, main, cheap


def build_student(cfg):
    from diverse_distill.students.mlp_student import MLPStudent

    vocab = {"user_id": cfg["users"], "movie_id": cfg["movies"]}
    return MLPStudent(vocab, cfg["id_dim"], hidden_units=cfg["student_units"], name="student")


def make_batches(cfg, lm_name, vocabulary_size, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    n = cfg["num_batches"] * cfg["batch_size"]
    length = cfg["sequence_length"]
    lengths = rng.integers(max(2, (2 * length) // 3), length + 1, n)
    mask = (np.arange(length)[None, :] < lengths[:, None]).astype("int32")
    features = {
        "user_id": rng.integers(0, cfg["users"], n).astype("int32"),
        "movie_id": rng.integers(0, cfg["movies"], n).astype("int32"),
        f"{lm_name}_token_ids": (rng.integers(2, vocabulary_size, (n, length)) * mask).astype("int32"),
        f"{lm_name}_padding_mask": mask,
    }
    ratings = rng.integers(1, 6, (n, 1)).astype("float32")
    return features, ratings


def split_batches(cfg, features, ratings, extra=None):
    """`num_batches` (x, y) pairs of tensors; `extra` (dict of arrays) joins the features."""
    import tensorflow as tf

    features = {**features, **(extra or {})}
    b = cfg["batch_size"]
    out = []
    for i in range(cfg["num_batches"]):
        x = {k: tf.constant(v[i * b:(i + 1) * b]) for k, v in features.items()}
        out.append((x, tf.constant(ratings[i * b:(i + 1) * b])))
    return out


def question_like(representation, width):
    """A question of `width` columns cut from the (stopped) student representation."""
    import tensorflow as tf

    representation = tf.stop_gradient(representation)
    repeats = -(-width // representation.shape[-1])
    return tf.tile(representation, [1, repeats])[:, :width]


def make_limit_model(student, teachers, caches, backward=False):
    """Row (b): a student train step plus every teacher's suffix forward, nothing more.

    With `backward=True` (row b*, the honest limit): plus each teacher's backward pass into
    the question (the gradient of its answer and prediction with respect to the question),
    which DiverseDistill needs to train the question module. The teachers' weights get no
    gradient, and no augmenter runs.
    """
    import keras
    import tensorflow as tf

    caches = {c.name: c for c in caches}

    class LimitModel(keras.Model):
        def __init__(self):
            super().__init__(name="limit")
            self.student = student
            self.teachers = teachers

        def call(self, x, training=False):
            return self.student(x, training=training)

        def train_step(self, data):
            x, y = data[0], data[1]
            variables = self.student.trainable_variables
            with tf.GradientTape() as tape:
                representation, hidden = self.student.features(x, training=True)
                y_pred = tf.cast(self.student.head(hidden), "float32")
                loss = tf.reduce_mean(tf.square(y_pred - tf.cast(y, "float32")))
            self.optimizer.apply(tape.gradient(loss, variables), variables)
            checksum = tf.constant(0.0)
            for teacher in self.teachers:  # forward only, outside the tape
                cache = caches.get(teacher.name)
                context = cache.context(x) if cache is not None else teacher.prefix(x)
                question = question_like(representation, teacher.injection_dim)
                with tf.GradientTape(watch_accessed_variables=False) as question_tape:
                    if backward:  # (b) records nothing
                        question_tape.watch(question)
                    answer, prediction = teacher.suffix(question, context)
                    total = tf.reduce_sum(tf.cast(answer, "float32")) + tf.reduce_sum(
                        tf.cast(prediction, "float32"))
                checksum += total
                if backward:
                    checksum += tf.reduce_sum(question_tape.gradient(total, question))
            return {"loss": loss, "teacher_checksum": checksum}

    for teacher in teachers:
        teacher.freeze()
    model = LimitModel()
    model.compile(optimizer=keras.optimizers.Adagrad(0.06), jit_compile=False)
    model.optimizer.build(student.trainable_variables)
    return model


def make_distiller(student, teachers, caches, threshold=None, keep_fraction=None,
                   jit_compile=False):
    import keras

    from diverse_distill.distill.distillation_model import DistillationModel

    model = DistillationModel(student, teachers, alpha=0.5, beta=1.0,
                              importance_threshold=threshold, keep_fraction=keep_fraction,
                              prefix_caches=caches or None, name="diverse_distill")
    model.compile(optimizer=keras.optimizers.Adagrad(0.06), loss="mse", jit_compile=jit_compile)
    return model


def calibrate_skipping(model, x, lm_index, skip_fraction, tau):
    """Sets the importance read-out biases: every MLP row kept, `skip_fraction` of LM rows skipped.

    Returns the fraction of the LM rows the next step will skip (computed
    with the current weights, which the step itself uses).
    """
    import numpy as np

    qa = model.question_augmenter
    representation = model.student.representation(x)
    reps = np.asarray(qa.question_representations(representation), dtype=np.float64)
    target = float(np.log(tau / (1 - tau)))
    for k, readout in enumerate(qa.importance_readouts):
        kernel = np.asarray(readout.kernel, dtype=np.float64)
        logits = reps[:, k, :] @ kernel[:, 0]
        if k != lm_index:
            bias = target + 8.0 - logits.min()  # every row well above tau
        else:
            order = np.sort(logits)
            n_skip = int(round(skip_fraction * len(order)))
            if n_skip == 0:
                bias = target + 1.0 - order[0]
            elif n_skip == len(order):
                bias = target - 1.0 - order[-1]
            else:  # tau falls half-way between the n_skip-th and the next logit
                bias = target - 0.5 * (order[n_skip - 1] + order[n_skip])
        readout.bias.assign(np.full(readout.bias.shape, bias, dtype="float32"))
        if k == lm_index:
            skipped = float(np.mean(logits + bias < target))
    return skipped


# --- The benchmark --------------------------------------------------------------------


class Row:
    def __init__(self, name, step, description, prepare=None, counter=None, group="step",
                 every=1):
        self.name = name
        self.every = every
        self.step = step
        self.prepare = prepare
        self.description = description
        self.counter = counter
        self.group = group
        self.times, self.cpu_times, self.peaks, self.transients = [], [], [], []
        self.prefix_executions = 0
        self.prefix_python_calls = 0
        self.steps_run = 0
        self.lm_pass_fractions = []
        self.logs = None

    def run(self, batch_index, timed):
        import numpy as np

        if self.prepare is not None:
            self.prepare(batch_index)
        if self.counter:
            calls, executions = self.counter.python_calls, self.counter.total()
        can_reset = reset_peak()
        rss_before, _ = read_status()
        cpu_start, start = time.process_time(), time.perf_counter()
        logs = self.step(batch_index)
        seconds = time.perf_counter() - start
        cpu_seconds = time.process_time() - cpu_start
        _, peak = read_status()
        self.last_memory = {"rss_before_mib": rss_before, "peak_rss_mib": peak,
                            "transient_mib": peak - rss_before} if can_reset else None
        self.steps_run += 1
        if self.counter:
            self.prefix_python_calls += self.counter.python_calls - calls
            self.prefix_executions += self.counter.total() - executions
        if not timed:
            return
        self.times.append(seconds)
        self.cpu_times.append(cpu_seconds)
        if can_reset:
            self.peaks.append(peak)
            self.transients.append(peak - rss_before)
        if isinstance(logs, dict):
            self.logs = {k: float(np.asarray(v)) for k, v in logs.items()}
            fraction = [v for k, v in self.logs.items() if k.startswith("pass_fraction_")
                        and not k.endswith("mlp_l")]
            if fraction:
                self.lm_pass_fractions.append(fraction[0])

    def result(self):
        import numpy as np

        out = {"description": self.description, "group": self.group,
               "seconds": quantiles(self.times), "cpu_seconds": quantiles(self.cpu_times)}
        if self.peaks:
            out["peak_rss_mib"] = float(max(self.peaks))
            out["step_transient_mib"] = float(max(self.transients))
        if getattr(self, "memory", None):
            out["memory_pass"] = self.memory
        if getattr(self, "input_mib", None) is not None:
            out["input_mib_per_batch"] = self.input_mib
        if self.counter is not None:
            out["prefix_python_calls"] = self.prefix_python_calls
            out["prefix_executions"] = self.prefix_executions
            out["prefix_executions_per_step"] = self.prefix_executions / self.steps_run
        if self.lm_pass_fractions:
            out["lm_pass_fraction"] = float(np.mean(self.lm_pass_fractions))
        if getattr(self, "jit_compile", None) is not None:
            out["jit_compile"] = self.jit_compile
        return out


def run_rows(rows, repeats, warmup, num_batches, log):
    """Warm-up every row, then `repeats` rounds, each timing every row once (rotating order)."""
    for row in rows:
        start = time.perf_counter()
        for i in range(warmup):
            row.run(i % num_batches, timed=False)
        row.warmup_seconds = time.perf_counter() - start
        log(f"  warm-up {row.name}: {row.warmup_seconds:.1f} s")
    for r in range(repeats):
        shift = r % len(rows)
        for row in rows[shift:] + rows[:shift]:
            if r % row.every == 0:
                row.run(r % num_batches, timed=True)
        if r == 0 or (r + 1) % 5 == 0:
            log(f"  round {r + 1}/{repeats}  load {load_average()}")


def memory_pass(rows, log):
    """One more (untimed) step of every train row, with freed memory returned to the system.

    glibc keeps freed blocks resident, so during the timed rounds a step's
    peak RSS hardly rises above the RSS before it. Here large blocks
    (>= 64 KiB) are mmap-ed and unmapped on free (`mallopt`) and the heap
    is trimmed before each step (`malloc_trim`): the step's rise of RSS is
    then its transient memory (activations, gradients, casts of the inputs).
    Runs after the timed rounds, so it does not change their timings.
    """
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD (fixed: no dynamic raise)
        libc.mallopt(-1, 128 * 1024)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        log("  memory pass skipped: no glibc mallopt")
        return False
    for row in rows:
        if row.group != "step":
            continue
        libc.malloc_trim(0)
        row.run(0, timed=False)
        row.memory = row.last_memory
    log("  memory pass done")
    return True


def cache_sizes(teachers, x_two_rows, train_rows):
    """Bytes of a full-split cache of each teacher's prefix, from the shapes of 2 rows."""
    import numpy as np
    import tensorflow as tf

    out = {}
    for label, teacher in teachers.items():
        context = teacher.prefix(x_two_rows)
        leaves = tf.nest.flatten(context)
        per_row = {"float32": 0, "float16": 0}
        shapes = []
        for leaf in leaves:
            count = int(np.prod(leaf.shape[1:]))
            shapes.append(list(leaf.shape[1:]))
            if leaf.dtype.is_floating:
                per_row["float32"] += 4 * count
                per_row["float16"] += 2 * count
            else:
                per_row["float32"] += leaf.dtype.size * count
                per_row["float16"] += leaf.dtype.size * count
        out[label] = {"leaf_shapes_per_row": shapes, "bytes_per_row": per_row,
                      "rows": train_rows,
                      "gib": {k: v * train_rows / 2**30 for k, v in per_row.items()}}
    return out


def main(argv):
    del argv
    import keras
    import numpy as np
    import tensorflow as tf

    from diverse_distill.distill.prefix_cache import PrefixCache

    if FLAGS.lm == "vit" and not FLAGS.render_json:
        return vision_main()
    if FLAGS.render_json:
        with open(FLAGS.render_json) as f:
            output = json.load(f)
        table = (vision_step_time.markdown(output) if output["config"]["lm"] == "vit"
                 else markdown(output))
        print(table)
        if FLAGS.update_doc:
            replace_block(FLAGS.update_doc, f"step_time {output['config']['lm']}", table)
        return
    wall_start = time.time()
    cfg = dict(QUICK if FLAGS.quick else FULL)
    cfg.update(lm=FLAGS.lm, quick=FLAGS.quick, num_batches=FLAGS.num_batches,
               injection_layer=None if FLAGS.injection_layer < 0 else FLAGS.injection_layer)
    for key in ("repeats", "warmup", "batch_size", "sequence_length"):
        if getattr(FLAGS, key):
            cfg[key] = getattr(FLAGS, key)
    profile = FLAGS.profile and (not FLAGS.quick or FLAGS["profile"].present)
    if FLAGS.deterministic:
        tf.config.experimental.enable_op_determinism()
    # Keras compiles nothing with XLA under op determinism (it falls back silently).
    xla = FLAGS.xla and not FLAGS.deterministic
    log = lambda message: print(f"[{time.time() - wall_start:6.1f} s] {message}", flush=True)
    load_start = load_average()
    log(f"step_time --lm={FLAGS.lm} quick={FLAGS.quick} load {load_start}")

    keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(0)
    mlp, lm, lm_cheap = build_committee(cfg)
    lm_name = lm.name
    vocabulary_size = lm.backbone.vocabulary_size
    features, ratings = make_batches(cfg, lm_name, vocabulary_size)
    counters = {"main": PrefixCounter(lm), "cheap": PrefixCounter(lm_cheap)}
    log(f"models built: LM {lm.backbone.count_params() / 1e6:.1f}M params")

    # Prefix caches of the benchmark batches (the calls they make are not counted).
    cache = PrefixCache(lm, storage_dtype="float16").build(features, batch_size=cfg["batch_size"])
    cache_cheap = PrefixCache(lm_cheap, storage_dtype="float16").build(
        features, batch_size=cfg["batch_size"])
    plain = split_batches(cfg, features, ratings)
    cached = split_batches(cfg, features, ratings, cache.features())
    cached_cheap = split_batches(cfg, features, ratings, cache_cheap.features())
    log(f"caches built: {cache.nbytes / 2**20:.1f} MiB, cheap {cache_cheap.nbytes / 2**20:.1f} MiB")

    def train_row(name, model, batches, counter=None, prepare=None, description=None):
        step = lambda i: model.train_on_batch(batches[i][0], batches[i][1], return_dict=True)
        row = Row(name, step, description or DESCRIPTIONS[name], prepare=prepare,
                  counter=counter)
        row.input_mib = sum(int(np.prod(v.shape)) * v.dtype.size
                            for v in batches[0][0].values()) / 2**20
        row.jit_compile = bool(getattr(model, "jit_compile", False))  # what Keras resolved
        return row

    cheap_label = ('suffix_mode="query_token"' if FLAGS.lm == "minilm"
                   else "cache_cross_attention=True")
    rows = []
    student = build_student(cfg)
    student.compile(optimizer=keras.optimizers.Adagrad(0.06), loss="mse", jit_compile=False)
    rows.append(train_row("a_student", student, plain))
    rows.append(train_row("b_limit", make_limit_model(build_student(cfg), [mlp, lm], [cache]),
                          cached, counter=counters["main"]))
    rows.append(train_row("c_naive", make_distiller(build_student(cfg), [mlp, lm], []), plain,
                          counter=counters["main"]))
    rows.append(train_row("d_cached", make_distiller(build_student(cfg), [mlp, lm], [cache]),
                          cached, counter=counters["main"]))
    if FLAGS.lm == "t5":
        from diverse_distill.teachers.t5_teacher import T5Teacher

        projected = T5Teacher(lm.backbone, initial_prediction=3.5, absorb_cross_attention=False,
                              name=lm.name)
        projected.head.set_weights(lm.head.get_weights())
        rows.append(train_row("d_projected",
                              make_distiller(build_student(cfg), [mlp, projected], [cache]),
                              cached))

    skipper = make_distiller(build_student(cfg), [mlp, lm], [cache], threshold=FLAGS.tau)
    skip_fractions = sorted({float(s) for s in FLAGS.skip_sweep} | {FLAGS.skip_fraction})
    for fraction in skip_fractions:
        def prepare(i, fraction=fraction):
            calibrate_skipping(skipper, cached[i][0], 1, fraction, FLAGS.tau)

        name = "e_skip" if fraction == FLAGS.skip_fraction else f"skip_{round(100 * fraction):02d}"
        description = (DESCRIPTIONS["e_skip"].format(tau=FLAGS.tau, skip=fraction)
                       if name == "e_skip" else
                       f"cached + skipping, tau={FLAGS.tau}, {fraction:.0%} of LM rows skipped")
        rows.append(train_row(name, skipper, cached, counter=counters["main"], prepare=prepare,
                              description=description))
    rows.append(train_row("f_cheap_suffix",
                          make_distiller(build_student(cfg), [mlp, lm_cheap], [cache_cheap]),
                          cached_cheap, counter=counters["cheap"],
                          description=DESCRIPTIONS["f_cheap_suffix"].format(cheap=cheap_label)))
    rows.append(train_row("b_limit_f",
                          make_limit_model(build_student(cfg), [mlp, lm_cheap], [cache_cheap]),
                          cached_cheap, counter=counters["cheap"]))
    rows.append(train_row("b_honest", make_limit_model(build_student(cfg), [mlp, lm], [cache],
                                                       backward=True), cached,
                          counter=counters["main"]))
    rows.append(train_row("b_honest_f",
                          make_limit_model(build_student(cfg), [mlp, lm_cheap], [cache_cheap],
                                           backward=True), cached_cheap,
                          counter=counters["cheap"]))
    if FLAGS.xla and not xla:
        log("XLA rows (x, kx) skipped: Keras turns jit_compile off under op determinism; "
            "pass --nodeterministic to measure them")
    if xla:
        rows.append(train_row("f_xla", make_distiller(build_student(cfg), [mlp, lm_cheap],
                                                      [cache_cheap], jit_compile=True),
                              cached_cheap, counter=counters["cheap"]))
    for name, jit_compile in (("f_topk", False), ("f_topk_xla", True)):
        if jit_compile and not xla:
            continue
        rows.append(train_row(name, make_distiller(build_student(cfg), [mlp, lm_cheap],
                                                   [cache_cheap], keep_fraction=FLAGS.keep_fraction,
                                                   jit_compile=jit_compile),
                              cached_cheap, counter=counters["cheap"],
                              description=DESCRIPTIONS[name].format(keep=FLAGS.keep_fraction)))
    if FLAGS.lm == "minilm":
        from diverse_distill.teachers.bert_teacher import BertTeacher

        projected = BertTeacher(lm_cheap.backbone, injection_layer=lm_cheap.injection_layer,
                                suffix_mode="query_token", absorb_attention=False,
                                name=lm_cheap.name)
        projected.head.set_weights(lm_cheap.head.get_weights())
        rows.append(train_row("f_projected",
                              make_distiller(build_student(cfg), [mlp, projected], [cache_cheap]),
                              cached_cheap))

    bf16_teachers = None
    if FLAGS.bf16:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        keras.utils.set_random_seed(0)
        mlp16, lm16, _ = build_committee(cfg)
        counters["bf16"] = PrefixCounter(lm16)
        cache16 = PrefixCache(lm16, storage_dtype="float16").build(
            features, batch_size=cfg["batch_size"])
        cached16 = split_batches(cfg, features, ratings, cache16.features())
        rows.append(train_row("g_bf16", make_distiller(build_student(cfg), [mlp16, lm16],
                                                       [cache16]),
                              cached16, counter=counters["bf16"]))
        keras.mixed_precision.set_global_policy("float32")
        if not FLAGS.quick:
            rows.append(train_row("g_bf16_teachers",
                                  make_distiller(build_student(cfg), [mlp16, lm16], [cache16]),
                                  cached16, counter=counters["bf16"]))
        bf16_teachers = (mlp16, lm16)
    keras.mixed_precision.set_global_policy("float32")

    if profile:
        rows += profile_rows(cfg, mlp, lm, lm_cheap, cache, cache_cheap, plain, cached,
                             cached_cheap, build_student(cfg),
                             bf16_teachers[1] if bf16_teachers else None)
    log(f"{len(rows)} rows; warm-up ...")
    run_rows(rows, cfg["repeats"], cfg["warmup"], cfg["num_batches"], log)
    memory_pass(rows, log)
    results = {row.name: row.result() for row in rows}
    for row in rows:
        results[row.name]["warmup_seconds"] = row.warmup_seconds

    extra = {}
    for name, key in (("p_lm_prefix", "float32"), ("p_lm_prefix_bf16", "mixed_bfloat16"),
                      ("p_lm_cheap_prefix", "cheap_suffix_float32")):
        if name in results:  # a prefix-cache build runs the prefix over batches like these
            extra.setdefault("prefix_cache_rate", {})[key] = {
                "rows_per_batch": cfg["batch_size"],
                "rows_per_second": cfg["batch_size"] / results[name]["seconds"]["median"],
                "rows_per_cpu_second": cfg["batch_size"] / results[name]["cpu_seconds"]["median"]}
    two_rows = {k: v[:2] for k, v in features.items()}
    label_main = "encoder_output" if FLAGS.lm == "t5" else "exact"
    label_cheap = "with_cross_attention_caches" if FLAGS.lm == "t5" else "query_token"
    extra["cache_size_full_train_split"] = cache_sizes(
        {label_main: lm, label_cheap: lm_cheap}, two_rows, FLAGS.train_rows)

    reference = results["b_limit"]["seconds"]["median"]
    cpu_reference = results["b_limit"]["cpu_seconds"]["median"]
    for name, result in results.items():
        limit = (results["b_limit_f"] if name in ("f_cheap_suffix", "b_limit_f", "b_honest_f")
                 or name.startswith(("f_topk", "f_xla")) else None)
        result["ratio_to_b"] = result["seconds"]["median"] / reference
        result["cpu_ratio_to_b"] = result["cpu_seconds"]["median"] / cpu_reference
        if limit is not None:
            result["ratio_to_b_f"] = result["seconds"]["median"] / limit["seconds"]["median"]

    def ratio(top, bottom, key="seconds"):
        return results[top][key]["median"] / results[bottom][key]["median"]

    summary = {
        "d_over_b": ratio("d_cached", "b_limit"),
        "c_over_d": ratio("c_naive", "d_cached"),
        "c_over_f": ratio("c_naive", "f_cheap_suffix"),
        "f_over_b_f": ratio("f_cheap_suffix", "b_limit_f"),
        "cpu_d_over_b": ratio("d_cached", "b_limit", "cpu_seconds"),
        "cpu_c_over_d": ratio("c_naive", "d_cached", "cpu_seconds"),
        "cpu_c_over_f": ratio("c_naive", "f_cheap_suffix", "cpu_seconds"),
        "cpu_f_over_b_f": ratio("f_cheap_suffix", "b_limit_f", "cpu_seconds"),
        "d_over_b_honest": ratio("d_cached", "b_honest"),
        "f_over_b_honest_f": ratio("f_cheap_suffix", "b_honest_f"),
        "cpu_d_over_b_honest": ratio("d_cached", "b_honest", "cpu_seconds"),
        "cpu_f_over_b_honest_f": ratio("f_cheap_suffix", "b_honest_f", "cpu_seconds"),
    }
    for name in ("f_xla", "f_topk", "f_topk_xla"):
        if name in results:
            summary[f"{name}_over_f"] = ratio(name, "f_cheap_suffix")
    if "d_projected" in results:
        summary["projected_over_d"] = ratio("d_projected", "d_cached")
        summary["cpu_projected_over_d"] = ratio("d_projected", "d_cached", "cpu_seconds")
    if "f_projected" in results:
        summary["projected_over_f"] = ratio("f_projected", "f_cheap_suffix")
        summary["cpu_projected_over_f"] = ratio("f_projected", "f_cheap_suffix", "cpu_seconds")
    if "prefix_cache_rate" in extra:
        estimate = {}
        rates = extra["prefix_cache_rate"]
        for key, rate_key in (("d_cached", "float32"), ("e_skip", "float32"),
                              ("g_bf16", "mixed_bfloat16"), ("g_bf16_teachers", "mixed_bfloat16"),
                              ("f_cheap_suffix", "cheap_suffix_float32")):
            if key not in results or rate_key not in rates:
                continue
            steps = 8000 * results[key]["seconds"]["median"]
            build = FLAGS.train_rows / rates[rate_key]["rows_per_second"]
            idle_steps = 8000 * results[key]["cpu_seconds"]["median"] / 2
            idle_build = FLAGS.train_rows / rates[rate_key]["rows_per_cpu_second"] / 2
            estimate[f"{key} (cache built in {rate_key})"] = {
                "steps_seconds": steps, "cache_build_seconds": build,
                "total_minutes": (steps + build) / 60,
                "idle_total_minutes": (idle_steps + idle_build) / 60}
        summary["full_run_estimate"] = estimate

    _, hwm = read_status()
    output = {
        "command": " ".join([os.path.relpath(sys.argv[0], REPO)] + sys.argv[1:]),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": {"host": socket.gethostname(), "cpu": cpu_model(), "cpus": os.cpu_count(),
                    "platform": platform.platform(), "python": platform.python_version(),
                    "tensorflow": tf.__version__, "keras": keras.__version__,
                    "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads()},
        "load_average": {"start": load_start, "end": load_average()},
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()},
        "tau": FLAGS.tau,
        "memory_method": "step peak RSS: VmHWM of /proc/self/status, reset via "
                         "/proc/self/clear_refs before the step; transient: that peak minus "
                         "VmRSS just before the step, in an untimed step after the timed rounds "
                         "with glibc returning freed memory (mallopt mmap threshold 64 KiB, "
                         "malloc_trim before the step)",
        "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rows": results,
        "summary": summary,
        **extra,
        "wall_seconds": time.time() - wall_start,
    }
    path = FLAGS.output_json or os.path.join(
        REPO, "benchmarks", "results", f"step_time_{FLAGS.lm}{'_quick' if FLAGS.quick else ''}.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(output, f, indent=2)
    table = markdown(output)
    print(table)
    if FLAGS.update_doc:
        replace_block(FLAGS.update_doc, f"step_time {FLAGS.lm}", table)
    log(f"wrote {path} (VmHWM {hwm:.0f} MiB)")


def vision_main():
    """`--lm=vit`: benchmarks/vision_step_time.py's rows, JSON and doc block."""
    import tensorflow as tf

    if FLAGS.deterministic:
        tf.config.experimental.enable_op_determinism()
    start = time.time()
    load_start = load_average()
    output = vision_step_time.measure(
        quick=FLAGS.quick, batch_size=FLAGS.batch_size, repeats=FLAGS.repeats,
        warmup=FLAGS.warmup, num_batches=FLAGS.num_batches,
        log=lambda m: print(f"[{time.time() - start:6.1f} s] {m}", flush=True))
    output.update(cpu=cpu_model(), load_average={"start": load_start, "end": load_average()},
                  wall_seconds=time.time() - start)
    path = FLAGS.output_json or os.path.join(
        REPO, "benchmarks", "results", f"step_time_vit{'_quick' if FLAGS.quick else ''}.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(output, f, indent=2)
    table = vision_step_time.markdown(output)
    print(table)
    if FLAGS.update_doc:
        replace_block(FLAGS.update_doc, "step_time vit", table)


def profile_rows(cfg, mlp, lm, lm_cheap, cache, cache_cheap, plain, cached, cached_cheap,
                 student, lm_bf16=None):
    """Pieces of a step, each its own tf.function on the same batches."""
    import tensorflow as tf

    def question(x, teacher):
        return question_like(student.representation(x), teacher.injection_dim)

    def make(name, fn, batches, description):
        compiled = tf.function(fn, reduce_retracing=True)
        return Row(name, lambda i: float(compiled(batches[i][0])), description, group="profile",
                   every=FLAGS.profile_every)

    def prefix_sum(teacher):
        return lambda x: tf.add_n([tf.reduce_sum(tf.cast(t, "float32"))
                                   for t in tf.nest.flatten(teacher.prefix(x))])

    def suffix_forward(teacher, cache_):
        def fn(x):
            answer, prediction = teacher.suffix(question(x, teacher), cache_.context(x))
            return tf.reduce_sum(answer) + tf.reduce_sum(prediction)
        return fn

    def suffix_backward(teacher, cache_):
        def fn(x):
            q = question(x, teacher)
            context = cache_.context(x) if cache_ is not None else None
            with tf.GradientTape() as tape:
                tape.watch(q)
                answer, prediction = teacher.suffix(q, context)
                value = tf.reduce_sum(answer) + tf.reduce_sum(prediction)
            return value + tf.reduce_sum(tape.gradient(value, q))
        return fn

    def context_only(cache_):
        def fn(x):
            return tf.add_n([tf.reduce_sum(t) for t in tf.nest.flatten(cache_.context(x))
                             if t.dtype.is_floating])
        return fn

    rows = [make("p_lm_prefix", prefix_sum(lm), plain, "LM prefix forward (what the cache saves)"),
            make("p_lm_cheap_prefix", prefix_sum(lm_cheap), plain,
                 "prefix forward of the cheap-suffix teacher (f)")]
    if lm_bf16 is not None:
        rows.append(make("p_lm_prefix_bf16", prefix_sum(lm_bf16), plain,
                         "LM prefix forward, mixed_bfloat16"))
    return rows + [
        make("p_lm_suffix_fwd", suffix_forward(lm, cache), cached,
             "LM suffix forward (cached context)"),
        make("p_lm_suffix_fwd_bwd", suffix_backward(lm, cache), cached,
             "LM suffix forward + backward into the question"),
        make("p_lm_cheap_suffix_fwd_bwd", suffix_backward(lm_cheap, cache_cheap), cached_cheap,
             "cheap LM suffix (f) forward + backward into the question"),
        make("p_mlp_suffix_fwd_bwd", suffix_backward(mlp, None), plain,
             "MLP-L suffix forward + backward into the question"),
        make("p_context_cast", context_only(cache), cached,
             "rebuild the cached context (float16 -> float32)"),
        make("p_context_cast_cheap", context_only(cache_cheap), cached_cheap,
             "rebuild the cheap-suffix cached context (float16 -> float32)"),
    ]


def markdown(output):
    """The tables of one run, as markdown."""
    rows = output["rows"]
    lines = [
        f"Command: `{output['command']}`  ",
        f"Date: {output['date']}; machine: {output['machine']['cpu']}, "
        f"{output['machine']['cpus']} CPUs (shared), TF {output['machine']['tensorflow']}, "
        f"Keras {output['machine']['keras']}; load average (1/5/15 min) at start "
        f"{output['load_average']['start']}, at end {output['load_average']['end']}; "
        f"wall {output['wall_seconds']:.0f} s.  ",
        f"Batch {output['config']['batch_size']}, prompt {output['config']['sequence_length']} "
        f"tokens, median of {rows['a_student']['seconds']['n']} interleaved steps after "
        f"{output['config']['warmup']} warm-up steps; peak memory = {output['memory_method']}; "
        f"whole-run ru_maxrss {output['ru_maxrss_mib']:.0f} MiB.",
        "",
        "| row | ms / step (median) | p25–p75 | × (b) | CPU ms / step | CPU × (b) "
        "| step peak RSS MiB | step transient MiB | batch input MiB | LM prefix runs / step "
        "| LM rows kept |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        if r["group"] != "step":
            continue
        s = r["seconds"]
        runs = ""
        if r.get("prefix_executions_per_step") is not None:
            runs = f"{r['prefix_executions_per_step']:.2f}"
        kept = f"{r['lm_pass_fraction']:.0%}" if "lm_pass_fraction" in r else ""
        memory = r.get("memory_pass") or {}
        ratio = f"{r['ratio_to_b']:.2f}"
        if "ratio_to_b_f" in r:
            ratio += f" ({r['ratio_to_b_f']:.2f} × b_f)"
        lines.append(
            f"| {r['description']} | {1e3 * s['median']:.1f} | {1e3 * s['p25']:.1f}–"
            f"{1e3 * s['p75']:.1f} | {ratio} | {1e3 * r['cpu_seconds']['median']:.1f} | "
            f"{r['cpu_ratio_to_b']:.2f} | {memory.get('peak_rss_mib', float('nan')):.0f} | "
            f"{memory.get('transient_mib', float('nan')):.0f} | "
            f"{r.get('input_mib_per_batch', float('nan')):.1f} | {runs} | {kept} |")
    profile = [(n, r) for n, r in rows.items() if r["group"] == "profile"]
    if profile:
        lines += ["", f"Profile (each piece alone, its own tf.function, same batches, timed in the "
                  f"same rounds: median of {profile[0][1]['seconds']['n']} steps):", "",
                  "| piece | ms (median) | p25–p75 | CPU ms |", "|---|---:|---:|---:|"]
        for name, r in profile:
            s = r["seconds"]
            lines.append(f"| {r['description']} | {1e3 * s['median']:.1f} | "
                         f"{1e3 * s['p25']:.1f}–{1e3 * s['p75']:.1f} | "
                         f"{1e3 * r['cpu_seconds']['median']:.1f} |")
    summary = output["summary"]
    lines += ["", f"Wall: (d)/(b) = {summary['d_over_b']:.2f}; (c)/(d) = {summary['c_over_d']:.2f}; "
              f"(c)/(f) = {summary['c_over_f']:.2f}; (f)/(b_f) = {summary['f_over_b_f']:.2f}. "
              f"CPU time: (d)/(b) = {summary['cpu_d_over_b']:.2f}; "
              f"(c)/(d) = {summary['cpu_c_over_d']:.2f}; (c)/(f) = {summary['cpu_c_over_f']:.2f}; "
              f"(f)/(b_f) = {summary['cpu_f_over_b_f']:.2f}."]
    if "d_over_b_honest" in summary:
        lines[-1] += (f" Against the honest limit (teacher backward into the question included): "
                      f"(d)/(b*) = {summary['d_over_b_honest']:.2f}, (f)/(b*_f) = "
                      f"{summary['f_over_b_honest_f']:.2f} (CPU time "
                      f"{summary['cpu_d_over_b_honest']:.2f}, "
                      f"{summary['cpu_f_over_b_honest_f']:.2f}).")
        others = [f"({n.split('_over')[0]})/(f) = {v:.2f}" for n, v in summary.items()
                  if n.endswith("_over_f") and n.startswith(("f_xla", "f_topk"))]
        if others:
            lines[-1] += " XLA and fixed-size skipping against (f): " + ", ".join(others) + "."
    if "projected_over_d" in summary:
        lines[-1] += (f" Projected T5 cross-attention vs reassociated, (d_proj)/(d): wall "
                      f"{summary['projected_over_d']:.2f}, CPU {summary['cpu_projected_over_d']:.2f}.")
    if "projected_over_f" in summary:
        lines[-1] += (f" Projected MiniLM query-token attention vs folded, (f_proj)/(f): wall "
                      f"{summary['projected_over_f']:.2f}, CPU {summary['cpu_projected_over_f']:.2f}.")
    if "prefix_cache_rate" in output:
        rates = "; ".join(f"{k}: {v['rows_per_second']:.1f} rows/s, "
                          f"{v['rows_per_cpu_second']:.1f} rows per CPU-second"
                          for k, v in output["prefix_cache_rate"].items())
        lines += ["", f"Prefix-cache build rate ({rates}, batches of "
                  f"{next(iter(output['prefix_cache_rate'].values()))['rows_per_batch']} rows)."]
    if "full_run_estimate" in summary:
        lines += ["", "| 8,000 steps + cache build | steps min | cache build min | total min "
                  "| idle 2 cores (CPU time / 2) min |", "|---|---:|---:|---:|---:|"]
        for name, e in summary["full_run_estimate"].items():
            lines.append(f"| {name} | {e['steps_seconds'] / 60:.1f} | "
                         f"{e['cache_build_seconds'] / 60:.1f} | {e['total_minutes']:.1f} | "
                         f"{e['idle_total_minutes']:.1f} |")
    sizes = output["cache_size_full_train_split"]
    lines += ["", f"Prefix cache of the whole train split ({next(iter(sizes.values()))['rows']:,} "
              "rows), from the context shapes:", "",
              "| context | leaves per row | float16 GiB | float32 GiB |", "|---|---|---:|---:|"]
    for label, s in sizes.items():
        shapes = ", ".join("×".join(str(d) for d in shape) or "scalar"
                           for shape in s["leaf_shapes_per_row"])
        lines.append(f"| {label} | {shapes} | {s['gib']['float16']:.2f} | {s['gib']['float32']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    app.run(main)
