"""Image data for the vision path: Fashion-MNIST (idx files) and CIFAR-10/100.

Sources:
- Fashion-MNIST (or any folder in the MNIST idx format) is read from a folder of the four
  idx files. Debian ships it as the package `dataset-fashion-mnist` (MIT licence), which
  puts them under `/usr/share/datasets/fashion-mnist/`. The idx format is parsed here with
  numpy, and every file is checked (magic number, sizes, image and label counts).
- CIFAR-10 / CIFAR-100 come from the standard python archive a user has
  (`cifar-10-python.tar.gz`, `cifar-100-python.tar.gz`) or from TFDS (`use_tfds=True`,
  which needs the network or a prepared TFDS data_dir).

Every loader returns an `ImageData`: `train` / `validation` / `test` dicts of
`{"images": float32 (n, h, w, c) in [0, 1], "label": int32 (n,)}`. Validation is a
seeded random part of the train file(s) (`split_train_validation`); test is the test file.
`ImageData.as_dataset` gives `({"images": images}, label)` batches, the feature key that
ViT teachers and students read, with optional augmentation on the train split
(`augmentation`).

Example:
```python
import tempfile
from diverse_distill.data import load_fashion_mnist, write_synthetic_fashion_mnist

# The real data: load_fashion_mnist() reads /usr/share/datasets/fashion-mnist.
folder = write_synthetic_fashion_mnist(tempfile.mkdtemp(), num_train=50, num_test=20)
data = load_fashion_mnist(folder, validation_fraction=0.2, split_seed=42)
data.num_examples  # {'train': 40, 'validation': 10, 'test': 20}
features, label = next(iter(data.as_dataset("train", batch_size=8, shuffle_seed=0,
                                            augment="flip_crop")))
features["images"].shape, label.dtype  # (TensorShape([8, 28, 28, 1]), tf.int32)
```
"""

import gzip
import io
import logging
import os
import pickle
import tarfile
import zlib

import numpy as np

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")

# === Fashion-MNIST (idx files) ===
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions (n, rows, cols).
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension (n,).
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_IDX_HINT = (
    "Install Fashion-MNIST with `apt-get install dataset-fashion-mnist` (it puts the four "
    f"idx files under {FASHION_MNIST_DIR}/), or pass the folder of an MNIST-format dataset "
    "with --image_dir=/path/to/folder (load_fashion_mnist(image_dir=...)); it must hold "
    + ", ".join(f"{name}.gz" for name in IDX_FILES.values())
    + " (or the same names without .gz)."
)

# === CIFAR (python archives) ===
CIFAR_NAMES = ("cifar10", "cifar100")
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
CIFAR_ARCHIVES = {"cifar10": "cifar-10-python.tar.gz", "cifar100": "cifar-100-python.tar.gz"}
# Per name: the label key of a batch, the meta member and its class-name key.
_CIFAR_LAYOUT = {
    "cifar10": {"labels": b"labels", "meta": "batches.meta", "names": b"label_names"},
    "cifar100": {"labels": b"fine_labels", "meta": "meta", "names": b"fine_label_names"},
}
_CIFAR_HINT = (
    "CIFAR is not packaged for Debian: pass archive=/path/to/{archive} (the python version "
    "from https://www.cs.toronto.edu/~kriz/cifar.html, fetched on a machine with network "
    "access), or use_tfds=True with the network or a prepared TFDS data_dir."
)

AUGMENTATIONS = ("flip_crop", "flip", "crop")


class ImageFormatError(ValueError):
    """An image or label file is malformed; the message names the file and the problem."""


class ImageFileNotFoundError(FileNotFoundError, ValueError):
    """An image file or folder is missing; the message names it and how to get the data."""


# ----------------------------------------------------------------------------------
# The dataset object
# ----------------------------------------------------------------------------------


class ImageData:
    """Image classification splits, as numpy arrays, with a `tf.data` view.

    Args:
        train: dict with `"images"` (float32 `(n, h, w, c)` in [0, 1]) and `"label"`
            (int `(n,)` in `0..num_classes-1`).
        validation: dict, the same keys (may hold 0 examples).
        test: dict, the same keys.
        class_names: sequence of str, one per class.
        name: str. A short name for messages, e.g. `"fashion_mnist"`. Defaults to `""`.

    Attributes:
        train, validation, test: the split dicts (images float32, labels int32).
        class_names: tuple of str.
        num_classes: int.
        image_shape: tuple `(h, w, c)`.
        num_examples: dict split -> number of images.

    Example:
    ```python
    import numpy as np
    from diverse_distill.data import ImageData

    rng = np.random.default_rng(0)
    def split(n):
        return {"images": rng.uniform(size=(n, 8, 8, 3)).astype("float32"),
                "label": rng.integers(0, 2, n)}
    data = ImageData(split(20), split(4), split(6), class_names=("cat", "dog"))
    data.num_examples, data.image_shape  # ({'train': 20, ...}, (8, 8, 3))
    ds = data.as_dataset("train", batch_size=8, shuffle_seed=0, augment="flip")
    assert len(list(ds)) == 3
    ```
    """

    def __init__(self, train, validation, test, class_names, name=""):
        self.class_names = tuple(str(c) for c in class_names)
        if not self.class_names:
            raise ValueError("class_names is empty: an ImageData needs at least one class")
        self.name = name
        splits = {}
        image_shape = None
        for split, data in zip(SPLITS, (train, validation, test)):
            if not isinstance(data, dict) or set(data) != {"images", "label"}:
                raise ValueError(
                    f"{split} must be a dict with the keys 'images' and 'label', got "
                    f"{sorted(data) if isinstance(data, dict) else type(data).__name__}"
                )
            images = np.asarray(data["images"], np.float32)
            labels = np.asarray(data["label"])
            if images.ndim != 4:
                raise ValueError(
                    f"{split} images must be 4-D (n, height, width, channels), got shape "
                    f"{images.shape}"
                )
            if labels.dtype.kind not in "iu":
                raise ValueError(f"{split} labels must be integers, got dtype {labels.dtype}")
            if labels.shape != (len(images),):
                raise ValueError(
                    f"{split} labels must have shape ({len(images)},) like its images, got "
                    f"{labels.shape}"
                )
            if labels.size and (labels.min() < 0 or labels.max() >= len(self.class_names)):
                raise ValueError(
                    f"{split} labels must be in 0..{len(self.class_names) - 1} "
                    f"({len(self.class_names)} class names), got {labels.min()}..{labels.max()}"
                )
            if image_shape is not None and images.shape[1:] != image_shape:
                raise ValueError(
                    f"{split} images have shape {images.shape[1:]}, train has {image_shape}"
                )
            image_shape = images.shape[1:]
            splits[split] = {"images": images, "label": labels.astype(np.int32)}
        self.train, self.validation, self.test = (splits[s] for s in SPLITS)
        self.image_shape = tuple(int(d) for d in image_shape)

    @property
    def num_classes(self):
        """int. The number of classes."""
        return len(self.class_names)

    @property
    def num_examples(self):
        """dict split -> number of images."""
        return {s: len(self.split(s)["label"]) for s in SPLITS}

    def split(self, split):
        """The dict of one split: `"train"`, `"validation"` or `"test"`."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return getattr(self, split)

    def class_counts(self, split):
        """int64 array `(num_classes,)`: how many images of `split` each class has."""
        return np.bincount(self.split(split)["label"], minlength=self.num_classes)

    def as_dataset(self, split, batch_size, shuffle_seed=None, augment=None,
                   drop_remainder=False, repeat=False, extra_features=None):
        """A `tf.data.Dataset` of `({"images": images, **extra}, label)` batches.

        Args:
            split: str. `"train"`, `"validation"` or `"test"`.
            batch_size: int. At least 1.
            shuffle_seed: int or None. Shuffle the split with this seed, anew each epoch
                (the same seed gives the same sequence of epochs); `None` keeps the
                order. Defaults to `None`.
            augment: None, a kind of `augmentation` (`"flip_crop"`, `"flip"`, `"crop"`;
                seeded with `shuffle_seed`), or a callable on a float32 batch (a Keras
                layer is called with `training=True`). Applied to the **train split
                only**; validation and test are never augmented. Defaults to `None`.
            drop_remainder: bool. Drop the last partial batch. Defaults to `False`.
            repeat: bool. Repeat forever (for step-based training). Defaults to `False`.
            extra_features: dict name -> array with one row per image of the split, or
                `None`. Served beside the images (a teacher's tokens, the row numbers
                `"__row__"` that look up a prefix cache). Defaults to `None`.

        Returns:
            A `tf.data.Dataset` yielding `({"images": float32 (batch, h, w, c), **extra},
            int32 (batch,))`.
        """
        import keras
        import tensorflow as tf

        data = self.split(split)
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        layer = None
        if augment is not None and augment is not False:
            if isinstance(augment, str):
                layer = augmentation(augment, self.image_shape, seed=shuffle_seed)
            elif callable(augment):
                layer = augment
            else:
                raise ValueError(
                    f"augment must be None, one of {AUGMENTATIONS} or a callable, got "
                    f"{augment!r}"
                )
        n = len(data["label"])
        features = {"images": tf.constant(data["images"])}
        for key, values in (extra_features or {}).items():
            if key == "images" or len(values) != n:
                raise ValueError(f"extra feature {key!r} must be a new name with one row per "
                                 f"{split} image ({n}), got {len(values)} rows")
            features[key] = tf.constant(values)
        labels = tf.constant(data["label"])
        # Shuffle indices, not images: the shuffle buffer then holds ints only.
        indices = tf.data.Dataset.range(n)
        if shuffle_seed is not None:
            indices = indices.shuffle(max(n, 1), seed=shuffle_seed,
                                      reshuffle_each_iteration=True)
        if repeat:
            indices = indices.repeat()
        ds = indices.batch(batch_size, drop_remainder=drop_remainder).map(
            lambda i: ({k: tf.gather(v, i) for k, v in features.items()}, tf.gather(labels, i))
        )
        if layer is not None and split == "train":
            if isinstance(layer, keras.Layer):
                def apply(x):
                    return layer(x, training=True)
            else:
                apply = layer
            ds = ds.map(lambda x, label: ({**x, "images": apply(x["images"])}, label))
        return ds.prefetch(tf.data.AUTOTUNE)

    def __repr__(self):
        return (
            f"ImageData(name={self.name!r}, num_examples={self.num_examples}, "
            f"image_shape={self.image_shape}, num_classes={self.num_classes})"
        )


def split_train_validation(num_examples, validation_fraction=0.1, seed=42,
                           max_train_examples=0):
    """Seeded random split of a train file into train and validation row indices.

    `perm = np.random.default_rng(seed).permutation(num_examples)`; validation is
    `perm[:round(validation_fraction * num_examples)]`, train is the rest (its first
    `max_train_examples` when that is positive, so validation does not depend on it).
    Both are returned sorted: each split keeps the file's order.

    Args:
        num_examples: int.
        validation_fraction: float in [0, 1). Defaults to `0.1`.
        seed: int. Defaults to `42`.
        max_train_examples: int. Keep at most this many train rows; `0` keeps all.
            Defaults to `0`.

    Returns:
        `(train_indices, validation_indices)`: sorted int64 arrays, disjoint.

    Example:
    ```python
    from diverse_distill.data import split_train_validation

    train, validation = split_train_validation(100, validation_fraction=0.1, seed=42)
    len(train), len(validation)  # (90, 10)
    ```
    """
    if not 0.0 <= float(validation_fraction) < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction!r}")
    if not isinstance(max_train_examples, (int, np.integer)) or max_train_examples < 0:
        raise ValueError(
            f"max_train_examples must be an integer >= 0 (0 = all), got {max_train_examples!r}"
        )
    n_val = int(round(float(validation_fraction) * num_examples))
    perm = np.random.default_rng(seed).permutation(num_examples)
    train = perm[n_val:]
    if max_train_examples:
        train = train[:max_train_examples]
    return np.sort(train), np.sort(perm[:n_val])


def _split_data(train_images, train_labels, test_images, test_labels, class_names, name,
                validation_fraction, split_seed, max_train_examples):
    train_idx, val_idx = split_train_validation(
        len(train_labels), validation_fraction, split_seed, max_train_examples)

    def scaled(pixels, rows):  # uint8 -> float32 in [0, 1], only the rows kept.
        return pixels[rows].astype(np.float32) / np.float32(255.0)

    everything = np.arange(len(test_labels))
    return ImageData(
        train={"images": scaled(train_images, train_idx), "label": train_labels[train_idx]},
        validation={"images": scaled(train_images, val_idx), "label": train_labels[val_idx]},
        test={"images": scaled(test_images, everything), "label": test_labels},
        class_names=class_names,
        name=name,
    )


# ----------------------------------------------------------------------------------
# Fashion-MNIST: the idx format
# ----------------------------------------------------------------------------------


def _idx_path(folder, base):
    for candidate in (base + ".gz", base):
        path = os.path.join(folder, candidate)
        if os.path.isfile(path):
            return path
    return None


def read_idx(path, magic):
    """Reads one idx file (optionally gzipped) of unsigned bytes into a uint8 array.

    The idx format: a big-endian int32 magic number (`2051` for an image file
    `(n, rows, cols)`, `2049` for a label file `(n,)`; its low byte is the number of
    dimensions), one big-endian int32 per dimension, then the bytes row by row.

    Args:
        path: str. The file; read through gzip when it ends in `.gz`.
        magic: int. The expected magic number, `IDX_IMAGES_MAGIC` or `IDX_LABELS_MAGIC`.

    Returns:
        A uint8 numpy array of the shape the header gives.

    Raises:
        ImageFileNotFoundError: the file does not exist.
        ImageFormatError: not gzip data, a wrong magic number, a short header, or a
            payload shorter or longer than the header announces; names the file.

    Example:
    ```python
    import numpy as np
    from diverse_distill.data import IDX_LABELS_MAGIC, read_idx, write_idx

    write_idx("/tmp/labels-idx1-ubyte.gz", np.array([3, 1, 4], np.uint8))
    read_idx("/tmp/labels-idx1-ubyte.gz", IDX_LABELS_MAGIC)  # array([3, 1, 4], dtype=uint8)
    ```
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ImageFileNotFoundError(f"idx file not found: {path}. {_IDX_HINT}")
    kind = {IDX_IMAGES_MAGIC: "an idx3-ubyte image file",
            IDX_LABELS_MAGIC: "an idx1-ubyte label file"}[magic]
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            with open(path, "rb") as f:
                raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise ImageFormatError(
            f"{path}: cannot decompress it (truncated or not gzip data): {e}"
        ) from None
    if len(raw) < 4:
        raise ImageFormatError(
            f"{path}: {len(raw)} bytes, too short for an idx header (expected {kind})"
        )
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        other = {IDX_IMAGES_MAGIC: " (the magic number of an image file)",
                 IDX_LABELS_MAGIC: " (the magic number of a label file)"}.get(found, "")
        raise ImageFormatError(
            f"{path}: wrong magic number {found}{other}, expected {magic} for {kind}"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ImageFormatError(
            f"{path}: truncated header: {len(raw)} bytes, {kind} needs {header} "
            f"(magic number and {ndim} dimension(s))"
        )
    shape = tuple(int(d) for d in np.frombuffer(raw, ">i4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64))
    payload = len(raw) - header
    if payload < expected:
        raise ImageFormatError(
            f"{path}: truncated data: the header announces shape {shape} ({expected} bytes), "
            f"the file has {payload} bytes after the header"
        )
    if payload > expected:
        raise ImageFormatError(
            f"{path}: {payload - expected} unexpected bytes after the data of shape {shape} "
            f"the header announces"
        )
    return np.frombuffer(raw, np.uint8, count=expected, offset=header).reshape(shape)


def write_idx(path, array):
    """Writes a uint8 array (1-D labels or 3-D images) as an idx file; gzipped if `.gz`.

    Args:
        path: str. The file to write.
        array: uint8 array of shape `(n,)` (labels, magic 2049) or `(n, rows, cols)`
            (images, magic 2051).

    Returns:
        `path`.

    Example:
    ```python
    import numpy as np
    from diverse_distill.data import write_idx

    write_idx("/tmp/t10k-images-idx3-ubyte", np.zeros((2, 28, 28), np.uint8))
    ```
    """
    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim not in (1, 3):
        raise ValueError(
            f"write_idx writes uint8 arrays of 1 or 3 dimensions, got {array.dtype} "
            f"of shape {array.shape}"
        )
    magic = IDX_LABELS_MAGIC if array.ndim == 1 else IDX_IMAGES_MAGIC
    raw = (np.array([magic, *array.shape], ">i4").tobytes()
           + np.ascontiguousarray(array).tobytes())
    path = os.fspath(path)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(raw)
    return path


def load_fashion_mnist(image_dir=FASHION_MNIST_DIR, validation_fraction=0.1, split_seed=42,
                       max_train_examples=0, class_names=FASHION_MNIST_CLASSES):
    """Loads Fashion-MNIST (or any MNIST-format folder) from its four idx files.

    Reads `train-images-idx3-ubyte.gz`, `train-labels-idx1-ubyte.gz`,
    `t10k-images-idx3-ubyte.gz` and `t10k-labels-idx1-ubyte.gz` (or the same names
    without `.gz`). Validation is a seeded random part of the train file
    (`split_train_validation`); test is the t10k file. On Fashion-MNIST with the
    defaults: 54,000 / 6,000 / 10,000 images.

    Args:
        image_dir: str. The folder (`--image_dir`). Defaults to
            `/usr/share/datasets/fashion-mnist` (Debian package `dataset-fashion-mnist`).
        validation_fraction: float in [0, 1). Defaults to `0.1`.
        split_seed: int. Seed of the train/validation split. Defaults to `42`.
        max_train_examples: int. Keep at most this many train images (a seeded random
            subset; validation and test unchanged); `0` keeps all. Defaults to `0`.
        class_names: sequence of str. Defaults to the 10 Fashion-MNIST classes (for
            MNIST digits pass `[str(d) for d in range(10)]`).

    Returns:
        An `ImageData`: images float32 `(n, 28, 28, 1)` = pixel / 255, labels int32.

    Raises:
        ImageFileNotFoundError: (a FileNotFoundError and a ValueError) the folder or a
            file is missing; says how to get the data.
        ImageFormatError: (a ValueError) a malformed or truncated file, image and label
            counts that differ, or a label outside `class_names`; names the file.

    Example:
    ```python
    import tempfile
    from diverse_distill.data import load_fashion_mnist, write_synthetic_fashion_mnist

    folder = write_synthetic_fashion_mnist(tempfile.mkdtemp(), num_train=30, num_test=10)
    data = load_fashion_mnist(folder, validation_fraction=0.1, split_seed=42)
    data.train["images"].shape, data.class_names[0]  # ((27, 28, 28, 1), 'T-shirt/top')
    ```
    """
    image_dir = os.fspath(image_dir)
    if not os.path.isdir(image_dir):
        raise ImageFileNotFoundError(f"image folder not found: {image_dir}. {_IDX_HINT}")
    paths = {key: _idx_path(image_dir, base) for key, base in IDX_FILES.items()}
    missing = [f"{IDX_FILES[k]}.gz (or {IDX_FILES[k]})" for k, p in paths.items() if p is None]
    if missing:
        raise ImageFileNotFoundError(
            f"{image_dir}: missing {', '.join(missing)}. {_IDX_HINT}"
        )
    arrays = {}
    for split in ("train", "test"):
        images = read_idx(paths[f"{split}_images"], IDX_IMAGES_MAGIC)
        labels = read_idx(paths[f"{split}_labels"], IDX_LABELS_MAGIC)
        if len(images) != len(labels):
            raise ImageFormatError(
                f"{paths[f'{split}_images']} has {len(images)} images but "
                f"{paths[f'{split}_labels']} has {len(labels)} labels"
            )
        if not len(labels):
            raise ImageFormatError(f"{paths[f'{split}_images']} has no images")
        if labels.max() >= len(class_names):
            raise ImageFormatError(
                f"{paths[f'{split}_labels']}: label {labels.max()} is out of range: there are "
                f"{len(class_names)} classes (0..{len(class_names) - 1})"
            )
        arrays[split] = (images[..., None], labels.astype(np.int32))
    if arrays["train"][0].shape[1:] != arrays["test"][0].shape[1:]:
        raise ImageFormatError(
            f"{paths['train_images']} holds images of {arrays['train'][0].shape[1:3]} pixels, "
            f"{paths['test_images']} of {arrays['test'][0].shape[1:3]}"
        )
    return _split_data(*arrays["train"], *arrays["test"], class_names, "fashion_mnist",
                       validation_fraction, split_seed, max_train_examples)


def write_synthetic_fashion_mnist(folder, num_train=60, num_test=20, seed=0, compress=True):
    """Writes a tiny MNIST-format folder (random 28x28 images, labels cycling 0..9).

    Args:
        folder: str. Created if missing.
        num_train: int. Images in the train files. Defaults to `60`.
        num_test: int. Images in the t10k files. Defaults to `20`.
        seed: int. Defaults to `0`.
        compress: bool. Write `.gz` files (as Debian ships them). Defaults to `True`.

    Returns:
        `folder`, for `load_fashion_mnist(folder)`.

    Example:
    ```python
    from diverse_distill.data import load_fashion_mnist, write_synthetic_fashion_mnist

    data = load_fashion_mnist(write_synthetic_fashion_mnist("/tmp/fmnist"))
    data.num_examples  # {'train': 54, 'validation': 6, 'test': 20}
    ```
    """
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    suffix = ".gz" if compress else ""
    for split, n in (("train", num_train), ("test", num_test)):
        write_idx(os.path.join(folder, IDX_FILES[f"{split}_images"] + suffix),
                  rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(os.path.join(folder, IDX_FILES[f"{split}_labels"] + suffix),
                  (np.arange(n) % len(FASHION_MNIST_CLASSES)).astype(np.uint8))
    return folder


# ----------------------------------------------------------------------------------
# CIFAR: the python archives
# ----------------------------------------------------------------------------------


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles CIFAR batches only: dicts, lists, bytes and numpy arrays, nothing else.

    A pickle can run any code it names; this one refuses every global but the few that
    rebuild a numpy array.
    """

    _ALLOWED = {
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: a CIFAR batch holds only dicts, lists, "
                f"bytes and numpy arrays"
            )
        if module.startswith("numpy.core."):  # numpy 2 moved numpy.core to numpy._core
            module = "numpy._core." + module[len("numpy.core."):]
        return super().find_class(module, name)


def _read_cifar_archive(path, name):
    """The train/test uint8 images `(n, 32, 32, 3)`, int32 labels and class names."""
    layout = _CIFAR_LAYOUT[name]
    hint = _CIFAR_HINT.format(archive=CIFAR_ARCHIVES[name])
    if os.path.isdir(path):
        raise ImageFileNotFoundError(f"{path} is a folder, not the archive itself. {hint}")
    if not os.path.isfile(path):
        raise ImageFileNotFoundError(f"CIFAR archive not found: {path}. {hint}")
    try:
        with tarfile.open(path, "r:*") as tar:
            members = {}
            for member in tar.getmembers():
                if member.isfile():
                    members[os.path.basename(member.name)] = member
            if name == "cifar10":
                numbered = sorted(
                    (int(m[len("data_batch_"):]), m) for m in members
                    if m.startswith("data_batch_") and m[len("data_batch_"):].isdigit()
                )
                train_names = [m for _, m in numbered]
                gaps = [i for i, (k, _) in enumerate(numbered, start=1) if k != i]
                if gaps or not train_names:
                    looks = (" It looks like a CIFAR-100 archive: pass name='cifar100'."
                             if "train" in members else "")
                    raise ImageFormatError(
                        f"{path}: expected the CIFAR-10 batches data_batch_1, data_batch_2, ... "
                        f"(1 to 5), found {[m for _, m in numbered] or 'none'}.{looks}"
                    )
                test_name = "test_batch"
            else:
                train_names, test_name = ["train"], "test"
            needed = train_names + [test_name, layout["meta"]]
            missing = [m for m in needed if m not in members]
            if missing:
                looks = (" It looks like a CIFAR-10 archive: pass name='cifar10'."
                         if name == "cifar100" and "data_batch_1" in members else "")
                raise ImageFormatError(
                    f"{path}: no member {', '.join(missing)} in the archive (a "
                    f"{CIFAR_ARCHIVES[name]} has {', '.join(needed)}).{looks}"
                )
            loaded = {}
            for member in needed:
                f = tar.extractfile(members[member])
                try:
                    loaded[member] = _CifarUnpickler(io.BytesIO(f.read()),
                                                     encoding="bytes").load()
                except (pickle.UnpicklingError, EOFError, ValueError, TypeError,
                        AttributeError, ImportError, IndexError, KeyError) as e:
                    raise ImageFormatError(
                        f"{path}: member {member} is not a CIFAR python pickle: {e}"
                    ) from None
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise ImageFormatError(
            f"{path}: not a readable tar.gz archive (truncated or another format): {e}. "
            f"Expected the python version of CIFAR, {CIFAR_ARCHIVES[name]}."
        ) from None

    meta = loaded[layout["meta"]]
    names = meta.get(layout["names"]) if isinstance(meta, dict) else None
    if not isinstance(names, (list, tuple)) or not names:
        raise ImageFormatError(
            f"{path}: member {layout['meta']} has no list {layout['names']!r} of class names"
        )
    class_names = tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names)

    def batch_arrays(member):
        batch = loaded[member]
        if not isinstance(batch, dict) or b"data" not in batch or layout["labels"] not in batch:
            keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
            raise ImageFormatError(
                f"{path}: member {member} must be a dict with b'data' and "
                f"{layout['labels']!r}, got {keys}"
            )
        pixels = np.asarray(batch[b"data"])
        labels = np.asarray(batch[layout["labels"]])
        if pixels.dtype != np.uint8 or pixels.ndim != 2 or pixels.shape[1] != 3072:
            raise ImageFormatError(
                f"{path}: member {member}: b'data' must be uint8 of shape (n, 3072) "
                f"(3 x 32 x 32, channel-first rows), got {pixels.dtype} {pixels.shape}"
            )
        if labels.ndim != 1 or len(labels) != len(pixels):
            raise ImageFormatError(
                f"{path}: member {member} has {len(pixels)} images but "
                f"{labels.size} labels in {layout['labels']!r}"
            )
        if labels.size and (labels.min() < 0 or labels.max() >= len(class_names)):
            raise ImageFormatError(
                f"{path}: member {member}: labels must be in 0..{len(class_names) - 1} "
                f"({len(class_names)} class names), got {labels.min()}..{labels.max()}"
            )
        images = pixels.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        return images, labels.astype(np.int32)

    train = [batch_arrays(m) for m in train_names]
    test_images, test_labels = batch_arrays(test_name)
    train_images = np.concatenate([b[0] for b in train])
    train_labels = np.concatenate([b[1] for b in train])
    if not len(train_labels):
        raise ImageFormatError(f"{path}: the train batches hold no images")
    return train_images, train_labels, test_images, test_labels, class_names


def _read_cifar_tfds(name, data_dir):
    archive = CIFAR_ARCHIVES[name]
    offline = (
        f"Offline, pass archive=/path/to/{archive} (use_tfds=False), or a TFDS data_dir "
        f"where {name} was prepared on a machine with network access (tfds_data_dir=...)."
    )
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise RuntimeError(
            f"use_tfds=True needs tensorflow_datasets (pip install tensorflow-datasets): "
            f"{e}. {offline}"
        ) from e
    try:
        builder = tfds.builder(name, data_dir=data_dir)
        builder.download_and_prepare()
        splits = {}
        for split in ("train", "test"):
            ex = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
            splits[split] = (np.asarray(ex["image"], np.uint8),
                             np.asarray(ex["label"]).astype(np.int32))
        class_names = tuple(builder.info.features["label"].names)
    except Exception as e:  # noqa: BLE001 - re-raised with the offline recipe.
        where = getattr(locals().get("builder"), "data_dir", data_dir or "TFDS's data_dir")
        raise RuntimeError(f"TFDS could not load {name} in {where}: {e}\n{offline}") from e
    return (*splits["train"], *splits["test"], class_names)


def load_cifar(name="cifar10", archive=None, use_tfds=False, validation_fraction=0.1,
               split_seed=42, max_train_examples=0, tfds_data_dir=None):
    """Loads CIFAR-10 or CIFAR-100 from its python archive or from TFDS.

    The archive is the python version, `cifar-10-python.tar.gz` (`data_batch_1` ..
    `data_batch_5`, `test_batch`, `batches.meta`) or `cifar-100-python.tar.gz` (`train`,
    `test`, `meta`; the 100 fine labels). Each batch is a pickled dict with `b"data"`
    (uint8 `(n, 3072)`, channel-first rows) and the labels. Only plain data and numpy
    arrays are unpickled (any other object in the pickle is refused). Validation is a
    seeded random part of the train batches (`split_train_validation`); test is the
    test batch. With the defaults: 45,000 / 5,000 / 10,000 images.

    Args:
        name: str. `"cifar10"` or `"cifar100"`. Defaults to `"cifar10"`.
        archive: str or None. Path of the archive. Defaults to `None`.
        use_tfds: bool. Read TFDS `cifar10` / `cifar100` instead (`archive` must be
            `None`); needs the network or a prepared `tfds_data_dir`. Defaults to `False`.
        validation_fraction: float in [0, 1). Defaults to `0.1`.
        split_seed: int. Seed of the train/validation split. Defaults to `42`.
        max_train_examples: int. Keep at most this many train images; `0` keeps all.
            Defaults to `0`.
        tfds_data_dir: str or None. TFDS data_dir. Defaults to `None` (TFDS's default).

    Returns:
        An `ImageData`: images float32 `(n, 32, 32, 3)` = pixel / 255, labels int32.

    Raises:
        ImageFileNotFoundError: no archive given, or it does not exist.
        ImageFormatError: not a tar archive, a missing member, a malformed batch.
        RuntimeError: `use_tfds=True` and TFDS cannot load the dataset (e.g. offline).

    Example:
    ```python
    import tempfile
    from diverse_distill.data import load_cifar, write_synthetic_cifar

    path = write_synthetic_cifar(f"{tempfile.mkdtemp()}/cifar-10-python.tar.gz")
    data = load_cifar("cifar10", archive=path)
    data.num_examples, data.image_shape  # ({'train': 36, ...}, (32, 32, 3))
    ```
    """
    if name not in CIFAR_NAMES:
        raise ValueError(f"name must be one of {CIFAR_NAMES}, got {name!r}")
    if use_tfds:
        if archive is not None:
            raise ValueError("pass either archive=... or use_tfds=True, not both")
        arrays = _read_cifar_tfds(name, tfds_data_dir)
        source = f"tfds:{name}"
    else:
        if archive is None:
            raise ImageFileNotFoundError(
                f"No {name} source given. {_CIFAR_HINT.format(archive=CIFAR_ARCHIVES[name])}"
            )
        arrays = _read_cifar_archive(os.fspath(archive), name)
        source = os.fspath(archive)
    logger.info("Read %s from %s: %d train, %d test images", name, source,
                len(arrays[1]), len(arrays[3]))
    return _split_data(*arrays, name, validation_fraction, split_seed, max_train_examples)


def write_synthetic_cifar(path, name="cifar10", num_train=40, num_test=10, num_batches=2,
                          seed=0):
    """Writes a tiny archive in the format of `cifar-10-python.tar.gz` / `cifar-100-...`.

    Random uint8 images, labels cycling over the classes. CIFAR-10 splits the train
    images over `num_batches` files `data_batch_1..`; CIFAR-100 has one `train` file and
    the class names `class_00` .. `class_99`.

    Args:
        path: str. The `.tar.gz` file to write.
        name: str. `"cifar10"` or `"cifar100"`. Defaults to `"cifar10"`.
        num_train: int. Defaults to `40`.
        num_test: int. Defaults to `10`.
        num_batches: int. CIFAR-10 train batches. Defaults to `2`.
        seed: int. Defaults to `0`.

    Returns:
        `path`, for `load_cifar(name, archive=path)`.

    Example:
    ```python
    from diverse_distill.data import load_cifar, write_synthetic_cifar

    path = write_synthetic_cifar("/tmp/cifar-100-python.tar.gz", name="cifar100")
    load_cifar("cifar100", archive=path).num_classes  # 100
    ```
    """
    if name not in CIFAR_NAMES:
        raise ValueError(f"name must be one of {CIFAR_NAMES}, got {name!r}")
    layout = _CIFAR_LAYOUT[name]
    classes = (CIFAR10_CLASSES if name == "cifar10"
               else tuple(f"class_{i:02d}" for i in range(100)))
    rng = np.random.default_rng(seed)

    def batch(n):
        return {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                layout["labels"]: [int(i % len(classes)) for i in range(n)]}

    if name == "cifar10":
        folder = "cifar-10-batches-py"
        sizes = np.diff(np.linspace(0, num_train, num_batches + 1).round().astype(int))
        files = {f"data_batch_{i + 1}": batch(int(n)) for i, n in enumerate(sizes)}
        files["test_batch"] = batch(num_test)
    else:
        folder = "cifar-100-python"
        files = {"train": batch(num_train), "test": batch(num_test)}
    files[layout["meta"]] = {layout["names"]: [c.encode() for c in classes]}
    path = os.fspath(path)
    with tarfile.open(path, "w:gz") as tar:
        for member, content in files.items():
            raw = pickle.dumps(content, protocol=2)
            info = tarfile.TarInfo(f"{folder}/{member}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path


# ----------------------------------------------------------------------------------
# Augmentation
# ----------------------------------------------------------------------------------


def augmentation(kind="flip_crop", image_shape=None, seed=None, max_shift=None):
    """Train-time augmentation as Keras preprocessing layers, for batches in [0, 1].

    - `"flip"`: `RandomFlip("horizontal")`, each image flipped with probability 1/2.
    - `"crop"`: `RandomTranslation` by up to `max_shift` pixels in each direction, each
      image on its own, filled with zeros, nearest-pixel: the usual "pad by 4 and crop
      at random" of CIFAR (Keras's `RandomCrop` would take one offset per batch).
    - `"flip_crop"`: both, the usual CIFAR recipe.

    The output keeps the input's shape, and every value is an input pixel or 0, so it
    stays in [0, 1]. Call it with `training=True` (`ImageData.as_dataset` does, on the
    train split only).

    Args:
        kind: str. One of `AUGMENTATIONS`. Defaults to `"flip_crop"`.
        image_shape: tuple `(h, w, c)`. Required.
        seed: int or None. Seeds the random layers (the same seed gives the same
            sequence of augmented batches). Defaults to `None`.
        max_shift: int or None. Largest shift in pixels; `None` is `round(h / 8)` (4 for
            32 x 32 and 28 x 28 images). Defaults to `None`.

    Returns:
        A `keras.Sequential`.

    Example:
    ```python
    import numpy as np
    from diverse_distill.data import augmentation

    augment = augmentation("flip_crop", image_shape=(28, 28, 1), seed=0)
    images = np.random.default_rng(0).uniform(size=(4, 28, 28, 1)).astype("float32")
    out = augment(images, training=True)
    assert out.shape == images.shape and float(np.max(out)) <= 1.0
    ```
    """
    import keras

    if kind not in AUGMENTATIONS:
        raise ValueError(f"kind must be one of {AUGMENTATIONS}, got {kind!r}")
    if image_shape is None or len(tuple(image_shape)) != 3:
        raise ValueError(
            f"image_shape must be (height, width, channels), got {image_shape!r}"
        )
    height, width, _ = (int(d) for d in image_shape)
    if max_shift is None:
        max_shift = max(1, int(round(height / 8)))
    if not isinstance(max_shift, (int, np.integer)) or max_shift < 0:
        raise ValueError(f"max_shift must be an integer >= 0 (pixels), got {max_shift!r}")
    layers = [keras.Input(tuple(int(d) for d in image_shape))]
    if "flip" in kind:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if "crop" in kind:
        layers.append(keras.layers.RandomTranslation(
            max_shift / height, max_shift / width, fill_mode="constant", fill_value=0.0,
            interpolation="nearest", seed=None if seed is None else seed + 1))
    return keras.Sequential(layers, name=f"augmentation_{kind}")
