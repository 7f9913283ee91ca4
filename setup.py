"""diverse_distill: DiverseDistill for Keras 3 / TensorFlow."""

import pathlib

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent

setup(
    name="diverse_distill",
    version="0.1.0",
    description=(
        "Distil a committee of frozen, diverse teachers (foundation models and "
        "domain experts) into a small student with DiverseDistill (Keras 3 / TF)."
    ),
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["diverse_distill", "diverse_distill.*"]),
    scripts=["bin/train"],
    install_requires=[
        # Measured together on 2026-11-25 (Python 3.11, CPU).
        "tensorflow==2.21.*",  # the full wheel: tensorflow-text needs it
        "keras>=3.12,<3.16",
        "keras-hub==0.32.*",
        "keras-rs==0.4.*",
        "tensorflow-datasets>=4.9,<5",
        "importlib_resources",  # tfds.load needs it
        "safetensors",  # HF-format checkpoints (all-MiniLM-L6-v2)
        "absl-py>=2",
        "numpy>=1.26",
        "matplotlib>=3.8",
        "tensorboard",  # tensorflow 2.21 no longer pulls it; bin/train logs to it
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-xdist>=3.5"],  # the suite runs on 2 workers (pytest.ini)
    },
)
