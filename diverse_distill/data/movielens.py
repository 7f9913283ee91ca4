"""MovieLens-100K: loading (local GroupLens folder or TFDS), the split, feature encoding.

The GroupLens `ml-100k` files are read from a path and never copied into the repository
(their licence forbids redistribution, see `docs/data.md`). Both sources — the local folder
and TFDS `movielens/100k-ratings` — give the same `RatingsTable`, row for row, in the
canonical order (sorted by user id, movie id, timestamp), so one seed defines one split
whichever source is used.

Example:
```python
import tempfile
from diverse_distill.data import load_movielens, write_synthetic_ml100k

folder = write_synthetic_ml100k(tempfile.mkdtemp())  # same format as ml-100k
data = load_movielens(movielens_dir=folder, split_seed=42)
data.num_examples  # {'train': 480, 'validation': 60, 'test': 60}
model_inputs = data.categorical_vocab_sizes, data.numeric_feature_dims
features, rating = next(iter(data.as_dataset("train", batch_size=32)))
rating.shape  # (32, 1)
```
"""

import dataclasses
import json
import logging
import os
import re
import shutil
import tempfile
import zipfile

import numpy as np

logger = logging.getLogger(__name__)

# === The ml-100k format ===
GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # u.genre order: the columns of the 19 genre flags in u.item.
OCCUPATIONS = (
    "administrator", "artist", "doctor", "educator", "engineer", "entertainment",
    "executive", "healthcare", "homemaker", "lawyer", "librarian", "marketing", "none",
    "other", "programmer", "retired", "salesman", "scientist", "student", "technician",
    "writer",
)  # u.occupation.
AGE_BUCKETS = (1, 18, 25, 35, 45, 50, 56)  # lower bounds, as TFDS `bucketized_user_age`.
REQUIRED_FILES = ("u.data", "u.item", "u.user")

# === TFDS ===
TFDS_NAME = "movielens/100k-ratings"
ML_100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
# TFDS's 21 genre names (shared by all MovieLens versions) -> the ml-100k names.
_TFDS_GENRE_RENAMES = {"Unknown": "unknown", "Children": "Children's"}

# === Model features ===
CATEGORICAL_FEATURES = (
    "user_id", "movie_id", "user_gender", "user_occupation", "user_age", "movie_year",
)
NUMERIC_FEATURES = {"genres": len(GENRES)}
SPLITS = ("train", "validation", "test")
_HINT = (
    "Pass the folder of the GroupLens ml-100k files (u.data, u.item, u.user, ...) with "
    "--movielens_dir=/path/to/ml-100k (load_movielens(movielens_dir=...)), or use_tfds=True."
)


class MovieLensFormatError(ValueError):
    """A MovieLens file is malformed; the message names the file and the line."""


class MovieLensFileNotFoundError(FileNotFoundError, ValueError):
    """A MovieLens file is missing; the message names the path and how to pass the folder."""


@dataclasses.dataclass(frozen=True, eq=False)
class RatingsTable:
    """MovieLens ratings, one row per rating, joined with user and movie attributes.

    All columns are numpy arrays with the same first dimension.

    Args:
        user_id: int64. Raw GroupLens user id.
        movie_id: int64. Raw GroupLens movie (item) id.
        rating: float32. Rating in 1..5.
        timestamp: int64. Seconds since the Unix epoch.
        user_age: int32. Age in years.
        user_gender: str. `"M"` or `"F"`.
        user_occupation: str. One of `OCCUPATIONS` (u.occupation).
        user_zip: str. Zip code as written (some are not numeric).
        movie_title: str. Title without the `(year)`, e.g. `"Usual Suspects, The"`.
        movie_year: int32. Year from the title, 0 where the title has none.
        movie_genres: int8, shape `(n, 19)`. Multi-hot over `GENRES`.

    Example:
    ```python
    from diverse_distill.data import load_movielens_100k, write_synthetic_ml100k

    table = load_movielens_100k(write_synthetic_ml100k("/tmp/ml-100k", num_ratings=200))
    print(len(table), table.rating[:3], table.movie_title[0])
    first_ten = table.take(np.arange(10))  # a RatingsTable of those rows
    assert len(first_ten) == 10
    ```
    """

    user_id: np.ndarray
    movie_id: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray
    user_age: np.ndarray
    user_gender: np.ndarray
    user_occupation: np.ndarray
    user_zip: np.ndarray
    movie_title: np.ndarray
    movie_year: np.ndarray
    movie_genres: np.ndarray

    def __post_init__(self):
        lengths = {f.name: len(getattr(self, f.name)) for f in dataclasses.fields(self)}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"RatingsTable columns differ in length: {lengths}")

    def __len__(self):
        return len(self.rating)

    def columns(self):
        """Returns the columns as a dict `name -> numpy array`."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def take(self, indices):
        """Returns the rows at `indices` (an int array), in that order."""
        return RatingsTable(**{k: v[indices] for k, v in self.columns().items()})

    def canonical_order(self):
        """Returns the table sorted by (user_id, movie_id, timestamp)."""
        order = np.lexsort((self.timestamp, self.movie_id, self.user_id))
        return self.take(order)

    def equals(self, other):
        """Whether `other` has the same columns with the same values, row for row."""
        return all(
            np.array_equal(a, b) and a.dtype.kind == b.dtype.kind
            for a, b in zip(self.columns().values(), other.columns().values())
        )


def split_title_year(raw_title):
    """Splits a GroupLens title into the title and the year in parentheses.

    The last `(YYYY)` is the year; what follows it (e.g. `(V)`) stays in the title.

    Args:
        raw_title: str. As in u.item or TFDS `movie_title`.

    Returns:
        `(title, year)`: the stripped title without the year, and the year as an int
        (0 if the title has none).

    Example:
    ```python
    from diverse_distill.data import split_title_year

    split_title_year("Usual Suspects, The (1995)")  # ('Usual Suspects, The', 1995)
    split_title_year("unknown")  # ('unknown', 0)
    ```
    """
    matches = list(re.finditer(r"\s*\((\d{4})\)", raw_title))
    if not matches:
        return raw_title.strip(), 0
    m = matches[-1]
    title = (raw_title[: m.start()] + raw_title[m.end():]).strip()
    return (title or raw_title.strip()), int(m.group(1))


# ----------------------------------------------------------------------------------
# Local folder
# ----------------------------------------------------------------------------------


def _lines(path):
    """Yields `(line_number, line)` for the non-blank lines of a latin-1 text file."""
    if not os.path.isfile(path):
        raise MovieLensFileNotFoundError(f"MovieLens file not found: {path}. {_HINT}")
    with open(path, encoding="latin-1", newline="") as f:
        for lineno, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if line.strip():
                yield lineno, line


def _fields(path, lineno, line, sep, count, layout):
    fields = [x.strip() for x in line.split(sep)]
    if len(fields) != count:
        raise MovieLensFormatError(
            f"{path}, line {lineno}: expected {count} {sep!r}-separated fields ({layout}), "
            f"got {len(fields)}: {line[:120]!r}"
        )
    return fields


def _int(path, lineno, value, what):
    try:
        return int(value)
    except ValueError:
        raise MovieLensFormatError(
            f"{path}, line {lineno}: {what} must be an integer, got {value!r}"
        ) from None


def _read_name_list(path, expected, what):
    """Checks u.genre / u.occupation (optional files) against the known names."""
    if not os.path.isfile(path):
        return
    names = []
    for lineno, line in _lines(path):
        name = line.split("|")[0].strip()
        if len(names) >= len(expected) or name != expected[len(names)]:
            raise MovieLensFormatError(
                f"{path}, line {lineno}: unexpected {what} {name!r}; ml-100k lists "
                f"{len(expected)} {what}s in this order: {', '.join(expected)}"
            )
        names.append(name)
    if len(names) != len(expected):
        raise MovieLensFormatError(
            f"{path}: lists {len(names)} {what}s, ml-100k has {len(expected)}"
        )


def _read_users(path):
    users = {}
    layout = "user id|age|gender|occupation|zip code"
    for lineno, line in _lines(path):
        uid, age, gender, occupation, zip_code = _fields(path, lineno, line, "|", 5, layout)
        uid = _int(path, lineno, uid, "user id")
        age = _int(path, lineno, age, "age")
        if uid in users:
            raise MovieLensFormatError(f"{path}, line {lineno}: duplicate user id {uid}")
        if gender not in ("M", "F"):
            raise MovieLensFormatError(
                f"{path}, line {lineno}: gender must be 'M' or 'F', got {gender!r}"
            )
        if occupation not in OCCUPATIONS:
            raise MovieLensFormatError(
                f"{path}, line {lineno}: unknown occupation {occupation!r} "
                f"(u.occupation lists: {', '.join(OCCUPATIONS)})"
            )
        users[uid] = (age, gender, occupation, zip_code)
    return users


def _read_movies(path):
    movies = {}
    layout = "movie id|title|release date|video release date|IMDb URL|19 genre flags"
    for lineno, line in _lines(path):
        fields = _fields(path, lineno, line, "|", 5 + len(GENRES), layout)
        mid = _int(path, lineno, fields[0], "movie id")
        if mid in movies:
            raise MovieLensFormatError(f"{path}, line {lineno}: duplicate movie id {mid}")
        flags = fields[5:]
        if any(flag not in ("0", "1") for flag in flags):
            raise MovieLensFormatError(
                f"{path}, line {lineno}: genre flags must be 0 or 1, got {'|'.join(flags)}"
            )
        title, year = split_title_year(fields[1])
        movies[mid] = (title, year, [flag == "1" for flag in flags])
    return movies


def _read_ratings(path, users, movies):
    rows = []
    layout = "user id, item id, rating, timestamp"
    for lineno, line in _lines(path):
        uid, mid, rating, ts = _fields(path, lineno, line, "\t", 4, layout)
        uid = _int(path, lineno, uid, "user id")
        mid = _int(path, lineno, mid, "item id")
        ts = _int(path, lineno, ts, "timestamp")
        try:
            value = float(rating)
        except ValueError:
            value = float("nan")
        if not 1.0 <= value <= 5.0:
            raise MovieLensFormatError(
                f"{path}, line {lineno}: rating must be a number in 1..5, got {rating!r}"
            )
        if uid not in users:
            raise MovieLensFormatError(
                f"{path}, line {lineno}: user id {uid} is not in u.user"
            )
        if mid not in movies:
            raise MovieLensFormatError(
                f"{path}, line {lineno}: item id {mid} is not in u.item"
            )
        rows.append((uid, mid, value, ts))
    if not rows:
        raise MovieLensFormatError(f"{path}: no ratings")
    return rows


def _load_from_folder(source_dir):
    source_dir = os.fspath(source_dir)
    if not os.path.isdir(source_dir):
        raise MovieLensFileNotFoundError(
            f"MovieLens folder not found: {source_dir}. {_HINT}"
        )
    _read_name_list(os.path.join(source_dir, "u.genre"), GENRES, "genre")
    _read_name_list(os.path.join(source_dir, "u.occupation"), OCCUPATIONS, "occupation")
    users = _read_users(os.path.join(source_dir, "u.user"))
    movies = _read_movies(os.path.join(source_dir, "u.item"))
    rows = _read_ratings(os.path.join(source_dir, "u.data"), users, movies)
    user_id, movie_id, rating, timestamp = (np.array(c) for c in zip(*rows))
    # Attributes per user / movie, then gathered per rating.
    user_ids, user_cols = np.array(list(users)), list(zip(*users.values()))
    movie_ids, movie_cols = np.array(list(movies)), list(zip(*movies.values()))
    u = _positions(user_ids, user_id)
    m = _positions(movie_ids, movie_id)
    return RatingsTable(
        user_id=user_id.astype(np.int64),
        movie_id=movie_id.astype(np.int64),
        rating=rating.astype(np.float32),
        timestamp=timestamp.astype(np.int64),
        user_age=np.array(user_cols[0], np.int32)[u],
        user_gender=np.array(user_cols[1], str)[u],
        user_occupation=np.array(user_cols[2], str)[u],
        user_zip=np.array(user_cols[3], str)[u],
        movie_title=np.array(movie_cols[0], str)[m],
        movie_year=np.array(movie_cols[1], np.int32)[m],
        movie_genres=np.array(movie_cols[2], np.int8).reshape(-1, len(GENRES))[m],
    ).canonical_order()


def _positions(ids, values):
    """Position in `ids` (unique, any order) of each of `values` (all present)."""
    order = np.argsort(ids)
    return order[np.searchsorted(ids, values, sorter=order)]


# ----------------------------------------------------------------------------------
# TFDS
# ----------------------------------------------------------------------------------


def _tfds_cache_entry(download_dir):
    """Path under which TFDS's DownloadManager looks for its cached ml-100k.zip.

    TFDS names a cached download `<download_dir>/movielens/<url + sha256 of the file>`,
    with the sha256 it has registered for the URL (url_checksums/movielens.txt).
    """
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core.download import resource as tfds_resource

    url_info = tfds.builder_cls("movielens").url_infos[ML_100K_URL]
    name = tfds_resource.get_dl_fname(ML_100K_URL, url_info.checksum)
    return os.path.join(download_dir, "movielens", name)


def prefill_tfds_download_cache(source, data_dir=None, download_dir=None):
    """Puts `ml-100k.zip` in TFDS's download cache, so `movielens/100k-ratings` builds offline.

    The TFDS builder downloads `ML_100K_URL`, extracts it and parses the files in
    `ml-100k/`. Offline, TFDS takes the archive from its download cache: a file named
    after the URL and the archive's registered sha256, with a `.INFO` file beside it.
    TFDS does not re-hash a file cached under that name, so an archive built here from a
    local folder is used as is and the builder's own parsing code runs over its files.
    Such an archive holds the same files as GroupLens's zip but is not byte-identical to
    it. (With the official `ml-100k.zip` at hand, `<download_dir>/manual/ml-100k.zip`
    also works, and TFDS then verifies its checksum.)

    Args:
        source: str. A folder with the ml-100k files (u.data, u.item, u.user, and
            u.genre/u.occupation when present), or a path to an `ml-100k.zip`.
        data_dir: str or None. The TFDS data_dir; the cache is `<data_dir>/downloads`.
            Defaults to `None` (TFDS's default data_dir).
        download_dir: str or None. The TFDS download dir, if not `<data_dir>/downloads`.
            Defaults to `None`.

    Returns:
        The path of the cached archive.

    Example:
    ```python
    import tempfile
    import tensorflow_datasets as tfds
    from diverse_distill.data import prefill_tfds_download_cache, write_synthetic_ml100k

    data_dir = tempfile.mkdtemp()
    prefill_tfds_download_cache(write_synthetic_ml100k(tempfile.mkdtemp()), data_dir)
    ds = tfds.load("movielens/100k-ratings", split="train", data_dir=data_dir)
    ```
    """
    import tensorflow_datasets as tfds

    source = os.fspath(source)
    if download_dir is None:
        data_dir = data_dir or tfds.core.constants.DATA_DIR
        download_dir = os.path.join(os.path.expanduser(data_dir), "downloads")
    target = _tfds_cache_entry(download_dir)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    fd, tmp_zip = tempfile.mkstemp(suffix=".zip", dir=os.path.dirname(target))
    os.close(fd)
    try:
        if os.path.isdir(source):
            missing = [f for f in REQUIRED_FILES if not os.path.isfile(os.path.join(source, f))]
            if missing:
                raise MovieLensFileNotFoundError(
                    f"MovieLens file(s) not found in {source}: {', '.join(missing)}. {_HINT}"
                )
            with zipfile.ZipFile(tmp_zip, "w", zipfile.ZIP_DEFLATED) as archive:
                for name in sorted(os.listdir(source)):
                    path = os.path.join(source, name)
                    if name.startswith("u.") and os.path.isfile(path):
                        info = zipfile.ZipInfo(f"ml-100k/{name}", date_time=(1998, 4, 1, 0, 0, 0))
                        with open(path, "rb") as f:
                            archive.writestr(info, f.read(), zipfile.ZIP_DEFLATED)
        elif zipfile.is_zipfile(source):
            shutil.copyfile(source, tmp_zip)
        else:
            raise MovieLensFileNotFoundError(
                f"{source} is neither a folder of ml-100k files nor a zip archive. {_HINT}"
            )
        unchanged = os.path.isfile(target) and _same_bytes(target, tmp_zip)
        if not unchanged:
            os.replace(tmp_zip, target)
            # A stale extraction of a previous archive would be reused by TFDS.
            stale = os.path.join(download_dir, "extracted", "ZIP." + os.path.basename(target))
            shutil.rmtree(stale, ignore_errors=True)
    finally:
        if os.path.exists(tmp_zip):
            os.remove(tmp_zip)
    with open(target + ".INFO", "w") as f:
        json.dump({"urls": [ML_100K_URL], "dataset_names": ["movielens"],
                   "original_fname": "ml-100k.zip"}, f)
    return target


def _same_bytes(path_a, path_b):
    if os.path.getsize(path_a) != os.path.getsize(path_b):
        return False
    with open(path_a, "rb") as a, open(path_b, "rb") as b:
        return a.read() == b.read()


def _load_from_tfds(data_dir, source_dir=None):
    import tensorflow as tf
    import tensorflow_datasets as tfds

    if source_dir is not None:
        if data_dir is None:
            raise ValueError(
                "use_tfds=True with a source_dir prefills a TFDS download cache; pass "
                "tfds_data_dir too (the cache goes to <tfds_data_dir>/downloads)."
            )
        prefill_tfds_download_cache(source_dir, data_dir=data_dir)
    builder = tfds.builder(TFDS_NAME, data_dir=data_dir)
    try:
        builder.download_and_prepare()
    except Exception as e:  # noqa: BLE001 - re-raised with the offline recipe.
        raise RuntimeError(
            f"TFDS could not prepare {TFDS_NAME} in {builder.data_dir_root}: {e}\n"
            "Offline, TFDS needs a prepared data_dir or a pre-filled download cache: "
            "diverse_distill.data.prefill_tfds_download_cache('/path/to/ml-100k', "
            "data_dir=...) (see docs/data.md), or read the folder itself with "
            "--movielens_dir=/path/to/ml-100k (use_tfds=False)."
        ) from e

    tfds_genres = builder.info.features["movie_genres"].feature.names
    to_ml100k = np.zeros((len(tfds_genres), len(GENRES)), np.int32)
    unmapped = np.zeros(len(tfds_genres), np.int32)
    for i, name in enumerate(tfds_genres):
        name = _TFDS_GENRE_RENAMES.get(name, name)
        if name in GENRES:
            to_ml100k[i, GENRES.index(name)] = 1
        else:
            unmapped[i] = 1

    def to_dense(ex):
        one_hot = tf.one_hot(ex["movie_genres"], len(tfds_genres), dtype=tf.int32)
        ex["movie_genres"] = tf.minimum(tf.reduce_sum(one_hot, axis=0), 1)
        return ex

    ds = builder.as_dataset(split="train", shuffle_files=False).map(to_dense).batch(16384)
    batches = list(tfds.as_numpy(ds))
    if not batches:
        raise ValueError(f"{TFDS_NAME} in {builder.data_dir} has no examples.")
    ex = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
    if (ex["movie_genres"] @ unmapped).any():
        raise ValueError(f"{TFDS_NAME} has genres outside the 19 ml-100k genres.")

    def text(values):
        return np.array([v.decode("utf-8") for v in values.tolist()], str)

    titles = text(ex["movie_title"])
    split = {t: split_title_year(t) for t in np.unique(titles).tolist()}
    return RatingsTable(
        user_id=text(ex["user_id"]).astype(np.int64),
        movie_id=text(ex["movie_id"]).astype(np.int64),
        rating=ex["user_rating"].astype(np.float32),
        timestamp=ex["timestamp"].astype(np.int64),
        user_age=np.rint(ex["raw_user_age"]).astype(np.int32),
        user_gender=np.where(ex["user_gender"], "M", "F"),
        user_occupation=text(ex["user_occupation_text"]),
        user_zip=text(ex["user_zip_code"]),
        movie_title=np.array([split[t][0] for t in titles.tolist()], str),
        movie_year=np.array([split[t][1] for t in titles.tolist()], np.int32),
        movie_genres=(ex["movie_genres"] @ to_ml100k).astype(np.int8),
    ).canonical_order()


def load_movielens_100k(source_dir=None, use_tfds=False, tfds_data_dir=None):
    """Loads every MovieLens-100K rating, joined with user and movie attributes.

    Args:
        source_dir: str or None. Folder of the GroupLens ml-100k files. With
            `use_tfds=True`, it pre-fills TFDS's download cache in `tfds_data_dir`
            first (see `prefill_tfds_download_cache`). Defaults to `None`.
        use_tfds: bool. Read TFDS `movielens/100k-ratings` instead of the folder.
            Offline this needs a prepared `tfds_data_dir` or a pre-filled download cache.
            Defaults to `False`.
        tfds_data_dir: str or None. TFDS data_dir. Defaults to `None` (TFDS's default).

    Returns:
        A `RatingsTable` in the canonical order (user_id, movie_id, timestamp); the same
        table, row for row, from either source.

    Raises:
        MovieLensFileNotFoundError: (a ValueError) a file or the folder is missing.
        MovieLensFormatError: (a ValueError) a malformed line; names file and line.

    Example:
    ```python
    import tempfile
    from diverse_distill.data import load_movielens_100k, write_synthetic_ml100k

    table = load_movielens_100k(write_synthetic_ml100k(tempfile.mkdtemp()))
    len(table), table.movie_genres.shape  # (600, (600, 19))
    ```
    """
    if use_tfds:
        return _load_from_tfds(tfds_data_dir, source_dir)
    if source_dir is None:
        raise MovieLensFileNotFoundError(f"No MovieLens source given. {_HINT}")
    return _load_from_folder(source_dir)


# ----------------------------------------------------------------------------------
# Split
# ----------------------------------------------------------------------------------


def split_sizes(num_examples, fractions=(0.8, 0.1, 0.1)):
    """Sizes of the train/validation/test splits: rounded, test takes the remainder.

    Args:
        num_examples: int.
        fractions: three non-negative floats summing to 1. Defaults to `(0.8, 0.1, 0.1)`.

    Returns:
        A tuple of three ints summing to `num_examples`.
    """
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(
            f"fractions must be three non-negative numbers summing to 1, got {fractions}"
        )
    n_train = int(round(fractions[0] * num_examples))
    n_val = min(int(round(fractions[1] * num_examples)), num_examples - n_train)
    return n_train, n_val, num_examples - n_train - n_val


def split_ratings(table, seed=42, fractions=(0.8, 0.1, 0.1)):
    """Splits ratings at random into train/validation/test, deterministically.

    The rows are put in the canonical order (user_id, movie_id, timestamp), permuted with
    `np.random.default_rng(seed).permutation`, and cut into consecutive parts of the
    sizes `split_sizes(len(table), fractions)`. Each part keeps the canonical order.
    The parts are disjoint and cover the table.

    Args:
        table: `RatingsTable`.
        seed: int. Defaults to `42`.
        fractions: three non-negative floats summing to 1. Defaults to `(0.8, 0.1, 0.1)`.

    Returns:
        A tuple `(train, validation, test)` of `RatingsTable`.

    Example:
    ```python
    import tempfile
    from diverse_distill.data import (load_movielens_100k, split_ratings,
                                      write_synthetic_ml100k)

    table = load_movielens_100k(write_synthetic_ml100k(tempfile.mkdtemp()))
    train, validation, test = split_ratings(table, seed=42)
    len(train), len(validation), len(test)  # (480, 60, 60)
    ```
    """
    table = table.canonical_order()
    n_train, n_val, _ = split_sizes(len(table), fractions)
    perm = np.random.default_rng(seed).permutation(len(table))
    parts = np.split(perm, [n_train, n_train + n_val])
    return tuple(table.take(np.sort(p)) for p in parts)


# ----------------------------------------------------------------------------------
# Features
# ----------------------------------------------------------------------------------


def _raw_categorical(table):
    """The raw value behind each categorical feature (movie_year: decade, 0 = unknown)."""
    bucket = np.searchsorted(AGE_BUCKETS, table.user_age, side="right") - 1
    return {
        "user_id": table.user_id,
        "movie_id": table.movie_id,
        "user_gender": table.user_gender,
        "user_occupation": table.user_occupation,
        "user_age": np.asarray(AGE_BUCKETS)[np.maximum(bucket, 0)],
        "movie_year": (table.movie_year // 10) * 10,
    }


def _lookup(vocabulary, values):
    """Index of each value in the sorted `vocabulary`, plus 1; 0 for values not in it."""
    if len(vocabulary) == 0:
        return np.zeros(len(values), np.int32)
    pos = np.clip(np.searchsorted(vocabulary, values), 0, len(vocabulary) - 1)
    return np.where(vocabulary[pos] == values, pos + 1, 0).astype(np.int32)


class MovieLensData:
    """The MovieLens splits, encoded for MLP models, with prompts for language teachers.

    Categorical features are contiguous int32 indices: `0` means out of vocabulary
    (unknown), `1..V-1` the sorted values of the vocabulary, so an embedding table of
    `categorical_vocab_sizes[name]` rows fits. Vocabularies come from the train split
    (`vocab_from="train"`, default: no information from validation/test; their unseen
    ids map to 0) or from all ratings (`vocab_from="all"`). `user_age` uses the fixed
    TFDS age buckets (`AGE_BUCKETS`); `movie_year` is the decade, 0 where unknown.

    Features (every split, aligned with its rows):
        user_id, movie_id, user_gender, user_occupation, user_age, movie_year: int32 `(n,)`.
        genres: float32 `(n, 19)`, multi-hot over `GENRES`.
        rating: float32 `(n,)` (in the split dicts; the label in `as_dataset`).

    Args:
        train: `RatingsTable`.
        validation: `RatingsTable`.
        test: `RatingsTable`.
        vocab_from: str. `"train"` or `"all"`. Defaults to `"train"`.

    Attributes:
        tables: dict split -> `RatingsTable` (raw columns).
        train, validation, test: dicts feature name -> numpy array, plus `"rating"`.
        vocabularies: dict feature name -> sorted raw values (index i+1 is value i).
        categorical_vocab_sizes: dict feature name -> vocabulary size (incl. index 0).
        numeric_feature_dims: `{"genres": 19}`.
        mean_rating: float. Mean train rating.

    Example:
    ```python
    import tempfile
    from diverse_distill import MLPRecommender
    from diverse_distill.data import (MovieLensData, load_movielens_100k, split_ratings,
                                      write_synthetic_ml100k)

    table = load_movielens_100k(write_synthetic_ml100k(tempfile.mkdtemp()))
    data = MovieLensData(*split_ratings(table, seed=42))
    model = MLPRecommender(data.categorical_vocab_sizes, embedding_dims=8,
                           numeric_features=data.numeric_feature_dims)
    model.compile(optimizer="adagrad", loss="mse")
    model.fit(data.as_dataset("train", 64, shuffle=True, seed=0),
              validation_data=data.as_dataset("validation", 256), verbose=0)
    ```
    """

    def __init__(self, train, validation, test, vocab_from="train"):
        if vocab_from not in ("train", "all"):
            raise ValueError(f"vocab_from must be 'train' or 'all', got {vocab_from!r}")
        self.tables = {"train": train, "validation": validation, "test": test}
        self.vocab_from = vocab_from
        tables = [train] if vocab_from == "train" else [train, validation, test]
        raw = [_raw_categorical(t) for t in tables]
        self.vocabularies = {}
        for name in CATEGORICAL_FEATURES:
            if name == "user_age":  # fixed buckets, whatever the data
                self.vocabularies[name] = np.asarray(AGE_BUCKETS)
                continue
            values = np.unique(np.concatenate([r[name] for r in raw]))
            self.vocabularies[name] = values[values > 0] if name == "movie_year" else values
        self.categorical_vocab_sizes = {k: len(v) + 1 for k, v in self.vocabularies.items()}
        self.numeric_feature_dims = dict(NUMERIC_FEATURES)
        self.train, self.validation, self.test = (self.encode(t) for t in (train, validation, test))
        self.mean_rating = float(np.mean(train.rating)) if len(train) else float("nan")

    @property
    def feature_names(self):
        """Model input names: the categorical features, then the numeric ones."""
        return list(self.categorical_vocab_sizes) + list(self.numeric_feature_dims)

    @property
    def num_examples(self):
        """dict split -> number of ratings."""
        return {s: len(t) for s, t in self.tables.items()}

    def encode(self, table):
        """Encodes a `RatingsTable` with this data's vocabularies.

        Returns:
            dict: the `feature_names` (int32 `(n,)`; "genres" float32 `(n, 19)`) and
            "rating" (float32 `(n,)`).
        """
        raw = _raw_categorical(table)
        out = {name: _lookup(self.vocabularies[name], raw[name]) for name in CATEGORICAL_FEATURES}
        out["genres"] = table.movie_genres.astype(np.float32)
        out["rating"] = table.rating.astype(np.float32)
        return out

    def split(self, split):
        """The encoded dict of one split: `"train"`, `"validation"` or `"test"`."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return getattr(self, split)

    def prompts(self, split, history=0):
        """One natural-language prompt per rating of `split` (numpy array of str).

        Args:
            split: str. `"train"`, `"validation"` or `"test"`.
            history: int. How many of the user's earlier **train** ratings (strictly
                before the rating asked) each prompt lists; `0` lists none. Defaults to
                `0`.

        See `diverse_distill.data.prompts.rating_prompts`.
        """
        from diverse_distill.data.prompts import rating_prompts

        self.split(split)  # validates the name
        return rating_prompts(self.tables[split], history=history,
                              history_ratings=self.tables["train"])

    def as_dataset(
        self,
        split,
        batch_size,
        shuffle=False,
        seed=None,
        repeat=False,
        extra_features=None,
        drop_remainder=False,
    ):
        """A `tf.data.Dataset` of `(features, rating[:, None])` batches.

        Args:
            split: str. `"train"`, `"validation"` or `"test"`.
            batch_size: int.
            shuffle: bool. Shuffle the whole split (each epoch anew). Defaults to `False`.
            seed: int or None. Shuffle seed. Defaults to `None`.
            repeat: bool. Repeat forever (for step-based training). Defaults to `False`.
            extra_features: None, a dict name -> array aligned with the split's rows (e.g.
                precomputed teacher outputs), or a list of names among `"prompt"` (str)
                and the raw `RatingsTable` columns (as `"raw_<column>"`, e.g.
                `"raw_user_id"`). Defaults to `None`.
            drop_remainder: bool. Drop the last partial batch. Defaults to `False`.

        Returns:
            A `tf.data.Dataset` yielding `(dict of features, float32 (batch, 1))`.
        """
        import tensorflow as tf

        data = self.split(split)
        features = {name: data[name] for name in self.feature_names}
        n = len(data["rating"])
        if isinstance(extra_features, dict):
            extras = dict(extra_features)
        else:
            extras = {}
            columns = self.tables[split].columns()
            for name in extra_features or ():
                if name == "prompt":
                    extras[name] = self.prompts(split)
                elif name.startswith("raw_") and name[4:] in columns:
                    extras[name] = columns[name[4:]]
                else:
                    raise ValueError(
                        f"Unknown extra feature {name!r}: use 'prompt' or 'raw_<column>' "
                        f"with a column of {sorted(columns)}, or pass a dict of arrays."
                    )
        for name, values in extras.items():
            if name in features:
                raise ValueError(f"extra feature {name!r} would replace a model feature")
            if len(values) != n:
                raise ValueError(
                    f"extra feature {name!r} has {len(values)} rows, split {split!r} has {n}"
                )
            features[name] = np.asarray(values)
        labels = data["rating"].astype(np.float32)[:, None]
        ds = tf.data.Dataset.from_tensor_slices((features, labels))
        if shuffle:
            ds = ds.shuffle(max(n, 1), seed=seed, reshuffle_each_iteration=True)
        if repeat:
            ds = ds.repeat()
        return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)

    def __repr__(self):
        return (
            f"MovieLensData(num_examples={self.num_examples}, "
            f"categorical_vocab_sizes={self.categorical_vocab_sizes}, "
            f"mean_rating={self.mean_rating:.4f})"
        )


def load_movielens(
    movielens_dir=None,
    use_tfds=False,
    split_seed=42,
    fractions=(0.8, 0.1, 0.1),
    tfds_data_dir=None,
    vocab_from="train",
):
    """Loads MovieLens-100K, splits it and encodes it: the one call a job needs.

    Args:
        movielens_dir: str or None. Folder of the GroupLens ml-100k files
            (`--movielens_dir`). Defaults to `None`.
        use_tfds: bool. Read TFDS `movielens/100k-ratings` (see `load_movielens_100k`).
            Defaults to `False`.
        split_seed: int. Seed of the split. Defaults to `42`.
        fractions: train/validation/test fractions. Defaults to `(0.8, 0.1, 0.1)`.
        tfds_data_dir: str or None. TFDS data_dir. Defaults to `None`.
        vocab_from: str. `"train"` or `"all"`. Defaults to `"train"`.

    Returns:
        A `MovieLensData`.

    Example:
    ```python
    import tempfile
    from diverse_distill.data import load_movielens, write_synthetic_ml100k

    # The real data: load_movielens(movielens_dir="/path/to/ml-100k") gives
    # {'train': 80000, 'validation': 10000, 'test': 10000}.
    data = load_movielens(movielens_dir=write_synthetic_ml100k(tempfile.mkdtemp()))
    data.num_examples  # {'train': 480, 'validation': 60, 'test': 60}
    ```
    """
    table = load_movielens_100k(movielens_dir, use_tfds=use_tfds, tfds_data_dir=tfds_data_dir)
    return MovieLensData(*split_ratings(table, seed=split_seed, fractions=fractions),
                         vocab_from=vocab_from)
