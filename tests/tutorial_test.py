"""docs/tutorial.md runs as written and does what it says."""

import pathlib
import re

import numpy as np

TUTORIAL = pathlib.Path(__file__).resolve().parents[1] / "docs" / "tutorial.md"


def test_tutorial_runs(tmp_path, capsys):
    blocks = re.findall(r"```python\n(.*?)```", TUTORIAL.read_text(), re.DOTALL)
    assert len(blocks) == 2, "docs/tutorial.md: the walk-through and the Distiller comparison"
    namespace = {}
    for i, block in enumerate(blocks):
        code = block.replace("/tmp/", f"{tmp_path}/")
        exec(compile(code, f"docs/tutorial.md[{i}]", "exec"), namespace)
    model, reloaded, tf, x = (namespace[k] for k in ("model", "reloaded", "tf", "x"))
    # The SavedModel serves the distilled student: the wrapped Keras model.
    np.testing.assert_allclose(
        reloaded.serve(tf.constant(x[:5])), model.student.model(x[:5]), atol=1e-5
    )
    assert model.student.representation_dim == 16 and model.student.hidden_dim == 8
    assert [t.injection_dim for t in model.teachers] == [64, 16 * 8]
    assert list(model.teachers[1].prefix(x[:2])) == ["native_question", "stem"]
    out = capsys.readouterr().out
    assert "'loss'" in out and "tf.Tensor" in out
    # The Keras Distiller block ran and trained its own copy of the student.
    assert namespace["distiller"].student is namespace["keras_student"]
    assert np.all(np.isfinite(namespace["ours"].evaluate(x[:64], namespace["y"][:64], verbose=0)))
