"""Jobs: the pipeline behind `bin/train` (one job; a `Task` per dataset)."""

from diverse_distill.pipeline.job import DistillationJob
from diverse_distill.pipeline.job_config import JobConfig
from diverse_distill.pipeline.movielens_job import MovieLensJob

__all__ = ["DistillationJob", "JobConfig", "MovieLensJob"]
