"""Scores of one evaluation (its episode rows): pass@1, unbiased pass@k, rubric means, behaviour failure
modes, efficiency, each with a bootstrap 95% interval, overall and per analytic type and source, and
deltas against a baseline evaluation on the same tasks.

Every metric is first computed per task (a task has `samples` episodes) and then averaged over tasks; its
interval resamples tasks with replacement (`BOOTSTRAP_RESAMPLES`, seeded), so repeated samples of one
task are never treated as independent evidence. pass@k is the unbiased estimator of Chen et al. (2021),
1 - C(n-c, k) / C(n, k) for a task with n samples of which c are correct, for every k <= n.

Behaviour failure modes (an episode may show several):
    no_schema_inspected      it queried a table without get_table_info on it first
    hallucinated_identifier  it named a company, table or column that does not exist
    gave_up_after_error      a tool call failed and no later call of that tool succeeded
    no_answer                nothing was submitted
    wrong_answer             an answer was submitted and is wrong
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Iterable

import numpy as np

BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
FAILURE_MODES = ("no_schema_inspected", "hallucinated_identifier", "gave_up_after_error", "no_answer", "wrong_answer")
# rubric fields averaged per episode (booleans as rates; None = not applicable, left out)
RUBRIC_MEANS = ("n_tool_calls", "errors", "hallucinated_identifiers", "redundant_calls", "rows_pulled", "answered",
                "listed_tables_before_query", "inspected_schema_before_query", "recovered_after_error")
EFFICIENCY = ("turns", "tokens_in", "tokens_out", "tokens_encoded", "latency_s", "model_seconds", "env_seconds", "cost_usd")
GROUP_COLUMNS = ("analytic_type", "source")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one task: n samples, c correct, k <= n."""
    if not 1 <= k <= n:
        raise ValueError(f"pass@k needs 1 <= k <= n (k={k}, n={n})")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def failure_modes(row: dict[str, Any]) -> dict[str, bool]:
    """The failure modes one episode row shows."""
    return {
        "no_schema_inspected": row.get("inspected_schema_before_query") is False,
        "hallucinated_identifier": (row.get("hallucinated_identifiers") or 0) > 0,
        "gave_up_after_error": (row.get("errors") or 0) > 0 and row.get("recovered_after_error") is False,
        "no_answer": not row.get("answered"),
        "wrong_answer": bool(row.get("answered")) and not row.get("correct"),
    }


def bootstrap_mean(values: np.ndarray, rng: np.random.Generator,
                   resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float | None, float | None, float | None]:
    """(mean, 2.5th, 97.5th percentile of resampled means); Nones for no values."""
    if len(values) == 0:
        return None, None, None
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)
    return float(values.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def _per_task(rows: list[dict[str, Any]], value: Callable[[list[dict[str, Any]]], float | None]) -> dict[str, float]:
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_task[r["task_id"]].append(r)
    out = {}
    for task_id, task_rows in by_task.items():
        v = value(task_rows)
        if v is not None:
            out[task_id] = float(v)
    return out


def _mean_of(field: str) -> Callable[[list[dict[str, Any]]], float | None]:
    def value(task_rows: list[dict[str, Any]]) -> float | None:
        vals = [float(r[field]) for r in task_rows if r.get(field) is not None]
        return sum(vals) / len(vals) if vals else None
    return value


def _pass_at(k: int) -> Callable[[list[dict[str, Any]]], float | None]:
    def value(task_rows: list[dict[str, Any]]) -> float | None:
        return pass_at_k(len(task_rows), sum(bool(r["correct"]) for r in task_rows), k)
    return value


def _mode(name: str) -> Callable[[list[dict[str, Any]]], float | None]:
    def value(task_rows: list[dict[str, Any]]) -> float:
        return sum(failure_modes(r)[name] for r in task_rows) / len(task_rows)
    return value


def _stop(reason: str) -> Callable[[list[dict[str, Any]]], float | None]:
    def value(task_rows: list[dict[str, Any]]) -> float:
        return sum(r["stop_reason"] == reason for r in task_rows) / len(task_rows)
    return value


def metric_functions(samples: int, stop_reasons: Iterable[str]) -> dict[str, Callable[[list[dict[str, Any]]], float | None]]:
    """metric name -> per-task value."""
    metrics: dict[str, Callable] = {f"pass@{k}": _pass_at(k) for k in range(1, max(1, samples) + 1)}
    metrics.update({f"rubric/{f}": _mean_of(f) for f in RUBRIC_MEANS})
    metrics.update({f"failure/{m}": _mode(m) for m in FAILURE_MODES})
    metrics.update({f"stop/{s}": _stop(s) for s in sorted(set(stop_reasons))})
    metrics.update({f"efficiency/{f}": _mean_of(f) for f in EFFICIENCY})
    return metrics


def summarise(
    rows: list[dict[str, Any]],
    baseline_rows: list[dict[str, Any]] | None = None,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> list[dict[str, Any]]:
    """Summary rows (group_kind, group_value, metric, value, ci_low, ci_high, n_tasks, n_episodes and, for
    pass@1 with a baseline, delta / delta_ci_low / delta_ci_high over the tasks both evaluated)."""
    samples = max((sum(1 for r in rows if r["task_id"] == t) for t in {r["task_id"] for r in rows}), default=1)
    metrics = metric_functions(samples, (r["stop_reason"] for r in rows))
    groups: list[tuple[str, str, list[dict[str, Any]]]] = [("all", "all", rows)]
    for column in GROUP_COLUMNS:
        by_value: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            by_value[str(r.get(column))].append(r)
        groups += [(column, v, rs) for v, rs in sorted(by_value.items())]
    rng = np.random.default_rng(seed)
    out = []
    for kind, value, group_rows in groups:
        n_tasks = len({r["task_id"] for r in group_rows})
        for metric, fn in metrics.items():
            per_task = _per_task(group_rows, fn)
            mean, lo, hi = bootstrap_mean(np.array(list(per_task.values()), dtype=float), rng, resamples)
            row = {"group_kind": kind, "group_value": value, "metric": metric, "value": mean, "ci_low": lo,
                   "ci_high": hi, "n_tasks": n_tasks, "n_episodes": len(group_rows),
                   "delta": None, "delta_ci_low": None, "delta_ci_high": None}
            if metric == "pass@1" and baseline_rows:
                base = _per_task([b for b in baseline_rows if _in_group(b, kind, value)], fn)
                shared = sorted(set(per_task) & set(base))
                diffs = np.array([per_task[t] - base[t] for t in shared], dtype=float)
                row["delta"], row["delta_ci_low"], row["delta_ci_high"] = bootstrap_mean(diffs, rng, resamples)
            out.append(row)
    return out


def _in_group(row: dict[str, Any], kind: str, value: str) -> bool:
    return kind == "all" or str(row.get(kind)) == value
