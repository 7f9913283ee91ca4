"""`bin/train --strategy=multi_worker` across processes: two workers on 127.0.0.1 (each its
own `TF_CONFIG`, free ports, no GPU) run the same command.

1. Uninterrupted, S0 and DiverseDistill with skipping equal the one-process run of the
   same global batch (`reference_run`) within 1e-5, and only the chief writes the output
   and cache folders.
2. Worker 1 SIGKILLed in distillation: worker 0 exits within `LOST_TIMEOUT` with status 4
   and one line naming the lost worker; a worker that cannot see the chief's folders stops
   both at start with one line; the same two commands resume from the last checkpoint and
   end with the metrics of an uninterrupted run (1e-5; the one-process run, which test 1
   shows the uninterrupted two-worker run equals).
3. In one process: a non-chief worker's private copy of the output and cache folders.
"""

import collections
import dataclasses
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import types

import numpy as np
import tensorflow as tf

from diverse_distill.pipeline import JobConfig
from diverse_distill.pipeline.workers import (
    WorkerRole,
    describe_state,
    lost_worker_error,
    peer_error,
    private_copy,
    state_summary,
)
from tests.pipeline import train_runner

RUN_TIMEOUT = 600  # s for a whole run of the two workers (they share the cores)
LOST_TIMEOUT = 120  # s from killing worker 1 to worker 0's exit
# Wall-clock and provenance fields, which a resumed run legitimately changes.
_NOT_RESULTS = {"seconds", "train_seconds", "wall_seconds", "loaded_from_cache", "config"}


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


class Workers:
    """`bin/train` in two worker processes; worker `i` gets `args + extra[i]`.

    Each has its `TF_CONFIG`, `CUDA_VISIBLE_DEVICES=""` and its own `TMPDIR` (where a
    non-chief worker keeps its copy of the job), stdout and stderr in files.
    """

    def __init__(self, tmp_path, name, args, extra=((), ())):
        self.ports = _free_ports(2)
        cluster = {"worker": [f"127.0.0.1:{p}" for p in self.ports]}
        self.tmp_path, self.name, self.processes = tmp_path, name, []
        for i in range(2):
            tmpdir = tmp_path / f"{name}_tmp{i}"
            tmpdir.mkdir()
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "",
                   "TMPDIR": str(tmpdir),
                   "TF_CONFIG": json.dumps({"cluster": cluster,
                                            "task": {"type": "worker", "index": i}})}
            with open(self._path(i, "out"), "w") as out, open(self._path(i, "err"), "w") as err:
                self.processes.append(subprocess.Popen(
                    train_runner.command("train", *args, *extra[i]), cwd=train_runner.REPO,
                    env=env, stdout=out, stderr=err, text=True))

    def _path(self, i, kind):
        return self.tmp_path / f"{self.name}_{i}.{kind}"

    def stdout(self, i):
        return self._path(i, "out").read_text()

    def stderr(self, i):
        return self._path(i, "err").read_text()

    def tails(self):
        return "\n".join(f"--- worker {i} stderr:\n{self.stderr(i)[-2000:]}" for i in range(2))

    def kill_all(self):
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    def wait(self, timeout=RUN_TIMEOUT):
        """Both exit statuses; kills both and fails if they run past `timeout`."""
        deadline = time.time() + timeout
        try:
            return [p.wait(timeout=max(1, deadline - time.time())) for p in self.processes]
        except subprocess.TimeoutExpired:
            self.kill_all()
            raise AssertionError(f"{self.name}: the workers ran past {timeout} s\n{self.tails()}")


def _command(reference_run, out, cache):
    return [*reference_run.args, f"--output_dir={out}", f"--cache_dir={cache}",
            "--strategy=multi_worker"]


def _copy_cache(reference_run, cache, pattern):
    for folder in reference_run.cache.glob(pattern):
        shutil.copytree(folder, cache / folder.name)


def _files(folder):
    """Every file under `folder`, TensorBoard event files by folder (one per writer)."""
    return sorted(re.sub(r"events\.out\.tfevents\..*", "events", str(p.relative_to(folder)))
                  for p in folder.rglob("*") if p.is_file())


def _numbers(tree, prefix=""):
    """Every number of a metrics.json tree, minus timings and provenance."""
    if isinstance(tree, dict):
        return {k2: v2 for k, v in tree.items() if k not in _NOT_RESULTS
                for k2, v2 in _numbers(v, f"{prefix}/{k}").items()}
    if isinstance(tree, list):
        return {k2: v2 for i, v in enumerate(tree)
                for k2, v2 in _numbers(v, f"{prefix}[{i}]").items()}
    if isinstance(tree, (int, float)) and not isinstance(tree, bool):
        return {prefix: float(tree)}
    return {}


def test_two_workers_equal_one_process(reference_run, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    _copy_cache(reference_run, cache, "mlp_s-*")  # its teacher, not its S0: both phases train
    workers = Workers(tmp_path, "run", _command(reference_run, out, cache))
    assert workers.wait() == [0, 0], workers.tails()

    chief, other = workers.stdout(0), workers.stdout(1)
    assert f"worker 0 of 2 workers (the chief): writes {out}" in chief
    assert "strategy multi_worker: 2 replicas, 32 rows per replica" in chief
    assert "teacher mlp_s: test MSE" in chief and "(cached" in chief
    assert "S0 cache" not in chief
    assert "worker 1 of 2 workers: works in a copy of the chief's folders" in other
    # Only the chief wrote the output and cache folders: no file a one-process run does not
    # write (other tests may add some to the reference's folders), one TensorBoard event
    # file per folder (one writer); worker 1's copy is gone.
    for ours, one_process in ((out, reference_run.out), (cache, reference_run.cache)):
        extra = collections.Counter(_files(ours)) - collections.Counter(_files(one_process))
        assert not extra, extra
    assert {"metrics.json", "phases/diverse_distill_seed0.json", "student/saved_model.pb",
            "tensorboard/s0_seed0/train/events"} <= set(_files(out))
    assert not any((tmp_path / "run_tmp1").iterdir())

    one = json.loads((reference_run.out / "metrics.json").read_text())["runs"][0]
    two = json.loads((out / "metrics.json").read_text())["runs"][0]
    assert 0 < one["distilled"]["pass_fraction_mlp_s"] < 1  # skipping was on
    for phase in ("s0", "distilled"):
        assert set(two[phase]["history"]) == set(one[phase]["history"])
        for key, values in one[phase]["history"].items():
            np.testing.assert_allclose(two[phase]["history"][key], values, atol=1e-5, rtol=0,
                                       err_msg=f"{phase} {key}")
        for m in ("mse", "mae"):
            np.testing.assert_allclose(two[phase]["test"][m], one[phase]["test"][m], atol=1e-5,
                                       rtol=0, err_msg=f"{phase} test {m}")


def test_lost_worker_stops_the_other_with_one_line_and_the_same_commands_resume(
        reference_run, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    _copy_cache(reference_run, cache, "*")  # its teacher and S0: the run is distillation
    command = [*_command(reference_run, out, cache), "--noexport_student"]  # (test 1 exports)
    checkpoint = out / "backup" / "diverse_distill_seed0" / "training_metadata.json"

    # 1. Both workers run; worker 1 is SIGKILLed once the chief has checkpointed distillation.
    workers = Workers(tmp_path, "killed", command)
    deadline = time.time() + RUN_TIMEOUT
    while not checkpoint.exists():
        if time.time() > deadline or any(p.poll() is not None for p in workers.processes):
            workers.kill_all()
            raise AssertionError(f"no distillation checkpoint\n{workers.tails()}")
        time.sleep(0.02)
    workers.processes[1].send_signal(signal.SIGKILL)
    workers.processes[1].wait()
    killed = time.time()
    try:
        status = workers.processes[0].wait(timeout=LOST_TIMEOUT)
    except subprocess.TimeoutExpired:
        workers.kill_all()
        raise AssertionError(f"worker 0 still runs {LOST_TIMEOUT} s after worker 1 was lost\n"
                             f"{workers.tails()}")
    print(f"worker 0 exited {time.time() - killed:.1f} s after worker 1 was killed")
    stderr = workers.stderr(0)
    last = stderr.strip().splitlines()[-1]
    print(last)
    assert status == 4, stderr[-3000:]
    assert train_runner.error_lines(stderr) == [last]
    assert re.fullmatch(
        rf"error: worker 0 lost contact with worker 1 \(127\.0\.0\.1:{workers.ports[1]}\): "
        rf".+\. Start every worker again with the same command: the job resumes from the "
        rf"last checkpoint in {re.escape(str(out))}\.", last), last
    assert not (out / "phases" / "diverse_distill_seed0.json").exists()

    # 2. The same two commands: both resume from the chief's checkpoint and finish.
    resumed = Workers(tmp_path, "resumed", command)
    assert resumed.wait() == [0, 0], resumed.tails()
    steps = [re.search(r"\[diverse_distill_seed0\] resuming from the checkpoint at step (\d+)",
                       resumed.stdout(i)) for i in range(2)]
    assert all(steps) and steps[0][1] == steps[1][1] and 10 <= int(steps[0][1]) < 40, steps
    print(steps[0][0])
    assert "[s0_seed0] loaded from the S0 cache" in resumed.stdout(0)
    assert not any((out / "backup").iterdir())
    assert not any((tmp_path / "resumed_tmp1").iterdir())

    expected = _numbers(json.loads((reference_run.out / "metrics.json").read_text()))
    final = _numbers(json.loads((out / "metrics.json").read_text()))
    assert set(final) == set(expected)
    assert any("/distilled/history/" in k for k in expected)
    far = {k: (expected[k], final[k]) for k in expected
           if not math.isclose(expected[k], final[k], rel_tol=0, abs_tol=1e-5)}
    assert not far, far


def test_private_copy_is_the_chief_state_and_never_writes_through(tmp_path):
    """A non-chief worker's copy (no cluster needed): the same resumable state, links only to
    finished cache entries, and a write in the copy leaves the chief's files alone."""
    config = JobConfig(output_dir=str(tmp_path / "out"), cache_dir=str(tmp_path / "cache"),
                       movielens_dir="x", teachers=("mlp_s",), seeds=(0,))
    out, cache = tmp_path / "out", tmp_path / "cache"
    (out / "phases").mkdir(parents=True)
    (out / "phases" / "s0_seed0.json").write_text("{}")
    (out / "backup" / "diverse_distill_seed0" / "epoch-000002").mkdir(parents=True)
    (out / "backup" / "diverse_distill_seed0" / "training_metadata.json").write_text(
        '{"epoch": 2, "dir": "epoch-000002"}')
    (out / "tensorboard" / "s0_seed0").mkdir(parents=True)
    teacher = cache / config.teacher_key("mlp_s")[0]
    (teacher / "prefix_done").mkdir(parents=True)
    (teacher / "prefix_done" / "COMPLETE").write_text("")
    (teacher / "prefix_half").mkdir()
    for name in ("teacher.json", "teacher.weights.h5", "tmp-123.weights.h5"):
        (teacher / name).write_text(name)
    (cache / "other-key").mkdir()  # another job's entry

    alone = WorkerRole(tf.distribute.get_strategy())  # one process: the chief
    assert (alone.multi, alone.is_chief) == (False, True)
    worker1 = types.SimpleNamespace(task_type="worker", task_id=1, name="worker 1",
                                    peer_address=lambda job, task: "10.0.0.1:12345")
    _, own_out, own_cache = private_copy(config, worker1, root=str(tmp_path / "w1"))
    own = dataclasses.replace(config, output_dir=own_out, cache_dir=own_cache)
    assert state_summary(own) == state_summary(config)
    assert describe_state(state_summary(config)) == (
        f"finished phases: s0_seed0, checkpoints: diverse_distill_seed0 (checkpoint 2); "
        f"cached: {teacher.name}")
    assert not os.path.exists(os.path.join(own_out, "tensorboard"))
    own_teacher = os.path.join(own_cache, teacher.name)
    assert sorted(os.listdir(own_teacher)) == ["prefix_done", "teacher.json",
                                               "teacher.weights.h5"]
    assert not os.path.exists(os.path.join(own_cache, "other-key"))
    tmp = os.path.join(own_teacher, "new.h5")
    with open(tmp, "w") as f:
        f.write("the worker's own")
    os.replace(tmp, os.path.join(own_teacher, "teacher.weights.h5"))  # as TeacherStore writes
    assert (teacher / "teacher.weights.h5").read_text() == "teacher.weights.h5"
    (out / "phases" / "diverse_distill_seed0.json").write_text("{}")
    assert state_summary(own) != state_summary(config)  # what agree_on_state would catch

    error = tf.errors.UnavailableError(None, None, (
        "Collective ops is aborted by: Error reported from /job:worker/task:0: The following "
        "tasks are unhealthy (stopped sending heartbeats): /job:worker/replica:0/task:0"))
    assert peer_error(RuntimeError("wrapped")) is None
    wrapped = RuntimeError("Unable to automatically build the model")
    wrapped.__context__ = error
    assert peer_error(wrapped) is error
    assert str(lost_worker_error(error, worker1, "/shared/out")) == (
        "worker 1 lost contact with worker 0 (10.0.0.1:12345): it stopped sending heartbeats "
        "(crashed, killed, preempted or cut off). Start every worker again with the same "
        "command: the job resumes from the last checkpoint in /shared/out.")
