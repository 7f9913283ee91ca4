"""Teachers: the split-teacher contract and its adapters."""

from diverse_distill.teachers.bert_teacher import BertTeacher
from diverse_distill.teachers.clip_teacher import CLIPTeacher
from diverse_distill.teachers.keras_teacher import KerasTeacher
from diverse_distill.teachers.language_model_teacher import LanguageModelTeacher
from diverse_distill.teachers.mlp_teacher import MLPTeacher
from diverse_distill.teachers.split_teacher import SplitTeacher
from diverse_distill.teachers.t5_teacher import T5Teacher
from diverse_distill.teachers.vit_teacher import ViTTeacher

__all__ = [
    "BertTeacher",
    "CLIPTeacher",
    "KerasTeacher",
    "LanguageModelTeacher",
    "MLPTeacher",
    "SplitTeacher",
    "T5Teacher",
    "ViTTeacher",
]
