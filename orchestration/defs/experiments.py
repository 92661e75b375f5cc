"""Experiments in Dagster (group `experiments`): for every `experiments/<name>.yaml`, a comparison asset
`experiments/<name>` and a job `experiment_<name>` that runs the whole experiment.

The comparison asset reads, for each arm, what happened to its training (orchestration.arms.arm_outcome) and the
newest evaluations of its arms and their untrained counterparts on the experiment's task sets (this snapshot, the
experiment's sample, the policies' current artifacts), and writes `reports/experiments/<name>/` plus the store's
`comparisons` rows (rl_assets.experiments.comparison). It re-materialises after any evaluation summary updates.

`experiment_<name>` (run config: `launcher: local | skypilot`) trains the arms one after another (each a
`policy[arm]` partition, skipped when current), evaluates the arms and their untrained counterparts on the
experiment's task sets (only partitions whose inputs changed), and materialises the comparison: the same driver
as `finqa-rl experiment run <name>` (orchestration.experiments).
"""

import re
from pathlib import Path
from typing import Any

import dagster as dg

from orchestration.defs.evaluation import (POLICIES_KEY, SUMMARIES_KEY, EvaluationSettings, after_any_update,
                                           latest_metadata, snapshot_path)

GROUP = "experiments"


def comparison_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["experiments", name])


def dagster_name(name: str) -> str:
    """An experiment name (a file stem: `single-vs-mixed`) as a Dagster op or job name ([A-Za-z0-9_]+)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def experiment_settings(experiment, settings: EvaluationSettings) -> EvaluationSettings:
    """The evaluation settings of an experiment: the resource's, with the experiment's sample and seed."""
    return settings.with_sample(experiment.sample_size, experiment.samples, experiment.seeds["evaluation"])


def compare_experiment(instance: dg.DagsterInstance, experiment, settings: EvaluationSettings) -> dict[str, Any]:
    """Compare the experiment's arms from the instance and the evaluation store; write the report and the store
    rows; returns {"comparison", "path"}."""
    from orchestration.arms import arm_outcome
    from rl_assets.evaluation.task_sets import load_task_set, task_set_version
    from rl_assets.experiments.comparison import compare

    settings = experiment_settings(experiment, settings)
    config_hash = settings.config().config_hash
    store = settings.store()
    snapshot = snapshot_path(instance)
    versions = {t: task_set_version(snapshot, load_task_set(snapshot, t)) for t in experiment.task_sets}
    outcomes = {arm.name: arm_outcome(instance, arm.name) for arm in experiment.arms}
    evaluations: dict[tuple[str, str], str | None] = {}
    for policy in experiment.policies:
        current = latest_metadata(instance, POLICIES_KEY, policy)
        for task_set in experiment.task_sets:
            row = store.latest_evaluation(policy, task_set, task_set_version=versions[task_set], config_hash=config_hash,
                                          policy_version=str(current["policy_version"]) if current else None)
            evaluations[(policy, task_set)] = row["evaluation_id"] if row and current else None
    comparison = compare(experiment, store, outcomes, evaluations)
    path = comparison.write(Path(settings.reports_root) / "experiments" / experiment.name)
    store.append_comparison(comparison.store_rows())
    return {"comparison": comparison, "path": path}


def comparison_asset(name: str) -> dg.AssetsDefinition:
    @dg.asset(
        key=comparison_key(name), group_name=GROUP, kinds={"markdown"},
        deps=[dg.AssetDep(SUMMARIES_KEY, partition_mapping=dg.AllPartitionMapping())],
        automation_condition=after_any_update(),
        description=f"experiments/{name}.yaml compared: arms x task sets, pass@k with intervals, paired deltas vs the "
                    "baseline arm, behaviour rates, training cost, lineage of every cell.",
    )
    def experiment_comparison(context: dg.AssetExecutionContext, evaluation: EvaluationSettings) -> dg.MaterializeResult:
        from rl_assets.experiments import ExperimentError, load_experiment

        try:
            experiment = load_experiment(name)
        except ExperimentError as e:
            raise dg.Failure(str(e)) from None
        result = compare_experiment(context.instance, experiment, evaluation)
        comparison, path = result["comparison"], result["path"]
        ok = [r for r in comparison.rows if r["status"] == "ok"]
        return dg.MaterializeResult(metadata={
            "comparison_id": comparison.comparison_id,
            "path": dg.MetadataValue.path(str(path)),
            "report": dg.MetadataValue.md(_embedded(path)),
            "cells_ok": len(ok), "cells": len(comparison.rows),
            "arms": dg.MetadataValue.json({a: v["status"] for a, v in comparison.arms.items()}),
            **{f"pass@1/{r['arm']}/{r['task_set']}": r["pass@1"] for r in ok if r.get("pass@1") is not None},
        })

    return experiment_comparison


def _embedded(markdown: Path) -> str:
    import base64

    text = markdown.read_text()
    for png in markdown.parent.glob("*.png"):
        text = text.replace(f"]({png.name})", f"](data:image/png;base64,{base64.b64encode(png.read_bytes()).decode()})")
    return text


class ExperimentRunConfig(dg.Config):
    launcher: str = "local"  # where the arms train: local (a subprocess here) | skypilot (a rented GPU)


def experiment_job(name: str) -> dg.JobDefinition:
    @dg.op(name=f"run_experiment_{dagster_name(name)}",
           description=f"Train the arms of experiments/{name}.yaml in sequence, evaluate them, compare.")
    def run_experiment_op(context: dg.OpExecutionContext, config: ExperimentRunConfig) -> None:
        from orchestration.experiments import run_experiment
        from rl_assets.experiments import load_experiment

        result = run_experiment(load_experiment(name), launcher=config.launcher, instance=context.instance,
                                log=context.log.info)
        context.log.info(f"comparison written to {result.path}")
        if result.failed_arms:
            context.log.warning(f"arms whose training failed (their cells say so): {', '.join(result.failed_arms)}")

    @dg.job(name=f"experiment_{dagster_name(name)}", tags={"finqa_rl/experiment": name},
            description=f"experiments/{name}.yaml: train its arms one after another, evaluate them, write the comparison.")
    def run_experiment_job():
        run_experiment_op()

    return run_experiment_job


def experiment_defs() -> tuple[list[dg.AssetsDefinition], list[dg.JobDefinition]]:
    """A comparison asset and a job per experiment file (a file that does not load is left out of the UI; the
    experiment command names its error)."""
    from rl_assets.experiments import ExperimentError, available_experiments, load_experiment

    assets, jobs = [], []
    for name in available_experiments():
        try:
            load_experiment(name)
        except ExperimentError:
            continue
        assets.append(comparison_asset(name))
        jobs.append(experiment_job(name))
    return assets, jobs
