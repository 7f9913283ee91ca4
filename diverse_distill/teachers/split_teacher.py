"""The split-teacher contract: a frozen teacher cut at its injection point."""

import keras


class SplitTeacher(keras.Model):
    """Base class of a frozen teacher cut at its injection point.

    A DiverseDistill teacher is used in two ways: as the unmodified model
    (`call(x)`, which `predict(x)` uses, for the teacher's own score and for
    logit-based baselines) and split in two at its *injection point*:

    - `prefix(x)` returns the *context*: everything the teacher computes
      before the injection point that does not depend on the question (for
      an MLP teacher nothing, for T5 the encoder output, for BERT the token
      states below the injection layer). It is a pure function of `x` and
      may be cached.
    - `suffix(question, context)` runs the teacher from the injection point
      with `question` in place of its own hidden state there and returns
      `(hidden, prediction)`: its last-layer hidden state (the *answer*) and
      its own head's prediction.
    - `native_question(x, context)` is the teacher's own hidden state at the
      injection point, so that `suffix(native_question(x, c), c)` equals the
      unsplit teacher: the test every adapter passes.

    Subclasses implement `prefix`, `suffix`, `native_question` and set
    `injection_dim` and `answer_dim`. A teacher is trainable when built (it
    is fine-tuned first with a plain `fit` on `call(x)`);
    `DistillationModel` calls `freeze()` on it, and calls it with
    `training=False` only, so Dropout never runs inside a teacher.

    The context is a nested structure (dict, tuple or tensor) whose leaves
    all have the batch as their first axis, or `None`; that is what lets the
    distillation model gather the rows a teacher keeps when it skips
    low-importance samples.

    Args:
        injection_dim: int. Width of the hidden state the question replaces.
        answer_dim: int. Width of the last-layer hidden state (the answer).
        **kwargs: passed to `keras.Model` (e.g. `name`).
    """

    # Whether `prefix` may run a batch trimmed to its longest row: every context leaf
    # with the tokens on axis 1 and trailing padding masked. `PrefixCache` then skips
    # the padding (`padding_mask_key=teacher.padding_mask_key`).
    prefix_trims_padding = False

    @property
    def prefix_padding_mask_key(self):
        """The feature a `PrefixCache` trims this teacher's batches by, or `None`."""
        return self.padding_mask_key if self.prefix_trims_padding else None

    @property
    def prefix_spec(self):
        """What `prefix` computes, as a dict, or `None` when it is not described.

        Two teachers over the same weights whose specs are equal (and not `None`) have
        the same prefix, so one cache of it serves both (`teacher_factory.prefix_cache_dir`
        reuses the `--lm_finetune=last_layer` cache when the distillation split is the
        fine-tuning one). `None` here: never shared.
        """
        return None

    def __init__(self, injection_dim, answer_dim, **kwargs):
        super().__init__(**kwargs)
        self.injection_dim = int(injection_dim)
        self.answer_dim = int(answer_dim)

    def freeze(self):
        """Marks every weight of the teacher non-trainable."""
        self.trainable = False
        for layer in self._flatten_layers(include_self=False):
            layer.trainable = False
        return self

    def prefix(self, x):
        """Question-independent computation before the injection point."""
        raise NotImplementedError

    def suffix(self, question, context):
        """Runs the teacher from the injection point: `(hidden, prediction)`."""
        raise NotImplementedError

    def native_question(self, x, context):
        """The teacher's own hidden state at the injection point."""
        raise NotImplementedError

    def _checked_question(self, question, width_name):
        """`question` as a tensor; a `ValueError` unless its last dimension is
        `injection_dim` (`width_name` says what that width is, for the message)."""
        question = keras.ops.convert_to_tensor(question)
        if question.shape[-1] not in (None, self.injection_dim):
            raise ValueError(
                f"`question` must have last dimension {self.injection_dim} "
                f"({width_name}). Received shape: {question.shape}"
            )
        return question

    def call(self, x, training=False):
        """The unmodified teacher: its own prediction for `x`."""
        context = self.prefix(x)
        _, prediction = self.suffix(self.native_question(x, context), context)
        return prediction

    def answer(self, x, question):
        """Convenience: `suffix(question, prefix(x))`."""
        return self.suffix(question, self.prefix(x))
