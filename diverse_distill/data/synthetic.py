"""Small synthetic MovieLens folders in the exact ml-100k format, for tests.

The ratings carry a learnable signal: a global mean, a user bias, a movie bias, a
user-by-genre affinity and a small age effect, plus noise, rounded and clipped to 1..5.
A model that uses the ids and genres beats the global mean; the folder passes through the
same parsers (ours and TFDS's) as the real data.
"""

import os

import numpy as np

from diverse_distill.data.movielens import GENRES, OCCUPATIONS, prefill_tfds_download_cache

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_FIRST_TIMESTAMP, _LAST_TIMESTAMP = 874724710, 893286638  # as in ml-100k u.data


def _movie_title(movie_id, year):
    """Varied titles: trailing articles, a latin-1 accent, an alternative title."""
    if movie_id % 7 == 0:
        return f"Synthetic Movie {movie_id}, The ({year})"
    if movie_id % 11 == 0:
        return f"Café Noir {movie_id} (Le Café {movie_id}) ({year})"
    return f"Synthetic Movie {movie_id} ({year})"


def write_synthetic_ml100k(folder, num_users=30, num_movies=40, num_ratings=600, seed=0):
    """Writes a small MovieLens folder in the ml-100k format.

    Files: `u.data` (tab-separated `user item rating timestamp`, in random order),
    `u.item` (latin-1, `|`-separated, release dates like `01-Jan-1995`, the 19 genre
    flags; the last movie is `unknown`, with no date, no year and the genre `unknown`,
    as movie 267 of ml-100k), `u.user` (`id|age|gender|occupation|zip`; user 1 has the
    non-numeric zip `T8H1N`), `u.genre`, `u.occupation`. Every (user, movie) pair is
    rated at most once; every user and every movie at least once.

    Args:
        folder: str. Created if missing; existing u.* files are overwritten.
        num_users: int. Defaults to `30`.
        num_movies: int. At least 2. Defaults to `40`.
        num_ratings: int. Between `max(num_users, num_movies)` and
            `num_users * num_movies`. Defaults to `600`.
        seed: int. Same seed, same files. Defaults to `0`.

    Returns:
        The folder path (str).

    Example:
    ```python
    import tempfile
    from diverse_distill.data import load_movielens_100k, write_synthetic_ml100k

    folder = write_synthetic_ml100k(tempfile.mkdtemp(), num_ratings=300, seed=1)
    table = load_movielens_100k(folder)  # 300 ratings
    ```
    """
    if num_users < 1 or num_movies < 2:
        raise ValueError("write_synthetic_ml100k needs num_users >= 1 and num_movies >= 2.")
    if not max(num_users, num_movies) <= num_ratings <= num_users * num_movies:
        raise ValueError(
            f"num_ratings must be in [{max(num_users, num_movies)}, {num_users * num_movies}]"
            f" for {num_users} users and {num_movies} movies, got {num_ratings}."
        )
    rng = np.random.default_rng(seed)
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)

    # === Users ===
    ages = rng.integers(7, 74, num_users)
    genders = rng.choice(["M", "F"], num_users, p=[0.7, 0.3])
    occupations = rng.choice(OCCUPATIONS, num_users)
    zips = [f"{z:05d}" for z in rng.integers(0, 100000, num_users)]
    zips[0] = "T8H1N"
    users = [f"{u + 1}|{ages[u]}|{genders[u]}|{occupations[u]}|{zips[u]}" for u in range(num_users)]

    # === Movies ===
    years = rng.integers(1930, 1999, num_movies)
    genres = np.zeros((num_movies, len(GENRES)), np.int8)
    for m in range(num_movies - 1):
        genres[m, 1 + rng.choice(len(GENRES) - 1, rng.integers(1, 4), replace=False)] = 1
    genres[-1, 0] = 1  # the "unknown" movie
    movies = []
    for m in range(num_movies):
        flags = "|".join(str(f) for f in genres[m])
        if m == num_movies - 1:
            movies.append(f"{m + 1}|unknown||||{flags}")
            continue
        date = f"{rng.integers(1, 29):02d}-{_MONTHS[rng.integers(12)]}-{years[m]}"
        title = _movie_title(m + 1, years[m])
        url = "http://us.imdb.com/M/title-exact?" + title.replace(" ", "%20")
        movies.append(f"{m + 1}|{title}|{date}||{url}|{flags}")

    # === Ratings: each user and movie once, the rest at random, no pair twice ===
    cover = max(num_users, num_movies)
    first = np.arange(cover) % num_users * num_movies + rng.permutation(cover) % num_movies
    rest = np.setdiff1d(np.arange(num_users * num_movies), first)
    pairs = np.concatenate([first, rng.choice(rest, num_ratings - len(first), replace=False)])
    pairs = pairs[rng.permutation(len(pairs))]
    u, m = pairs // num_movies, pairs % num_movies
    user_bias = rng.normal(0.0, 0.6, num_users)
    movie_bias = rng.normal(0.0, 0.6, num_movies)
    affinity = rng.normal(0.0, 0.8, (num_users, len(GENRES)))
    genre_term = (affinity[u] * genres[m]).sum(1) / np.maximum(genres[m].sum(1), 1)
    score = (
        3.5 + user_bias[u] + movie_bias[m] + genre_term
        + 0.01 * (ages[u] - 35) + rng.normal(0.0, 0.3, len(pairs))
    )
    ratings = np.clip(np.rint(score), 1, 5).astype(int)
    timestamps = rng.integers(_FIRST_TIMESTAMP, _LAST_TIMESTAMP, len(pairs))
    data = [f"{a + 1}\t{b + 1}\t{r}\t{t}" for a, b, r, t in zip(u, m, ratings, timestamps)]

    def write(name, lines, encoding="ascii"):
        with open(os.path.join(folder, name), "w", encoding=encoding, newline="\n") as f:
            f.write("\n".join(lines) + "\n")

    write("u.data", data)
    write("u.item", movies, encoding="latin-1")
    write("u.user", users)
    write("u.genre", [f"{g}|{i}" for i, g in enumerate(GENRES)] + [""])
    write("u.occupation", OCCUPATIONS)
    return folder


def make_synthetic_tfds_cache(data_dir, folder=None, **synthetic_kwargs):
    """Writes a synthetic ml-100k folder and pre-fills TFDS's download cache with it.

    After this, `tfds.load("movielens/100k-ratings", data_dir=data_dir)` (and
    `load_movielens(use_tfds=True, tfds_data_dir=data_dir)`) builds offline: the TFDS
    builder extracts the archive and runs its own parser on the synthetic files.

    Args:
        data_dir: str. The TFDS data_dir (the cache goes to `<data_dir>/downloads`).
        folder: str or None. Where to write the synthetic files. Defaults to `None`
            (`<data_dir>/synthetic_ml-100k`).
        **synthetic_kwargs: passed to `write_synthetic_ml100k`.

    Returns:
        The synthetic folder (str), to compare the TFDS table with the folder's.

    Example:
    ```python
    import tempfile
    from diverse_distill.data import load_movielens_100k, make_synthetic_tfds_cache

    data_dir = tempfile.mkdtemp()
    folder = make_synthetic_tfds_cache(data_dir)
    from_tfds = load_movielens_100k(use_tfds=True, tfds_data_dir=data_dir)
    from_tfds.equals(load_movielens_100k(folder))  # True
    ```
    """
    folder = folder or os.path.join(os.fspath(data_dir), "synthetic_ml-100k")
    write_synthetic_ml100k(folder, **synthetic_kwargs)
    prefill_tfds_download_cache(folder, data_dir=data_dir)
    return folder
