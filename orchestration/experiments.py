"""Running an experiment (`experiments/<name>.yaml`) end to end, and `finqa-rl experiment`:

    finqa-rl experiment list
    finqa-rl experiment run single-vs-mixed [--launcher skypilot]
    finqa-rl experiment compare single-vs-mixed        # the comparison only, from what is already evaluated

`run_experiment` makes sure the data are materialised (raw -> dbt -> checks -> snapshot, only what changed), trains
the arms one after another on this machine or on rented GPUs (`policy[arm]` partitions; an arm that is current is
not trained again; an arm whose training fails is recorded as failed and the others go on), evaluates the arms and
their untrained counterparts on the experiment's task sets with its sample (only partitions whose inputs changed),
and materialises `experiments/<name>`: reports/experiments/<name>/ and the store's `comparisons` rows. Every run is
a Dagster run on the instance in $DAGSTER_HOME, so the UI shows them; the UI's `experiment_<name>` job runs this.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from orchestration.paths import REPO_ROOT


@dataclass
class ExperimentResult:
    experiment: Any
    outcomes: dict[str, Any] = field(default_factory=dict)  # arm -> ArmOutcome
    evaluations: list[Any] = field(default_factory=list)  # PolicyOutcome per evaluated policy
    comparison: Any = None
    path: Path | None = None

    @property
    def failed_arms(self) -> list[str]:
        return [a for a, o in self.outcomes.items() if o.status != "trained"]


def experiment_definitions(experiment, resources: dict[str, Any] | None = None):
    """The project's definitions with the experiment's evaluation sample (its task sample size, samples, seed)."""
    from orchestration.definitions import build_definitions
    from orchestration.defs.evaluation import default_evaluation_settings
    from orchestration.defs.experiments import experiment_settings

    resources = dict(resources or {})
    settings = resources.pop("evaluation", None) or default_evaluation_settings()
    return build_definitions({**resources, "evaluation": experiment_settings(experiment, settings)})


def ensure_data(defs, instance, log: Callable[[str], None], run_config: dict | None = None) -> bool:
    """Observe the raw files and materialise what changed up to the environment snapshot; True when it is there."""
    from orchestration import incremental, paths
    from orchestration.defs.evaluation import SNAPSHOT_KEY

    if not incremental.observe_sources(defs, instance, run_config=run_config).success:
        log("data: could not observe the raw files")
        return False
    plan = incremental.plan(defs, instance, paths.warehouse_path(), targets=[SNAPSHOT_KEY])
    if plan.up_to_date:
        log("data: up to date")
        return True
    log(f"data: materialising {len(plan.reasons)} out-of-date asset(s) up to the environment snapshot")
    result = incremental.execute(defs, instance, plan, run_config=run_config)
    return result.success


def run_experiment(experiment, launcher: str = "local", instance=None, log: Callable[[str], None] = print,
                   defs=None, run_config: dict | None = None, data: bool = True) -> ExperimentResult:
    """Train, evaluate and compare the experiment (see the module docstring)."""
    import dagster as dg

    from orchestration.arms import train_arm
    from orchestration.defs.evaluation import run_evaluations
    from orchestration.defs.experiments import comparison_key, dagster_name
    from rl_assets.experiments.comparison import ArmOutcome

    defs = defs or experiment_definitions(experiment)
    owned = instance is None
    instance = instance or dg.DagsterInstance.get()
    try:
        result = ExperimentResult(experiment)
        if data and not ensure_data(defs, instance, log, run_config):
            raise RuntimeError("the data half failed (raw -> dbt -> checks -> snapshot): see the runs' logs")
        for arm in experiment.arms:
            try:
                outcome = train_arm(defs, instance, arm.name, launcher, run_config=run_config, log=log)
            except Exception as e:  # an arm that cannot even start is a failed arm, not a failed experiment
                outcome = ArmOutcome(arm.name, "failed", f"{type(e).__name__}: {e}")
            result.outcomes[arm.name] = outcome
            log(f"{arm.name}: {outcome.status}" + (f" — {outcome.detail}" if outcome.detail else ""))
        trained = [a.name for a in experiment.arms if result.outcomes[a.name].status == "trained"]
        policies = [*dict.fromkeys(a.untrained for a in experiment.arms), *trained]
        result.evaluations = run_evaluations(defs, instance, tuple(policies), tuple(experiment.task_sets), log=log,
                                             run_config=run_config)
        job_name = "compare_" + dagster_name(experiment.name)
        comparison_job = dg.define_asset_job(job_name, selection=[comparison_key(experiment.name)])
        job = dg.Definitions.merge(defs, dg.Definitions(jobs=[comparison_job])).resolve_job_def(comparison_job.name)
        run = job.execute_in_process(instance=instance, raise_on_error=False, run_config=run_config)
        if not run.success:
            raise RuntimeError(f"the comparison experiments/{experiment.name} failed: see run {run.run_id}")
        (event,) = run.get_asset_materialization_events()
        metadata = event.materialization.metadata
        result.path = Path(str(metadata["path"].value))
        result.comparison = {k: getattr(v, "value", v) for k, v in metadata.items() if k != "report"}
        return result
    finally:
        if owned:
            instance.dispose()


# ------------------------------------------------------------------------------------------------------ command
def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    sub.add_parser("list", help="the experiment files and their arms")
    run = sub.add_parser("run", help="train the arms in sequence, evaluate them, write the comparison")
    run.add_argument("name", help="experiments/<name>.yaml: its name, or its path")
    run.add_argument("--launcher", default="local", choices=("local", "skypilot"),
                     help="where the arms train (skypilot: rented GPUs, docs/operations.md)")
    compare = sub.add_parser("compare", help="write the comparison from what is already trained and evaluated")
    compare.add_argument("name")


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("DAGSTER_HOME", str(REPO_ROOT / ".dagster_home"))
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    from rl_assets.experiments import ExperimentError, available_experiments, experiments_dir, load_experiment

    try:
        if args.action == "list":
            for name in available_experiments():
                try:
                    experiment = load_experiment(name)
                    print(f"{name}: arms {', '.join(experiment.arm_names)} (baseline {experiment.baseline}); "
                          f"task sets {', '.join(experiment.task_sets)}")
                except ExperimentError as e:
                    print(f"{name}: does not load: {e}")
            return 0
        experiment = load_experiment(args.name)
        if args.action == "run" and experiment.path.resolve().parent != experiments_dir():
            # the arms are resolved by name from the experiments folder and the comparison asset exists only for
            # its files: a file elsewhere would train no arm of its own and fail at the comparison
            raise ExperimentError(f"{experiment.path}: not in the experiments folder {experiments_dir()} "
                                  "($FINQA_RL_EXPERIMENTS_DIR), where its arms and its comparison are defined: "
                                  "put the file there")
    except ExperimentError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.action == "compare":
        import dagster as dg

        from orchestration.defs.evaluation import default_evaluation_settings
        from orchestration.defs.experiments import compare_experiment

        try:
            with dg.DagsterInstance.get() as instance:
                written = compare_experiment(instance, experiment, default_evaluation_settings())
        except dg.Failure as e:  # e.g. nothing materialised yet: no environment snapshot
            print(f"error: {e.description}", file=sys.stderr)
            return 1
        print(f"comparison: {written['path']}")
        return 0
    result = run_experiment(experiment, launcher=args.launcher, log=lambda line: print(f"  {line}", flush=True))
    print(f"comparison: {result.path}")
    for arm in result.failed_arms:
        print(f"  arm {arm}: {result.outcomes[arm].status} — {result.outcomes[arm].detail}")
    return 1 if result.failed_arms else 0
