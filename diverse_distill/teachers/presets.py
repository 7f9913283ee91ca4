"""Loading KerasHub presets without hanging on a machine that has no network."""

import os

ALLOW_DOWNLOAD_ENV = "DIVERSE_DISTILL_ALLOW_DOWNLOAD"


def check_preset_is_local(preset, allow_download, preset_example):
    """Fails fast on a preset that would have to be downloaded.

    KerasHub resolves a name such as `"flan_small_multi"` or a `kaggle://` /
    `hf://` handle by downloading it, which hangs or fails slowly on a
    machine without network. Unless downloads are allowed (by argument or by
    setting `DIVERSE_DISTILL_ALLOW_DOWNLOAD=1`), only a local folder is
    accepted: a KerasHub preset (e.g. written by
    `backbone.save_to_preset(folder)`) or a Hugging Face model folder
    (config.json, model.safetensors, tokenizer files).

    Args:
        preset: str. A folder or a preset name.
        allow_download: bool. Whether a name may be downloaded.
        preset_example: str. A preset name to quote in the error.

    Example:
    ```python
    check_preset_is_local("/", allow_download=False, preset_example="x")  # a folder: fine
    ```
    """
    if os.path.isdir(preset):
        return
    if allow_download or os.environ.get(ALLOW_DOWNLOAD_ENV, "") == "1":
        return
    raise ValueError(
        f"`preset` must be a local preset folder, but {preset!r} is not a directory, and "
        "loading it by name would download it. Pass a local folder: a KerasHub preset "
        "(e.g. written by `backbone.save_to_preset(folder)` on a machine with network, "
        f"or an unpacked `{preset_example}` preset) or a Hugging Face model folder "
        "(config.json, model.safetensors, tokenizer files); or pass `allow_download=True` "
        f"(or set {ALLOW_DOWNLOAD_ENV}=1) to let KerasHub download it."
    )


def preset_has_tokenizer(preset, tokenizer_files):
    """Whether a local preset folder holds any of `tokenizer_files` (a name always does)."""
    if not os.path.isdir(preset):
        return True
    return any(os.path.exists(os.path.join(preset, name)) for name in tokenizer_files)
