"""DiverseDistill training: the distillation model and its losses."""

from diverse_distill.distill.distillation_model import DistillationModel
from diverse_distill.distill.losses import per_sample_loss_fn
from diverse_distill.distill.prefix_cache import PrefixCache

__all__ = ["DistillationModel", "PrefixCache", "per_sample_loss_fn"]
