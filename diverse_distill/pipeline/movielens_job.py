"""`MovieLensJob`: the name the MovieLens job had before the job served every task."""

from diverse_distill.pipeline.job import DistillationJob


class MovieLensJob(DistillationJob):
    """A `DistillationJob` (kept for code written against this name; any `--task` works).

    Example:
    ```python
    from diverse_distill.pipeline.job import DistillationJob
    from diverse_distill.pipeline.movielens_job import MovieLensJob
    assert issubclass(MovieLensJob, DistillationJob)
    ```
    """
