"""Natural-language rating prompts for language-model teachers (e.g. Flan-T5).

One prompt per rating, in the spirit of Kang et al. 2023, "Do LLMs Understand User
Preferences? Evaluating LLMs On User Rating Prediction" (arXiv:2305.06474): the user's
profile (age, gender, occupation), the movie's title and year, and its genres, then the
question on the 1-to-5 scale. Like Kang et al., `rating_prompts(..., history=K)` can
also list the user's K most recent earlier ratings (`--prompt_history=K`); to leak no
label they come from the train split only, strictly before the rating asked, and never
name the target movie. They make a prompt ~2.5x longer (MiniLM tokens, train split: mean
39 at K=0, 98 at K=5; docs/data.md), so pair them with `--lm_sequence_length=0`.

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


def history_phrase(history):
    """`'who earlier gave "Heat" (1995) a 4 and "Fargo" (1996) a 5'`: past ratings, in order.

    Args:
        history: sequence of `(title, year, rating)`, oldest first. `year` 0 = unknown;
            `rating` a number in 1..5 (written without decimals when whole).

    Returns:
        str, `""` when `history` is empty.
    """
    items = [f"{movie_phrase(title, year)} a {_rating_text(rating)}"
             for title, year, rating in history]
    if not items:
        return ""
    listed = items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
    return _HISTORY_START + listed


def rating_prompt(age, gender, occupation, title, year=0, genres=(), history=()):
    """One rating prompt: the user's profile, their past ratings if any, the movie, the question.

    Args:
        age: int. User age in years.
        gender: str. `"M"` or `"F"`.
        occupation: str. A u.occupation value, e.g. `"technician"`.
        title: str. Movie title without the year.
        year: int. Movie year, 0 when unknown. Defaults to `0`.
        genres: iterable of genre names or a 19-dim multi-hot vector. Defaults to `()`.
        history: sequence of the user's earlier ratings `(title, year, rating)`, oldest
            first (see `rating_prompts(..., history=K)` for how they are chosen without
            leaking labels). Empty: the prompt has no history clause. Defaults to `()`.

    Returns:
        str. Deterministic; ends with `"Rating:"`.

    Example:
    ```python
    from diverse_distill.data import rating_prompt

    rating_prompt(30, "F", "writer", "Usual Suspects, The", 1995, ["Crime", "Thriller"])
    # 'A 30-year-old female writer rates the movie "The Usual Suspects" (1995), a Crime
    #  and Thriller film, on a scale of 1 to 5. Rating:'  (one line)
    rating_prompt(30, "F", "writer", "Usual Suspects, The", 1995, ["Crime", "Thriller"],
                  history=[("Heat", 1995, 4), ("Fargo", 1996, 5)])
    # 'A 30-year-old female writer, who earlier gave "Heat" (1995) a 4 and "Fargo" (1996)
    #  a 5, rates the movie "The Usual Suspects" (1995), a Crime and Thriller film, on a
    #  scale of 1 to 5. Rating:'  (one line)
    ```
    """
    user = user_phrase(age, gender, occupation)
    clause = history_phrase(history)
    if clause:
        user += ", " + clause + ","
    return _join(user, movie_phrase(title, year, genres))


_MIDDLE = " rates the movie "
_END = " on a scale of 1 to 5. Rating:"
_HISTORY_START = "who earlier gave "


def _join(user, movie):
    return user + _MIDDLE + movie + _END


def _rating_text(rating):
    rating = float(rating)
    return str(int(rating)) if rating.is_integer() else f"{rating:g}"


def rating_prompts(table, history=0, history_ratings=None):
    """`rating_prompt` for every row of a `RatingsTable`, vectorised over users and movies.

    With `history=K > 0`, each prompt lists the user's K most recent ratings in
    `history_ratings` (pass the **train** split) that are strictly earlier than the rating
    asked: `timestamp < the row's timestamp`. A rating with the same timestamp as the
    target is left out (MovieLens timestamps are seconds, and a user often rates several
    movies in the same second; "strictly before" keeps all of them out, and with them the
    target rating itself when the target is a train rating). A rating of the target movie
    is never listed either (ML-100K has one rating per user and movie; this guards
    tables with repeated ratings). The listed ratings are in time order, oldest first
    (ties in time by movie id). A user with no such rating gets no history clause: the
    prompt is then exactly the `history=0` prompt.

    Args:
        table: `RatingsTable` (or any object with its user/movie columns and
            `timestamp`): the ratings to build prompts for.
        history: int. How many earlier ratings to list; `0` gives the prompts without
            history (byte-identical to those of earlier versions). Defaults to `0`.
        history_ratings: `RatingsTable` or None. Where the listed ratings come from:
            the train split, so that no validation or test label enters a prompt.
            Required when `history > 0`. Defaults to `None`.

    Returns:
        numpy array of str, one prompt per row, in the table's order.

    Example:
    ```python
    import tempfile
    from diverse_distill.data import (load_movielens, load_movielens_100k, rating_prompts,
                                      write_synthetic_ml100k)

    folder = write_synthetic_ml100k(tempfile.mkdtemp())
    prompts = rating_prompts(load_movielens_100k(folder))  # prompts[i]: table.rating[i]
    data = load_movielens(movielens_dir=folder, split_seed=42)
    test_prompts = rating_prompts(data.tables["test"], history=5,
                                  history_ratings=data.tables["train"])
    # or: data.prompts("test", history=5)
    ```
    """
    history = int(history)
    if history < 0:
        raise ValueError(f"`history` must be >= 0, got {history}")
    if history > 0 and history_ratings is None:
        raise ValueError(
            "`history > 0` needs `history_ratings`: the train split's RatingsTable "
            "(e.g. data.tables['train']), so that no held-out rating enters a prompt."
        )
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
    user_of_row, movie_of_row = users[user_row.reshape(-1)], movies[movie_row.reshape(-1)]
    if history > 0 and len(table) and len(history_ratings):
        clauses = _history_clauses(table, history, history_ratings)
        return np.array([user + clause + _MIDDLE + movie + _END for user, clause, movie
                         in zip(user_of_row.tolist(), clauses, movie_of_row.tolist())])
    out = np.strings.add(user_of_row, _MIDDLE)
    out = np.strings.add(out, movie_of_row)
    return np.strings.add(out, _END)


def history_indices(table, history, history_ratings):
    """For each row of `table`, the rows of `history_ratings` its prompt lists.

    The same selection as `rating_prompts(table, history, history_ratings)`: the user's
    `history` latest ratings in `history_ratings` with a timestamp strictly smaller than
    the row's, other than of the row's movie, oldest first.

    Args:
        table: `RatingsTable`. The target ratings.
        history: int >= 1. K.
        history_ratings: `RatingsTable`. The train split.

    Returns:
        int64 array `(len(table), history)`: row indices into `history_ratings`, aligned
        to the right (the last column is the most recent rating); `-1` pads rows with
        fewer than `history` ratings on the left.
    """
    n, k = len(table), int(history)
    out = np.full((n, k), -1, np.int64)
    if n == 0 or k == 0 or len(history_ratings) == 0:
        return out
    h_user = np.asarray(history_ratings.user_id)
    h_time = np.asarray(history_ratings.timestamp, np.int64)
    h_movie = np.asarray(history_ratings.movie_id)
    # One sortable int64 key per (user, time): user rank and dense time rank, both
    # over the union of the two tables, so the key cannot overflow.
    user_ids, user_rank = np.unique(
        np.concatenate([np.asarray(table.user_id), h_user]), return_inverse=True)
    times, time_rank = np.unique(
        np.concatenate([np.asarray(table.timestamp, np.int64), h_time]), return_inverse=True)
    key = user_rank.reshape(-1).astype(np.int64) * len(times) + time_rank.reshape(-1)
    t_key, h_key = key[:n], key[n:]
    t_user = user_rank.reshape(-1)[:n].astype(np.int64)
    order = np.lexsort((h_movie, h_key))  # by user, time, then movie id
    sorted_key = h_key[order]
    end = np.searchsorted(sorted_key, t_key, side="left")  # first with time >= target's
    start = np.searchsorted(sorted_key, t_user * len(times), side="left")  # user's first
    # A window of k + (most ratings of one movie by one user) candidates before `end`
    # holds the k latest after the target movie's own ratings are dropped.
    _, h_movie_rank = np.unique(h_movie, return_inverse=True)
    h_user_rank = user_rank.reshape(-1)[n:].astype(np.int64)
    pairs = np.unique(h_user_rank * (int(h_movie_rank.max()) + 1) + h_movie_rank.reshape(-1),
                      return_counts=True)[1]
    width = k + int(pairs.max())
    candidates = end[:, None] - width + np.arange(width)[None, :]
    valid = candidates >= start[:, None]
    rows = order[np.clip(candidates, 0, len(order) - 1)]
    valid &= h_movie[rows] != np.asarray(table.movie_id)[:, None]
    # Keep the last k valid candidates of each row, aligned to the right.
    from_right = np.cumsum(valid[:, ::-1], axis=1)[:, ::-1]  # valid ones at or after
    keep = valid & (from_right <= k)
    column = k - from_right  # from_right in 1..k -> column k-1..0
    r, c = np.nonzero(keep)
    out[r, column[r, c]] = rows[r, c]
    return out


def _history_clauses(table, history, history_ratings):
    """`', who earlier gave ... a 4,'` per row of `table` (`""` without earlier ratings)."""
    index = history_indices(table, history, history_ratings)
    # One item string per (movie, rating) of the history table.
    _, movie_first, movie_row = np.unique(
        np.asarray(history_ratings.movie_id), return_index=True, return_inverse=True)
    ratings, rating_row = np.unique(np.asarray(history_ratings.rating), return_inverse=True)
    titles = [movie_phrase(history_ratings.movie_title[i], history_ratings.movie_year[i])
              for i in movie_first]
    items = [f"{title} a {_rating_text(r)}" for title in titles for r in ratings]
    item_of_row = (movie_row.reshape(-1) * len(ratings) + rating_row.reshape(-1)).tolist()
    clauses = []
    for row in index.tolist():  # numpy's string ufuncs are slower on these long strings
        listed = [items[item_of_row[j]] for j in row if j >= 0]
        if not listed:
            clauses.append("")
        elif len(listed) == 1:
            clauses.append(", " + _HISTORY_START + listed[0] + ",")
        else:
            clauses.append(", " + _HISTORY_START + ", ".join(listed[:-1]) + " and "
                           + listed[-1] + ",")
    return clauses
