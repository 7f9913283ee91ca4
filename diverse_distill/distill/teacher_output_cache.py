"""A dataset-level cache of a frozen teacher's own outputs (offline distillation)."""

import tensorflow as tf

from diverse_distill.distill.prefix_cache import PrefixCache


class TeacherOutputCache(PrefixCache):
    """Computes a frozen teacher's hidden state and prediction once per example.

    Methods that read only the *unmodified* teacher (prediction distillation,
    feature distillation, averaged or weighted teacher ensembles: every
    baseline in `diverse_distill.baselines`) need, per example, a value that
    never changes during distillation: the teacher is frozen and called with
    `training=False`. This cache computes it once for a split,
    `(hidden, prediction) = suffix(native_question(x, c), c)` with
    `c = prefix(x)` (the split teacher's own forward pass, read at its answer
    point), and serves the rows of a batch as features under
    `"<teacher>/output/0"` (hidden) and `"<teacher>/output/1"` (prediction).
    A baseline given the cache (`output_caches=[...]`) reads them instead of
    running the teacher: a language-model teacher then costs nothing per
    step. DiverseDistill cannot use it (its teachers answer a new question
    every step); it caches the prefix instead (`PrefixCache`).

    Args:
        teacher: a split teacher (`diverse_distill.teachers.SplitTeacher`).
        storage_dtype: `"float32"` (exact, the default) or `"float16"`.
        directory: str or `None`. Where to memory-map the arrays; `None`
            keeps them in memory. Defaults to `None`.
        prefix_cache: a built `PrefixCache` of the same teacher, or `None`.
            When the rows given to `build` carry its features, the teacher's
            prefix is read from it instead of being computed again.

    Example:
    ```python
    teacher = BertTeacher.tiny(num_layers=2)
    x = {"bert_token_ids": np.random.randint(1, 64, (10, 8)),
         "bert_padding_mask": np.ones((10, 8), "int32")}
    cache = TeacherOutputCache(teacher).build(x, batch_size=4)
    hidden, prediction = cache.outputs({**x, **cache.features()})
    prediction.shape  # (10, 1), equal to teacher(x)
    ```
    """

    kind = "output"

    def __init__(self, teacher, storage_dtype="float32", directory=None, prefix_cache=None):
        for attribute in ("prefix", "suffix", "native_question"):
            if not hasattr(teacher, attribute):
                raise ValueError(
                    f"TeacherOutputCache needs a split teacher (with `{attribute}`); "
                    f"got {type(teacher).__name__}."
                )
        super().__init__(teacher, storage_dtype=storage_dtype, directory=directory)
        self.prefix_cache = prefix_cache

    def compute(self, x):
        """The unmodified teacher's `(hidden, prediction)`, float32."""
        if self.prefix_cache is not None and self.prefix_cache.covers(x):
            context = self.prefix_cache.context(x)
        else:
            context = self.teacher.prefix(x)
        hidden, prediction = self.teacher.suffix(
            self.teacher.native_question(x, context), context
        )
        return tf.cast(hidden, "float32"), tf.cast(prediction, "float32")

    def outputs(self, x):
        """`(hidden, prediction)` of the batch `x`, which holds this cache's features."""
        hidden, prediction = self.context(x)
        return tf.cast(hidden, "float32"), tf.cast(prediction, "float32")
