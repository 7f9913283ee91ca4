"""A benchmark script (benchmarks/NAME.py) imported as a module, once per test process."""

import importlib.util
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_script(name):
    """`benchmarks/<name>.py` as a module (imported once: the scripts define absl flags)."""
    module_name = f"benchmarks_{name}"
    if module_name not in sys.modules:
        path = os.path.join(REPO, "benchmarks", f"{name}.py")
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]
