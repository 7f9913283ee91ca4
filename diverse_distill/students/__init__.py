"""Students: Keras models with representation / hidden / head read-outs."""

from diverse_distill.students.keras_student import KerasStudent
from diverse_distill.students.mlp_student import MLPStudent
from diverse_distill.students.student import Student, validate_student
from diverse_distill.students.vit_student import ViTStudent

__all__ = ["KerasStudent", "MLPStudent", "Student", "ViTStudent", "validate_student"]
