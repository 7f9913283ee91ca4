"""diverse_distill: distil a committee of frozen, diverse teachers into a small student.

Example:
```python
import diverse_distill as dd
features = {"user_id": 50, "movie_id": 80}
student = dd.MLPStudent(features, embedding_dims=8, hidden_units=(16, 8))
teachers = [
    dd.MLPTeacher(dd.MLPRecommender(features, embedding_dims=16, hidden_units=(64, 32)),
                  name="mlp_l"),
    dd.MLPTeacher(dd.MLPRecommender(features, embedding_dims=12, hidden_units=(32, 16)),
                  name="mlp_m"),
]
rng = np.random.default_rng(0)
x = {"user_id": rng.integers(0, 50, 512), "movie_id": rng.integers(0, 80, 512)}
y = rng.uniform(1, 5, (512, 1)).astype("float32")
model = dd.DistillationModel(student, teachers, alpha=0.5, beta=1.0)
model.compile(optimizer=keras.optimizers.Adagrad(0.06), loss="mse")
model.fit(x, y, batch_size=64, epochs=2, validation_split=0.1, verbose=0)
model.export_student("/tmp/student")  # a SavedModel of the student alone
```
"""

from diverse_distill.distill.distillation_model import DistillationModel
from diverse_distill.export import export_student
from diverse_distill.layers import AnswerAugmenter, QuestionAugmenter
from diverse_distill.metrics import gap_recovery_rate, regression_metrics
from diverse_distill.models import MLPRecommender
from diverse_distill.students import KerasStudent, MLPStudent, Student, ViTStudent
from diverse_distill.distill.prefix_cache import PrefixCache
from diverse_distill.teachers import (
    BertTeacher,
    CLIPTeacher,
    KerasTeacher,
    MLPTeacher,
    SplitTeacher,
    T5Teacher,
    ViTTeacher,
)

__version__ = "0.1.0"

__all__ = [
    "AnswerAugmenter",
    "BertTeacher",
    "CLIPTeacher",
    "DistillationModel",
    "KerasStudent",
    "KerasTeacher",
    "MLPRecommender",
    "MLPStudent",
    "MLPTeacher",
    "PrefixCache",
    "QuestionAugmenter",
    "SplitTeacher",
    "Student",
    "T5Teacher",
    "ViTStudent",
    "ViTTeacher",
    "export_student",
    "gap_recovery_rate",
    "regression_metrics",
]
