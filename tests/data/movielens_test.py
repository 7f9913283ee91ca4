"""Tests for diverse_distill.data.movielens (and the synthetic ml-100k writer)."""

import os
import pathlib

import numpy as np
import pytest

from diverse_distill.data import (
    GENRES,
    MovieLensData,
    MovieLensFileNotFoundError,
    MovieLensFormatError,
    load_movielens,
    load_movielens_100k,
    make_synthetic_tfds_cache,
    prefill_tfds_download_cache,
    split_ratings,
    split_sizes,
    split_title_year,
    write_synthetic_ml100k,
)

# The real data is never in the repository: read it from a path (licence: no redistribution).
REAL_DIR = pathlib.Path(
    os.environ.get(
        "DIVERSE_DISTILL_MOVIELENS_DIR",
        pathlib.Path(__file__).resolve().parents[3] / "shared" / "data" / "ml-100k",
    )
)
needs_real_data = pytest.mark.skipif(
    not (REAL_DIR / "u.data").is_file(), reason=f"ml-100k not found at {REAL_DIR}"
)


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
    return write_synthetic_ml100k(tmp_path_factory.mktemp("ml-100k"))


@pytest.fixture(scope="module")
def synthetic_table(synthetic_dir):
    return load_movielens_100k(synthetic_dir)


@pytest.fixture(scope="module")
def real_table():
    return load_movielens_100k(REAL_DIR)


def _keys(table):
    return set(zip(table.user_id.tolist(), table.movie_id.tolist(), table.timestamp.tolist()))


def _is_canonical(table):
    keys = list(zip(table.user_id.tolist(), table.movie_id.tolist(), table.timestamp.tolist()))
    return keys == sorted(keys)


# === Loading ===


def test_synthetic_folder_loads_with_expected_counts_and_dtypes(synthetic_table):
    t = synthetic_table
    assert len(t) == 600
    assert len(np.unique(t.user_id)) == 30
    assert len(np.unique(t.movie_id)) == 40
    assert len(_keys(t)) == 600  # no (user, movie) pair twice
    assert t.user_id.dtype == np.int64 and t.movie_id.dtype == np.int64
    assert t.rating.dtype == np.float32 and t.timestamp.dtype == np.int64
    assert t.user_age.dtype == np.int32 and t.movie_year.dtype == np.int32
    assert t.movie_genres.shape == (600, 19) and t.movie_genres.dtype == np.int8
    assert t.user_gender.dtype.kind == "U" and set(t.user_gender) <= {"M", "F"}
    assert set(np.unique(t.rating)) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert _is_canonical(t)


def test_synthetic_attributes_are_parsed(synthetic_table):
    t = synthetic_table
    by_movie = {m: i for i, m in enumerate(t.movie_id.tolist())}
    seven = by_movie[7]  # "Synthetic Movie 7, The (year)"
    assert t.movie_title[seven] == "Synthetic Movie 7, The"
    assert 1930 <= t.movie_year[seven] <= 1998
    assert t.movie_title[by_movie[11]].startswith("Café Noir 11 (Le Café 11)")  # latin-1
    unknown = by_movie[40]
    assert t.movie_title[unknown] == "unknown" and t.movie_year[unknown] == 0
    assert t.movie_genres[unknown].tolist() == [1] + [0] * 18
    assert "T8H1N" in set(t.user_zip[t.user_id == 1])


def test_split_title_year():
    assert split_title_year("Usual Suspects, The (1995)") == ("Usual Suspects, The", 1995)
    assert split_title_year("unknown") == ("unknown", 0)
    assert split_title_year("Heidi Fleiss: Hollywood Madam (1995) ") == (
        "Heidi Fleiss: Hollywood Madam", 1995)
    assert split_title_year("Land Before Time III (1995) (V)") == ("Land Before Time III (V)", 1995)
    assert split_title_year("Blade Runner (2049) (1982)") == ("Blade Runner (2049)", 1982)


@needs_real_data
def test_real_ml100k_counts(real_table):
    t = real_table
    assert len(t) == 100_000
    assert len(np.unique(t.user_id)) == 943
    assert len(np.unique(t.movie_id)) == 1682
    values, counts = np.unique(t.rating, return_counts=True)
    assert dict(zip(values.tolist(), counts.tolist())) == {
        1.0: 6110, 2.0: 11370, 3.0: 27145, 4.0: 34174, 5.0: 21201}  # SOURCE.txt
    assert _is_canonical(t)
    # First line of u.data: 196 242 3 881250949; user 196 is "49|M|writer|55105",
    # movie 242 is "Kolya (1996)", a Comedy.
    row = np.flatnonzero((t.user_id == 196) & (t.movie_id == 242))
    assert row.size == 1
    row = row[0]
    assert (t.rating[row], t.timestamp[row]) == (3.0, 881250949)
    assert (t.user_age[row], t.user_gender[row], t.user_occupation[row], t.user_zip[row]) == (
        49, "M", "writer", "55105")
    assert (t.movie_title[row], t.movie_year[row]) == ("Kolya", 1996)
    assert [GENRES[i] for i in np.flatnonzero(t.movie_genres[row])] == ["Comedy"]


@needs_real_data
def test_real_ml100k_split_and_vocabulary_sizes(real_table):
    data = MovieLensData(*split_ratings(real_table, seed=42))
    assert data.num_examples == {"train": 80_000, "validation": 10_000, "test": 10_000}
    sizes = data.categorical_vocab_sizes
    assert sizes["user_id"] == 944  # every user has >= 20 ratings, all are in train
    assert sizes["user_gender"] == 3 and sizes["user_occupation"] == 22
    assert sizes["user_age"] == 8 and sizes["movie_year"] == 9  # 1920s..1990s + unknown
    assert 1600 < sizes["movie_id"] <= 1683
    all_vocab = MovieLensData(*split_ratings(real_table, seed=42), vocab_from="all")
    assert all_vocab.categorical_vocab_sizes["movie_id"] == 1683


# === Split ===


def test_split_sizes():
    assert split_sizes(100_000) == (80_000, 10_000, 10_000)
    assert split_sizes(600) == (480, 60, 60)
    assert split_sizes(7) == (6, 1, 0)
    assert sum(split_sizes(12_345, (0.7, 0.2, 0.1))) == 12_345
    with pytest.raises(ValueError, match="summing to 1"):
        split_sizes(10, (0.8, 0.1, 0.2))
    with pytest.raises(ValueError, match="three"):
        split_sizes(10, (0.8, 0.2))


def test_split_is_disjoint_covering_and_80_10_10(synthetic_table):
    train, val, test = split_ratings(synthetic_table, seed=42)
    assert (len(train), len(val), len(test)) == (480, 60, 60)
    k_train, k_val, k_test = _keys(train), _keys(val), _keys(test)
    assert not (k_train & k_val) and not (k_train & k_test) and not (k_val & k_test)
    assert k_train | k_val | k_test == _keys(synthetic_table)
    assert all(_is_canonical(t) for t in (train, val, test))


def test_split_is_deterministic_given_seed(synthetic_table):
    first = split_ratings(synthetic_table, seed=7)
    again = split_ratings(synthetic_table, seed=7)
    other = split_ratings(synthetic_table, seed=8)
    assert all(a.equals(b) for a, b in zip(first, again))
    assert _keys(first[0]) != _keys(other[0])


def test_split_does_not_depend_on_row_order(synthetic_table):
    shuffled = synthetic_table.take(np.random.default_rng(0).permutation(len(synthetic_table)))
    assert all(
        a.equals(b)
        for a, b in zip(split_ratings(shuffled, seed=3), split_ratings(synthetic_table, seed=3))
    )


# === Same table and split from TFDS ===


@pytest.fixture
def offline_tfds(monkeypatch):
    """Makes any TFDS download attempt fail the test."""
    from tensorflow_datasets.core.download import download_manager

    def no_network(self, resource):
        raise AssertionError(f"TFDS tried to download {resource.url}")

    monkeypatch.setattr(download_manager.DownloadManager, "_download", no_network)


def test_tfds_builder_gives_the_same_table_and_split_offline(
    tmp_path, synthetic_table, offline_tfds
):
    """The TFDS `movielens/100k-ratings` builder, run for real and offline.

    `make_synthetic_tfds_cache` writes the synthetic folder (the same files as the
    `synthetic_dir` fixture: same seed) and `prefill_tfds_download_cache` zips it as
    `ml-100k/u.*` into `<data_dir>/downloads`, under the name TFDS gives its cached
    `ml-100k.zip`. TFDS's DownloadManager finds it there and extracts it, and the
    builder's own `movielens_parsing.parse_100k_ratings_data` writes the TFRecords that
    we read back. Any download attempt fails the test (`offline_tfds`).
    """
    data_dir = str(tmp_path / "tfds")
    folder = make_synthetic_tfds_cache(data_dir, folder=tmp_path / "ml-100k")
    from_tfds = load_movielens_100k(use_tfds=True, tfds_data_dir=data_dir)
    prepared = pathlib.Path(data_dir, "movielens", "100k-ratings", "0.1.1")
    assert list(prepared.glob("movielens-train.tfrecord-*"))
    assert load_movielens_100k(folder).equals(synthetic_table)
    assert from_tfds.equals(synthetic_table)
    for a, b in zip(split_ratings(from_tfds, seed=42), split_ratings(synthetic_table, seed=42)):
        assert a.equals(b)


def test_load_movielens_from_tfds_with_source_dir(tmp_path, offline_tfds):
    folder = write_synthetic_ml100k(tmp_path / "ml-100k", num_users=8, num_movies=9,
                                    num_ratings=40, seed=5)
    with pytest.raises(ValueError, match="tfds_data_dir"):
        load_movielens_100k(folder, use_tfds=True)
    data = load_movielens(folder, use_tfds=True, tfds_data_dir=str(tmp_path / "tfds"))
    assert data.num_examples == {"train": 32, "validation": 4, "test": 4}
    expected = split_ratings(load_movielens_100k(folder), seed=42)
    assert all(data.tables[s].equals(t) for s, t in zip(("train", "validation", "test"), expected))


def test_prefill_replaces_a_changed_archive_and_its_extraction(tmp_path):
    data_dir = tmp_path / "tfds"
    a = write_synthetic_ml100k(tmp_path / "a", seed=1)
    b = write_synthetic_ml100k(tmp_path / "b", seed=2)
    cached = pathlib.Path(prefill_tfds_download_cache(a, data_dir=data_dir))
    extracted = data_dir / "downloads" / "extracted" / ("ZIP." + cached.name)
    (extracted / "ml-100k").mkdir(parents=True)
    first = cached.read_bytes()
    assert pathlib.Path(prefill_tfds_download_cache(a, data_dir=data_dir)) == cached
    assert cached.read_bytes() == first and extracted.exists()  # same archive: kept
    prefill_tfds_download_cache(b, data_dir=data_dir)
    assert cached.read_bytes() != first and not extracted.exists()
    assert pathlib.Path(str(cached) + ".INFO").is_file()


# === Malformed files ===


def _corrupt(folder, name, line_no, new_line):
    path = os.path.join(folder, name)
    with open(path, encoding="latin-1") as f:
        lines = f.read().split("\n")
    lines[line_no - 1] = new_line
    with open(path, "w", encoding="latin-1") as f:
        f.write("\n".join(lines))
    return path


@pytest.mark.parametrize(
    "name, line_no, new_line, message",
    [
        ("u.data", 3, "1\t2\t3", r"expected 4 '\\t'-separated fields"),
        ("u.data", 4, "1\tx\t3\t881250949", "item id must be an integer, got 'x'"),
        ("u.data", 5, "1\t2\t6\t881250949", "rating must be a number in 1..5, got '6'"),
        ("u.data", 6, "1\t2\tgood\t881250949", "rating must be a number in 1..5"),
        ("u.data", 7, "999\t2\t3\t881250949", "user id 999 is not in u.user"),
        ("u.item", 2, "2|Broken (1995)|01-Jan-1995", "expected 24 '|'-separated fields"),
        ("u.item", 8, "8|X (1995)|01-Jan-1995||url|" + "|".join("2" * 19), "genre flags"),
        ("u.user", 5, "5|twenty|M|writer|55105", "age must be an integer"),
        ("u.user", 6, "6|30|X|writer|55105", "gender must be 'M' or 'F'"),
        ("u.user", 2, "2|30|M|astronaut|55105", "unknown occupation 'astronaut'"),
        ("u.genre", 3, "Adventures|2", "unexpected genre 'Adventures'"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, name, line_no, new_line, message):
    folder = write_synthetic_ml100k(tmp_path / "ml-100k")
    path = _corrupt(folder, name, line_no, new_line)
    with pytest.raises(MovieLensFormatError, match=message) as info:
        load_movielens_100k(folder)
    assert isinstance(info.value, ValueError)
    assert f"{path}, line {line_no}:" in str(info.value)


def test_missing_file_or_folder_names_path_and_flag(tmp_path):
    folder = write_synthetic_ml100k(tmp_path / "ml-100k")
    os.remove(os.path.join(folder, "u.data"))
    with pytest.raises(ValueError, match="--movielens_dir") as info:
        load_movielens_100k(folder)
    assert isinstance(info.value, (MovieLensFileNotFoundError, FileNotFoundError))
    assert os.path.join(folder, "u.data") in str(info.value)
    with pytest.raises(MovieLensFileNotFoundError, match="nowhere"):
        load_movielens_100k(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="--movielens_dir"):
        load_movielens_100k(None)


# === Features ===


@pytest.fixture(scope="module")
def synthetic_data(synthetic_table):
    return MovieLensData(*split_ratings(synthetic_table, seed=42))


def test_encoding_is_contiguous_with_zero_for_unknown(synthetic_data):
    data = synthetic_data
    assert list(data.categorical_vocab_sizes) == [
        "user_id", "movie_id", "user_gender", "user_occupation", "user_age", "movie_year"]
    assert data.numeric_feature_dims == {"genres": 19}
    train = data.train
    for name, size in data.categorical_vocab_sizes.items():
        assert train[name].dtype == np.int32
        assert train[name].min() >= 0 and train[name].max() < size
        # Every train value except an unknown year is in the vocabulary.
        assert (train[name] > 0).all() or name == "movie_year", name
        assert len(np.unique(train[name][train[name] > 0])) == size - 1, name
    assert train["genres"].dtype == np.float32 and train["genres"].shape == (480, 19)
    assert np.array_equal(train["genres"], data.tables["train"].movie_genres)
    # The index is 1 + the position in the sorted vocabulary.
    table = data.tables["train"]
    assert np.array_equal(data.vocabularies["user_id"][train["user_id"] - 1], table.user_id)
    assert train["rating"].dtype == np.float32
    assert data.mean_rating == pytest.approx(float(table.rating.mean()))
    # The unknown movie (no year) maps to index 0 of movie_year.
    unknown = table.movie_id == 40
    assert (train["movie_year"][unknown] == 0).all() and unknown.any()


def test_ids_unseen_in_train_map_to_zero(synthetic_data):
    data = synthetic_data
    for split in ("validation", "test"):
        ids = data.tables[split].movie_id
        unseen = ~np.isin(ids, data.tables["train"].movie_id)
        assert np.array_equal(data.split(split)["movie_id"] == 0, unseen)


def test_age_buckets_follow_tfds(synthetic_data):
    data = synthetic_data
    ages = np.array([7, 17, 18, 24, 25, 49, 50, 55, 56, 73])
    fake = data.tables["train"].take(np.zeros(len(ages), int))
    fake = type(fake)(**{**fake.columns(), "user_age": ages.astype(np.int32)})
    buckets = data.vocabularies["user_age"][data.encode(fake)["user_age"] - 1]
    assert buckets.tolist() == [1, 1, 18, 18, 25, 45, 50, 50, 56, 56]


def test_as_dataset_shapes_dtypes_and_deterministic_shuffle(synthetic_data):
    data = synthetic_data
    features, rating = next(iter(data.as_dataset("train", batch_size=16)))
    assert rating.shape == (16, 1) and rating.dtype.name == "float32"
    assert sorted(features) == sorted(data.feature_names)
    assert features["genres"].shape == (16, 19) and features["genres"].dtype.name == "float32"
    assert features["user_id"].dtype.name == "int32"
    assert np.array_equal(features["user_id"].numpy(), data.train["user_id"][:16])
    n = sum(int(r.shape[0]) for _, r in data.as_dataset("validation", batch_size=16))
    assert n == 60

    def order(seed):
        ds = data.as_dataset("train", 480, shuffle=True, seed=seed)
        return next(iter(ds))[0]["movie_id"].numpy()

    assert np.array_equal(order(1), order(1))
    assert not np.array_equal(order(1), order(2))
    repeated = data.as_dataset("test", 32, repeat=True, drop_remainder=True)
    assert all(r.shape == (32, 1) for _, r in repeated.take(5))


def test_as_dataset_extra_features(synthetic_data):
    data = synthetic_data
    ds = data.as_dataset("test", 60, extra_features=["prompt", "raw_user_id"])
    features, _ = next(iter(ds))
    assert features["prompt"].dtype.name == "string"
    assert features["prompt"].numpy()[0].decode() == data.prompts("test")[0]
    assert np.array_equal(features["raw_user_id"].numpy(), data.tables["test"].user_id)
    teacher = np.arange(60, dtype=np.float32)[:, None]
    features, _ = next(iter(data.as_dataset("test", 60, extra_features={"teacher": teacher})))
    assert np.array_equal(features["teacher"].numpy(), teacher)
    with pytest.raises(ValueError, match="Unknown extra feature"):
        data.as_dataset("test", 8, extra_features=["nope"])
    with pytest.raises(ValueError, match="has 3 rows"):
        data.as_dataset("test", 8, extra_features={"t": np.zeros(3)})
    with pytest.raises(ValueError, match="split must be one of"):
        data.as_dataset("dev", 8)


def test_synthetic_ratings_are_learnable(synthetic_table):
    """User + movie biases fitted on train beat the global mean on validation+test."""
    train, val, test = split_ratings(synthetic_table, seed=0)
    mu = train.rating.mean()
    b_user = {u: train.rating[train.user_id == u].mean() - mu for u in np.unique(train.user_id)}
    resid = train.rating - mu - np.array([b_user[u] for u in train.user_id])
    b_movie = {m: resid[train.movie_id == m].mean() for m in np.unique(train.movie_id)}
    y = np.concatenate([val.rating, test.rating])
    users = np.concatenate([val.user_id, test.user_id])
    movies = np.concatenate([val.movie_id, test.movie_id])
    pred = mu + np.array([b_user.get(u, 0.0) + b_movie.get(m, 0.0) for u, m in zip(users, movies)])
    mse_mean = np.mean((y - mu) ** 2)
    mse_bias = np.mean((y - pred) ** 2)
    assert mse_bias < 0.75 * mse_mean, (mse_bias, mse_mean)


def test_synthetic_writer_is_deterministic(tmp_path):
    a = write_synthetic_ml100k(tmp_path / "a", seed=3)
    b = write_synthetic_ml100k(tmp_path / "b", seed=3)
    c = write_synthetic_ml100k(tmp_path / "c", seed=4)
    read = lambda folder: pathlib.Path(folder, "u.data").read_bytes()  # noqa: E731
    assert read(a) == read(b) and read(a) != read(c)
    with pytest.raises(ValueError, match="num_ratings"):
        write_synthetic_ml100k(tmp_path / "d", num_users=3, num_movies=4, num_ratings=13)
