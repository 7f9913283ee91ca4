"""The paper's MovieLens-100K numbers (test MSE), for side-by-side tables.

From "Wisdom of Committee" (RelKD @ KDD 2026) as reconstructed in METHOD.md: Table 4
(DiverseDistill per committee, with its GRR %) and the baselines of Tables 3 and 5 where
the text names the teacher unambiguously. Committees are sorted tuples of teacher names;
`"lm"` stands for the paper's Flan-T5 (here any language-model teacher).

Example:
```python
paper_mse("diverse_distill", ("mlp_l", "lm"))  # (0.8132, 114.2)
paper_mse("ld", ("mlp_l",))  # (0.8461, None)
paper_mse("fd", ("mlp_l",))  # None: the extracted text does not say which teacher
```
"""

TABLE_4 = {  # DiverseDistill: committee -> (MSE, GRR % or None)
    ("mlp_l",): (0.8358, 73.1),
    ("mlp_m",): (0.8365, None),
    ("lm",): (0.8546, 38.9),
    ("mlp_l", "mlp_m"): (0.8247, 93.3),
    ("lm", "mlp_m"): (0.8197, 102.4),
    ("lm", "mlp_l"): (0.8132, 114.2),
    ("lm", "mlp_l", "mlp_m"): (0.8146, 111.6),
}
BASELINES = {  # (method, committee) -> MSE
    ("ld", ("mlp_l",)): 0.8461,
    ("mt", ("lm", "mlp_l")): 0.8429,
    ("amtml", ("lm", "mlp_l")): 0.8591,
    ("autoskd", ("lm", "mlp_l")): 0.8411,
    ("aekd", ("lm", "mlp_l")): 0.8522,
}
S0_MSE = 0.8760
BEST_TEACHER_MSE = 0.8210  # MLP-L


def paper_mse(method, committee):
    """`(MSE, GRR % or None)` the paper reports for `method` on `committee`, else `None`.

    Args:
        method: `"diverse_distill"` or a baseline name.
        committee: teacher names; `"lm"` for the language-model teacher.
    """
    key = tuple(sorted(committee))
    if method == "diverse_distill":
        return TABLE_4.get(key)
    mse = BASELINES.get((method, key))
    return None if mse is None else (mse, None)
