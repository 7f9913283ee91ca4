"""Data: MovieLens-100K (local GroupLens folder or TFDS), rating prompts, synthetic data,
and images for the vision path (Fashion-MNIST idx files, CIFAR-10/100 archives or TFDS).

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

from diverse_distill.data.images import (
    AUGMENTATIONS,
    CIFAR10_CLASSES,
    CIFAR_ARCHIVES,
    CIFAR_NAMES,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIR,
    IDX_FILES,
    IDX_IMAGES_MAGIC,
    IDX_LABELS_MAGIC,
    ImageData,
    ImageFileNotFoundError,
    ImageFormatError,
    augmentation,
    load_cifar,
    load_fashion_mnist,
    read_idx,
    split_train_validation,
    write_idx,
    write_synthetic_cifar,
    write_synthetic_fashion_mnist,
)
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
    "AUGMENTATIONS",
    "CATEGORICAL_FEATURES",
    "CIFAR10_CLASSES",
    "CIFAR_ARCHIVES",
    "CIFAR_NAMES",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DIR",
    "GENRES",
    "IDX_FILES",
    "IDX_IMAGES_MAGIC",
    "IDX_LABELS_MAGIC",
    "ImageData",
    "ImageFileNotFoundError",
    "ImageFormatError",
    "ML_100K_URL",
    "NUMERIC_FEATURES",
    "OCCUPATIONS",
    "SPLITS",
    "TFDS_NAME",
    "MovieLensData",
    "MovieLensFileNotFoundError",
    "MovieLensFormatError",
    "RatingsTable",
    "augmentation",
    "load_cifar",
    "load_fashion_mnist",
    "load_movielens",
    "load_movielens_100k",
    "make_synthetic_tfds_cache",
    "prefill_tfds_download_cache",
    "rating_prompt",
    "rating_prompts",
    "read_idx",
    "split_ratings",
    "split_sizes",
    "split_title_year",
    "split_train_validation",
    "write_idx",
    "write_synthetic_cifar",
    "write_synthetic_fashion_mnist",
    "write_synthetic_ml100k",
]
