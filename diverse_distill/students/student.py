"""The student contract: a Keras model with three read-outs."""

import keras

REQUIRED_STUDENT_ATTRIBUTES = (
    "representation",
    "hidden",
    "head",
    "representation_dim",
    "hidden_dim",
)


class Student(keras.Model):
    """Base class of a DiverseDistill student.

    A student is an ordinary Keras model (`call(x)` returns its prediction)
    with three read-outs the distillation needs:

    - `representation(x)`: the vector `s` fed to the Question Augmenter
      (for an MLP, its concatenated input embeddings), width
      `representation_dim`;
    - `hidden(x)`: its last hidden layer `h_S`, the space the teachers'
      answers are aligned to, width `hidden_dim`;
    - `head`: the layer mapping `hidden(x)` to the prediction.

    `features(x)` returns `(representation, hidden)` in one pass; subclasses
    override it when the two share computation. Any Keras model exposing the
    same five attributes works as a student; it need not subclass this one.
    """

    def representation(self, x, training=False):
        raise NotImplementedError

    def hidden(self, x, training=False):
        raise NotImplementedError

    def features(self, x, training=False):
        """Returns `(representation, hidden)` for `x`."""
        return self.representation(x, training=training), self.hidden(
            x, training=training
        )

    def call(self, x, training=False):
        return self.head(self.hidden(x, training=training))


def student_features(student, x, training=False):
    """`(representation, hidden)` of any object following the contract."""
    if hasattr(student, "features"):
        return student.features(x, training=training)
    return student.representation(x, training=training), student.hidden(
        x, training=training
    )


def validate_student(student):
    """Raises a `ValueError` naming the read-outs `student` lacks."""
    missing = [a for a in REQUIRED_STUDENT_ATTRIBUTES if not hasattr(student, a)]
    if missing:
        raise ValueError(
            f"The student {getattr(student, 'name', student)!r} lacks the "
            f"read-outs {missing}. A DiverseDistill student must expose "
            "`representation(x)`, `hidden(x)`, `head`, `representation_dim` "
            "and `hidden_dim` (see diverse_distill.students.Student)."
        )
