"""Data: MovieLens-100K (local GroupLens folder or TFDS), rating prompts, synthetic data.

Example:
```python
import tempfile
from diverse_distill.data import load_movielens, write_synthetic_ml100k

# With the real data: load_movielens(movielens_dir="/path/to/ml-100k", split_seed=42)
data = load_movielens(movielens_dir=write_synthetic_ml100k(tempfile.mkdtemp()), split_seed=42)
train_ds = data.as_dataset("train", batch_size=64, shuffle=True, seed=0, repeat=True)
prompts = data.prompts("train")
```
"""

from diverse_distill.data.movielens import (
    AGE_BUCKETS,
    CATEGORICAL_FEATURES,
    GENRES,
    ML_100K_URL,
    NUMERIC_FEATURES,
    OCCUPATIONS,
    SPLITS,
    TFDS_NAME,
    MovieLensData,
    MovieLensFileNotFoundError,
    MovieLensFormatError,
    RatingsTable,
    load_movielens,
    load_movielens_100k,
    prefill_tfds_download_cache,
    split_ratings,
    split_sizes,
    split_title_year,
)
from diverse_distill.data.prompts import rating_prompt, rating_prompts
from diverse_distill.data.synthetic import make_synthetic_tfds_cache, write_synthetic_ml100k

__all__ = [
    "AGE_BUCKETS",
    "CATEGORICAL_FEATURES",
    "GENRES",
    "ML_100K_URL",
    "NUMERIC_FEATURES",
    "OCCUPATIONS",
    "SPLITS",
    "TFDS_NAME",
    "MovieLensData",
    "MovieLensFileNotFoundError",
    "MovieLensFormatError",
    "RatingsTable",
    "load_movielens",
    "load_movielens_100k",
    "make_synthetic_tfds_cache",
    "prefill_tfds_download_cache",
    "rating_prompt",
    "rating_prompts",
    "split_ratings",
    "split_sizes",
    "split_title_year",
    "write_synthetic_ml100k",
]
