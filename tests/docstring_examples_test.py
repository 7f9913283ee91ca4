"""Runs every `Example:` code block in the package's docstrings."""

import importlib
import inspect
import pkgutil
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import diverse_distill

BLOCK = re.compile(r"Example:\s*\n\s*```python\n(.*?)```", re.DOTALL)


def _examples():
    found = []
    for info in pkgutil.walk_packages(diverse_distill.__path__, "diverse_distill."):
        module = importlib.import_module(info.name)
        objects = [module] + [
            obj for _, obj in inspect.getmembers(module)
            if (inspect.isclass(obj) or inspect.isfunction(obj))
            and getattr(obj, "__module__", None) == module.__name__
        ]
        for obj in objects:
            doc = inspect.getdoc(obj) or ""
            for i, block in enumerate(BLOCK.findall(doc)):
                found.append(pytest.param(module, block, id=f"{obj.__qualname__ if obj is not module else info.name}[{i}]"))
    return found


@pytest.mark.parametrize("module,code", _examples())
def test_docstring_example_runs(module, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"np": np, "keras": keras, "tf": tf, "dd": diverse_distill}
    namespace.update({n: getattr(diverse_distill, n) for n in diverse_distill.__all__})
    namespace.update(vars(module))
    code = code.replace("/tmp/", f"{tmp_path}/")
    exec(compile(inspect.cleandoc(code), f"<example in {module.__name__}>", "exec"), namespace)


def test_every_public_class_has_an_example():
    names = [n for n in diverse_distill.__all__ if inspect.isclass(getattr(diverse_distill, n))]
    missing = [n for n in names if "Example:" not in (getattr(diverse_distill, n).__doc__ or "")
               and n not in ("SplitTeacher", "Student")]
    assert not missing, f"public classes without a runnable Example: {missing}"
