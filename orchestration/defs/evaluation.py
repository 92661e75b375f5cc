"""Evaluation assets: policy × task set, so only what changed is recomputed.

    evaluation/task_sets [task_set]   the task set in the newest environment snapshot; data version = its
                                      task set version (tasks + the worlds they ask about)
    evaluation/policies  [policy]     the policy artifact; data version = its artifact version
    evaluation/episodes  [policy × task_set]  the episodes (rl_assets.evaluation.runner.run_evaluation),
                                      re-run when the data version of its task set or policy changes, or
                                      the evaluation code changes
    evaluation/summaries [policy × task_set]  pass@1, pass@k, rubric means, intervals, deltas vs the
                                      arm's untrained counterpart; check `oracle_pass_rate` (>= 98% on every test set)
    evaluation/report    [policy]     reports/<snapshot>-<policy>/ (markdown + plots), shown in the UI

The policy dimension is dynamic (`evaluation_policies`) and follows the arms: `oracle`, every trained arm (the newest
`policy[arm]` artifact) and each arm's untrained counterpart (named after its base model, e.g. `smollm2-135m`, shared
by arms on that base; a tiny arm's is `<arm>-untrained`). A `policy[arm]` materialisation adds its two partitions,
and automation evaluates them; a partition resolves to a policy through one function, `resolve_policy`, which
also accepts any policy spec (`hf:<dir>`, `openai:<model>`, ...) added as a partition. A new snapshot
re-materialises every task set, but only task sets whose tasks or worlds changed get new data versions, so only
their episodes re-run; a new training artifact changes only that arm's policy partition. Settings (store,
reports folder, sample size, ...) are the `evaluation` resource.
"""

import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

import dagster as dg

from orchestration.defs.automation import on_upstream_update, when
from orchestration.defs.training import (BASE_MODEL_KEY, EVALUATION_POLICIES, MODEL_LOADING_TAG,
                                         register_evaluation_policies)
from rl_assets.evaluation.runner import EvaluationConfig, evaluation_code_version
from rl_assets.evaluation.task_sets import TASK_SETS, TEST_TASK_SETS, parse_task_set
from rl_assets.policies import GenerationSettings

ORACLE = "oracle"
UNTRAINED_BASELINE = "untrained"  # the baseline setting meaning: each arm against its own untrained counterpart
# tasks per task set in automated, scheduled and UI runs: every task (0). The main command and experiments evaluate
# a seeded sample of their own (orchestration.main.MAIN_SAMPLE_SIZE, an experiment file's sample_size).
DEFAULT_SAMPLE_SIZE = 0
# episodes generated together. Each keeps its KV cache across turns (rl_assets.training.decoding): 16 episodes of
# SmolLM2-135M at ~2,000 tokens hold ~1.5 GB of cache, well inside the 8 GB a process may use here
DEFAULT_BATCH_SIZE = 16
ORACLE_MIN_PASS_RATE = 0.98
SNAPSHOT_KEY = dg.AssetKey("environment_snapshot")
TRAINED_POLICY_KEY = dg.AssetKey("policy")  # the training asset; its metadata names the artifact directory
ARTIFACT_METADATA_KEYS = ("model_path", "artifact_path", "path", "output_dir", "model_dir", "run_dir")
NIGHTLY_CRON = "0 2 * * *"

TASK_SETS_KEY = dg.AssetKey(["evaluation", "task_sets"])
POLICIES_KEY = dg.AssetKey(["evaluation", "policies"])
EPISODES_KEY = dg.AssetKey(["evaluation", "episodes"])
SUMMARIES_KEY = dg.AssetKey(["evaluation", "summaries"])
REPORT_KEY = dg.AssetKey(["evaluation", "report"])


class EvaluationSettings(dg.ConfigurableResource):
    """Where evaluations go and how automated / scheduled evaluations run (override in the launchpad:
    `resources: evaluation: config: sample_size: 0` evaluates every task)."""

    store_path: str
    reports_root: str
    models_root: str
    sample_size: int = DEFAULT_SAMPLE_SIZE
    samples: int = 1
    seed: int = 0
    max_turns: int = GenerationSettings.max_turns
    max_new_tokens: int = GenerationSettings.max_new_tokens
    batch_size: int = DEFAULT_BATCH_SIZE
    baseline: str = UNTRAINED_BASELINE  # or a policy name: every summary's deltas against that policy

    def config(self) -> EvaluationConfig:
        generation = replace(GenerationSettings(), max_turns=self.max_turns, max_new_tokens=self.max_new_tokens,
                             batch_size=self.batch_size)
        return EvaluationConfig(sample_size=self.sample_size or None, samples=self.samples, seed=self.seed,
                                generation=generation)

    def store(self):
        from rl_assets.evaluation.store import EvaluationStore

        return EvaluationStore(self.store_path)

    def with_sample(self, sample_size: int, samples: int, seed: int) -> "EvaluationSettings":
        """The same settings with another task sample (an experiment's, the main command's)."""
        fields = {name: getattr(self, name) for name in ("store_path", "reports_root", "models_root", "max_turns",
                                                         "max_new_tokens", "batch_size", "baseline")}
        return EvaluationSettings(**fields, sample_size=sample_size, samples=samples, seed=seed)


def default_evaluation_settings() -> EvaluationSettings:
    """Paths from FINQA_RL_EVALUATIONS / FINQA_RL_REPORTS_DIR / FINQA_RL_MODELS_DIR; every task of each set."""
    from rl_assets.evaluation.report import reports_root
    from rl_assets.evaluation.store import default_store_path
    from rl_assets.policies import models_root

    return EvaluationSettings(store_path=str(default_store_path()), reports_root=str(reports_root()),
                              models_root=str(models_root()), sample_size=DEFAULT_SAMPLE_SIZE)


# ---------------------------------------------------------------------------------------------- lookups
def _metadata_value(value: Any) -> Any:
    return getattr(value, "value", value)


def latest_metadata(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str | None = None) -> dict[str, Any] | None:
    """The metadata of the newest materialisation of an asset (partition), or None."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition is not None else None), limit=1
    ).records
    if not records:
        return None
    materialization = records[0].event_log_entry.asset_materialization
    return {k: _metadata_value(v) for k, v in materialization.metadata.items()}


def snapshot_path(instance: dg.DagsterInstance) -> Path:
    metadata = latest_metadata(instance, SNAPSHOT_KEY)
    if metadata is None or "path" not in metadata:
        raise dg.Failure("no environment snapshot: materialise environment_snapshot first")
    return Path(str(metadata["path"]))


def trained_artifact(instance: dg.DagsterInstance, arm: str) -> str | None:
    """The model directory of the newest `policy[arm]` (training) materialisation, if there is one."""
    metadata = latest_metadata(instance, TRAINED_POLICY_KEY, arm)
    for key in ARTIFACT_METADATA_KEYS:
        if metadata and metadata.get(key):
            return str(metadata[key])
    return None


def resolve_policy(instance: dg.DagsterInstance, name: str, settings: EvaluationSettings) -> str | None:
    """The policy spec an evaluation policy partition stands for now (None: no artifact yet): the one place a
    partition name becomes something to play.

    oracle -> the oracle; a registered base model -> `base:<name>` (untrained, the default training prompt);
    `<arm>-untrained` (a tiny arm) -> the starting point of that arm's newest run; an arm -> its newest trained
    artifact; anything else is a policy spec as given (hf:..., openai:..., router:...)."""
    from rl_assets.base_models import is_registered
    from rl_assets.experiments import ExperimentError, resolve_arm, untrained_arm
    from rl_assets.policies.hf import resolve_model_dir

    if name == ORACLE or name.startswith(("hf:", "openai:", "router:", "base:")):
        return name
    if is_registered(name):
        return f"base:{name}"
    tiny_arm = untrained_arm(name)
    if tiny_arm is not None:
        from rl_assets.policies.tiny import untrained_tiny_model

        artifact = trained_artifact(instance, tiny_arm.name)
        run = resolve_model_dir(artifact).parent if artifact else None
        return f"hf:{untrained_tiny_model(snapshot_path(instance), settings.models_root, run, tiny_arm.config)}"
    try:
        resolve_arm(name)
    except ExperimentError as e:
        raise dg.Failure(f"evaluation policy {name!r} is not oracle, a base model, an arm or a policy spec: {e}") from None
    artifact = trained_artifact(instance, name)
    return f"hf:{resolve_model_dir(artifact)}" if artifact else None


def baseline_for(name: str, settings: EvaluationSettings) -> str | None:
    """Whose evaluation a policy's summary deltas are against: its untrained counterpart (arms), or the setting."""
    if settings.baseline != UNTRAINED_BASELINE:
        return settings.baseline
    from rl_assets.experiments import ExperimentError, resolve_arm

    try:
        return resolve_arm(name).untrained
    except ExperimentError:
        return None  # oracle, base models, specs: no counterpart


def _load_policy(name: str, spec: str, snapshot: Path):
    from rl_assets.policies import load_policy

    return load_policy(spec, snapshot=snapshot, name=name)


# ---------------------------------------------------------------------------------------------- automation
def on_new_inputs() -> dg.AutomationCondition:
    """Episodes: run when missing, when the data version of its task set or policy changed, or when the
    evaluation code changed (a re-materialised input with the same data version does not count)."""
    A = dg.AutomationCondition
    return when(A.any_deps_match(A.data_version_changed()) | A.code_version_changed(), "on_new_inputs")


def after_any_update() -> dg.AutomationCondition:
    """Reports: run after any input updated (never merely because it is missing: a report needs evaluations)."""
    A = dg.AutomationCondition
    return (A.any_deps_updated().since((A.newly_requested() | A.newly_updated()).with_label("requested_or_updated"))
            & ~A.any_deps_in_progress() & ~A.in_progress()).with_label("after_any_update")


# ---------------------------------------------------------------------------------------------- assets
@dataclass(frozen=True)
class EvaluationDefs:
    assets: list[dg.AssetsDefinition]
    jobs: list[Any]  # asset job definitions
    schedules: list[dg.ScheduleDefinition]
    partitions: dg.MultiPartitionsDefinition


def build_evaluation_defs(task_sets: tuple[str, ...] = TASK_SETS) -> EvaluationDefs:
    policy_partitions = EVALUATION_POLICIES  # dynamic: oracle, arms, their untrained counterparts, specs
    task_set_partitions = dg.StaticPartitionsDefinition(list(task_sets))
    partitions = dg.MultiPartitionsDefinition({"policy": policy_partitions, "task_set": task_set_partitions})
    with warnings.catch_warnings():  # the mapping is marked beta; its behaviour here is covered by tests
        warnings.simplefilter("ignore", dg.BetaWarning)
        by_policy = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="policy")
        by_task_set = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="task_set")
    code_version = evaluation_code_version()

    @dg.asset(
        key=TASK_SETS_KEY, group_name="evaluation", partitions_def=task_set_partitions, deps=[SNAPSHOT_KEY],
        kinds={"parquet"}, code_version=code_version,
        automation_condition=on_upstream_update(),
        description="The task set's tasks in the newest environment snapshot; data version = task set version.",
    )
    def evaluation_task_sets(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        from rl_assets.evaluation.task_sets import load_task_set, task_set_version

        register_evaluation_policies(context.instance, [ORACLE])  # the reference, evaluated wherever tasks are
        snapshot = snapshot_path(context.instance)
        tasks = load_task_set(snapshot, context.partition_key)
        version = task_set_version(snapshot, tasks)
        by_source: dict[str, int] = {}
        for t in tasks:
            by_source[t["source"]] = by_source.get(t["source"], 0) + 1
        return dg.MaterializeResult(
            data_version=dg.DataVersion(version),
            metadata={"task_set_version": version, "snapshot_path": dg.MetadataValue.path(str(snapshot)),
                      "snapshot_hash": snapshot.name, "tasks": len(tasks), "by_source": dg.MetadataValue.json(by_source)},
        )

    @dg.asset(
        key=POLICIES_KEY, group_name="evaluation", partitions_def=policy_partitions,
        # every arm's training and every base model: a new artifact of one re-resolves each partition, but only the
        # partition whose artifact version changed gets a new data version (and so new episodes)
        deps=[SNAPSHOT_KEY, dg.AssetDep(TRAINED_POLICY_KEY, partition_mapping=dg.AllPartitionMapping()),
              dg.AssetDep(BASE_MODEL_KEY, partition_mapping=dg.AllPartitionMapping())],
        output_required=False, code_version=code_version,
        # a missing training artifact or base model does not hold the other policies back (an arm records nothing
        # until its `policy` partition is materialised: training is never automatic)
        automation_condition=when(dg.AutomationCondition.any_deps_updated(), "on_missing_or_upstream_update",
                                  ignore_missing=dg.AssetSelection.assets(TRAINED_POLICY_KEY, BASE_MODEL_KEY)),
        description="The policy artifact to evaluate; data version = its artifact version. An arm waits for its "
                    "`policy` (training) partition, a base model for its `base_model` partition.",
    )
    def evaluation_policies(context: dg.AssetExecutionContext, evaluation: EvaluationSettings) -> Iterator[dg.MaterializeResult]:
        name = context.partition_key
        spec = resolve_policy(context.instance, name, evaluation)
        if spec is None:
            context.log.info(f"{name}: no trained artifact yet (materialise policy[{name}]); nothing to evaluate")
            return
        policy = _load_policy(name, spec, snapshot_path(context.instance))
        yield dg.MaterializeResult(
            data_version=dg.DataVersion(policy.version),
            metadata={"policy": name, "spec": spec, "policy_version": policy.version,
                      "lineage": dg.MetadataValue.json(policy.lineage())},
        )

    @dg.asset(
        key=EPISODES_KEY, group_name="evaluation", partitions_def=partitions, kinds={"duckdb"}, op_tags=MODEL_LOADING_TAG,
        deps=[dg.AssetDep(TASK_SETS_KEY, partition_mapping=by_task_set),
              dg.AssetDep(POLICIES_KEY, partition_mapping=by_policy)],
        code_version=code_version, automation_condition=on_new_inputs(),
        description="Episodes of the policy on the (sampled) task set, appended to the evaluation store with "
                    "snapshot, task set, policy artifact, code and config versions on every row.",
    )
    def evaluation_episodes(context: dg.AssetExecutionContext, evaluation: EvaluationSettings) -> dg.MaterializeResult:
        from rl_assets.evaluation.runner import run_evaluation

        keys = context.partition_key.keys_by_dimension
        name, task_set = keys["policy"], keys["task_set"]
        task_set_meta = latest_metadata(context.instance, TASK_SETS_KEY, task_set)
        policy_meta = latest_metadata(context.instance, POLICIES_KEY, name)
        if task_set_meta is None or policy_meta is None:
            raise dg.Failure(f"materialise evaluation/task_sets[{task_set}] and evaluation/policies[{name}] first")
        snapshot = Path(str(task_set_meta["snapshot_path"]))
        policy = _load_policy(name, str(policy_meta["spec"]), snapshot)
        step = {"next": 0.0}

        def progress(done: int, total: int) -> None:
            if total and done / total >= step["next"]:
                context.log.info(f"{name} on {task_set}: {done}/{total} episodes")
                step["next"] += 0.25

        result = run_evaluation(policy, task_set, snapshot, evaluation.config(), evaluation.store(), progress=progress)
        stops: dict[str, int] = {}
        for row in result.episodes:
            stops[row["stop_reason"]] = stops.get(row["stop_reason"], 0) + 1
        run = result.run
        return dg.MaterializeResult(
            data_version=dg.DataVersion(result.evaluation_id),
            metadata={
                "evaluation_id": result.evaluation_id, "version": result.version,
                "pass@1": dg.MetadataValue.float(result.pass_at_1) if result.pass_at_1 is not None else None,
                "tasks": run["n_tasks"], "episodes": run["n_episodes"], "stop_reasons": dg.MetadataValue.json(stops),
                "snapshot_hash": run["snapshot_hash"], "task_set_version": run["task_set_version"],
                "policy_version": run["policy_version"], "code_version": run["code_version"],
                "config_hash": run["config_hash"], "store": dg.MetadataValue.path(str(evaluation.store_path)),
            },
        )

    @dg.asset(
        key=SUMMARIES_KEY, group_name="evaluation", partitions_def=partitions, kinds={"duckdb"},
        deps=[EPISODES_KEY], code_version=code_version, automation_condition=on_upstream_update(),
        check_specs=[dg.AssetCheckSpec(
            "oracle_pass_rate", asset=SUMMARIES_KEY,
            description=f"The oracle scores >= {ORACLE_MIN_PASS_RATE:.0%} pass@1 on every test set through this "
                        "evaluation code (other partitions: not applicable, passes).")],
        description="pass@1, unbiased pass@k, rubric means, failure modes with bootstrap 95% intervals, by "
                    "analytic type and source, and deltas vs the arm's untrained counterpart.",
    )
    def evaluation_summaries(context: dg.AssetExecutionContext, evaluation: EvaluationSettings) -> dg.MaterializeResult:
        from rl_assets.evaluation.runner import headline, summarise_evaluation

        keys = context.partition_key.keys_by_dimension
        name, task_set = keys["policy"], keys["task_set"]
        episodes_meta = latest_metadata(context.instance, EPISODES_KEY, context.partition_key)
        if episodes_meta is None:
            raise dg.Failure(f"no episodes for {context.partition_key}: materialise evaluation/episodes first")
        summary = summarise_evaluation(evaluation.store(), str(episodes_meta["evaluation_id"]),
                                       baseline=baseline_for(name, evaluation))
        top = headline(summary) or {}
        value = top.get("value")
        applies = name == ORACLE and parse_task_set(task_set).split == "test"
        passed = not applies or value is None or value >= ORACLE_MIN_PASS_RATE
        overall = {r["metric"]: r["value"] for r in summary if r["group_kind"] == "all"}
        return dg.MaterializeResult(
            metadata={
                "evaluation_id": str(episodes_meta["evaluation_id"]),
                "pass@1": value, "pass@1_ci_low": top.get("ci_low"), "pass@1_ci_high": top.get("ci_high"),
                "baseline": top.get("baseline_policy"), "delta_pass@1": top.get("delta"),
                "tasks": top.get("n_tasks"), "overall": dg.MetadataValue.json(overall),
            },
            check_results=[dg.AssetCheckResult(
                check_name="oracle_pass_rate", passed=bool(passed), severity=dg.AssetCheckSeverity.ERROR,
                metadata={"applies": applies, "pass@1": value, "tasks": top.get("n_tasks"),
                          "min_pass_rate": ORACLE_MIN_PASS_RATE},
            )],
        )

    @dg.asset(
        key=REPORT_KEY, group_name="evaluation", partitions_def=policy_partitions,
        deps=[dg.AssetDep(SUMMARIES_KEY, partition_mapping=by_policy)], kinds={"markdown"},
        code_version=code_version, automation_condition=after_any_update(),
        description="reports/<snapshot>-<policy>/: markdown + PNG plots, against every other policy evaluated "
                    "on the same tasks.",
    )
    def evaluation_report(context: dg.AssetExecutionContext, evaluation: EvaluationSettings) -> dg.MaterializeResult:
        from rl_assets.evaluation.report import build_report

        try:
            report = build_report(snapshot_path(context.instance), context.partition_key, evaluation.store(),
                                  evaluation.reports_root, baseline=baseline_for(context.partition_key, evaluation),
                                  task_sets=task_sets)
        except LookupError as e:
            raise dg.Failure(str(e)) from None
        return dg.MaterializeResult(metadata={
            "report": dg.MetadataValue.md(report.markdown_with_embedded_images()),
            "path": dg.MetadataValue.path(str(report.path)),
            **{f"pass@1/{t}": v for t, v in report.pass_at_1.items() if v is not None},
        })

    evaluation_job = dg.define_asset_job("evaluation", selection=[EPISODES_KEY, SUMMARIES_KEY], tags=MODEL_LOADING_TAG)
    jobs = [
        evaluation_job,
        dg.define_asset_job("evaluation_task_sets", selection=[TASK_SETS_KEY]),
        dg.define_asset_job("evaluation_policies", selection=[POLICIES_KEY]),
        dg.define_asset_job("evaluation_report", selection=[REPORT_KEY]),
    ]

    @dg.schedule(cron_schedule=NIGHTLY_CRON, job=evaluation_job, execution_timezone="UTC",
                 default_status=dg.DefaultScheduleStatus.RUNNING,
                 description="Every night: re-evaluate every available policy on every task set (new versions).")
    def nightly_evaluation(context: dg.ScheduleEvaluationContext):
        instance = context.instance
        ready_sets = instance.get_materialized_partitions(TASK_SETS_KEY)
        ready_policies = instance.get_materialized_partitions(POLICIES_KEY)
        night = context.scheduled_execution_time.date().isoformat()
        policies = instance.get_dynamic_partitions(EVALUATION_POLICIES.name)
        requests = [
            dg.RunRequest(run_key=f"nightly/{night}/{p}/{t}", partition_key=dg.MultiPartitionKey({"policy": p, "task_set": t}),
                          tags={"finqa_rl/trigger": "nightly", **MODEL_LOADING_TAG})
            for p in policies if p in ready_policies for t in task_sets if t in ready_sets
        ]
        return requests or dg.SkipReason("no evaluated policy or task set yet")

    return EvaluationDefs(
        assets=[evaluation_task_sets, evaluation_policies, evaluation_episodes, evaluation_summaries, evaluation_report],
        jobs=jobs, schedules=[nightly_evaluation], partitions=partitions,
    )


evaluation_defs = build_evaluation_defs()


# ---------------------------------------------------------------------------------------------- main command
@dataclass
class PolicyOutcome:
    policy: str
    status: str  # "reported", "skipped" or "failed"
    detail: str = ""
    report: str | None = None
    pass_at_1: dict[str, float | None] | None = None
    # task set -> the latest evaluation/summaries metadata: pass@1, pass@1_ci_low, pass@1_ci_high, tasks
    scores: dict[str, dict[str, Any]] | None = None


def _last_evaluation_passed(instance: dg.DagsterInstance, partition: dg.MultiPartitionKey) -> bool:
    """Whether the run that last materialised this evaluation partition succeeded with every check passing."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=EPISODES_KEY, asset_partitions=[partition]), limit=1).records
    if not records:
        return False
    run = instance.get_run_by_id(records[0].run_id)
    checks = instance.all_logs(records[0].run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    return (run is not None and run.is_success
            and all(e.dagster_event.event_specific_data.passed for e in checks if e.dagster_event))


def evaluation_order(policies) -> list[str]:
    """The oracle, then policies that are no arm (untrained counterparts, base models, specs), then arms: every
    arm's summary finds its counterpart's evaluation for its deltas."""
    from rl_assets.experiments import ExperimentError, resolve_arm

    def rank(name: str) -> int:
        if name == ORACLE:
            return 0
        try:
            resolve_arm(name)
            return 2
        except ExperimentError:
            return 1

    return sorted(dict.fromkeys(policies), key=rank)


def run_evaluations(defs: dg.Definitions, instance: dg.DagsterInstance, policies: tuple[str, ...] = (ORACLE,),
                    task_sets: tuple[str, ...] = TEST_TASK_SETS, log=print,
                    run_config: dict | None = None) -> list[PolicyOutcome]:
    """Materialise the evaluation partitions of `policies` × `task_sets` and each policy's report, one
    in-process run per partition (what the main command does after the main job). A partition whose task set,
    policy artifact and evaluation code are unchanged since its last materialisation is not evaluated again
    (the store would only get a copy of the same evaluation under a new version), unless it was evaluated with other
    settings (another task sample). `run_config` is added to
    every run's config (the main command's loggers)."""
    from orchestration.incremental import partition_is_current

    def execute(job: str, partition_key) -> dg.ExecuteInProcessResult:
        job_def = defs.resolve_job_def(job)
        config = None
        if run_config:
            partitioned = job_def.partitioned_config
            config = {**(partitioned.get_run_config_for_partition_key(partition_key) if partitioned else {}),
                      **run_config}
        return job_def.execute_in_process(instance=instance, partition_key=partition_key, raise_on_error=False,
                                          run_config=config)

    for task_set in task_sets:
        if not execute("evaluation_task_sets", task_set).success:
            return [PolicyOutcome(p, "failed", f"evaluation/task_sets[{task_set}] failed") for p in policies]
    outcomes = []
    register_evaluation_policies(instance, policies)
    settings = (defs.resources or {}).get("evaluation")
    # the evaluation settings these runs use (an experiment's sample differs from the main command's)
    config_hash = settings.config().config_hash if isinstance(settings, EvaluationSettings) else None
    for name in evaluation_order(policies):  # counterparts first: deltas in every arm's summary
        result = execute("evaluation_policies", name)
        if not result.success:
            outcomes.append(PolicyOutcome(name, "failed", "evaluation/policies failed (see the run's logs)"))
            continue
        if not result.get_asset_materialization_events():
            outcomes.append(PolicyOutcome(name, "skipped", f"no artifact yet (materialise policy[{name}])"))
            continue
        failed = []
        for task_set in task_sets:
            partition = dg.MultiPartitionKey({"policy": name, "task_set": task_set})
            last = latest_metadata(instance, EPISODES_KEY, partition) or {}
            same_sample = config_hash is None or last.get("config_hash") == config_hash
            if same_sample and partition_is_current(defs, instance, EPISODES_KEY, partition):
                passed = _last_evaluation_passed(instance, partition)
                log(f"{name} on {task_set}: unchanged since its last evaluation (same task set, policy and code "
                    f"versions){'' if passed else ', which failed'}")
                if not passed:
                    failed.append(task_set)
                continue
            log(f"evaluating {name} on {task_set}")
            run = execute("evaluation", partition)
            checks = [e.asset_check_evaluation_data for e in run.all_events
                      if e.event_type_value == "ASSET_CHECK_EVALUATION"]
            if not run.success or any(not c.passed for c in checks):
                failed.append(task_set)
        report_run = execute("evaluation_report", name)
        metadata = {}
        for event in report_run.get_asset_materialization_events():
            metadata = {k: _metadata_value(v) for k, v in event.materialization.metadata.items()}
        scores = {}
        for task_set in task_sets:
            summary = latest_metadata(instance, SUMMARIES_KEY, dg.MultiPartitionKey({"policy": name, "task_set": task_set}))
            if summary is not None:
                scores[task_set] = {k: summary.get(k) for k in ("pass@1", "pass@1_ci_low", "pass@1_ci_high", "tasks")}
        outcomes.append(PolicyOutcome(
            name, "failed" if failed or not report_run.success else "reported",
            f"failed on {', '.join(failed)}" if failed else "", str(metadata.get("path")) if metadata else None,
            {k.split("/", 1)[1]: v for k, v in metadata.items() if k.startswith("pass@1/")}, scores,
        ))
    return outcomes
