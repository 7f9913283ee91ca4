"""Short names for every distillation method in the harness.

`DistillationModel` is registered here as `diverse_distill`; each baseline
registers itself with `@register_method(name)` in its own module.
"""

from diverse_distill.distill.distillation_model import DistillationModel

_METHODS = {}


def register_method(name):
    """Class decorator: makes `cls` available as `get_method(name)`.

    Args:
        name: str. The short name (case-insensitive), e.g. `"ld"`.

    Example:
    ```python
    @register_method("my_method")
    class MyMethod(keras.Model):
        pass
    get_method("my_method") is MyMethod  # True
    ```
    """
    key = _normalize(name)

    def decorator(cls):
        existing = _METHODS.get(key)
        if existing is not None and existing is not cls:
            raise ValueError(
                f"The method name {key!r} is already registered to {existing.__name__}."
            )
        _METHODS[key] = cls
        return cls

    return decorator


def get_method(name):
    """The class registered as `name`.

    Raises:
        ValueError: naming the known methods when `name` is unknown.

    Example:
    ```python
    get_method("aekd").__name__  # 'AdaptiveEnsembleDistillation'
    ```
    """
    key = _normalize(name) if isinstance(name, str) else name
    if key not in _METHODS:
        raise ValueError(
            f"Unknown distillation method {name!r}. Known methods: "
            f"{', '.join(available_methods())}."
        )
    return _METHODS[key]


def available_methods():
    """Sorted short names of every registered method."""
    return sorted(_METHODS)


def _normalize(name):
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"A method name must be a non-empty string, got {name!r}.")
    return name.strip().lower()


register_method("diverse_distill")(DistillationModel)
