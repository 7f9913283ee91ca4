"""Tests for diverse_distill.data.prompts."""

import os
import pathlib
import re

import numpy as np
import pytest

from diverse_distill.data import (
    GENRES,
    load_movielens_100k,
    rating_prompt,
    rating_prompts,
    write_synthetic_ml100k,
)
from diverse_distill.data import prompts as prompts_module
from diverse_distill.data.prompts import movie_phrase, natural_title, user_phrase

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
