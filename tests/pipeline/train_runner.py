"""Runs `bin/train` / `bin/report` in subprocesses for the pipeline tests (not a test module)."""

import os
import signal
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# A tiny resumable job: one MLP teacher, 40 steps per phase, a checkpoint every 10 steps;
# skipping from step 10 on (τ = 0.5: the teacher runs on part of the rows); Dropout in the
# teacher (a resumed run must restore the Dropout RNG states too), not in the student (a
# mirrored run draws other Dropout masks than one device, so it could not equal it).
TINY_ARGS = (
    "--teachers=mlp_s", "--max_train_examples=800", "--id_embedding_dim=16",
    "--student_hidden_units=16,8", "--steps=40", "--teacher_steps=40", "--eval_every=20",
    "--checkpoint_every=10", "--question_embedding_dim=8", "--num_components=2",
    "--module_intermediate_dim=16", "--seeds=0", "--importance_threshold=0.5",
    "--importance_warmup_steps=10",
    "--teacher_dropout=0.5", "--student_dropout=0.0", "--verbose=0",
    # Not the first-run defaults (tests/pipeline/first_run_test.py): the student reads what
    # the teachers read, and no side run of LD.
    "--student_features=", "--compare_methods=",
)


def _env():
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}


def command(program, *args):
    return [sys.executable, os.path.join(REPO, "bin", program), *map(str, args)]


def run(program, *args, timeout=300):
    """Runs `bin/<program> args` to the end; returns the `CompletedProcess`."""
    return subprocess.run(command(program, *args), cwd=REPO, env=_env(), capture_output=True,
                          text=True, timeout=timeout)


def start(program, *args, log_path):
    """Starts `bin/<program> args` with stdout and stderr going to `log_path`."""
    log = open(log_path, "w")
    return subprocess.Popen(command(program, *args), cwd=REPO, env=_env(), stdout=log,
                            stderr=subprocess.STDOUT, text=True)


def kill_when(process, ready, timeout=240):
    """SIGKILLs `process` as soon as `ready()` is true; returns whether it was killed."""
    deadline = time.time() + timeout
    while process.poll() is None and time.time() < deadline:
        if ready():
            process.send_signal(signal.SIGKILL)
            process.wait()
            return True
        time.sleep(0.02)
    if process.poll() is None:
        process.kill()
        process.wait()
        raise TimeoutError("the run neither reached the kill point nor finished")
    return False


def error_lines(stderr):
    return [line for line in stderr.splitlines() if line.startswith("error:")]
