"""An experiment's comparison: arms x task sets, from the evaluation store, with the lineage of every cell.

    comparison = compare(experiment, store, outcomes, evaluations)
    comparison.write(reports_root / "experiments" / experiment.name)   # comparison.md, .json, plots
    store.append_comparison(comparison.store_rows())                     # the `comparisons` table

For each arm (and, as reference rows, each arm's untrained counterpart) and task set: pass@1 and pass@k
(k = the experiment's samples) with 95% bootstrap intervals over tasks; the paired delta of pass@1 against the
baseline arm over the tasks both were evaluated on (bootstrap over those tasks); the behaviour rates (own company,
table inspected first, identifiers exist, recovered after an error, submitted) with intervals and the failure
modes; per arm the training cost (CPU- or GPU-minutes, estimated USD where the run's compute record has a price)
and its lineage (training config hash, base-model hash, training code version). An arm whose training failed or
that has no evaluation keeps its rows, saying so; the rest is still compared. `TRACE_QUERY` (in the report)
traces every cell to its evaluation, artifact, config, base model, snapshot and code versions.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from rl_assets.evaluation.behaviour import behaviour_rates
from rl_assets.evaluation.metrics import (BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, FAILURE_MODES, bootstrap_mean,
                                          failure_modes, pass_at_k)
from rl_assets.evaluation.store import EvaluationStore
from rl_assets.experiments.spec import Experiment

BEHAVIOUR = ("company_used", "table_inspected_first", "identifiers_exist", "recovered_after_error", "submitted")
TRACE_QUERY = """SELECT c.arm, c.task_set, c.metric, c.value, c.evaluation_id, e.policy_version, e.snapshot_hash,
       e.code_version AS evaluation_code_version, c.training_config_hash, c.training_code_version,
       c.base_model, c.base_model_hash
FROM comparisons c LEFT JOIN evaluations e USING (evaluation_id)
WHERE c.comparison_id = ?
ORDER BY c.arm, c.task_set, c.metric"""


@dataclass
class ArmOutcome:
    """What happened to an arm's training: `trained` (with its run's lineage), `failed` (detail says why) or
    `not trained` (nothing was attempted, e.g. a comparison read before the experiment ran)."""

    arm: str
    status: str
    detail: str = ""
    run_dir: str | None = None
    lineage: dict[str, Any] = field(default_factory=dict)
    trained_now: bool = False  # trained by the call that returned this (not found current)


def training_cost(lineage: dict[str, Any]) -> dict[str, Any]:
    """CPU- or GPU-minutes and estimated USD of a training run, from its lineage (`compute` for a cloud run, the
    entry point's own `resources` otherwise)."""
    compute = lineage.get("compute") if isinstance(lineage.get("compute"), dict) else None
    resources = lineage.get("resources") if isinstance(lineage.get("resources"), dict) else {}
    if compute:
        return {"device": f"{compute.get('count', 1)}x {compute.get('accelerator')}", "gpu_minutes": compute.get("gpu_minutes"),
                "cpu_minutes": None, "wall_minutes": _minutes(compute.get("wall_seconds")),
                "estimated_usd": compute.get("estimated_usd"), "source": "compute (launcher)"}
    if resources:
        return {"device": resources.get("device"), "gpu_minutes": _minutes(resources.get("gpu_seconds")),
                "cpu_minutes": _minutes(resources.get("cpu_seconds")), "wall_minutes": _minutes(resources.get("wall_s")),
                "estimated_usd": None, "source": "resources (entry point)"}
    wall = (lineage.get("final_metrics") or {}).get("wall_s")
    return {"device": None, "gpu_minutes": None, "cpu_minutes": None, "wall_minutes": _minutes(wall),
            "estimated_usd": None, "source": "final_metrics" if wall else None}


def _minutes(seconds: Any) -> float | None:
    return round(float(seconds) / 60.0, 2) if isinstance(seconds, (int, float)) else None


@dataclass
class Comparison:
    experiment: Experiment
    comparison_id: str
    created_at: datetime
    rows: list[dict[str, Any]]  # one per policy x task set: status, metrics, intervals, deltas, lineage
    arms: dict[str, dict[str, Any]]  # per arm: status, detail, cost, lineage
    plots: list[Path] = field(default_factory=list)

    def store_rows(self) -> list[dict[str, Any]]:
        """The `comparisons` table's rows: one per cell (row x metric)."""
        metrics = ["pass@1", *(f"pass@{k}" for k in range(2, self.experiment.samples + 1)), *BEHAVIOUR,
                   *(f"failure/{m}" for m in FAILURE_MODES)]
        out = []
        for row in self.rows:
            for metric in metrics:
                value = row.get(metric)
                ci = row.get(f"{metric}_ci") or [None, None]
                delta = row.get("delta") if metric == "pass@1" else None
                delta_ci = row.get("delta_ci") if metric == "pass@1" else None
                out.append({
                    "comparison_id": self.comparison_id, "created_at": self.created_at,
                    "experiment": self.experiment.name, "experiment_hash": experiment_hash(self.experiment),
                    "arm": row["arm"], "role": row["role"], "policy": row["policy"], "task_set": row["task_set"],
                    "status": row["status"], "detail": row.get("detail") or None, "metric": metric, "value": value,
                    "ci_low": ci[0], "ci_high": ci[1], "delta": delta,
                    "delta_ci_low": delta_ci[0] if delta_ci else None, "delta_ci_high": delta_ci[1] if delta_ci else None,
                    "n_tasks": row.get("n_tasks"), **{k: row.get(k) for k in (
                        "evaluation_id", "policy_version", "snapshot_hash", "code_version", "training_config_hash",
                        "training_code_version", "base_model", "base_model_hash")},
                })
        return out

    def write(self, folder: str | Path) -> Path:
        """comparison.md, comparison.json and the plots under `folder`; returns the markdown's path."""
        from rl_assets.experiments.report import write_comparison

        return write_comparison(self, Path(folder))


def experiment_hash(experiment: Experiment) -> str:
    data = {k: v for k, v in experiment.asdict().items() if k not in ("path", "description")}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def compare(experiment: Experiment, store: EvaluationStore, outcomes: dict[str, ArmOutcome],
            evaluations: dict[tuple[str, str], str | None], resamples: int = BOOTSTRAP_RESAMPLES,
            seed: int = BOOTSTRAP_SEED) -> Comparison:
    """The comparison of `experiment` from the evaluations named by `evaluations[(policy, task_set)]`
    (an evaluation id, or None where there is none)."""
    rng = np.random.default_rng(seed)
    arms: dict[str, dict[str, Any]] = {}
    for arm in experiment.arms:
        outcome = outcomes.get(arm.name) or ArmOutcome(arm.name, "not trained", "no training run recorded")
        lineage = outcome.lineage or {}
        base = lineage.get("base_model_record") or {}
        config = arm.train_config()
        arms[arm.name] = {
            "status": outcome.status, "detail": outcome.detail, "run_dir": outcome.run_dir,
            "config": arm.config, "overrides": list(arm.overrides), "untrained": arm.untrained,
            "training_config_hash": lineage.get("config_hash") or config.hash,
            "training_code_version": lineage.get("code_version"),
            "base_model": base.get("name") or config.model.base, "base_model_hash": base.get("model_hash"),
            "cost": training_cost(lineage) if lineage else None,
            "final_metrics": lineage.get("final_metrics") or {},
        }
    baseline_tasks: dict[str, dict[str, float]] = {}  # task set -> task -> pass@1 of the baseline arm
    rows_by_key: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for (policy, task_set), evaluation_id in evaluations.items():
        rows_by_key[(policy, task_set)] = store.episodes(evaluation_id) if evaluation_id else []
    for task_set in experiment.task_sets:
        baseline_tasks[task_set] = _per_task_pass(rows_by_key.get((experiment.baseline, task_set), []), 1)

    out = []
    entries = [(a.name, a.name, "arm") for a in experiment.arms]
    entries += [(a.name, a.untrained, "untrained") for a in experiment.arms]
    seen = set()
    for arm_name, policy, role in entries:
        if (policy, role) in seen:
            continue
        seen.add((policy, role))
        arm = arms[arm_name]
        for task_set in experiment.task_sets:
            evaluation_id = evaluations.get((policy, task_set))
            episodes = rows_by_key.get((policy, task_set), [])
            row: dict[str, Any] = {"arm": arm_name if role == "arm" else f"{policy} (untrained)", "role": role,
                                   "policy": policy, "task_set": task_set, "evaluation_id": evaluation_id,
                                   "n_tasks": len({e["task_id"] for e in episodes}), "n_episodes": len(episodes)}
            if role == "arm":
                row.update({k: arm[k] for k in ("training_config_hash", "training_code_version", "base_model",
                                                  "base_model_hash")})
            else:
                row.update({"base_model": arm["base_model"], "base_model_hash": arm["base_model_hash"]})
            if role == "arm" and arm["status"] != "trained":
                row.update(status=f"training {arm['status']}", detail=arm["detail"])
            elif evaluation_id is None:
                row.update(status="not evaluated", detail="no evaluation of this policy on this task set")
            elif not episodes:
                row.update(status="no tasks", detail="the task set has no task in this snapshot")
            else:
                row["status"] = "ok"
                first = episodes[0]
                row.update({k: first.get(k) for k in ("policy_version", "snapshot_hash", "code_version")})
                if role == "untrained" and first.get("base_model_hash"):
                    row["base_model_hash"] = first["base_model_hash"]
                row.update(_scores(episodes, experiment.samples, rng, resamples))
                if role == "arm" and arm_name != experiment.baseline:
                    mine = _per_task_pass(episodes, 1)
                    shared = sorted(set(mine) & set(baseline_tasks[task_set]))
                    diffs = np.array([mine[t] - baseline_tasks[task_set][t] for t in shared], dtype=float)
                    delta, low, high = bootstrap_mean(diffs, rng, resamples)
                    row.update(delta=delta, delta_ci=[low, high] if shared else None, delta_tasks=len(shared))
            out.append(row)
    return Comparison(experiment, uuid.uuid4().hex, datetime.now(timezone.utc), out, arms)


def _per_task_pass(episodes: list[dict[str, Any]], k: int) -> dict[str, float]:
    by_task: dict[str, list[bool]] = {}
    for e in episodes:
        by_task.setdefault(e["task_id"], []).append(bool(e["correct"]))
    return {t: pass_at_k(len(v), sum(v), min(k, len(v))) for t, v in by_task.items()}


def _scores(episodes: list[dict[str, Any]], samples: int, rng, resamples: int) -> dict[str, Any]:
    scores: dict[str, Any] = {}
    for k in range(1, max(1, samples) + 1):
        per_task = _per_task_pass(episodes, k)
        mean, low, high = bootstrap_mean(np.array(list(per_task.values()), dtype=float), rng, resamples)
        scores[f"pass@{k}"], scores[f"pass@{k}_ci"] = mean, [low, high]
    rates = behaviour_rates(episodes, resamples=resamples, seed=int(rng.integers(1 << 31)))
    for name in BEHAVIOUR:
        scores[name], scores[f"{name}_ci"] = rates.get(name), rates.get(f"{name}_ci")
    for mode in FAILURE_MODES:
        scores[f"failure/{mode}"] = sum(failure_modes(e)[mode] for e in episodes) / len(episodes)
    return scores
