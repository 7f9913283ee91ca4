"""Small statistics for result tables: a paired t-test without SciPy.

The two-sided p-value of Student's t with `df` degrees of freedom is
`P(|T| >= |t|) = I_{df / (df + t²)}(df / 2, 1 / 2)`, with `I_x(a, b)` the
regularized incomplete beta function, computed here by its continued
fraction (modified Lentz; Numerical Recipes §6.4) with `math.lgamma`.
"""

import math

import numpy as np

_EPS = 3e-16
_TINY = 1e-300


def _beta_continued_fraction(a, b, x, max_iterations=500):
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, max_iterations + 1):
        m2 = 2 * m
        for numerator in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                          -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + numerator / c
            c = c if abs(c) > _TINY else _TINY
            h *= d * c
        if abs(d * c - 1.0) < _EPS:
            return h
    raise ArithmeticError(f"incomplete beta: no convergence for a={a}, b={b}, x={x}.")


def regularized_incomplete_beta(a, b, x):
    """`I_x(a, b)`, the regularized incomplete beta function, for `a, b > 0`, `0 <= x <= 1`.

    Example:
    ```python
    regularized_incomplete_beta(1.0, 1.0, 0.3)  # 0.3 (the uniform CDF)
    ```
    """
    if a <= 0 or b <= 0:
        raise ValueError(f"a and b must be positive, got a={a}, b={b}.")
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x must lie in [0, 1], got {x}.")
    if x == 0.0 or x == 1.0:
        return float(x)
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    # The continued fraction converges fast for x < (a + 1) / (a + b + 2); else use symmetry.
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, 1.0 - x) / b


def t_two_sided_p_value(t, df):
    """Two-sided p-value `P(|T| >= |t|)` of Student's t with `df > 0` degrees of freedom.

    Example:
    ```python
    round(t_two_sided_p_value(2.0, 4), 4)  # 0.1161
    t_two_sided_p_value(0.0, 4)  # 1.0
    ```
    """
    if df <= 0:
        raise ValueError(f"df must be positive, got {df}.")
    t = float(t)
    if math.isnan(t):
        return float("nan")
    if math.isinf(t):
        return 0.0
    p = regularized_incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return min(1.0, max(0.0, p))


def paired_t_test(a, b):
    """Paired t-test of `a` against `b` (same seeds, same order).

    `d_i = a_i − b_i`, `t = mean(d) / (std(d, ddof=1) / sqrt(n))`, `df = n − 1`,
    two-sided p-value. With identical differences (`std(d) = 0`): `t = 0`,
    `p = 1` when they are all 0, else `t = ±inf`, `p = 0`. Fewer than two
    pairs: `t` and `p` are `None` (no test).

    Returns:
        dict with `n`, `mean_difference`, `t`, `df`, `p_value`.

    Example:
    ```python
    paired_t_test([1.0, 2.0, 3.0], [1.5, 2.0, 2.0])["df"]  # 2
    ```
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"paired_t_test needs pairs: got {a.size} and {b.size} values.")
    d = a - b
    n = int(d.size)
    result = {"n": n, "mean_difference": float(d.mean()) if n else None,
              "t": None, "df": n - 1 if n >= 2 else None, "p_value": None}
    if n < 2:
        return result
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if sd == 0.0 or sd < 1e-12 * max(1.0, abs(mean)):
        t = 0.0 if mean == 0.0 else math.copysign(math.inf, mean)
    else:
        t = mean / (sd / math.sqrt(n))
    result["t"] = t
    result["p_value"] = t_two_sided_p_value(t, n - 1)
    return result


def linear_fit(xs, ys):
    """Least squares `y = a + b x`: returns `(a, b, r_squared)`.

    Example:
    ```python
    linear_fit([1, 2, 3], [3, 5, 7])  # (1.0, 2.0, 1.0)
    ```
    """
    n = len(xs)
    if n < 2 or n != len(ys):
        raise ValueError(f"linear_fit needs two or more (x, y) pairs, got {len(xs)} x and "
                         f"{len(ys)} y.")
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    if sxx == 0:
        raise ValueError("linear_fit needs at least two different x values.")
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys))
    slope = sxy / sxx
    intercept = mean_y - slope * mean_x
    total = sum((y - mean_y) ** 2 for y in ys)
    residual = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys))
    return intercept, slope, 1.0 - residual / total if total > 0 else 1.0
