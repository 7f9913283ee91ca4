"""Several workers (`--strategy=multi_worker`): who writes where, agreeing on what to resume,
and one clear message when a worker is lost.

Every worker runs the same `bin/train` command, so the same `--output_dir` and
`--cache_dir`, and every worker runs every step of the job: under
`MultiWorkerMirroredStrategy` creating a variable, a training step, an evaluation and
even `save_weights` (which creates an optimizer variable once) are collective ops that
all workers must enter together. What differs is where they write:

- the chief (task 0 of job `worker`, or the task of job `chief`) reads and writes
  OUTPUT_DIR and CACHE_DIR as a one-process run does;
- every other worker works in a private copy, a temporary folder of its own, made when
  it starts from the chief's folders (`private_copy`): the resumable state of OUTPUT_DIR
  (`phases/`, `backup/`, also under `compare_*/`) is copied, the finished cache entries
  of its teachers and S0 seeds are linked (read-only use); it writes only there and
  deletes it when the job ends.

So a worker starts from exactly the state the chief resumes from, and then writes the
same checkpoints as the chief, in its own folder. To resume after a lost worker, every
worker must see the chief's folders when it starts: OUTPUT_DIR and CACHE_DIR are on
storage all workers share (one host, NFS, a mounted bucket). `agree_on_state` checks
that at start: the workers compare what they would resume from, and a mismatch stops
every worker with one line instead of a hang or a silent divergence.
"""

import glob
import hashlib
import json
import os
import re
import shutil
import tempfile

import tensorflow as tf

# What a lost peer raises in a collective op: the peer's socket closed or the coordination
# service's / health check's abort (UnavailableError), a timed-out collective; a restarted
# peer, a cancelled or aborted collective count only when they name the collective or a task.
_PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError)
_MAYBE_PEER_ERRORS = (tf.errors.CancelledError, tf.errors.AbortedError,
                      tf.errors.FailedPreconditionError)
_PEER_WORDS = re.compile(r"collective|heartbeat|peer|/job:", re.I)


def peer_error(error):
    """The error in `error`'s chain (`__cause__`, `__context__`) that says a peer was lost,
    or `None`."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, _PEER_ERRORS) or (
                isinstance(error, _MAYBE_PEER_ERRORS) and _PEER_WORDS.search(str(error))):
            return error
        error = error.__cause__ or error.__context__
    return None


class WorkerLostError(RuntimeError):
    """A worker of a `--strategy=multi_worker` job stopped answering; the job cannot go on."""


class WorkerRole:
    """This process's place in the cluster of a strategy.

    Args:
        strategy: a `tf.distribute.Strategy`. Anything but a
            `MultiWorkerMirroredStrategy` with several workers is a lone chief.

    Attributes:
        multi: bool. More than one worker.
        is_chief: bool. The worker that writes OUTPUT_DIR and CACHE_DIR.
        task_type, task_id: from `TF_CONFIG` (`None` for a lone process).
        num_workers: int.
        cluster: dict job -> list of addresses (empty for a lone process).
    """

    def __init__(self, strategy):
        self.multi = False
        self.task_type, self.task_id, self.num_workers, self.cluster = None, None, 1, {}
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            resolver = strategy.cluster_resolver
            self.cluster = resolver.cluster_spec().as_dict()
            self.task_type, self.task_id = resolver.task_type, resolver.task_id
            self.num_workers = sum(len(v) for v in self.cluster.values()) or 1
            self.multi = self.num_workers > 1
        self.is_chief = (not self.multi or self.task_type == "chief"
                         or (self.task_type == "worker" and self.task_id == 0
                             and "chief" not in self.cluster))

    @property
    def name(self):
        return f"{self.task_type} {self.task_id}" if self.multi else "the only process"

    def peer_address(self, task_type, task_id):
        try:
            return self.cluster[task_type][int(task_id)]
        except (KeyError, IndexError, ValueError):
            return None


def _relevant_cache_keys(config):
    return ([config.teacher_key(name)[0] for name in config.teachers]
            + [config.s0_key(seed) for seed in config.seeds])


def _output_dirs(output_dir):
    """OUTPUT_DIR and its side runs' folders (`--compare_methods`), each resumable."""
    return [output_dir] + sorted(glob.glob(os.path.join(output_dir, "compare_*")))


def state_summary(config):
    """What a worker would resume from: finished phases, checkpoints, cache entries.

    Returns:
        A JSON string; two workers that would do the same next step have the same one.
    """
    state = {"cache": sorted(
        key for key in _relevant_cache_keys(config)
        if os.path.exists(os.path.join(config.cache_dir, key, "teacher.json"))
        or os.path.exists(os.path.join(config.cache_dir, key, "record.json")))}
    if config.resume:  # --noresume discards OUTPUT_DIR's state on every worker
        for folder in _output_dirs(config.output_dir):
            name = os.path.relpath(folder, config.output_dir)
            phases = sorted(os.path.basename(p) for p in
                            glob.glob(os.path.join(folder, "phases", "*.json")))
            backups = {}
            for meta in sorted(glob.glob(os.path.join(folder, "backup", "*",
                                                      "training_metadata.json"))):
                try:
                    with open(meta) as f:
                        backups[os.path.basename(os.path.dirname(meta))] = json.load(f)["epoch"]
                except (OSError, ValueError, KeyError):
                    backups[os.path.basename(os.path.dirname(meta))] = "unreadable"
            state[name] = {"phases": [p[:-5] for p in phases if p != "config.json"],
                           "checkpoints": backups}
    return json.dumps(state, sort_keys=True)


def private_copy(config, role, root=None):
    """A non-chief worker's own OUTPUT_DIR and CACHE_DIR, seeded from the chief's.

    Copies OUTPUT_DIR's resumable state (everything but TensorBoard logs and the
    exported student) and links the finished entries of the job's teachers and S0
    seeds in CACHE_DIR (files, and cache folders marked `COMPLETE`): a worker replaces
    a link (atomic `os.replace`) but never writes through one.

    Args:
        config: `JobConfig` (the command's folders).
        role: `WorkerRole`.
        root: str. The private folder (emptied first); defaults to
            `$TMPDIR/diverse_distill_<task type><task id>_<hash of OUTPUT_DIR>`, so a
            rerun replaces the copy a killed worker left behind.

    Returns:
        `(root, output_dir, cache_dir)`.
    """
    if root is None:  # one folder per (output folder, task): a rerun replaces a killed one's
        tag = hashlib.sha256(os.path.abspath(config.output_dir).encode()).hexdigest()[:10]
        root = os.path.join(tempfile.gettempdir(),
                            f"diverse_distill_{role.task_type}{role.task_id}_{tag}")
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    output_dir, cache_dir = os.path.join(root, "output"), os.path.join(root, "cache")
    if os.path.isdir(config.output_dir):
        shutil.copytree(config.output_dir, output_dir,
                        ignore=shutil.ignore_patterns("tensorboard", "student", "tmp-*", "*.tmp"))
    os.makedirs(output_dir, exist_ok=True)
    for key in _relevant_cache_keys(config):
        shared = os.path.join(config.cache_dir, key)
        if not os.path.isdir(shared):
            continue
        own = os.path.join(cache_dir, key)
        os.makedirs(own, exist_ok=True)
        for name in os.listdir(shared):
            path = os.path.join(shared, name)
            if name.startswith("tmp-") or name.endswith(".tmp"):
                continue  # another process's half-written file
            if os.path.isfile(path) or os.path.exists(os.path.join(path, "COMPLETE")):
                os.symlink(os.path.abspath(path), os.path.join(own, name))
    os.makedirs(cache_dir, exist_ok=True)
    return root, output_dir, cache_dir


def agree_on_state(strategy, role, summary):
    """Checks that every worker would resume from the same state; one line if not.

    A collective op: every worker calls it at the same point. Each worker contributes a
    hash of `summary` (`state_summary`); all must be equal.

    Raises:
        ValueError: the workers see different states (their folders are not shared).
    """
    digest = float(int(hashlib.sha256(summary.encode()).hexdigest()[:12], 16))
    n = strategy.num_replicas_in_sync

    def own_slot():
        context = tf.distribute.get_replica_context()
        return tf.one_hot(context.replica_id_in_sync_group, n, dtype=tf.float64) * digest

    seen = strategy.reduce("SUM", strategy.run(tf.function(own_slot)), axis=None).numpy()
    if len(set(seen.tolist())) > 1:
        raise ValueError(
            f"the {role.num_workers} workers see different states of --output_dir / "
            f"--cache_dir ({role.name} sees {describe_state(summary)}). Every worker must see "
            "the chief's folders: put --output_dir and --cache_dir on storage all workers "
            "share (the same path on every host), or rerun every worker with --noresume."
        )


def describe_state(summary):
    """`state_summary` in words: finished phases, checkpoints, cached entries."""
    state = json.loads(summary)
    parts = []
    for folder, value in state.items():
        if folder == "cache":
            continue
        where = "" if folder == "." else f" in {folder}"
        checkpoints = [f"{phase} (checkpoint {n})" for phase, n in value["checkpoints"].items()]
        parts.append(f"finished phases{where}: {', '.join(value['phases']) or 'none'}, "
                     f"checkpoints: {', '.join(checkpoints) or 'none'}")
    parts.append(f"cached: {', '.join(state['cache']) or 'nothing'}")
    return "; ".join(parts)


_TASK = re.compile(r"/job:(\w+)(?:/replica:\d+)?/task:(\d+)")


def lost_worker_error(error, role, output_dir):
    """`WorkerLostError` with one line: who was lost, what it means, how to resume."""
    text = " ".join(str(error).split())
    peers = [(job, int(task)) for job, task in _TASK.findall(text)
             if (job, int(task)) != (role.task_type, role.task_id)]
    if peers:
        job, task = peers[-1]
        address = role.peer_address(job, task)
        who = f"{job} {task}" + (f" ({address})" if address else "")
    else:
        who = "another worker"
    if "stopped sending heartbeats" in text:
        cause = "it stopped sending heartbeats (crashed, killed, preempted or cut off)"
    elif " is down" in text:
        cause = "it failed the cluster health check (down or unreachable)"
    elif re.search(r"socket closed|connection reset|failed to connect|connection refused",
                   text, re.I):
        cause = "its connection closed (crashed, killed or restarted)"
    else:
        cause = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text)
        cause = cause.split(" Additional GRPC error information")[0].strip()
        cause = f"{type(error).__name__}: {cause[:160]}".rstrip(" .:")
    return WorkerLostError(
        f"{role.name} lost contact with {who}: {cause}. Start every worker again with the "
        f"same command: the job resumes from the last checkpoint in {output_dir}."
    )
