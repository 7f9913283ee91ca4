"""`--method`, `--teacher_index` and `--method_params`: the keyword arguments of a method.

`bin/train --method=NAME` builds `get_method(NAME)(student, teachers, **kwargs)`. The
keyword arguments come from three places:

- flags of their own: `--alpha` (every method), `--beta` (`diverse_distill`'s `L_reg`
  weight and `amtml`'s hint weight), `--teacher_index` (the single-teacher methods
  `ld`, `fd`, `sckd`) and DiverseDistill's `--importance_threshold`,
  `--importance_normalization`, `--question_embedding_dim`, `--num_components`,
  `--module_intermediate_dim`, `--alignment`, `--variant` and the options it sets
  (`--distance`, `--injection`, `--answer_target`, `--prediction_weight`,
  `--module_warmup_steps`, `--importance_objective`; empty or negative = the variant's);
- `--method_params=key=value,...`: every other constructor argument of the method, e.g.
  `--method=sckd --method_params=distill_target=hidden`,
  `--method=aekd --method_params=max_weight=0.8`,
  `--method=diverse_distill --method_params=importance=uniform,question=native`.
  A value is converted to the type of the argument's default (`true`/`false` for a
  bool); a list is written with `:` (`initial_logits=0:1`). Unknown keys, and keys
  that have a flag of their own, fail at once with the list of keys the method takes;
- the run: a method with a `seed` argument (`autoskd`) gets the run's seed unless
  `--method_params` sets it.
"""

import inspect

# Constructor arguments the job itself supplies (never from --method_params).
_SUPPLIED = {"self", "student", "teachers", "kwargs", "question_augmenter", "answer_augmenter",
             "prefix_caches"}
# Constructor argument -> its own bin/train flag.
_FLAG_BACKED = {
    "alpha": "--alpha",
    "beta": "--beta",
    "teacher_index": "--teacher_index",
    "importance_threshold": "--importance_threshold",
    "keep_fraction": "--keep_fraction",
    "importance_warmup_steps": "--importance_warmup_steps",
    "importance_normalization": "--importance_normalization",
    "threshold_on": "--importance_threshold_on",
    "embedding_dim": "--question_embedding_dim",
    "num_components": "--num_components",
    "intermediate_dim": "--module_intermediate_dim",
    "alignment": "--alignment",
    "variant": "--variant",
    "distance": "--distance",
    "injection": "--injection",
    "answer_target": "--answer_target",
    "prediction_weight": "--prediction_weight",
    "module_warmup_steps": "--module_warmup_steps",
    "importance_objective": "--importance_objective",
}
# DiverseDistill's options whose empty flag ("" or < 0) means "the value of --variant".
_VARIANT_OPTIONS = ("alignment", "distance", "injection", "answer_target", "prediction_weight",
                    "module_warmup_steps", "importance_objective")


# `--compare_methods`: the alpha each side-run method uses, chosen on the validation split
# on MLP-L (docs/results/quality.md: LD's best of six alphas); others use `--alpha`.
COMPARISON_ALPHAS = {"ld": 4.0}


def parse_method_params(text):
    """`"a=1,b=x"` -> `{"a": "1", "b": "x"}` (strings; syntax only).

    Raises:
        ValueError: on an item without `=`, an empty key or a key given twice.

    Example:
    ```python
    parse_method_params("max_weight=0.8, seed=3")  # {'max_weight': '0.8', 'seed': '3'}
    parse_method_params("")  # {}
    ```
    """
    params = {}
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(
                f"--method_params: {item!r} is not key=value (write e.g. "
                "--method_params=max_weight=0.8,seed=3)."
            )
        if key in params:
            raise ValueError(f"--method_params gives {key!r} twice.")
        params[key] = value.strip()
    return params


def method_class(name):
    """The registered class of `--method=name` (a `ValueError` naming the known ones)."""
    from diverse_distill.baselines.registry import get_method

    return get_method(name)


def method_arguments(cls):
    """`{argument: default}` of `cls`'s constructor that `--method_params` may set."""
    signature = inspect.signature(cls.__init__)
    return {
        name: parameter.default
        for name, parameter in signature.parameters.items()
        if name not in _SUPPLIED and name not in _FLAG_BACKED
        and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
    }


def takes_argument(cls, name):
    return name in inspect.signature(cls.__init__).parameters


def _literal(text):
    lowered = text.lower()
    if lowered in ("none", "null"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def _convert(key, text, default):
    if isinstance(default, bool):
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"--method_params: {key} takes true or false, got {text!r}.")
        return text.lower() in ("true", "1")
    if isinstance(default, (int, float)):
        try:
            value = float(text)
        except ValueError:
            raise ValueError(
                f"--method_params: {key} takes a number, got {text!r}."
            ) from None
        if isinstance(default, int):
            if value != int(value):
                raise ValueError(f"--method_params: {key} takes an integer, got {text!r}.")
            return int(value)
        return value
    if isinstance(default, str):
        return text
    if ":" in text:
        return [_literal(v) for v in text.split(":")]
    return _literal(text)


def method_kwargs(config, seed=None):
    """The keyword arguments of `config.method`'s constructor, besides student and teachers.

    Validates `--method`, `--teacher_index` and `--method_params` against the
    method's constructor (a `ValueError` naming the unknown keys and the
    accepted ones). DiverseDistill's own flags are included; the prefix
    caches are not (the job adds them).

    Args:
        config: `JobConfig`.
        seed: int or `None`. The run's seed, for a method with a `seed` argument.

    Returns:
        dict.
    """
    cls = method_class(config.method)
    label = f"--method={config.method} ({cls.__name__})"
    accepted = method_arguments(cls)
    given = parse_method_params(getattr(config, "method_params", ""))
    flagged = sorted(k for k in given if k in _FLAG_BACKED)
    if flagged:
        raise ValueError(
            f"--method_params sets {flagged}, which have flags of their own: "
            f"{', '.join(_FLAG_BACKED[k] for k in flagged)}."
        )
    unknown = sorted(k for k in given if k not in accepted)
    if unknown:
        known = ", ".join(sorted(accepted)) or "none"
        raise ValueError(
            f"--method_params: unknown key(s) {unknown} for {label}; it takes: {known}."
        )
    kwargs = {key: _convert(key, text, accepted[key]) for key, text in given.items()}
    kwargs["alpha"] = config.alpha
    if takes_argument(cls, "beta"):
        kwargs["beta"] = config.beta
    teacher_index = getattr(config, "teacher_index", -1)
    if takes_argument(cls, "teacher_index"):
        if teacher_index >= 0:
            if teacher_index >= len(config.teachers):
                raise ValueError(
                    f"--teacher_index={teacher_index} is out of range for the "
                    f"{len(config.teachers)} teacher(s) {list(config.teachers)}."
                )
            kwargs["teacher_index"] = teacher_index
        elif len(config.teachers) > 1:
            raise ValueError(
                f"{label} distils a single teacher and the committee has "
                f"{len(config.teachers)} ({list(config.teachers)}): pick one with "
                "--teacher_index=K (0-based) or pass --teachers=NAME."
            )
    elif teacher_index >= 0:
        raise ValueError(
            f"--teacher_index is for the single-teacher methods (ld, fd, sckd); {label} "
            "uses the whole committee. To run it on one teacher, pass --teachers=NAME."
        )
    if seed is not None and takes_argument(cls, "seed") and "seed" not in given:
        kwargs["seed"] = int(seed)
    if config.method == "diverse_distill":
        kwargs.update(
            importance_threshold=config.threshold,
            keep_fraction=config.keep_fraction if config.keep_fraction > 0 else None,
            # The warm-up belongs to threshold skipping (fixed-size skipping has none).
            importance_warmup_steps=config.importance_warmup_steps if config.threshold is not None
            else 0,
            importance_normalization=config.importance_normalization,
            threshold_on=config.importance_threshold_on,
            embedding_dim=config.question_embedding_dim,
            num_components=config.num_components,
            intermediate_dim=config.module_intermediate_dim,
            variant=config.variant,
        )
        for name in _VARIANT_OPTIONS:
            value = getattr(config, name)
            if value != "" and not (isinstance(value, (int, float)) and value < 0):
                kwargs[name] = value
    return kwargs
