"""Student-only SavedModel export."""

import keras
import tensorflow as tf

from diverse_distill.models.functional_graph import functional_inputs


def _input_signature_from_student(student):
    names = getattr(student, "categorical_features", None)
    if names is None:
        return _input_signature_from_graph(student)
    signature = {n: tf.TensorSpec((None,), tf.int32, name=n) for n in student.categorical_features}
    for n, width in getattr(student, "numeric_features", {}).items():
        signature[n] = tf.TensorSpec((None, width), tf.float32, name=n)
    return [signature]


def _input_signature_from_graph(model):
    """`[TensorSpec structure]` from a functional model's inputs, or `None`."""
    try:
        inputs = functional_inputs(model, owner="export_student")
    except ValueError:
        return None
    return [tf.nest.map_structure(
        lambda t: tf.TensorSpec(t.shape, t.dtype, name=t.name), inputs
    )]


def export_student(student, filepath, input_signature=None):
    """Writes `student` alone (inputs -> prediction) as a TF SavedModel.

    Only the student's variables are tracked, so the SavedModel holds
    nothing of the teachers or of the distillation module. It serves one
    endpoint, `serve` (also the `serving_default` signature). A student that
    wraps a plain model names it `serving_model` (`KerasStudent` does); that
    model, inputs to prediction, is what is written.

    Args:
        student: a built Keras model.
        filepath: str. Output directory.
        input_signature: list of `tf.TensorSpec` structures or `None`. Read
            from the student's features when it is an `MLPRecommender`, from
            the model's inputs when it is functional; required otherwise.

    Returns:
        `filepath`.

    Example:
    ```python
    student = MLPStudent({"user_id": 10, "item_id": 20}, embedding_dims=4)
    export_student(student, "/tmp/student")
    reloaded = tf.saved_model.load("/tmp/student")
    reloaded.serve({"user_id": tf.constant([1]), "item_id": tf.constant([2])}).shape  # (1, 1)
    ```
    """
    student = getattr(student, "serving_model", student)
    if input_signature is None:
        input_signature = _input_signature_from_student(student)
    if input_signature is None:
        raise ValueError(
            "Cannot infer the student's input signature: pass `input_signature`, "
            "e.g. [{'user_id': tf.TensorSpec((None,), tf.int32)}]."
        )
    archive = keras.export.ExportArchive()
    archive.track(student)
    archive.add_endpoint(
        name="serve",
        fn=lambda x: student(x, training=False),
        input_signature=input_signature,
    )
    archive.write_out(filepath, verbose=False)
    return filepath
