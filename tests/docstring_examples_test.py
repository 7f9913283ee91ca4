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


# Base classes a user subclasses rather than instantiates; each subclass's example runs them.
ABSTRACT_BASES = ("SplitTeacher", "Student", "LanguageModelTeacher", "StudentDistiller",
                  "BaselineDistiller")


def test_every_public_class_has_an_example():
    """Every class exported by the package or one of its subpackages (their `__all__`)."""
    packages = [diverse_distill] + [
        importlib.import_module(info.name)
        for info in pkgutil.iter_modules(diverse_distill.__path__, "diverse_distill.")
        if info.ispkg]
    names = {n for package in packages for n in getattr(package, "__all__", ())
             if inspect.isclass(getattr(package, n))}
    assert {"KerasTeacher", "KerasStudent", "LogitDistillation"} <= names
    classes = {n: getattr(p, n) for p in packages for n in getattr(p, "__all__", ()) if n in names}
    missing = sorted(n for n, cls in classes.items()
                     if "Example:" not in (cls.__doc__ or "") and n not in ABSTRACT_BASES
                     and not issubclass(cls, Exception))
    assert not missing, f"public classes without a runnable Example: {missing}"
