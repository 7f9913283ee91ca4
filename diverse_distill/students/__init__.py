"""Students: Keras models with representation / hidden / head read-outs."""

from diverse_distill.students.keras_student import KerasStudent
from diverse_distill.students.mlp_student import MLPStudent
from diverse_distill.students.student import Student, validate_student

__all__ = ["KerasStudent", "MLPStudent", "Student", "validate_student"]
