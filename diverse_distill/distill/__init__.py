"""DiverseDistill training: the distillation model and its losses."""

from diverse_distill.distill.distillation_model import DistillationModel
from diverse_distill.distill.losses import per_sample_loss_fn
from diverse_distill.distill.prefix_cache import PrefixCache
from diverse_distill.distill.student_distiller import StudentDistiller

__all__ = ["DistillationModel", "PrefixCache", "StudentDistiller", "per_sample_loss_fn"]
