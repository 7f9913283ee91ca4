"""DiverseDistill's distillation-module layers."""

from diverse_distill.layers.answer_augmenter import AnswerAugmenter
from diverse_distill.layers.question_augmenter import QuestionAugmenter

__all__ = ["AnswerAugmenter", "QuestionAugmenter"]
