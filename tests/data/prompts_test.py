"""Tests for diverse_distill.data.prompts."""

import os
import pathlib
import re

import numpy as np
import pytest

from diverse_distill.data import (
    GENRES,
    RatingsTable,
    load_movielens,
    load_movielens_100k,
    rating_prompt,
    rating_prompts,
    split_ratings,
    write_synthetic_ml100k,
)
from diverse_distill.data import prompts as prompts_module
from diverse_distill.data.prompts import (
    history_indices,
    movie_phrase,
    natural_title,
    user_phrase,
)

REAL_DIR = pathlib.Path(
    os.environ.get(
        "DIVERSE_DISTILL_MOVIELENS_DIR",
        pathlib.Path(__file__).resolve().parents[3] / "shared" / "data" / "ml-100k",
    )
)


def test_exact_prompt_for_a_hand_made_example():
    prompt = rating_prompt(
        age=24, gender="M", occupation="technician", title="Toy Story", year=1995,
        genres=["Animation", "Children's", "Comedy"],
    )
    assert prompt == (
        'A 24-year-old male technician rates the movie "Toy Story" (1995), an Animation, '
        "Children's and Comedy film, on a scale of 1 to 5. Rating:"
    )


def test_exact_prompts_for_edge_cases():
    assert rating_prompt(18, "F", "other", "unknown", 0, ["unknown"]) == (
        'An 18-year-old female with another occupation rates the movie "unknown" '
        "on a scale of 1 to 5. Rating:"
    )
    assert rating_prompt(61, "M", "retired", "Usual Suspects, The", 1995, ["Crime"]) == (
        'A 61-year-old retired male rates the movie "The Usual Suspects" (1995), '
        "a Crime film, on a scale of 1 to 5. Rating:"
    )
    assert rating_prompt(8, "F", "none", "Close Shave, A", 1995, ()) == (
        'An 8-year-old female with no occupation rates the movie "A Close Shave" (1995) '
        "on a scale of 1 to 5. Rating:"
    )


def test_genres_as_multi_hot_equal_genre_names():
    multi_hot = np.zeros(19, np.int8)
    multi_hot[[GENRES.index("Drama"), GENRES.index("War")]] = 1
    assert movie_phrase("Glory", 1989, multi_hot) == movie_phrase("Glory", 1989, ["Drama", "War"])
    assert movie_phrase("Glory", 1989, multi_hot) == '"Glory" (1989), a Drama and War film,'


def test_natural_title():
    assert natural_title("Usual Suspects, The") == "The Usual Suspects"
    assert natural_title("Promesse, La") == "La Promesse"
    assert natural_title("Horseman on the Roof, The (Hussard sur le toit, Le)") == (
        "The Horseman on the Roof (Hussard sur le toit, Le)")
    assert natural_title("Sense and Sensibility") == "Sense and Sensibility"


def test_user_phrase_article():
    assert user_phrase(11, "M", "student") == "An 11-year-old male student"
    assert user_phrase(80, "F", "writer") == "An 80-year-old female writer"
    assert user_phrase(7, "M", "student") == "A 7-year-old male student"


def test_vectorised_prompts_equal_one_by_one(tmp_path):
    table = load_movielens_100k(write_synthetic_ml100k(tmp_path))
    prompts = rating_prompts(table)
    assert prompts.shape == (len(table),) and prompts.dtype.kind == "U"
    expected = [
        rating_prompt(table.user_age[i], table.user_gender[i], table.user_occupation[i],
                      table.movie_title[i], table.movie_year[i], table.movie_genres[i])
        for i in range(len(table))
    ]
    assert prompts.tolist() == expected
    assert np.array_equal(rating_prompts(table), prompts)  # deterministic
    assert rating_prompts(table.take(np.arange(0))).shape == (0,)


@pytest.mark.skipif(not (REAL_DIR / "u.data").is_file(), reason=f"no ml-100k at {REAL_DIR}")
def test_docstring_prompts_are_the_real_ones_and_prompts_are_short():
    table = load_movielens_100k(REAL_DIR)
    prompts = rating_prompts(table)
    documented = re.findall(r"\n\n    (A .*?Rating:)", prompts_module.__doc__, flags=re.S)
    documented = [" ".join(p.split()) for p in documented]
    assert documented == [prompts[0], prompts[9_999], prompts[99_999]]
    words = np.strings.count(prompts, " ") + 1
    assert words.max() <= 40 and words.mean() < 26


# ----------------------------------------------------------------------------------
# History prompts (issue #14): the user's K latest earlier train ratings.
# ----------------------------------------------------------------------------------


def _table(rows):
    """A RatingsTable from `(user, movie, rating, timestamp, title, year)` rows."""
    user, movie, rating, ts, title, year = (np.array(c) for c in zip(*rows))
    n = len(rows)
    genres = np.zeros((n, len(GENRES)), np.int8)
    genres[:, GENRES.index("Drama")] = 1
    return RatingsTable(
        user_id=user.astype(np.int64), movie_id=movie.astype(np.int64),
        rating=rating.astype(np.float32), timestamp=ts.astype(np.int64),
        user_age=np.where(user == 1, 24, 30).astype(np.int32),
        user_gender=np.where(user == 1, "M", "F"),
        user_occupation=np.where(user == 1, "technician", "writer"),
        user_zip=np.full(n, "00000"), movie_title=title.astype(str),
        movie_year=year.astype(np.int32), movie_genres=genres,
    )


# User 1 rated Heat at 10, Fargo at 20, Babe at 30 and Casino at 40 (all train).
# Test targets: Toy Story at 40 (same second as Casino), Usual Suspects at 35 by user 2,
# whose only train rating is later (50).
_TRAIN = _table([
    (1, 10, 4, 10, "Heat", 1995),
    (1, 11, 5, 20, "Fargo", 1996),
    (1, 12, 2, 30, "Babe", 0),
    (1, 13, 3, 40, "Casino", 1995),
    (2, 10, 1, 50, "Heat", 1995),
])
_TEST = _table([
    (1, 14, 5, 40, "Toy Story", 1995),
    (2, 15, 4, 35, "Usual Suspects, The", 1995),
    (1, 16, 1, 25, "Jaws", 1975),
])


def test_history_prompt_for_a_hand_made_example_k2():
    prompts = rating_prompts(_TEST, history=2, history_ratings=_TRAIN)
    # Casino has the target's timestamp (40): strictly before leaves it out.
    assert prompts[0] == (
        'A 24-year-old male technician, who earlier gave "Fargo" (1996) a 5 and "Babe" a 2, '
        'rates the movie "Toy Story" (1995), a Drama film, on a scale of 1 to 5. Rating:'
    )
    assert prompts[2] == (
        'A 24-year-old male technician, who earlier gave "Heat" (1995) a 4 and "Fargo" '
        '(1996) a 5, rates the movie "Jaws" (1975), a Drama film, on a scale of 1 to 5. '
        "Rating:"
    )
    # K larger than the history: all of it; K=1: one item, no "and".
    assert rating_prompts(_TEST, history=10, history_ratings=_TRAIN)[0] == (
        'A 24-year-old male technician, who earlier gave "Heat" (1995) a 4, "Fargo" (1996) '
        'a 5 and "Babe" a 2, rates the movie "Toy Story" (1995), a Drama film, on a scale '
        "of 1 to 5. Rating:"
    )
    assert rating_prompts(_TEST, history=1, history_ratings=_TRAIN)[2] == (
        'A 24-year-old male technician, who earlier gave "Fargo" (1996) a 5, rates the '
        'movie "Jaws" (1975), a Drama film, on a scale of 1 to 5. Rating:'
    )
    # The single-prompt builder writes the same text.
    assert prompts[0] == rating_prompt(
        24, "M", "technician", "Toy Story", 1995, ["Drama"],
        history=[("Fargo", 1996, 5.0), ("Babe", 0, 2.0)])


def test_user_without_earlier_train_ratings_gets_no_history_clause():
    # User 2's only train rating (t=50) is after the target (t=35).
    prompts = rating_prompts(_TEST, history=5, history_ratings=_TRAIN)
    assert prompts[1] == rating_prompts(_TEST)[1] == (
        'A 30-year-old female writer rates the movie "The Usual Suspects" (1995), a Drama '
        "film, on a scale of 1 to 5. Rating:"
    )
    assert "earlier" not in prompts[1]
    # A user absent from the history table, and an empty history table.
    other = _table([(3, 10, 2, 99, "Heat", 1995)])
    assert rating_prompts(other, 3, _TRAIN).tolist() == rating_prompts(other).tolist()
    empty = _TRAIN.take(np.arange(0))
    assert rating_prompts(_TEST, 3, empty).tolist() == rating_prompts(_TEST).tolist()
    assert history_indices(_TEST, 2, empty).tolist() == [[-1, -1]] * 3


def test_history_never_lists_the_target_movie_or_the_target_rating():
    # A train target: its own row has its timestamp and is left out.
    assert rating_prompts(_TRAIN, 5, _TRAIN)[3].count('"Casino"') == 1
    # A history table with an earlier rating of the target movie (not in ML-100K):
    # it is skipped and the K slots are filled with the next earlier ratings.
    rerated = _table([
        (1, 10, 4, 10, "Heat", 1995), (1, 11, 5, 20, "Fargo", 1996),
        (1, 14, 2, 30, "Toy Story", 1995), (1, 14, 3, 35, "Toy Story", 1995),
    ])
    prompt = rating_prompts(_TEST.take(np.array([0])), 2, rerated)[0]
    assert prompt.count("Toy Story") == 1
    assert 'who earlier gave "Heat" (1995) a 4 and "Fargo" (1996) a 5,' in prompt


def test_history_zero_gives_the_prompts_without_history_byte_for_byte(tmp_path):
    def old_rating_prompts(table):  # rating_prompts before history existed, verbatim
        _, user_first, user_row = np.unique(table.user_id, return_index=True,
                                            return_inverse=True)
        _, movie_first, movie_row = np.unique(table.movie_id, return_index=True,
                                              return_inverse=True)
        users = np.array([user_phrase(table.user_age[i], table.user_gender[i],
                                      table.user_occupation[i]) for i in user_first] or [""])
        movies = np.array([movie_phrase(table.movie_title[i], table.movie_year[i],
                                        table.movie_genres[i]) for i in movie_first] or [""])
        out = np.strings.add(users[user_row.reshape(-1)], " rates the movie ")
        out = np.strings.add(out, movies[movie_row.reshape(-1)])
        return np.strings.add(out, " on a scale of 1 to 5. Rating:")

    data = load_movielens(movielens_dir=write_synthetic_ml100k(tmp_path), split_seed=42)
    train = data.tables["train"]
    for split in ("train", "validation", "test"):
        table = data.tables[split]
        old = old_rating_prompts(table)
        for new in (rating_prompts(table), rating_prompts(table, history=0),
                    rating_prompts(table, history=0, history_ratings=train),
                    data.prompts(split), data.prompts(split, history=0)):
            assert new.dtype == old.dtype and new.tolist() == old.tolist()
            assert [p.encode("utf-8") for p in new] == [p.encode("utf-8") for p in old]


def test_history_arguments_are_checked():
    with pytest.raises(ValueError, match="history_ratings"):
        rating_prompts(_TEST, history=3)
    with pytest.raises(ValueError, match=">= 0"):
        rating_prompts(_TEST, history=-1, history_ratings=_TRAIN)


@pytest.mark.parametrize("k", [1, 3, 8])
def test_history_is_train_only_strictly_earlier_and_the_latest(tmp_path, k):
    """Every rating is its own movie "R<row>", so a prompt names the rows it lists."""
    table = load_movielens_100k(write_synthetic_ml100k(tmp_path, num_ratings=900, seed=3))
    n = len(table)
    columns = table.columns()
    columns["movie_id"] = np.arange(n, dtype=np.int64) + 1
    columns["movie_title"] = np.array([f"R{i}" for i in range(n)])
    # Coarse timestamps: many ratings of one user share a second (ties).
    columns["timestamp"] = columns["timestamp"] // 20_000_000
    table = RatingsTable(**columns).canonical_order()
    row_of = {int(m) - 1: i for i, m in enumerate(table.movie_id)}  # R<row> -> position
    split_of = np.empty(n, object)
    train, validation, test = split_ratings(table, seed=7)
    for name, part in (("train", train), ("validation", validation), ("test", test)):
        split_of[[row_of[int(m) - 1] for m in part.movie_id]] = name
    assert len(set(table.timestamp.tolist())) < n // 3  # there are ties
    listed_total, full, ties = 0, 0, 0
    for name, part in (("train", train), ("validation", validation), ("test", test)):
        prompts = rating_prompts(part, history=k, history_ratings=train)
        for i, prompt in enumerate(prompts):
            target = row_of[int(part.movie_id[i]) - 1]
            named = [row_of[int(x)] for x in re.findall(r'"R(\d+)"', prompt)]
            assert named[-1] == target
            assert prompt.count(f'"R{int(part.movie_id[i]) - 1}"') == 1
            listed = named[:-1]
            assert target not in listed
            for h in listed:
                assert split_of[h] == "train"
                assert table.user_id[h] == table.user_id[target]
                assert table.timestamp[h] < table.timestamp[target]
            # The K latest eligible train ratings, oldest first (ties by movie id).
            eligible = [h for h in np.flatnonzero(
                (table.user_id == table.user_id[target])
                & (table.timestamp < table.timestamp[target])) if split_of[h] == "train"]
            eligible.sort(key=lambda h: (table.timestamp[h], table.movie_id[h]))
            expected = eligible[-k:] if eligible else []
            assert listed == expected
            assert prompt == rating_prompt(
                part.user_age[i], part.user_gender[i], part.user_occupation[i],
                part.movie_title[i], part.movie_year[i], part.movie_genres[i],
                history=[(table.movie_title[h], table.movie_year[h], table.rating[h])
                         for h in expected])
            listed_total += len(listed)
            full += len(listed) == k
            ties += sum(split_of[h] == "train" and h != target for h in np.flatnonzero(
                (table.user_id == table.user_id[target])
                & (table.timestamp == table.timestamp[target])))
            if not expected:
                assert "earlier" not in prompt
    assert listed_total > n // 2 and full  # the test exercised real histories
    assert ties  # and train ratings in the target's second, left out
