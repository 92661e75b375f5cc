"""Running an evaluation (policy × task set × snapshot) and summarising it: the one code path behind the
Dagster assets and `finqa-rl eval`.

    result = run_evaluation(load_policy("oracle"), "single_table-synth-test", snapshot, EvaluationConfig(), store)
    summary = summarise_evaluation(store, result.evaluation_id, baseline=default_baseline("smollm2-cpu"))

Every episode row carries the lineage of its score: snapshot hash, task set version, policy artifact
version, code version (`evaluation_code_version()`), git commit and config hash, plus the training run's
`compute` (cost, GPU-minutes) when the policy artifact records one.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from rl_assets.episodes import Episode
from rl_assets.evaluation import metrics
from rl_assets.evaluation.store import RUBRIC_RENAMES, RUBRIC_SKIPPED, EvaluationStore
from rl_assets.evaluation.task_sets import check_snapshot, load_task_set, sample_tasks, task_set_version
from rl_assets.policies import GenerationSettings, Policy
from rl_assets.snapshot import read_manifest
from rl_assets.versioning import code_version, git_commit, module_closure

def default_baseline(policy: str) -> str | None:
    """Whose evaluation a policy's deltas are against by default: an arm's untrained counterpart (its base model,
    or `<arm>-untrained` for a tiny arm; rl_assets.experiments.arms); None for anything else."""
    from rl_assets.experiments import ExperimentError, resolve_arm

    try:
        return resolve_arm(policy).untrained
    except ExperimentError:
        return None
# local-model rollouts and the prompts they render, where installed: part of what a local model's score depends on
OPTIONAL_MODULES = ("rl_assets.rollouts", "rl_assets.prompts")


def evaluation_code_version() -> str:
    """The hash of every module of rl_assets.evaluation and rl_assets.policies and of everything of the
    package they import (environment, sandbox, grading, telemetry, oracle, snapshot, rollouts, ...)."""
    import pkgutil

    import rl_assets.evaluation
    import rl_assets.policies

    modules = [m.name for package in (rl_assets.evaluation, rl_assets.policies)
               for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]
    modules += [m for m in OPTIONAL_MODULES if importlib.util.find_spec(m) is not None]
    return code_version(*module_closure(*modules))


@dataclass(frozen=True)
class EvaluationConfig:
    """What an evaluation runs (its hash is each row's config_hash)."""

    sample_size: int | None = None  # tasks per task set (seeded sample); None or 0: every task
    samples: int = 1  # episodes per task; pass@k for every k <= samples (sampled, not greedy, when > 1)
    seed: int = 0
    generation: GenerationSettings = field(default_factory=GenerationSettings)

    def settings(self) -> GenerationSettings:
        return replace(self.generation, greedy=self.generation.greedy and self.samples == 1, seed=self.seed)

    def asdict(self) -> dict[str, Any]:
        return {"sample_size": self.sample_size or None, "samples": self.samples, "seed": self.seed,
                "generation": self.settings().asdict()}

    @property
    def config_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.asdict(), sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class EvaluationResult:
    evaluation_id: str
    version: int
    run: dict[str, Any]  # the row of the `evaluations` table
    episodes: list[dict[str, Any]]

    @property
    def pass_at_1(self) -> float | None:
        rows = self.episodes
        return sum(bool(r["correct"]) for r in rows) / len(rows) if rows else None


def training_compute(lineage: dict[str, Any]) -> tuple[dict[str, Any] | None, float | None, float | None]:
    """(compute object, estimated USD, GPU-minutes) of a training run's lineage.json, where recorded."""
    compute = lineage.get("compute") if isinstance(lineage, dict) else None
    if not isinstance(compute, dict):
        return None, None, None

    def number(*keys: str) -> float | None:
        for key in keys:
            if isinstance(compute.get(key), (int, float)):
                return float(compute[key])
        return None

    return compute, number("estimated_usd", "cost_usd", "usd"), number("gpu_minutes", "gpu_min")


def episode_row(episode: Episode, task: dict[str, Any], sample: int,
                compute: tuple[dict[str, Any] | None, float | None, float | None]) -> dict[str, Any]:
    rubric = {RUBRIC_RENAMES.get(k, k): v for k, v in episode.rubric.items() if k not in RUBRIC_SKIPPED}
    gold = task.get("gold_value")
    return {
        "sample": sample, "task_id": task["task_id"], "split": task.get("split"),
        "question_type": task.get("question_type"), "analytic_type": task.get("analytic_type"),
        "source": task.get("source"), "world_id": task.get("world_id"),
        "gold_value": float(gold) if gold is not None else None, "gold_unit": task.get("gold_unit"),
        "answer": episode.answer, "correct": bool(episode.correct), "reward": float(episode.reward),
        "stop_reason": episode.stop_reason, "error": episode.error,
        **rubric,
        "tool_calls": episode.tool_calls, "turns": episode.turns, "well_formed_turns": episode.well_formed_turns,
        "tokens_in": episode.tokens_in, "tokens_out": episode.tokens_out, "tokens_encoded": episode.tokens_encoded,
        "model_seconds": episode.model_seconds,
        "env_seconds": episode.env_seconds, "latency_s": episode.latency_s, "cost_usd": episode.cost_usd,
        "training_compute": compute[0], "training_cost_usd": compute[1], "training_gpu_minutes": compute[2],
        "messages": episode.messages, "extra": episode.extra,
    }


def run_evaluation(
    policy: Policy,
    task_set: str,
    snapshot: str | os.PathLike,
    config: EvaluationConfig = EvaluationConfig(),
    store: EvaluationStore | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EvaluationResult:
    """Play the (sampled) task set with the policy and append the evaluation to the store.

    `progress(done, total)` is called as episodes finish."""
    store = store or EvaluationStore()
    snapshot = check_snapshot(snapshot)
    all_tasks = load_task_set(snapshot, task_set)
    tasks = sample_tasks(all_tasks, config.sample_size, config.seed)
    played = [(s, t) for s in range(max(1, config.samples)) for t in tasks]
    total = len(played)
    if progress is not None:
        progress(0, total)
    episodes = policy.run_episodes(
        [t for _, t in played], snapshot, config.settings(),
        (lambda done: progress(done, total)) if progress is not None else None,
    ) if played else []
    lineage = policy.lineage()
    base = policy.base_model()
    compute = training_compute(lineage)
    run = {
        "evaluation_id": uuid.uuid4().hex,
        "created_at": datetime.now(timezone.utc),
        "policy": policy.name, "policy_spec": policy.spec, "policy_version": policy.version,
        "task_set": task_set, "task_set_version": task_set_version(snapshot, all_tasks),
        "snapshot_hash": read_manifest(snapshot).get("snapshot_hash", snapshot.name), "snapshot_path": str(snapshot),
        "code_version": evaluation_code_version(), "git_commit": git_commit(),
        "config_hash": config.config_hash, "config": config.asdict(),
        "base_model": base.get("name"), "base_model_hash": base.get("model_hash"),
        "lineage": lineage, "compute": compute[0], "n_tasks": len(tasks), "n_episodes": len(episodes),
    }
    rows = [episode_row(e, t, s, compute) for e, (s, t) in zip(episodes, played)]
    version = store.append_evaluation(run, rows)
    return EvaluationResult(run["evaluation_id"], version, {**run, "version": version}, rows)


def summarise_evaluation(store: EvaluationStore, evaluation_id: str, baseline: str | None = None,
                         resamples: int = metrics.BOOTSTRAP_RESAMPLES) -> list[dict[str, Any]]:
    """Compute and append the summary of an evaluation (deltas against the newest evaluation of `baseline`
    on the same tasks, when there is one and it is another policy); returns the summary rows."""
    run = store.evaluation(evaluation_id)
    if run is None:
        raise KeyError(f"no evaluation {evaluation_id!r} in {store.path}")
    rows = store.episodes(evaluation_id)
    base_run = None
    if baseline and baseline != run["policy"]:
        base_run = store.latest_evaluation(baseline, run["task_set"], task_set_version=run["task_set_version"])
    base_rows = store.episodes(base_run["evaluation_id"]) if base_run else None
    lineage = {k: run[k] for k in ("evaluation_id", "version", "created_at", "policy", "policy_spec",
                                   "policy_version", "task_set", "task_set_version", "snapshot_hash",
                                   "snapshot_path", "code_version", "git_commit", "config_hash", "config",
                                   "base_model", "base_model_hash")}
    common = {**lineage, "summary_id": uuid.uuid4().hex, "summarised_at": datetime.now(timezone.utc),
              "baseline_policy": base_run["policy"] if base_run else None,
              "baseline_evaluation_id": base_run["evaluation_id"] if base_run else None}
    summary = [{**common, **row} for row in metrics.summarise(rows, base_rows, resamples=resamples)]
    store.append_summaries(summary)
    return summary


def headline(summary: list[dict[str, Any]], metric: str = "pass@1") -> dict[str, Any] | None:
    """The overall row of a metric in a summary."""
    return next((r for r in summary if r["group_kind"] == "all" and r["metric"] == metric), None)
