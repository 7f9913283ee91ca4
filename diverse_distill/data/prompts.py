"""Natural-language rating prompts for language-model teachers (e.g. Flan-T5).

One prompt per rating, in the spirit of Kang et al. 2023, "Do LLMs Understand User
Preferences? Evaluating LLMs On User Rating Prediction" (arXiv:2305.06474): the user's
profile (age, gender, occupation), the movie's title and year, and its genres, then the
question on the 1-to-5 scale. Kang et al. also list the user's past ratings in the
prompt; we do not: those ratings would have to be restricted to the train split and to
ratings earlier than the one asked (otherwise the prompt leaks labels), and they would
make the prompt several times longer than the ~48 tokens a rating prompt takes here.

Titles are shown in natural order ("Usual Suspects, The" -> "The Usual Suspects"); the
year is left out when unknown, and the genre clause when the genre is only "unknown".

Three prompts built from the real ML-100K data (`rating_prompts` on the ratings at
positions 0, 9,999 and 99,999 of the canonical order; each is one line):

    A 24-year-old male technician rates the movie "Toy Story" (1995), an Animation,
    Children's and Comedy film, on a scale of 1 to 5. Rating:

    A 48-year-old male executive rates the movie "The Preacher's Wife" (1996), a Drama
    film, on a scale of 1 to 5. Rating:

    A 22-year-old male student rates the movie "An Unforgettable Summer" (1994), a Drama
    film, on a scale of 1 to 5. Rating:

On ML-100K a prompt is 37 WordPiece tokens on average (99th percentile 47, longest 56;
uncased BERT vocabulary). Users with the same age, gender and occupation get the same
prompt for the same movie: 82,257 distinct prompts for 100,000 ratings.

Example:
```python
from diverse_distill.data import rating_prompt

prompt = rating_prompt(age=24, gender="M", occupation="technician", title="Toy Story",
                       year=1995, genres=["Animation", "Children's", "Comedy"])
print(prompt)  # the first of the three prompts above
```
"""

import re

import numpy as np

from diverse_distill.data.movielens import GENRES

_GENDERS = {"M": "male", "F": "female"}
# u.occupation value -> "A {age}-year-old {noun phrase}"; {g} is the gender word.
_OCCUPATION_PHRASES = {
    "administrator": "{g} administrator",
    "artist": "{g} artist",
    "doctor": "{g} doctor",
    "educator": "{g} educator",
    "engineer": "{g} engineer",
    "entertainment": "{g} entertainment worker",
    "executive": "{g} executive",
    "healthcare": "{g} healthcare worker",
    "homemaker": "{g} homemaker",
    "lawyer": "{g} lawyer",
    "librarian": "{g} librarian",
    "marketing": "{g} marketing professional",
    "none": "{g} with no occupation",
    "other": "{g} with another occupation",
    "programmer": "{g} programmer",
    "retired": "retired {g}",
    "salesman": "{g} salesperson",
    "scientist": "{g} scientist",
    "student": "{g} student",
    "technician": "{g} technician",
    "writer": "{g} writer",
}
# "Usual Suspects, The" -> "The Usual Suspects"; an alternative title in parentheses
# after the article stays where it is.
_TRAILING_ARTICLE = re.compile(
    r"^(?P<main>.+), (?P<article>The|A|An|La|Le|Les|Il|Das|Der|Die|El)"
    r"(?P<rest>( \(.*\))?)$"
)


def _article(word):
    """'a' or 'an' by the sound of `word` (ages: an 8-, 11-, 18-, 80..89-year-old)."""
    if word[:1].isdigit():
        n = int(re.match(r"\d+", word).group())
        vowel = str(n).startswith("8") or n in (11, 18) or 1100 <= n < 1200 or 1800 <= n < 1900
    else:
        vowel = word[:1].lower() in "aeiou"
    return "an" if vowel else "a"


def natural_title(title):
    """Moves a trailing article to the front: `"Usual Suspects, The"` -> `"The Usual Suspects"`.

    Args:
        title: str. A GroupLens title without its year.

    Returns:
        str.
    """
    m = _TRAILING_ARTICLE.match(title)
    if not m:
        return title
    return f"{m['article']} {m['main']}{m['rest']}"


def user_phrase(age, gender, occupation):
    """`"A 24-year-old male technician"`: the user's profile, capitalised.

    Args:
        age: int. Age in years.
        gender: str. `"M"` or `"F"`.
        occupation: str. A u.occupation value (other strings are used as they are).

    Returns:
        str.
    """
    g = _GENDERS.get(gender, "person")
    who = _OCCUPATION_PHRASES.get(occupation, "{g} " + str(occupation)).format(g=g)
    return f"{_article(str(int(age))).capitalize()} {int(age)}-year-old {who}"


def movie_phrase(title, year=0, genres=()):
    """`'"Toy Story" (1995), an Animation, Children's and Comedy film,'` (or without year/genres).

    Args:
        title: str. Title without the year.
        year: int. 0 when unknown. Defaults to `0`.
        genres: iterable of genre names, or a multi-hot vector over `GENRES`.
            `"unknown"` is left out. Defaults to `()`.

    Returns:
        str.
    """
    genres = list(genres)
    if genres and not isinstance(genres[0], str):
        genres = [name for name, flag in zip(GENRES, genres) if flag]
    genres = [g for g in genres if g != "unknown"]
    text = f'"{natural_title(title)}"'
    if int(year) > 0:
        text += f" ({int(year)})"
    if genres:
        listed = genres[0] if len(genres) == 1 else ", ".join(genres[:-1]) + " and " + genres[-1]
        text += f", {_article(listed)} {listed} film,"
    return text


def rating_prompt(age, gender, occupation, title, year=0, genres=()):
    """One rating prompt: the user's profile, the movie, the question.

    Args:
        age: int. User age in years.
        gender: str. `"M"` or `"F"`.
        occupation: str. A u.occupation value, e.g. `"technician"`.
        title: str. Movie title without the year.
        year: int. Movie year, 0 when unknown. Defaults to `0`.
        genres: iterable of genre names or a 19-dim multi-hot vector. Defaults to `()`.

    Returns:
        str. Deterministic; ends with `"Rating:"`.

    Example:
    ```python
    from diverse_distill.data import rating_prompt

    rating_prompt(30, "F", "writer", "Usual Suspects, The", 1995, ["Crime", "Thriller"])
    # 'A 30-year-old female writer rates the movie "The Usual Suspects" (1995), a Crime
    #  and Thriller film, on a scale of 1 to 5. Rating:'  (one line)
    ```
    """
    return _join(user_phrase(age, gender, occupation), movie_phrase(title, year, genres))


_MIDDLE = " rates the movie "
_END = " on a scale of 1 to 5. Rating:"


def _join(user, movie):
    return user + _MIDDLE + movie + _END


def rating_prompts(table):
    """`rating_prompt` for every row of a `RatingsTable`, vectorised over users and movies.

    Args:
        table: `RatingsTable` (or any object with its user/movie columns).

    Returns:
        numpy array of str, one prompt per row, in the table's order.

    Example:
    ```python
    import tempfile
    from diverse_distill.data import (load_movielens_100k, rating_prompts,
                                      write_synthetic_ml100k)

    table = load_movielens_100k(write_synthetic_ml100k(tempfile.mkdtemp()))
    prompts = rating_prompts(table)  # prompts[i] is the prompt of table.rating[i]
    ```
    """
    _, user_first, user_row = np.unique(table.user_id, return_index=True, return_inverse=True)
    _, movie_first, movie_row = np.unique(table.movie_id, return_index=True, return_inverse=True)
    users = np.array(
        [user_phrase(table.user_age[i], table.user_gender[i], table.user_occupation[i])
         for i in user_first] or [""]
    )
    movies = np.array(
        [movie_phrase(table.movie_title[i], table.movie_year[i], table.movie_genres[i])
         for i in movie_first] or [""]
    )
    out = np.strings.add(users[user_row.reshape(-1)], _MIDDLE)
    out = np.strings.add(out, movies[movie_row.reshape(-1)])
    return np.strings.add(out, _END)
