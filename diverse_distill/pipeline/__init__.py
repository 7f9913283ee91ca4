"""Jobs: the MovieLens pipeline behind `bin/train`."""

from diverse_distill.pipeline.job_config import JobConfig
from diverse_distill.pipeline.movielens_job import MovieLensJob

__all__ = ["JobConfig", "MovieLensJob"]
