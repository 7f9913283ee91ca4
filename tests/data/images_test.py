"""Tests for diverse_distill.data.images: idx and CIFAR parsing, the split, tf.data, errors.

Every file is written here, byte by byte (struct / pickle / tarfile), independently of the
library's own writers: no download, no real data needed.
"""

import gzip
import io
import os
import pickle
import struct
import sys
import tarfile
import types

import numpy as np
import pytest
import tensorflow as tf

from diverse_distill.data import (
    CIFAR10_CLASSES,
    FASHION_MNIST_CLASSES,
    ImageData,
    ImageFileNotFoundError,
    ImageFormatError,
    augmentation,
    load_cifar,
    load_fashion_mnist,
    split_train_validation,
    write_synthetic_cifar,
    write_synthetic_fashion_mnist,
)

N_TRAIN, N_TEST = 40, 7


# ----------------------------------------------------------------------------------
# Hand-written files
# ----------------------------------------------------------------------------------


def idx_bytes(magic, dims, payload):
    return struct.pack(">i", magic) + struct.pack(f">{len(dims)}i", *dims) + payload


def write_file(path, raw):
    if str(path).endswith(".gz"):
        with gzip.open(path, "wb") as f:
            f.write(raw)
    else:
        with open(path, "wb") as f:
            f.write(raw)
    return str(path)


def mnist_arrays(n, seed):
    """Images whose pixel (0, 0) is the row number, so rows can be told apart."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    images[:, 0, 0] = np.arange(n)
    images[0, 5, 5], images[0, 5, 6] = 0, 255  # both ends of the range
    labels = rng.integers(0, 10, n).astype(np.uint8)
    return images, labels


def write_mnist_folder(folder, gz=True, n_train=N_TRAIN, n_test=N_TEST):
    suffix = ".gz" if gz else ""
    arrays = {}
    for prefix, n, seed in (("train", n_train, 1), ("t10k", n_test, 2)):
        images, labels = mnist_arrays(n, seed)
        write_file(folder / f"{prefix}-images-idx3-ubyte{suffix}",
                   idx_bytes(2051, (n, 28, 28), images.tobytes()))
        write_file(folder / f"{prefix}-labels-idx1-ubyte{suffix}",
                   idx_bytes(2049, (n,), labels.tobytes()))
        arrays[prefix] = (images, labels)
    return arrays


def row_ids(images):
    """The row number written into pixel (0, 0) of each image."""
    return np.rint(images[:, 0, 0, 0] * 255).astype(int)


def cifar_batch(n, seed, label_key, num_classes, label_offset=0):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    return {b"batch_label": b"batch", b"data": data,
            label_key: [int((i + label_offset) % num_classes) for i in range(n)],
            b"filenames": [b"f%d.png" % i for i in range(n)]}


def write_tar(path, members, folder, protocol=2, raw_members=None):
    with tarfile.open(path, "w:gz") as tar:
        items = {name: pickle.dumps(content, protocol=protocol)
                 for name, content in members.items()}
        items.update(raw_members or {})
        for name, raw in items.items():
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return str(path)


def cifar10_members():
    return {
        "data_batch_1": cifar_batch(12, 1, b"labels", 10),
        "data_batch_2": cifar_batch(8, 2, b"labels", 10, label_offset=3),
        "test_batch": cifar_batch(5, 3, b"labels", 10),
        "batches.meta": {b"label_names": [c.encode() for c in CIFAR10_CLASSES],
                         b"num_cases_per_batch": 12},
    }


def cifar100_members():
    fine = [b"fine_%02d" % i for i in range(100)]
    train = cifar_batch(20, 4, b"fine_labels", 100)
    train[b"coarse_labels"] = [0] * 20
    test = cifar_batch(6, 5, b"fine_labels", 100, label_offset=94)
    return {"train": train, "test": test,
            "meta": {b"fine_label_names": fine, b"coarse_label_names": [b"c"] * 20}}


def cifar_images(data):
    """(n, 3072) channel-first rows -> (n, 32, 32, 3), written out element by element."""
    out = np.zeros((len(data), 32, 32, 3), np.uint8)
    for c in range(3):
        for y in range(32):
            out[:, y, :, c] = data[:, c * 1024 + y * 32: c * 1024 + y * 32 + 32]
    return out


@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fmnist")
    return folder, write_mnist_folder(folder)


@pytest.fixture(scope="module")
def mnist_data(mnist):
    return load_fashion_mnist(mnist[0], validation_fraction=0.25, split_seed=42)


# ----------------------------------------------------------------------------------
# Fashion-MNIST: values, the split, the test file
# ----------------------------------------------------------------------------------


def test_fashion_mnist_values_round_trip_exactly(mnist, mnist_data):
    _, arrays = mnist
    images, labels = arrays["train"]
    data = mnist_data
    assert data.class_names == FASHION_MNIST_CLASSES and data.num_classes == 10
    assert data.class_names[0] == "T-shirt/top" and data.class_names[9] == "Ankle boot"
    assert data.image_shape == (28, 28, 1)
    assert data.num_examples == {"train": 30, "validation": 10, "test": N_TEST}
    for split in ("train", "validation"):
        got = data.split(split)
        assert got["images"].dtype == np.float32 and got["images"].shape[1:] == (28, 28, 1)
        assert got["label"].dtype == np.int32
        rows = row_ids(got["images"])
        np.testing.assert_array_equal(got["images"][..., 0], images[rows].astype(np.float32) / 255)
        np.testing.assert_array_equal(got["label"], labels[rows])
    all_images = np.concatenate([data.train["images"], data.validation["images"]])
    assert all_images.min() == 0.0 and all_images.max() == 1.0


def test_test_split_is_the_t10k_file(mnist, mnist_data):
    images, labels = mnist[1]["t10k"]
    np.testing.assert_array_equal(mnist_data.test["images"][..., 0],
                                  images.astype(np.float32) / 255)
    np.testing.assert_array_equal(mnist_data.test["label"], labels)


def test_files_without_gz_are_read_the_same(tmp_path, mnist_data):
    write_mnist_folder(tmp_path, gz=False)
    data = load_fashion_mnist(tmp_path, validation_fraction=0.25, split_seed=42)
    for split in ("train", "validation", "test"):
        np.testing.assert_array_equal(data.split(split)["images"],
                                      mnist_data.split(split)["images"])
        np.testing.assert_array_equal(data.split(split)["label"],
                                      mnist_data.split(split)["label"])


def test_split_is_seeded_disjoint_and_complete(mnist):
    folder = mnist[0]
    a = load_fashion_mnist(folder, validation_fraction=0.25, split_seed=7)
    b = load_fashion_mnist(folder, validation_fraction=0.25, split_seed=7)
    c = load_fashion_mnist(folder, validation_fraction=0.25, split_seed=8)
    train_a, val_a = row_ids(a.train["images"]), row_ids(a.validation["images"])
    np.testing.assert_array_equal(train_a, row_ids(b.train["images"]))
    np.testing.assert_array_equal(val_a, row_ids(b.validation["images"]))
    assert not np.array_equal(val_a, row_ids(c.validation["images"]))
    assert not set(train_a) & set(val_a)
    assert sorted(np.concatenate([train_a, val_a])) == list(range(N_TRAIN))
    assert list(train_a) == sorted(train_a)  # each split keeps the file's order
    np.testing.assert_array_equal(a.test["images"], c.test["images"])  # test: no split


def test_split_train_validation():
    train, val = split_train_validation(100, 0.1, seed=42)
    assert len(train) == 90 and len(val) == 10
    assert sorted(np.concatenate([train, val])) == list(range(100))
    train_small, val_small = split_train_validation(100, 0.1, seed=42, max_train_examples=5)
    np.testing.assert_array_equal(val_small, val)  # validation does not depend on the cap
    assert len(train_small) == 5 and set(train_small) <= set(train)
    assert len(split_train_validation(10, 0.0, seed=1)[1]) == 0
    with pytest.raises(ValueError, match="validation_fraction must be in"):
        split_train_validation(10, 1.0)
    with pytest.raises(ValueError, match="max_train_examples must be"):
        split_train_validation(10, 0.1, max_train_examples=-1)


def test_max_train_examples(mnist, mnist_data):
    data = load_fashion_mnist(mnist[0], validation_fraction=0.25, split_seed=42,
                              max_train_examples=6)
    assert data.num_examples == {"train": 6, "validation": 10, "test": N_TEST}
    np.testing.assert_array_equal(data.validation["images"], mnist_data.validation["images"])
    assert set(row_ids(data.train["images"])) <= set(row_ids(mnist_data.train["images"]))


# ----------------------------------------------------------------------------------
# tf.data and augmentation
# ----------------------------------------------------------------------------------


def test_as_dataset_shapes_dtypes_and_batches(mnist_data):
    ds = mnist_data.as_dataset("train", batch_size=8)
    spec_features, spec_label = ds.element_spec
    assert list(spec_features) == ["images"]
    assert spec_features["images"].shape.as_list() == [None, 28, 28, 1]
    assert spec_features["images"].dtype == tf.float32 and spec_label.dtype == tf.int32
    batches = list(ds)
    assert [len(y) for _, y in batches] == [8, 8, 8, 6]  # 30 train images
    np.testing.assert_array_equal(np.concatenate([x["images"] for x, _ in batches]),
                                  mnist_data.train["images"])  # no shuffle: file order
    np.testing.assert_array_equal(np.concatenate([y for _, y in batches]),
                                  mnist_data.train["label"])
    assert len(list(mnist_data.as_dataset("train", 8, drop_remainder=True))) == 3
    assert len(list(mnist_data.as_dataset("test", 4))) == 2
    with pytest.raises(ValueError, match="split must be one of"):
        mnist_data.as_dataset("dev", 8)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        mnist_data.as_dataset("train", 0)


def test_as_dataset_shuffle_is_seeded(mnist_data):
    def labels_of(ds):
        return np.concatenate([row_ids(x["images"].numpy()) for x, _ in ds])

    a = labels_of(mnist_data.as_dataset("train", 8, shuffle_seed=3))
    b = labels_of(mnist_data.as_dataset("train", 8, shuffle_seed=3))
    c = labels_of(mnist_data.as_dataset("train", 8, shuffle_seed=4))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert sorted(a) == sorted(row_ids(mnist_data.train["images"]))


def test_augmentation_only_on_train_keeps_shape_and_range(mnist_data):
    plain = np.concatenate([x["images"] for x, _ in mnist_data.as_dataset("train", 8)])
    runs = []
    for _ in range(2):
        ds = mnist_data.as_dataset("train", 8, augment="flip_crop")
        runs.append(np.concatenate([x["images"] for x, _ in ds]))
        labels = np.concatenate([y for _, y in ds])
        np.testing.assert_array_equal(labels, mnist_data.train["label"])
    augmented = runs[0]
    assert augmented.shape == plain.shape and augmented.dtype == np.float32
    assert augmented.min() >= 0.0 and augmented.max() <= 1.0
    changed = [not np.array_equal(a, p) for a, p in zip(augmented, plain)]
    assert sum(changed) >= len(changed) // 2  # most train images move or flip
    # Every value is a pixel of its image, or the zero fill.
    for a, p in zip(augmented, plain):
        assert np.isin(a, np.append(p, 0.0)).all()
    # Seeded: without shuffle_seed the augmentation seed is None, so set it explicitly.
    seeded = [np.concatenate([x["images"] for x, _ in mnist_data.as_dataset(
        "train", 8, shuffle_seed=5, augment="flip_crop")]) for _ in range(2)]
    np.testing.assert_array_equal(seeded[0], seeded[1])
    # Validation and test are never augmented.
    for split in ("validation", "test"):
        got = np.concatenate([x["images"] for x, _ in mnist_data.as_dataset(
            split, 8, shuffle_seed=None, augment="flip_crop")])
        np.testing.assert_array_equal(got, mnist_data.split(split)["images"])
    with pytest.raises(ValueError, match="augment must be None"):
        mnist_data.as_dataset("train", 8, augment=3)


def test_augmentation_layers():
    images = np.random.default_rng(0).uniform(size=(6, 32, 32, 3)).astype("float32")
    for kind in ("flip", "crop", "flip_crop"):
        layer = augmentation(kind, image_shape=(32, 32, 3), seed=1)
        out = np.asarray(layer(images, training=True))
        assert out.shape == images.shape
        assert out.min() >= 0.0 and out.max() <= 1.0
        assert not np.array_equal(out, images)
        np.testing.assert_array_equal(np.asarray(layer(images, training=False)), images)
    flipped = np.asarray(augmentation("flip", (32, 32, 3), seed=1)(images, training=True))
    for a, p in zip(flipped, images):  # each image is itself or its mirror
        assert np.array_equal(a, p) or np.array_equal(a, p[:, ::-1])
    with pytest.raises(ValueError, match="kind must be one of"):
        augmentation("mixup", (32, 32, 3))
    with pytest.raises(ValueError, match="image_shape must be"):
        augmentation("flip")


# ----------------------------------------------------------------------------------
# Fashion-MNIST: malformed input, one clear error each
# ----------------------------------------------------------------------------------


def _corrupt(folder, name, raw):
    path = folder / name
    if path.exists():
        path.unlink()
    write_file(folder / name, raw)


TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
GOOD_IMAGES = idx_bytes(2051, (N_TRAIN, 28, 28), bytes(N_TRAIN * 784))


@pytest.mark.parametrize("name,raw,error,match", [
    pytest.param(TRAIN_LABELS, idx_bytes(2051, (N_TRAIN,), bytes(N_TRAIN)), ImageFormatError,
                 r"train-labels-idx1-ubyte.gz: wrong magic number 2051 \(the magic number "
                 r"of an image file\), expected 2049", id="wrong_magic_labels"),
    pytest.param(TRAIN_IMAGES, idx_bytes(2052, (N_TRAIN, 28, 28), bytes(N_TRAIN * 784)),
                 ImageFormatError, r"train-images-idx3-ubyte.gz: wrong magic number 2052, "
                 r"expected 2051", id="wrong_magic_images"),
    pytest.param(TRAIN_IMAGES, GOOD_IMAGES[:-100], ImageFormatError,
                 r"train-images-idx3-ubyte.gz: truncated data: the header announces shape "
                 r"\(40, 28, 28\) \(31360 bytes\), the file has 31260", id="truncated_data"),
    pytest.param(TRAIN_IMAGES, GOOD_IMAGES[:10], ImageFormatError,
                 r"train-images-idx3-ubyte.gz: truncated header", id="truncated_header"),
    pytest.param(TRAIN_IMAGES, b"\x00\x00", ImageFormatError,
                 r"2 bytes, too short for an idx header", id="empty_file"),
    pytest.param(TRAIN_IMAGES, GOOD_IMAGES + b"xyz", ImageFormatError,
                 r"3 unexpected bytes after the data", id="trailing_bytes"),
    pytest.param(TRAIN_LABELS, idx_bytes(2049, (N_TRAIN - 1,), bytes(N_TRAIN - 1)),
                 ImageFormatError, r"train-images-idx3-ubyte.gz has 40 images but "
                 r".*train-labels-idx1-ubyte.gz has 39 labels", id="count_mismatch"),
    pytest.param(TRAIN_LABELS, idx_bytes(2049, (N_TRAIN,), bytes([10] * N_TRAIN)),
                 ImageFormatError, r"train-labels-idx1-ubyte.gz: label 10 is out of range: "
                 r"there are 10 classes", id="label_out_of_range"),
    pytest.param(TRAIN_IMAGES, idx_bytes(2051, (N_TRAIN, 27, 28), bytes(N_TRAIN * 756)),
                 ImageFormatError, r"holds images of \(27, 28\) pixels, .*t10k-images-idx3"
                 r"-ubyte.gz of \(28, 28\)", id="train_test_sizes_differ"),
])
def test_malformed_idx_files(tmp_path, name, raw, error, match):
    write_mnist_folder(tmp_path)
    _corrupt(tmp_path, name, raw)
    with pytest.raises(error, match=match):
        load_fashion_mnist(tmp_path)


def test_truncated_and_non_gzip_files(tmp_path):
    write_mnist_folder(tmp_path)
    path = tmp_path / TRAIN_IMAGES
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ImageFormatError, match=r"train-images-idx3-ubyte.gz: cannot "
                                               r"decompress it \(truncated or not gzip"):
        load_fashion_mnist(tmp_path)
    path.write_bytes(GOOD_IMAGES)  # raw idx bytes under a .gz name
    with pytest.raises(ImageFormatError, match="cannot decompress it"):
        load_fashion_mnist(tmp_path)


def test_missing_folder_and_files(tmp_path):
    with pytest.raises(ImageFileNotFoundError,
                       match=r"image folder not found: .*nowhere.*apt-get install "
                             r"dataset-fashion-mnist.*--image_dir"):
        load_fashion_mnist(tmp_path / "nowhere")
    write_mnist_folder(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(ImageFileNotFoundError,
                       match=r"missing t10k-labels-idx1-ubyte.gz \(or t10k-labels-idx1-ubyte\)"
                             r"\. Install .*apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path)
    assert issubclass(ImageFileNotFoundError, FileNotFoundError)
    assert issubclass(ImageFileNotFoundError, ValueError)


# ----------------------------------------------------------------------------------
# CIFAR archives
# ----------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar10_archive_round_trips(tmp_path, protocol):
    members = cifar10_members()
    path = write_tar(tmp_path / "cifar-10-python.tar.gz", members, "cifar-10-batches-py",
                     protocol=protocol)
    data = load_cifar("cifar10", archive=path, validation_fraction=0.25, split_seed=0)
    assert data.class_names == CIFAR10_CLASSES and data.image_shape == (32, 32, 3)
    assert data.num_examples == {"train": 15, "validation": 5, "test": 5}
    train_images = cifar_images(np.concatenate(
        [members["data_batch_1"][b"data"], members["data_batch_2"][b"data"]]))
    train_labels = np.array(members["data_batch_1"][b"labels"]
                            + members["data_batch_2"][b"labels"])
    train_idx, val_idx = split_train_validation(20, 0.25, seed=0)
    for split, idx in (("train", train_idx), ("validation", val_idx)):
        got = data.split(split)
        assert got["images"].dtype == np.float32 and got["label"].dtype == np.int32
        np.testing.assert_array_equal(got["images"],
                                      train_images[idx].astype(np.float32) / 255)
        np.testing.assert_array_equal(got["label"], train_labels[idx])
    np.testing.assert_array_equal(
        data.test["images"], cifar_images(members["test_batch"][b"data"]) / np.float32(255))
    np.testing.assert_array_equal(data.test["label"], members["test_batch"][b"labels"])
    # Pixel (row 0, col 1) of image 0, green channel = byte 1024 + 1 of its row.
    assert data.test["images"][0, 0, 1, 1] == np.float32(
        members["test_batch"][b"data"][0, 1025]) / np.float32(255)
    x, y = next(iter(data.as_dataset("train", 4, shuffle_seed=0, augment="flip_crop")))
    assert x["images"].shape == (4, 32, 32, 3) and y.dtype == tf.int32


def test_cifar100_archive_round_trips(tmp_path):
    members = cifar100_members()
    path = write_tar(tmp_path / "cifar-100-python.tar.gz", members, "cifar-100-python")
    data = load_cifar("cifar100", archive=path, validation_fraction=0.1, split_seed=42)
    assert data.num_classes == 100 and data.class_names[7] == "fine_07"
    assert data.num_examples == {"train": 18, "validation": 2, "test": 6}
    np.testing.assert_array_equal(
        data.test["images"], cifar_images(members["test"][b"data"]).astype(np.float32) / 255)
    np.testing.assert_array_equal(data.test["label"], members["test"][b"fine_labels"])
    train_idx, _ = split_train_validation(20, 0.1, seed=42)
    np.testing.assert_array_equal(data.train["label"],
                                  np.array(members["train"][b"fine_labels"])[train_idx])


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _bad_batch(changes):
    batch = cifar_batch(12, 1, b"labels", 10)
    batch.update(changes)
    return batch


@pytest.mark.parametrize("change,match", [
    pytest.param({"test_batch": None}, r"no member test_batch in the archive",
                 id="missing_member"),
    pytest.param({"data_batch_2": None, "data_batch_3": cifar_batch(3, 9, b"labels", 10)},
                 r"expected the CIFAR-10 batches data_batch_1, data_batch_2.*found "
                 r"\['data_batch_1', 'data_batch_3'\]", id="batch_gap"),
    pytest.param({"data_batch_1": _bad_batch({b"data": np.zeros((12, 3000), np.uint8)})},
                 r"member data_batch_1: b'data' must be uint8 of shape \(n, 3072\)",
                 id="bad_data_shape"),
    pytest.param({"data_batch_1": _bad_batch({b"labels": [0] * 11})},
                 r"member data_batch_1 has 12 images but 11 labels", id="count_mismatch"),
    pytest.param({"data_batch_1": _bad_batch({b"labels": [10] * 12})},
                 r"member data_batch_1: labels must be in 0..9", id="label_out_of_range"),
    pytest.param({"data_batch_1": {b"data": np.zeros((2, 3072), np.uint8)}},
                 r"member data_batch_1 must be a dict with b'data' and b'labels'",
                 id="missing_labels_key"),
    pytest.param({"batches.meta": {b"names": []}},
                 r"member batches.meta has no list b'label_names'", id="bad_meta"),
    pytest.param({"test_batch": _Evil()},
                 r"member test_batch is not a CIFAR python pickle: refusing to load "
                 r"(posix|nt|os)\.system", id="code_in_pickle"),
])
def test_malformed_cifar10_archives(tmp_path, change, match):
    members = cifar10_members()
    for name, value in change.items():
        if value is None:
            del members[name]
        else:
            members[name] = value
    path = write_tar(tmp_path / "cifar-10-python.tar.gz", members, "cifar-10-batches-py")
    with pytest.raises(ImageFormatError, match=match):
        load_cifar("cifar10", archive=path)


def test_bad_cifar_archives(tmp_path):
    not_tar = write_file(tmp_path / "junk.tar.gz", b"this is not an archive" * 10)
    with pytest.raises(ImageFormatError, match=r"junk.tar.gz: not a readable tar.gz archive"):
        load_cifar("cifar10", archive=not_tar)
    good = write_tar(tmp_path / "cifar-10-python.tar.gz", cifar10_members(),
                     "cifar-10-batches-py")
    raw = open(good, "rb").read()
    truncated = write_file(tmp_path / "truncated.tgz", raw[: len(raw) // 2])
    with pytest.raises(ImageFormatError, match=r"truncated.tgz: not a readable tar.gz"):
        load_cifar("cifar10", archive=truncated)
    with pytest.raises(ImageFormatError, match=r"looks like a CIFAR-10 archive: pass "
                                               r"name='cifar10'"):
        load_cifar("cifar100", archive=good)
    c100 = write_tar(tmp_path / "cifar-100-python.tar.gz", cifar100_members(),
                     "cifar-100-python")
    with pytest.raises(ImageFormatError, match=r"looks like a CIFAR-100 archive: pass "
                                               r"name='cifar100'"):
        load_cifar("cifar10", archive=c100)
    with pytest.raises(ImageFileNotFoundError, match=r"CIFAR archive not found: .*none.tar.gz"
                                                     r".*archive=/path/to/cifar-10-python"):
        load_cifar("cifar10", archive=tmp_path / "none.tar.gz")
    with pytest.raises(ImageFileNotFoundError, match=r"No cifar100 source given.*"
                                                     r"cifar-100-python.tar.gz.*use_tfds"):
        load_cifar("cifar100")
    with pytest.raises(ValueError, match=r"name must be one of \('cifar10', 'cifar100'\)"):
        load_cifar("cifar11", archive=good)
    with pytest.raises(ValueError, match="not both"):
        load_cifar("cifar10", archive=good, use_tfds=True)


# ----------------------------------------------------------------------------------
# CIFAR through TFDS (a stand-in module: no network here)
# ----------------------------------------------------------------------------------


def _fake_tfds(fail=None):
    rng = np.random.default_rng(0)
    splits = {"train": rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8),
              "test": rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)}

    class Builder:
        data_dir = "/fake/data_dir/cifar10/3.0.2"
        info = types.SimpleNamespace(features={"label": types.SimpleNamespace(
            names=list(CIFAR10_CLASSES))})

        def download_and_prepare(self):
            if fail:
                raise fail

        def as_dataset(self, split, batch_size):
            assert batch_size == -1
            return {"image": splits[split], "label": np.arange(len(splits[split])) % 10,
                    "id": np.zeros(len(splits[split]))}

    module = types.ModuleType("tensorflow_datasets")
    module.builder = lambda name, data_dir=None: Builder()
    module.as_numpy = lambda x: x
    return module, splits


def test_cifar_from_tfds(monkeypatch):
    module, splits = _fake_tfds()
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", module)
    data = load_cifar("cifar10", use_tfds=True, validation_fraction=0.2, split_seed=1)
    assert data.num_examples == {"train": 8, "validation": 2, "test": 4}
    assert data.class_names == CIFAR10_CLASSES
    np.testing.assert_array_equal(data.test["images"], splits["test"].astype(np.float32) / 255)
    train_idx, _ = split_train_validation(10, 0.2, seed=1)
    np.testing.assert_array_equal(data.train["images"],
                                  splits["train"][train_idx].astype(np.float32) / 255)


def test_cifar_tfds_offline_gives_one_clear_error(monkeypatch):
    module, _ = _fake_tfds(fail=OSError("Failed to resolve 'www.cs.toronto.edu'"))
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", module)
    with pytest.raises(RuntimeError, match=r"TFDS could not load cifar10 in /fake/data_dir"
                                           r".*resolve.*\nOffline, pass archive=/path/to/"
                                           r"cifar-10-python.tar.gz"):
        load_cifar("cifar10", use_tfds=True)
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails
    with pytest.raises(RuntimeError, match=r"use_tfds=True needs tensorflow_datasets"):
        load_cifar("cifar100", use_tfds=True)


# ----------------------------------------------------------------------------------
# ImageData checks and the library's own writers
# ----------------------------------------------------------------------------------


def test_image_data_rejects_bad_splits():
    good = {"images": np.zeros((3, 4, 4, 1), np.float32), "label": np.array([0, 1, 0])}
    with pytest.raises(ValueError, match="validation must be a dict with the keys"):
        ImageData(good, {"images": good["images"]}, good, ("a", "b"))
    with pytest.raises(ValueError, match=r"test images must be 4-D"):
        ImageData(good, good, {"images": np.zeros((3, 4, 4)), "label": [0, 0, 0]}, ("a", "b"))
    with pytest.raises(ValueError, match=r"train labels must be in 0..0"):
        ImageData(good, good, good, ("a",))
    with pytest.raises(ValueError, match=r"test images have shape \(4, 4, 3\), train has"):
        ImageData(good, good, {"images": np.zeros((3, 4, 4, 3)), "label": [0, 0, 0]},
                  ("a", "b"))
    with pytest.raises(ValueError, match="labels must be integers"):
        ImageData(good, good, {"images": good["images"], "label": [0.5, 1, 0]}, ("a", "b"))
    data = ImageData(good, good, good, ("a", "b"))
    np.testing.assert_array_equal(data.class_counts("train"), [2, 1])


def test_library_writers_round_trip(tmp_path):
    data = load_fashion_mnist(write_synthetic_fashion_mnist(tmp_path / "f", compress=False))
    assert data.num_examples == {"train": 54, "validation": 6, "test": 20}
    assert data.class_counts("test").tolist() == [2] * 10
    cifar = load_cifar("cifar100", archive=write_synthetic_cifar(
        tmp_path / "c100.tar.gz", name="cifar100", num_train=10, num_test=4))
    assert cifar.num_classes == 100 and cifar.num_examples["test"] == 4
