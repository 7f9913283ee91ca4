"""A dataset-level cache of a teacher's question-independent prefix."""

import os
import time

import numpy as np
import tensorflow as tf

STORAGE_DTYPES = ("float32", "float16")


def trim_to_longest(arrays, mask):
    """Cuts every array whose axis 1 is the prompt (the width of `mask`, trailing padding
    = 0) to the longest row of `mask`; other arrays are returned as they are."""
    full_length = np.shape(mask)[1]
    length = max(int(np.asarray(mask, bool).sum(axis=1).max()), 1)
    return [a[:, :length] if np.ndim(a) >= 2 and np.shape(a)[1] == full_length else a
            for a in arrays]


class PrefixCache:
    """Computes `teacher.prefix(x)` once per example and serves it as features.

    Everything a split teacher computes before its injection point depends
    on the sample alone (METHOD.md, "Injection points"), so it can be
    computed once for a whole split instead of at every distillation step.
    The cache runs the teacher's prefix over the split in batches, stores
    every leaf of the context (in memory, or memory-mapped under
    `directory`), and serves the rows of a batch as extra features under
    the keys `"<teacher>/prefix/<i>"`; a `DistillationModel` given the cache
    rebuilds the context from them instead of calling `prefix`. Floating
    leaves are stored in `storage_dtype` and cast back to float32.

    Args:
        teacher: a split teacher.
        storage_dtype: `"float16"` (half the memory; see docs/performance.md
            for the measured error) or `"float32"` (exact). Defaults to
            `"float16"`.
        directory: str or `None`. Where to memory-map the arrays; `None`
            keeps them in memory. Defaults to `None`.
        padding_mask_key: str or `None`. The feature holding the teacher's
            padding mask (1 = token, trailing 0s = padding). When given,
            `build` runs the rows in order of length and trims each batch to
            its longest row, so padding costs no compute (prompts with a
            history vary from 40 to 150 tokens); every context leaf whose
            axis 1 is the trimmed length is padded back with zeros. Only
            masked positions differ from the untrimmed prefix, and no
            suffix reads them. Defaults to `None` (batches as given).

    Example:
    ```python
    teacher = BertTeacher.tiny(num_layers=2, suffix_mode="query_token")
    x = {"bert_token_ids": np.random.randint(1, 64, (10, 8)),
         "bert_padding_mask": np.ones((10, 8), "int32")}
    cache = PrefixCache(teacher, storage_dtype="float32").build(x, batch_size=4)
    batch = {**x, **cache.features()}
    context = cache.context(batch)  # equals teacher.prefix(x)
    ```
    """

    kind = "prefix"  # names the feature keys and the files: "<teacher>/<kind>/<i>"

    def __init__(self, teacher, storage_dtype="float16", directory=None, padding_mask_key=None):
        if storage_dtype not in STORAGE_DTYPES:
            raise ValueError(f"`storage_dtype` must be one of {STORAGE_DTYPES}, got {storage_dtype!r}.")
        self.teacher = teacher
        self.storage_dtype = storage_dtype
        self.directory = directory
        self.padding_mask_key = padding_mask_key
        self.structure = None
        self.leaves = None
        self.seconds = None

    @property
    def name(self):
        return self.teacher.name

    def compute(self, x):
        """What is cached for a batch: the teacher's question-independent context."""
        return self.teacher.prefix(x)

    def key(self, index):
        return f"{self.teacher.name}/{self.kind}/{index}"

    def _path(self, index):
        return os.path.join(self.directory, f"{self.teacher.name}_{self.kind}_{index}.npy")

    @property
    def keys(self):
        return [self.key(i) for i in range(len(self.leaves or []))]

    @property
    def nbytes(self):
        return int(sum(leaf.nbytes for leaf in self.leaves or []))

    def _allocate(self, index, shape, dtype):
        if self.directory is None:
            return np.empty(shape, dtype)
        os.makedirs(self.directory, exist_ok=True)
        return np.lib.format.open_memmap(self._path(index), mode="w+", dtype=dtype, shape=shape)

    def _batches(self, features, batch_size):
        """`(rows, batch)` pairs: in order, or by length and trimmed (`padding_mask_key`)."""
        num_rows = len(next(iter(features.values())))
        if self.padding_mask_key is None:
            for begin in range(0, num_rows, batch_size):
                yield slice(begin, begin + batch_size), {
                    k: v[begin:begin + batch_size] for k, v in features.items()}
            return
        if self.padding_mask_key not in features:
            raise ValueError(f"`padding_mask_key` {self.padding_mask_key!r} is not a feature; "
                             f"the features are {sorted(features)}.")
        mask = np.asarray(features[self.padding_mask_key])
        order = np.argsort(np.asarray(mask, bool).sum(axis=1), kind="stable")
        for begin in range(0, num_rows, batch_size):
            rows = np.sort(order[begin:begin + batch_size])
            yield rows, dict(zip(features, trim_to_longest(
                [np.asarray(v[rows]) for v in features.values()], mask[rows])))

    def build(self, features, batch_size=256, log=None):
        """Runs `compute` (the prefix) over `features` (dict of arrays, one row per example).

        Logs the rows done, the rate and an ETA about every 50 batches.
        """
        num_rows = len(next(iter(features.values())))
        full_length = (np.shape(features[self.padding_mask_key])[1]
                       if self.padding_mask_key in features else None)
        start = time.time()
        prefix = tf.function(self.compute, reduce_retracing=True)
        done = 0
        for number, (rows, batch) in enumerate(self._batches(features, batch_size)):
            context = prefix(batch)
            flat = [np.asarray(t) for t in tf.nest.flatten(context)]
            if full_length is not None:
                length = np.shape(batch[self.padding_mask_key])[1]
                flat = [np.pad(t, [(0, 0), (0, full_length - length)] + [(0, 0)] * (t.ndim - 2))
                        if t.ndim >= 2 and t.shape[1] == length else t for t in flat]
            if self.leaves is None:
                self.structure = tf.nest.map_structure(
                    lambda t: tf.TensorSpec(t.shape[1:], t.dtype), context
                )
                if full_length is not None:
                    self.structure = tf.nest.pack_sequence_as(self.structure, [
                        tf.TensorSpec(leaf.shape[1:], spec.dtype)
                        for leaf, spec in zip(flat, tf.nest.flatten(self.structure))])
                self.leaves = []
                for i, leaf in enumerate(flat):
                    # bfloat16 (mixed_bfloat16 teachers) is no numpy floating type.
                    floating = np.issubdtype(leaf.dtype, np.floating) or leaf.dtype.name == "bfloat16"
                    dtype = self.storage_dtype if floating else leaf.dtype
                    self.leaves.append(self._allocate(i, (num_rows,) + leaf.shape[1:], dtype))
            for leaf, values in zip(self.leaves, flat):
                leaf[rows] = values
            done += len(flat[0])
            if log and number % 50 == 0:
                elapsed = time.time() - start
                eta = elapsed / done * (num_rows - done)
                log(f"{self.kind} cache {self.name}: {done}/{num_rows} rows, "
                    f"{done / max(elapsed, 1e-9):.0f} rows/s, ETA {eta / 60:.1f} min")
        if self.leaves is None:
            raise ValueError("PrefixCache.build got no rows.")
        self.seconds = time.time() - start
        return self

    def open_or_build(self, features, batch_size=256, log=None):
        """Reuses the memory-mapped cache under `directory` if complete, else builds it."""
        if self.directory is None:
            raise ValueError("open_or_build needs a `directory` to keep the cache in.")
        marker = os.path.join(self.directory, "COMPLETE")
        num_rows = len(next(iter(features.values())))
        if os.path.exists(marker):
            probe = self.compute({k: v[:2] for k, v in features.items()})
            self.structure = tf.nest.map_structure(
                lambda t: tf.TensorSpec(t.shape[1:], t.dtype), probe
            )
            count = len(tf.nest.flatten(probe))
            self.leaves = [
                np.load(self._path(i), mmap_mode="r")
                for i in range(count)
            ]
            if len(self.leaves[0]) == num_rows:
                self.seconds = 0.0
                return self
            self.leaves = None
        self.build(features, batch_size=batch_size, log=log)
        for leaf in self.leaves:
            leaf.flush()
        with open(marker, "w") as f:
            f.write(f"{num_rows} rows, {self.seconds:.1f} s\n")
        return self

    @staticmethod
    def recorded_seconds(directory):
        """Seconds the complete cache under `directory` took to build (its marker), or 0."""
        marker = os.path.join(directory, "COMPLETE")
        if not os.path.exists(marker):
            return 0.0
        with open(marker) as f:
            return float(f.read().split(",")[1].split()[0])

    def features(self):
        """The cached leaves as a dict of arrays, to add to the dataset's features."""
        if self.leaves is None:
            raise ValueError("Call PrefixCache.build first.")
        return {self.key(i): leaf for i, leaf in enumerate(self.leaves)}

    def covers(self, x):
        return self.leaves is not None and all(k in x for k in self.keys)

    def context(self, x):
        """Rebuilds the teacher's context from a batch holding the cached features."""
        leaves = []
        for key, reference in zip(self.keys, tf.nest.flatten(self.structure)):
            value = tf.convert_to_tensor(x[key])
            if value.dtype.is_floating:
                value = tf.cast(value, reference.dtype)
            leaves.append(value)
        return tf.nest.pack_sequence_as(self.structure, leaves)

    def dataset_lookup(self):
        """A `tf.data` map function adding the cached rows of `x["__row__"]` to `x`.

        Keeps a memory-mapped cache on disk: only the rows of each batch are
        read, instead of putting the whole cache into the dataset.
        """
        leaves = self.leaves
        keys = self.keys
        dtypes = [tf.as_dtype(leaf.dtype) for leaf in leaves]
        shapes = [leaf.shape[1:] for leaf in leaves]

        def gather(rows):
            order = np.argsort(rows)
            inverse = np.empty_like(order)
            inverse[order] = np.arange(len(rows))
            return [np.asarray(leaf[rows[order]])[inverse] for leaf in leaves]

        def lookup(x, y):
            values = tf.numpy_function(gather, [x["__row__"]], dtypes, stateful=False)
            x = dict(x)
            for key, value, shape in zip(keys, values, shapes):
                value.set_shape((None,) + tuple(shape))
                x[key] = value
            return x, y

        return lookup
