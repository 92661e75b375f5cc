"""The written comparison of an experiment: `reports/experiments/<name>/` with comparison.md (tables, cost,
lineage, the trace query), comparison.json (every row) and two plots (pass@1 and behaviour rates per arm)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from rl_assets.experiments.comparison import Comparison


def _pct(value: Any) -> str:
    return "–" if value is None else f"{value:.1%}"


def _interval(row: dict[str, Any], key: str) -> str:
    value, ci = row.get(key), row.get(f"{key}_ci")
    if value is None:
        return "–"
    return f"{value:.1%} [{ci[0]:.0%}, {ci[1]:.0%}]" if ci and ci[0] is not None else f"{value:.1%}"


def _delta(row: dict[str, Any]) -> str:
    if row.get("delta") is None:
        return "–"
    ci = row.get("delta_ci") or [None, None]
    text = f"{row['delta']:+.1%}"
    return text + (f" [{ci[0]:+.0%}, {ci[1]:+.0%}] ({row.get('delta_tasks')} tasks)" if ci[0] is not None else "")


def write_comparison(comparison: "Comparison", folder: Path) -> Path:
    from rl_assets.experiments.comparison import BEHAVIOUR, TRACE_QUERY

    folder.mkdir(parents=True, exist_ok=True)
    experiment = comparison.experiment
    plots = [_plot_pass(comparison, folder / "pass_at_1.png"), _plot_behaviour(comparison, folder / "behaviour.png")]
    comparison.plots = [p for p in plots if p is not None]
    lines = [f"# Experiment {experiment.name}", ""]
    if experiment.description:
        lines += [experiment.description.strip(), ""]
    lines += [f"- comparison `{comparison.comparison_id}`, {comparison.created_at:%Y-%m-%d %H:%M} UTC; file "
              f"`{experiment.path}`", f"- baseline arm `{experiment.baseline}`; {experiment.samples} sample(s) per task; "
              f"{experiment.sample_size or 'all'} task(s) per task set (seed {experiment.seeds['evaluation']}); "
              f"training seed {experiment.seeds['training']}", ""]
    lines += ["## Arms", "", "| arm | config | overrides | status | base model | training | cost |", "|---|---|---|---|---|---|---|"]
    for name, arm in comparison.arms.items():
        cost = arm.get("cost") or {}
        spent = ", ".join(x for x in (
            f"{cost['gpu_minutes']} GPU-min" if cost.get("gpu_minutes") else "",
            f"{cost['cpu_minutes']} CPU-min" if cost.get("cpu_minutes") else "",
            f"{cost['wall_minutes']} min wall" if cost.get("wall_minutes") else "",
            f"${cost['estimated_usd']:.2f}" if isinstance(cost.get("estimated_usd"), (int, float)) else "") if x) or "–"
        final = arm.get("final_metrics") or {}
        trained = ", ".join(f"{k} {final[k]:.3g}" for k in ("sft/steps", "sft/loss", "grpo/steps", "grpo/reward")
                            if isinstance(final.get(k), (int, float))) or "–"
        status = arm["status"] + (f": {arm['detail']}" if arm.get("detail") and arm["status"] != "trained" else "")
        lines.append(f"| `{name}` | `{arm['config']}` | {', '.join(f'`{o}`' for o in arm['overrides']) or '–'} | {status} | "
                     f"`{arm['base_model']}` {('`' + arm['base_model_hash'] + '`') if arm.get('base_model_hash') else ''} | "
                     f"{trained} | {spent} |")
    lines += ["", "## pass@1 per task set (95% bootstrap interval over tasks; Δ = paired difference to the baseline "
              "arm over the same tasks)", ""]
    lines += ["| arm | task set | tasks | pass@1 | Δ vs baseline | status |", "|---|---|---:|---|---|---|"]
    for row in comparison.rows:
        lines.append(f"| {row['arm']} | {row['task_set']} | {row.get('n_tasks', 0)} | {_interval(row, 'pass@1')} | "
                     f"{_delta(row)} | {row['status']}{': ' + row['detail'] if row.get('detail') else ''} |")
    if experiment.samples > 1:
        k = experiment.samples
        lines += ["", f"pass@{k}: " + "; ".join(f"{r['arm']} {r['task_set']} {_interval(r, f'pass@{k}')}"
                                                for r in comparison.rows if r["status"] == "ok")]
    lines += ["", "## Behaviour (share of episodes, 95% interval)", "",
              "| arm | task set | " + " | ".join(b.replace("_", " ") for b in BEHAVIOUR) + " |",
              "|---|---|" + "---|" * len(BEHAVIOUR)]
    for row in comparison.rows:
        if row["status"] == "ok":
            lines.append(f"| {row['arm']} | {row['task_set']} | " + " | ".join(_interval(row, b) for b in BEHAVIOUR) + " |")
    from rl_assets.evaluation.metrics import FAILURE_MODES

    lines += ["", "## Failure modes (share of episodes)", "",
              "| arm | task set | " + " | ".join(m.replace("_", " ") for m in FAILURE_MODES) + " |",
              "|---|---|" + "---|" * len(FAILURE_MODES)]
    for row in comparison.rows:
        if row["status"] == "ok":
            lines.append(f"| {row['arm']} | {row['task_set']} | "
                         + " | ".join(_pct(row.get(f"failure/{m}")) for m in FAILURE_MODES) + " |")
    lines += ["", *(f"![{p.stem}]({p.name})" for p in comparison.plots), "", "## Lineage", "",
              "Every cell is a row of the evaluation store's `comparisons` table; this query traces each to its "
              "evaluation, policy artifact, snapshot, evaluation code, training config, training code and base model:",
              "", "```sql", TRACE_QUERY.replace("?", f"'{comparison.comparison_id}'"), "```", "",
              "| arm | task set | evaluation | policy version | snapshot | training config | base model |",
              "|---|---|---|---|---|---|---|"]
    for row in comparison.rows:
        lines.append(f"| {row['arm']} | {row['task_set']} | `{row.get('evaluation_id') or '–'}` | "
                     f"`{row.get('policy_version') or '–'}` | `{row.get('snapshot_hash') or '–'}` | "
                     f"`{row.get('training_config_hash') or '–'}` | `{row.get('base_model') or '–'}@{row.get('base_model_hash') or '–'}` |")
    markdown = folder / "comparison.md"
    markdown.write_text("\n".join(lines) + "\n")
    (folder / "comparison.json").write_text(json.dumps({
        "comparison_id": comparison.comparison_id, "created_at": comparison.created_at.isoformat(),
        "experiment": experiment.asdict(), "arms": comparison.arms, "rows": comparison.rows,
        "trace_query": TRACE_QUERY}, indent=2, default=str) + "\n")
    return markdown


def _plot_pass(comparison: "Comparison", path: Path) -> Path | None:
    from rl_assets.evaluation.plots import plot_pass_at_1

    task_sets = list(comparison.experiment.task_sets)
    by_policy: dict[str, dict[str, dict[str, Any]]] = {}
    for row in comparison.rows:
        if row["status"] == "ok":
            ci = row.get("pass@1_ci") or [None, None]
            by_policy.setdefault(row["arm"], {})[row["task_set"]] = {"value": row["pass@1"], "ci_low": ci[0], "ci_high": ci[1]}
    return plot_pass_at_1(path, task_sets, by_policy) if by_policy else None


def _plot_behaviour(comparison: "Comparison", path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rl_assets.evaluation.plots import _bar_groups
    from rl_assets.experiments.comparison import BEHAVIOUR

    by_arm: dict[str, list[dict[str, Any]]] = {}
    for row in comparison.rows:
        if row["status"] == "ok":
            by_arm.setdefault(row["arm"], []).append(row)
    if not by_arm:
        return None
    fig, ax = plt.subplots(figsize=(9, 4))
    series = {arm: [float(np.mean([r[b] for r in rows if r.get(b) is not None])) if any(r.get(b) is not None for r in rows)
                    else None for b in BEHAVIOUR] for arm, rows in by_arm.items()}
    _bar_groups(ax, [b.replace("_", " ") for b in BEHAVIOUR], series)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share of episodes (mean over task sets)")
    ax.set_title(f"behaviour per arm: {comparison.experiment.name}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

