"""Behaviour rates of a policy's episodes: the tool discipline this project teaches, as rates with bootstrap
intervals. One home for them: evaluation summaries' reports, experiment comparisons and the held-out training
benchmark all read these.

Computed from episode rows in the evaluation store's shape (rl_assets.evaluation.runner.episode_row: rubric
fields as columns, `tool_calls` the list of ToolCall records, `world_id` the task's company):

| rate | per episode |
|---|---|
| `company_used` | every call naming a company names the task's own company, and at least one does |
| `table_inspected_first` | it queried, and every queried table had `get_table_info` before its first query |
| `identifiers_exist` | it made calls and none named a company, table or column that does not exist |
| `recovered_after_error` | among episodes with a failed call: a later call of the same tool succeeded |
| `submitted` | an answer was submitted |
| `pass_at_1` | the submitted answer is correct |
| `well_formed_turns` | over all turns: the turn was a well-formed tool call (local models) |
| `tool_error_rate` | over all calls: the call failed |
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import numpy as np

from rl_assets.evaluation.metrics import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, bootstrap_mean

EPISODE_RATES = ("company_used", "table_inspected_first", "identifiers_exist", "recovered_after_error", "submitted",
                 "pass_at_1")
RATES = (*EPISODE_RATES, "well_formed_turns", "tool_error_rate")


def paired_differences(rows: Iterable[dict[str, Any]], baseline: Iterable[dict[str, Any]],
                       resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> dict[str, Any]:
    """Per episode rate, `rows` minus `baseline` paired over the tasks both played (each task's rate over its
    episodes): {rate: mean difference, rate_ci: [low, high] (bootstrap over tasks, 95%), rate_tasks: tasks paired}.
    An interval that excludes zero is a difference the sample supports; two unpaired intervals that overlap say
    little."""
    rng = np.random.default_rng(seed)
    mine, theirs = _per_task_values(rows), _per_task_values(baseline)
    out: dict[str, Any] = {}
    for rate in EPISODE_RATES:
        shared = sorted(set(mine[rate]) & set(theirs[rate]))
        diffs = np.array([mine[rate][t] - theirs[rate][t] for t in shared], dtype=float)
        mean, low, high = bootstrap_mean(diffs, rng, resamples)
        out[rate], out[f"{rate}_ci"], out[f"{rate}_tasks"] = mean, [low, high] if shared else None, len(shared)
    return out


def _per_task_values(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """{rate: {task_id: mean of its episodes' values}} (episodes where a rate does not apply are left out)."""
    sums: dict[str, dict[str, list[float]]] = {rate: {} for rate in EPISODE_RATES}
    readers = {rate: _episode_value(rate) for rate in EPISODE_RATES}
    for row in rows:
        for rate, read in readers.items():
            value = read(row)
            if value is not None:
                sums[rate].setdefault(row["task_id"], []).append(value)
    return {rate: {t: sum(v) / len(v) for t, v in by_task.items()} for rate, by_task in sums.items()}


def company_used(row: dict[str, Any]) -> bool:
    named = [c["arguments"].get("company_name") for c in row.get("tool_calls") or [] if "company_name" in c["arguments"]]
    return bool(named) and all(str(n).strip().lower() == row["world_id"] for n in named)


def _episode_value(rate: str) -> Callable[[dict[str, Any]], float | None]:
    return {
        "company_used": lambda r: float(company_used(r)),
        "table_inspected_first": lambda r: float(r.get("inspected_schema_before_query") is True),
        "identifiers_exist": lambda r: float((r.get("n_tool_calls") or 0) > 0 and not r.get("hallucinated_identifiers")),
        "recovered_after_error": lambda r: (float(r.get("recovered_after_error") is True) if r.get("errors") else None),
        "submitted": lambda r: float(bool(r.get("answered"))),
        "pass_at_1": lambda r: float(bool(r.get("correct"))),
    }[rate]


def behaviour_rates(rows: Iterable[dict[str, Any]], resamples: int = BOOTSTRAP_RESAMPLES,
                    seed: int = BOOTSTRAP_SEED) -> dict[str, Any]:
    """{rate: value} plus {rate}_ci = [low, high] (bootstrap over episodes, 95%) for the per-episode rates, the
    per-turn / per-call rates, and counts."""
    rows = list(rows)
    if not rows:
        return {"episodes": 0}
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {"episodes": len(rows)}
    for rate in EPISODE_RATES:
        values = [v for v in map(_episode_value(rate), rows) if v is not None]
        mean, low, high = bootstrap_mean(np.array(values, dtype=float), rng, resamples)
        out[rate], out[f"{rate}_ci"] = mean, [low, high] if values else None
    out["episodes_with_error"] = sum(1 for r in rows if r.get("errors"))
    turns = sum(r.get("turns") or 0 for r in rows)
    calls = sum(r.get("n_tool_calls") or 0 for r in rows)
    out["well_formed_turns"] = sum(r.get("well_formed_turns") or 0 for r in rows) / turns if turns else 0.0
    out["tool_error_rate"] = sum(r.get("errors") or 0 for r in rows) / calls if calls else 0.0
    out["turns_per_episode"] = turns / len(rows)
    out["tokens_out_per_episode"] = sum(r.get("tokens_out") or 0 for r in rows) / len(rows)
    return out
