"""Baselines in the same harness as `DistillationModel`.

Every method is a `keras.Model` with the `DistillationModel` life cycle,
`Cls(student, teachers, **hparams)`, `compile`, `fit`, `evaluate` (the
student alone) and `export_student`, and is registered under a short name:

| name | class | paper |
|---|---|---|
| `ld` | `LogitDistillation` | Hinton et al. 2015 |
| `fd` | `FeatureDistillation` | Romero et al. 2015 (FitNets) |
| `sckd` | `StudentCustomizedDistillation` | Zhu & Wang, ICCV 2021 |
| `mt` | `MultiTeacherDistillation` | You et al., KDD 2017 |
| `amtml` | `AdaptiveMultiTeacherMultiLevelDistillation` | Liu et al. 2020 |
| `autoskd` | `StochasticTeacherDistillation` | Ding et al. 2023 (AutoSKDBERT) |
| `aekd` | `AdaptiveEnsembleDistillation` | Du et al., NeurIPS 2020 |
| `diverse_distill` | `DistillationModel` | this project |
"""

from diverse_distill.baselines.registry import available_methods, get_method, register_method
from diverse_distill.baselines.baseline_distiller import BaselineDistiller
from diverse_distill.baselines.ld import LogitDistillation
from diverse_distill.baselines.fd import FeatureDistillation
from diverse_distill.baselines.sckd import StudentCustomizedDistillation
from diverse_distill.baselines.mt import MultiTeacherDistillation
from diverse_distill.baselines.amtml import AdaptiveMultiTeacherMultiLevelDistillation
from diverse_distill.baselines.autoskd import StochasticTeacherDistillation
from diverse_distill.baselines.aekd import (
    AdaptiveEnsembleDistillation,
    capped_simplex_min_norm,
    project_to_capped_simplex,
)

__all__ = [
    "AdaptiveEnsembleDistillation",
    "AdaptiveMultiTeacherMultiLevelDistillation",
    "BaselineDistiller",
    "FeatureDistillation",
    "LogitDistillation",
    "MultiTeacherDistillation",
    "StochasticTeacherDistillation",
    "StudentCustomizedDistillation",
    "available_methods",
    "capped_simplex_min_norm",
    "get_method",
    "project_to_capped_simplex",
    "register_method",
]
