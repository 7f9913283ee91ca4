"""Students: Keras models with representation / hidden / head read-outs."""

from diverse_distill.students.mlp_student import MLPStudent
from diverse_distill.students.student import Student, validate_student

__all__ = ["MLPStudent", "Student", "validate_student"]
