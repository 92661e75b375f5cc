"""The report's PNG plots (matplotlib, no display needed)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rl_assets.evaluation.metrics import FAILURE_MODES  # noqa: E402


def _bar_groups(ax, groups: list[str], series: dict[str, list[float | None]],
                errors: dict[str, list[tuple[float, float] | None]] | None = None) -> None:
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        heights = [v if v is not None else 0.0 for v in values]
        yerr = None
        if errors is not None:
            lo = [max(0.0, v - e[0]) if (v is not None and e) else 0.0 for v, e in zip(values, errors[name])]
            hi = [max(0.0, e[1] - v) if (v is not None and e) else 0.0 for v, e in zip(values, errors[name])]
            yerr = [lo, hi]
        ax.bar(xs, heights, width, label=name, yerr=yerr, capsize=3)
        for x, v in zip(xs, values):
            if v is None:
                ax.text(x, 0.01, "n/a", ha="center", va="bottom", fontsize=7, rotation=90)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=15, ha="right", fontsize=8)
    ax.legend(fontsize=8)


def plot_pass_at_1(path: Path, task_sets: list[str], by_policy: dict[str, dict[str, dict[str, Any]]]) -> Path:
    """pass@1 per task set and policy with its 95% interval; by_policy[policy][task_set] = summary row."""
    fig, ax = plt.subplots(figsize=(max(6, 1.8 * len(task_sets)), 4))
    series = {p: [rows.get(t, {}).get("value") for t in task_sets] for p, rows in by_policy.items()}
    errors = {p: [(rows[t]["ci_low"], rows[t]["ci_high"]) if rows.get(t, {}).get("value") is not None else None
                  for t in task_sets] for p, rows in by_policy.items()}
    _bar_groups(ax, task_sets, series, errors)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("pass@1 (95% bootstrap interval)")
    ax.set_title("pass@1 per task set and policy")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_failure_modes(path: Path, rates: dict[str, dict[str, float]]) -> Path:
    """Share of episodes showing each behaviour failure mode, per policy; rates[policy][mode]."""
    fig, ax = plt.subplots(figsize=(8, 4))
    _bar_groups(ax, [m.replace("_", " ") for m in FAILURE_MODES],
                {p: [r.get(m) for m in FAILURE_MODES] for p, r in rates.items()})
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share of episodes")
    ax.set_title("Behaviour failure modes")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def read_training_metrics(metrics_file: Path) -> list[dict[str, Any]]:
    rows = []
    for line in metrics_file.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def plot_training_curve(path: Path, rows: list[dict[str, Any]], max_series: int = 4) -> Path | None:
    """Reward and loss (or the first numeric series) of a training run's metrics.jsonl against its step."""
    numeric = sorted({k for r in rows for k, v in r.items()
                      if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("step", "epoch")})
    preferred = [k for k in numeric if "reward" in k] + [k for k in numeric if "loss" in k]
    keys = list(dict.fromkeys(preferred + numeric))[:max_series]
    if not keys:
        return None
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        points = [(r.get("step", i), r[key]) for i, r in enumerate(rows)
                  if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker=".", linewidth=1)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step")
    fig.suptitle("Training run")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
