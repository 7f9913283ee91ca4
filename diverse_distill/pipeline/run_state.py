"""What a run has finished and where its checkpoints are, so a rerun resumes it."""

import dataclasses
import json
import os
import shutil

# Fields that change nothing in the results: a rerun may change them and still resume.
COSMETIC_FIELDS = ("output_dir", "cache_dir", "verbose", "export_student", "debug", "resume",
                   "only_teachers", "compare_methods", "jit_compile")


def _defaults(config):
    """The JobConfig field defaults, JSON-normalised (tuples -> lists)."""
    if not dataclasses.is_dataclass(config):
        return {}
    return json.loads(json.dumps({f.name: f.default for f in dataclasses.fields(config)
                                  if f.default is not dataclasses.MISSING}))


class RunState:
    """The resumable state of one `bin/train` output folder.

    Layout under `output_dir`:
    - `phases/config.json`: the configuration the phases were run with;
    - `phases/<phase>.json`: the record of each finished phase (S0 or a
      distilled student of one seed), and `phases/<phase>.student.weights.h5`
      its student's weights; a rerun loads them instead of training again;
    - `backup/<phase>/`: the `PhaseBackup` checkpoints of the phase in
      progress (teachers: `backup/teacher_<cache key>/`), deleted once the
      phase's record (or the teacher's cache entry) is written.

    Args:
        config: `JobConfig`.
        log: callable taking a str. Defaults to `print`.

    Example:
    ```python
    import tempfile
    from diverse_distill.pipeline import JobConfig
    state = RunState(JobConfig(output_dir=tempfile.mkdtemp(), movielens_dir="x"))
    state.start()
    state.save("s0_seed0", {"test": {"mse": 1.0}})
    state.load("s0_seed0")  # {'test': {'mse': 1.0}}
    ```
    """

    def __init__(self, config, log=print):
        self.config = config
        self.log = log
        self.phases_dir = os.path.join(config.output_dir, "phases")
        self.backup_root = os.path.join(config.output_dir, "backup")

    def _fingerprint(self):
        return {k: v for k, v in self.config.to_dict().items() if k not in COSMETIC_FIELDS}

    def start(self):
        """Checks that finished phases belong to this config (or discards them with --noresume)."""
        c = self.config
        if not getattr(c, "resume", True):
            for folder in (self.phases_dir, self.backup_root):
                if os.path.isdir(folder):
                    shutil.rmtree(folder)
                    self.log(f"--noresume: deleted {folder}")
        path = os.path.join(self.phases_dir, "config.json")
        current = json.loads(json.dumps(self._fingerprint()))  # tuples -> lists
        done = self.finished_phases()
        started = done or (os.path.isdir(self.backup_root) and os.listdir(self.backup_root))
        if os.path.exists(path) and started:
            with open(path) as f:
                previous = json.load(f)
            # A field added to JobConfig after the run started compares at its default.
            defaults = _defaults(c)
            changed = sorted(k for k in set(current) | set(previous)
                             if current.get(k, defaults.get(k)) != previous.get(k, defaults.get(k)))
            if changed:
                detail = ", ".join(f"--{k}: {previous.get(k)!r} -> {current.get(k)!r}"
                                   for k in changed[:4])
                raise ValueError(
                    f"{c.output_dir} holds a run with a different configuration ({detail}). "
                    "Rerun with the same flags to resume it, pass --noresume to discard it, "
                    "or choose another --output_dir."
                )
            running = []
            if os.path.isdir(self.backup_root):
                running = sorted(os.listdir(self.backup_root))
            self.log(f"resuming {c.output_dir}: finished phases {done or 'none'}, "
                     f"checkpoints of {running or 'none'}")
        else:  # nothing to resume: (re)start with this configuration
            os.makedirs(self.phases_dir, exist_ok=True)
            with open(path + ".tmp", "w") as f:
                json.dump(current, f, indent=2)
            os.replace(path + ".tmp", path)

    def finished_phases(self):
        if not os.path.isdir(self.phases_dir):
            return []
        return sorted(n[:-5] for n in os.listdir(self.phases_dir)
                      if n.endswith(".json") and n != "config.json")

    def backup_dir(self, phase):
        return os.path.join(self.backup_root, phase)

    def clear_backup(self, phase):
        shutil.rmtree(self.backup_dir(phase), ignore_errors=True)

    def weights_path(self, phase):
        return os.path.join(self.phases_dir, f"{phase}.student.weights.h5")

    def load(self, phase):
        """The record of a finished phase, or `None`."""
        path = os.path.join(self.phases_dir, f"{phase}.json")
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return json.load(f)

    def save(self, phase, record, student=None):
        """Writes the phase's record (last, atomically) and its student's weights."""
        os.makedirs(self.phases_dir, exist_ok=True)
        if student is not None:
            student.save_weights(self.weights_path(phase))
        path = os.path.join(self.phases_dir, f"{phase}.json")
        with open(path + ".tmp", "w") as f:
            json.dump(record, f, indent=2)
        os.replace(path + ".tmp", path)
