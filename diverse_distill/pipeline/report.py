"""PNG plots of `bin/train` runs: learning curves, importance distributions, τ sweeps."""

import glob
import json
import os

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def load_metrics(run_dir):
    """`run_dir/metrics.json`, with a clear error when it is missing."""
    path = os.path.join(run_dir, "metrics.json")
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path} not found: pass the --output_dir of a finished bin/train run."
        )
    with open(path) as f:
        return json.load(f)


def eval_steps(metrics):
    """Optimizer steps between two evaluations of the run."""
    c = metrics["config"]
    return min(c["eval_every"], c["steps"])


def plot_learning_curves(metrics, path):
    """Validation MSE per evaluation of S0 and of the distilled student (one line per
    seed), and the distilled model's training loss terms."""
    plt = _pyplot()
    every = eval_steps(metrics)
    fig, (ax_val, ax_terms) = plt.subplots(1, 2, figsize=(11, 4))
    lines = (("S0", "s0", "tab:gray"), (metrics["method"], "distilled", "tab:blue"))
    for label, key, color in lines:
        for i, run in enumerate(metrics["runs"]):
            values = run[key]["history"].get("val_loss", [])
            steps = every * np.arange(1, len(values) + 1)
            ax_val.plot(steps, values, marker="o", color=color, alpha=0.9 if i == 0 else 0.4,
                        label=label if i == 0 else None)
    for name, info in metrics.get("teachers", {}).items():
        ax_val.axhline(info["validation"]["mse"], ls=":", lw=1, color="tab:red")
        ax_val.annotate(f"teacher {name}", (0.99, info["validation"]["mse"]), fontsize=8,
                        color="tab:red", xycoords=("axes fraction", "data"), ha="right",
                        va="bottom")
    ax_val.set(xlabel="step", ylabel="validation MSE", title="Validation MSE per evaluation")
    ax_val.legend()
    history = metrics["runs"][0]["distilled"]["history"]
    for term in ("task_loss", "distill_loss", "reg_loss"):
        if term in history:
            ax_terms.plot(every * np.arange(1, len(history[term]) + 1), history[term],
                          marker="o", label=term)
    ax_terms.set(xlabel="step", ylabel="mean over the period",
                 title=f"Training loss terms (seed {metrics['runs'][0]['seed']})")
    ax_terms.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def load_importances(run_dir):
    """teacher -> importances of the final distilled students on the validation split
    (all seeds' `importance_*.npz` files concatenated)."""
    values = {}
    for path in sorted(glob.glob(os.path.join(run_dir, "importance_*.npz"))):
        with np.load(path) as arrays:
            for name in arrays.files:
                values.setdefault(name, []).append(arrays[name])
    return {name: np.concatenate(v) for name, v in values.items()}


def plot_importances(run_dir, metrics, path):
    """One histogram per teacher of its importance on the validation split, with τ."""
    values = load_importances(run_dir)
    if not values:
        return None
    plt = _pyplot()
    tau = metrics["config"]["importance_threshold"]
    fig, axes = plt.subplots(1, len(values), figsize=(4 * len(values), 3.4), squeeze=False)
    for ax, (name, v) in zip(axes[0], values.items()):
        ax.hist(v, bins=np.linspace(0.0, 1.0, 41), color="tab:blue")
        title = f"{name}: mean {v.mean():.3f}"
        if tau >= 0 and metrics["config"].get("importance_threshold_on", "importance") == "share":
            title += f", τ = {tau:g} on K·w/Σw"  # not a line on the w axis
        elif tau >= 0:
            ax.axvline(tau, color="tab:red", ls="--", label=f"τ = {tau:g}")
            title += f", pass {np.mean(v >= tau):.0%}"
            ax.legend()
        ax.set(xlabel="importance w_k (validation rows)", ylabel="rows", title=title, xlim=(0, 1))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _pass_fraction(run, name, tau):
    info = run["distilled"].get("validation_importance", {}).get(name)
    if info is not None:
        return info["pass_fraction"]
    return run["distilled"].get(f"pass_fraction_{name}", 1.0 if tau < 0 else np.nan)


def tau_sweep_table(run_dirs):
    """Rows `(τ, {teacher: pass fraction}, distilled MSE mean, std, S0 MSE mean)` sorted
    by τ; a run without skipping (τ < 0) counts as τ = 0 (every row passes)."""
    rows = []
    for run_dir in run_dirs:
        metrics = load_metrics(run_dir)
        tau = metrics["config"]["importance_threshold"]
        passes = {name: float(np.mean([_pass_fraction(r, name, tau) for r in metrics["runs"]]))
                  for name in metrics["teachers"]}
        s = metrics["summary"]
        rows.append((max(tau, 0.0), passes, s["distilled"]["mse"]["mean"],
                     s["distilled"]["mse"]["std"], s["s0"]["mse"]["mean"]))
    return sorted(rows, key=lambda r: r[0])


def plot_tau_sweep(run_dirs, path):
    """Pass fraction of each teacher and test MSE against τ, one point per run."""
    plt = _pyplot()
    rows = tau_sweep_table(run_dirs)
    taus = [r[0] for r in rows]
    fig, (ax_pass, ax_mse) = plt.subplots(1, 2, figsize=(11, 4))
    for name in rows[0][1]:
        ax_pass.plot(taus, [r[1].get(name, np.nan) for r in rows], marker="o", label=name)
    ax_pass.set(xlabel="τ (importance threshold)", ylabel="pass fraction (validation)",
                ylim=(-0.02, 1.02), title="Rows each teacher runs on")
    ax_pass.legend()
    ax_mse.errorbar(taus, [r[2] for r in rows], yerr=[r[3] for r in rows], marker="o",
                    capsize=3, label="distilled student")
    ax_mse.plot(taus, [r[4] for r in rows], ls=":", color="tab:gray", label="S0")
    ax_mse.set(xlabel="τ (importance threshold)", ylabel="test MSE", title="Test MSE against τ")
    ax_mse.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_report(run_dirs, out_dir=None, tau_sweep=False):
    """Writes the PNGs and returns their paths.

    One run directory: `learning_curves.png` and `importance.png` in
    `out_dir` (default `RUN_DIR/report`); with several τ runs — `tau_sweep`
    with several directories, or one directory whose sub-folders are runs —
    also `tau_sweep.png`.

    Args:
        run_dirs: list of `bin/train` output folders.
        out_dir: str or `None`.
        tau_sweep: bool. Treat `run_dirs` as one τ sweep. Defaults to `False`.

    Example:
    ```python
    # bin/report runs/movielens          -> runs/movielens/report/*.png
    # bin/report --tau_sweep runs/tau_*  -> ./report/tau_sweep.png (+ each run's plots)
    ```
    """
    run_dirs = [os.fspath(d) for d in run_dirs]
    if not run_dirs:
        raise ValueError("Give at least one run directory (a bin/train --output_dir).")
    for run_dir in run_dirs:
        if not os.path.isdir(run_dir):
            raise FileNotFoundError(f"Run directory not found: {run_dir}")
    if len(run_dirs) == 1 and not os.path.exists(os.path.join(run_dirs[0], "metrics.json")):
        nested = sorted(os.path.dirname(p) for p in
                        glob.glob(os.path.join(run_dirs[0], "*", "metrics.json")))
        if nested:
            out_dir = out_dir or os.path.join(run_dirs[0], "report")
            run_dirs, tau_sweep = nested, True
    written = []
    if tau_sweep or len(run_dirs) > 1:
        out_dir = out_dir or "report"
        os.makedirs(out_dir, exist_ok=True)
        written.append(plot_tau_sweep(run_dirs, os.path.join(out_dir, "tau_sweep.png")))
    for run_dir in run_dirs:
        metrics = load_metrics(run_dir)
        target = out_dir or os.path.join(run_dir, "report")
        if len(run_dirs) > 1:
            target = os.path.join(target, os.path.basename(os.path.normpath(run_dir)))
        os.makedirs(target, exist_ok=True)
        written.append(plot_learning_curves(metrics, os.path.join(target, "learning_curves.png")))
        importance = plot_importances(run_dir, metrics, os.path.join(target, "importance.png"))
        if importance:
            written.append(importance)
    return written
