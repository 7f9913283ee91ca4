"""The README's quick-start example runs as written and does what it says."""

import pathlib
import re

import numpy as np

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_quick_start_runs(tmp_path, capsys):
    text = README.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    assert blocks, "README.md has no python example"
    code = blocks[0].replace("/tmp/dd_student", str(tmp_path / "student"))
    code = code.replace("epochs=2, validation_split", "epochs=1, verbose=0, validation_split")
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    model, reloaded, tf = namespace["model"], namespace["reloaded"], namespace["tf"]
    x = {"user_id": tf.constant([1, 5]), "movie_id": tf.constant([2, 7])}
    np.testing.assert_allclose(reloaded.serve(x), model.student(x), atol=1e-6)
    assert "tf.Tensor" in capsys.readouterr().out


def test_readme_names_the_two_commands():
    text = README.read_text()
    assert 'pip install -e ".[test]"' in text and "bin/train" in text
    assert "python -m pytest -q" in text
    assert "tensorflow-recommenders" in text
