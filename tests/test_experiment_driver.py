"""The experiment driver end to end (orchestration/experiments.py: `run_experiment` and `finqa-rl experiment`).

Real: the Dagster runs on a temporary instance (the data half on small raw data, `train_arm` per arm, every
evaluation partition, the comparison asset), the local launcher's training subprocesses (tiny-test arms), the
evaluation of the trained arms and their untrained counterparts (a 4-task sample, short episodes), the report
and the store's `comparisons` rows. For the SkyPilot launcher: the launcher itself against the fake SkyPilot SDK
(tests/fake_sky.py) and a real S3 API (moto on loopback); the rented machine is a stand-in (no Qwen3-4B here: see
`GpuMachine`). The command's bad-input paths run as a subprocess.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
import traceback
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import pytest

from orchestration.paths import REPO_ROOT

SYNTH, MULTI = "single_table-synth-test", "multi_table-synth-test"
POLICY_KEY = dg.AssetKey("policy")
SNAPSHOT_KEY = dg.AssetKey("environment_snapshot")
NO_TRAIN_TASK = "has no train-split task"  # the entry point's error for an arm whose data selects no train task

TINY = "tiny-arms"
TINY_EXPERIMENT = f"""
description: two tiny arms that train differently, and one that cannot train (the small data has no finqa train task)
arms:
  - name: tiny-test
    config: tiny-test
  - name: tiny-short
    config: tiny-test
    overrides: ["sft.max_steps=4", "grpo.max_steps=2"]
  - name: tiny-finqa
    config: tiny-test
    overrides: ["data.sources=[finqa]"]
baseline: tiny-test
task_sets: [{SYNTH}, {MULTI}]
sample_size: 4
"""
TINY_ARMS = ("tiny-test", "tiny-short")
NEW_ARM = """  - name: tiny-sft
    config: tiny-test
    overrides: ["grpo.enabled=false", "sft.max_steps=2"]
"""


# ---------------------------------------------------------------------------------------------- workspace
@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Every path of the pipeline in a temporary folder (small raw data: one 10-K company per split), an
    experiments folder of its own, a temporary Dagster instance and small evaluation settings (short episodes)."""
    from orchestration.defs.evaluation import EvaluationSettings
    from test_main_command import small_raw

    root = tmp_path_factory.mktemp("experiment_driver")
    experiments, home = root / "experiments", root / "dagster_home"
    experiments.mkdir()
    home.mkdir()
    env = {"FINQA_RL_RAW_DIR": str(small_raw(root)), "FINQA_RL_WAREHOUSE": str(root / "warehouse.duckdb"),
           "FINQA_RL_SNAPSHOTS_DIR": str(root / "snapshots"), "FINQA_RL_RUNS_DIR": str(root / "runs"),
           "FINQA_RL_EVALUATIONS": str(root / "evaluations.duckdb"), "FINQA_RL_REPORTS_DIR": str(root / "reports"),
           "FINQA_RL_MODELS_DIR": str(root / "models"), "FINQA_RL_EXPERIMENTS_DIR": str(experiments),
           "DAGSTER_HOME": str(home)}
    settings = EvaluationSettings(store_path=env["FINQA_RL_EVALUATIONS"], reports_root=env["FINQA_RL_REPORTS_DIR"],
                                  models_root=env["FINQA_RL_MODELS_DIR"], max_turns=1, max_new_tokens=8)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        instance = dg.DagsterInstance.local_temp(str(home))
        try:
            yield SimpleNamespace(root=root, experiments=experiments, instance=instance, settings=settings)
        finally:
            instance.dispose()


def run(workspace, name: str, text: str, launcher: str = "local", resources: dict | None = None) -> SimpleNamespace:
    """Write experiments/<name>.yaml and run it as `finqa-rl experiment run <name>` does, on the workspace's
    instance with its evaluation settings: the result, the driver's log lines and the Dagster runs it made."""
    from orchestration.experiments import experiment_definitions, run_experiment
    from rl_assets.experiments import load_experiment

    (workspace.experiments / f"{name}.yaml").write_text(text)
    experiment = load_experiment(name)
    defs = experiment_definitions(experiment, {"evaluation": workspace.settings, **(resources or {})})
    instance, lines = workspace.instance, []
    before = {r.run_id for r in instance.get_runs()}
    result = run_experiment(experiment, launcher=launcher, instance=instance, log=lines.append, defs=defs)
    runs = [r.dagster_run for r in instance.get_run_records(ascending=True) if r.dagster_run.run_id not in before]
    return SimpleNamespace(result=result, lines=lines, runs=runs)


def store(workspace):
    from rl_assets.evaluation.store import EvaluationStore

    return EvaluationStore(workspace.settings.store_path)


def comparison_cells(workspace, comparison_id: str) -> dict[tuple[str, str], dict]:
    """The store's pass@1 cells of one comparison, by (arm row, task set)."""
    rows = store(workspace).query("SELECT * FROM comparisons WHERE comparison_id = ? AND metric = 'pass@1'",
                                  [comparison_id])
    cells = {(r["arm"], r["task_set"]): r for r in rows}
    assert len(cells) == len(rows)  # one cell per arm row and task set
    return cells


def partitions(runs: list[dg.DagsterRun], job: str) -> list[tuple]:
    """(partition, run status) of the runs of one job, in order; (policy, task set) for evaluation runs."""
    return [((r.tags["dagster/partition/policy"], r.tags["dagster/partition/task_set"]) if job == "evaluation"
             else r.tags["dagster/partition"], r.status) for r in runs if r.job_name == job]


# ---------------------------------------------------------------------------------------------- local launcher
@pytest.fixture(scope="module")
def first(workspace):
    """The tiny experiment run once (data half, three arms trained in turn, evaluations, comparison)."""
    return run(workspace, TINY, TINY_EXPERIMENT)


def test_two_arms_train_side_by_side_and_a_failed_arm_keeps_its_cells(workspace, first):
    from rl_assets.experiments import resolve_arm

    result, instance = first.result, workspace.instance
    assert {a: o.status for a, o in result.outcomes.items()} == {
        "tiny-test": "trained", "tiny-short": "trained", "tiny-finqa": "failed"}
    assert result.failed_arms == ["tiny-finqa"]
    # the failed arm's detail is the training process's own error (its first line), not Dagster's wrapper
    error = result.outcomes["tiny-finqa"].detail
    assert NO_TRAIN_TASK in error and "sources=['finqa']" in error, error

    # Dagster: one train_arm run per arm, in the experiment's order; only the two good arms are materialised
    assert partitions(first.runs, "train_arm") == [
        ("tiny-test", dg.DagsterRunStatus.SUCCESS), ("tiny-short", dg.DagsterRunStatus.SUCCESS),
        ("tiny-finqa", dg.DagsterRunStatus.FAILURE)]
    assert {*TINY_ARMS, "tiny-finqa"} & instance.get_materialized_partitions(POLICY_KEY) == set(TINY_ARMS)

    # each good arm has its own run directory, trained with its own config and overrides: neither overwrote the other
    run_dirs = {a: Path(result.outcomes[a].run_dir) for a in TINY_ARMS}
    assert len(set(run_dirs.values())) == 2
    for arm, run_dir in run_dirs.items():
        lineage = json.loads((run_dir / "lineage.json").read_text())
        config = resolve_arm(arm).train_config()
        assert lineage["arm"]["name"] == arm and lineage["config_hash"] == config.hash
        assert (lineage["final_metrics"]["sft/steps"], lineage["final_metrics"]["grpo/steps"]) == (
            config.sft.max_steps, config.grpo.max_steps)
        assert (run_dir / "model" / "model.safetensors").is_file()

    # evaluated: both arms and every untrained counterpart (the failed arm's too), on both task sets; not the failed arm
    policies = {*TINY_ARMS, "tiny-test-untrained", "tiny-short-untrained", "tiny-finqa-untrained"}
    assert {e.policy: e.status for e in result.evaluations} == {p: "reported" for p in policies}
    evaluated = partitions(first.runs, "evaluation")
    assert sorted(evaluated) == sorted(((p, t), dg.DagsterRunStatus.SUCCESS) for p in policies for t in (SYNTH, MULTI))

    # one comparison names both arms, the failed one with its error, and the untrained reference rows
    comparison_id = result.comparison["comparison_id"]
    assert result.path == Path(workspace.settings.reports_root) / "experiments" / TINY / "comparison.md"
    written = json.loads((result.path.parent / "comparison.json").read_text())
    assert written["comparison_id"] == comparison_id
    assert {a: v["status"] for a, v in written["arms"].items()} == {
        "tiny-test": "trained", "tiny-short": "trained", "tiny-finqa": "failed"}
    rows = {(r["arm"], r["task_set"]): r for r in written["rows"]}
    cells = comparison_cells(workspace, comparison_id)
    assert set(cells) == set(rows) == {(a, t) for a in (
        *TINY_ARMS, "tiny-finqa", *(f"{p} (untrained)" for p in ("tiny-test-untrained", "tiny-short-untrained",
                                                                 "tiny-finqa-untrained"))) for t in (SYNTH, MULTI)}
    for task_set in (SYNTH, MULTI):
        good = [cells[(a, task_set)] for a in TINY_ARMS]
        assert [c["status"] for c in good] == ["ok", "ok"] and all(c["n_tasks"] == 4 for c in good)
        assert good[0]["policy_version"] != good[1]["policy_version"]  # two artifacts, each arm its own
        assert good[0]["evaluation_id"] != good[1]["evaluation_id"]
        assert good[0]["training_config_hash"] != good[1]["training_config_hash"]
        assert good[1]["delta"] is not None and good[0]["delta"] is None  # paired against the baseline arm
        failed = cells[("tiny-finqa", task_set)]
        assert (failed["status"], failed["detail"], failed["evaluation_id"]) == ("training failed", error, None)
        assert rows[("tiny-finqa", task_set)]["status"] == "training failed"
    evaluations = {r["evaluation_id"]: r for r in store(workspace).query("SELECT * FROM evaluations")}
    assert all(evaluations[c["evaluation_id"]]["policy"] == c["policy"] for c in cells.values() if c["evaluation_id"])
    markdown = result.path.read_text()
    assert "| `tiny-test` | `tiny-test` | – | trained |" in markdown
    assert "| `tiny-short` | `tiny-test` | `sft.max_steps=4`, `grpo.max_steps=2` | trained |" in markdown
    assert f"| `tiny-finqa` | `tiny-test` | `data.sources=[finqa]` | failed: {error} |" in markdown
    assert f"| tiny-finqa | {SYNTH} | 0 | – | – | training failed: {error} |" in markdown
    assert result.comparison["cells"] == len(rows) and result.comparison["cells_ok"] == len(rows) - 2


def test_a_rerun_with_a_new_arm_trains_and_evaluates_only_what_is_new(workspace, first):
    instance = workspace.instance
    evaluations_before = {r["evaluation_id"] for r in store(workspace).query("SELECT evaluation_id FROM evaluations")}
    snapshots_before = len(instance.fetch_materializations(SNAPSHOT_KEY, limit=100).records)

    second = run(workspace, TINY, TINY_EXPERIMENT.replace("baseline:", NEW_ARM + "baseline:"))
    result, lines = second.result, second.lines

    assert {a: o.status for a, o in result.outcomes.items()} == {
        "tiny-test": "trained", "tiny-short": "trained", "tiny-finqa": "failed", "tiny-sft": "trained"}
    # the data half is up to date: no new snapshot
    assert "data: up to date" in lines
    assert len(instance.fetch_materializations(SNAPSHOT_KEY, limit=100).records) == snapshots_before
    # trained now: the new arm, and the failed arm tried again; the two trained arms are current and kept
    assert partitions(second.runs, "train_arm") == [
        ("tiny-finqa", dg.DagsterRunStatus.FAILURE), ("tiny-sft", dg.DagsterRunStatus.SUCCESS)]
    for arm in TINY_ARMS:
        assert f"{arm}: trained earlier on the same snapshot with the same code (not trained again)" in lines
        assert result.outcomes[arm].run_dir == first.result.outcomes[arm].run_dir
        assert not result.outcomes[arm].trained_now
    assert result.outcomes["tiny-sft"].trained_now

    # evaluated now: only the new arm and its (new) untrained counterpart, on both task sets
    evaluated = sorted(partition for partition, _ in partitions(second.runs, "evaluation"))
    assert evaluated == sorted((p, t) for p in ("tiny-sft", "tiny-sft-untrained") for t in (SYNTH, MULTI))
    added = store(workspace).query("SELECT policy, task_set, evaluation_id FROM evaluations")
    added = [r for r in added if r["evaluation_id"] not in evaluations_before]
    assert sorted((r["policy"], r["task_set"]) for r in added) == evaluated

    # the new comparison: the new arm's cells, and the old arms' cells read from the same evaluations as before
    old = comparison_cells(workspace, first.result.comparison["comparison_id"])
    new = comparison_cells(workspace, result.comparison["comparison_id"])
    added_rows = {(a, t) for a in ("tiny-sft", "tiny-sft-untrained (untrained)") for t in (SYNTH, MULTI)}
    assert set(new) == set(old) | added_rows
    assert all(new[k]["evaluation_id"] == old[k]["evaluation_id"] for k in old)
    assert all(new[("tiny-sft", t)]["status"] == "ok" for t in (SYNTH, MULTI))
    written = json.loads((result.path.parent / "comparison.json").read_text())
    assert written["comparison_id"] == result.comparison["comparison_id"]


# ---------------------------------------------------------------------------------------------- SkyPilot
QWEN = "qwen-arms"
QWEN_EXPERIMENT = f"""
description: qwen3-4b-lora arms on rented GPUs (a fake cloud); one whose training fails on the machine
arms:
  - name: qwen3-4b-lora
    config: qwen3-4b-lora
  - name: qwen-lora-r8
    config: qwen3-4b-lora
    overrides: ["model.lora.r=8", "grpo.max_steps=50"]
  - name: qwen-lora-finqa
    config: qwen3-4b-lora
    overrides: ["data.sources=[finqa]"]
baseline: qwen3-4b-lora
task_sets: [{SYNTH}]
sample_size: 4
"""
QWEN_ARMS = ("qwen3-4b-lora", "qwen-lora-r8", "qwen-lora-finqa")


class GpuMachine:
    """Stands in for the task's run line (`python -m rl_assets.train ...`) on a rented GPU. It reads what the
    machine was given: the config and `--set` overrides from the task's envs, the snapshot from its bucket mount
    (linked under its content hash, as the run line does). It loads the config with the overrides, reads the
    train tasks as training does and fails, like the entry point, when there is none (the exception reaches
    Dagster through Pipes in the bucket). Qwen3-4B cannot be trained here, so the artifact it leaves in
    runs/<run id>/ is a tiny model built by the training code from that snapshot, with a lineage.json naming
    the config, its hash and the overrides: something the evaluation can play."""

    def __init__(self, s3, models_root: Path):
        self.s3, self.models_root = s3, models_root
        self.launches: list[dict] = []

    def __call__(self, machine) -> int:
        from dagster_pipes import PipesException

        from rl_assets.policies.tiny import build_untrained_tiny_model
        from rl_assets.snapshot import read_tasks
        from rl_assets.training.config import load_config

        envs = machine.envs
        words = shlex.split(envs["FINQA_RL_TRAIN_ARGS"])
        assert words[::2] == ["--set"] * (len(words) // 2), words
        overrides = words[1::2]
        self.launches.append({"config": envs["FINQA_RL_CONFIG"], "overrides": overrides,
                              "run_id": envs["FINQA_RL_RUN_ID"]})
        self.pipes(machine, {"method": "opened", "params": {}})
        snapshot_hash = envs["FINQA_RL_SNAPSHOT_HASH"]
        snapshot = machine.mounts["/finqa/snapshot"].parent / "finqa-snapshots" / snapshot_hash
        snapshot.parent.mkdir()
        snapshot.symlink_to(machine.mounts["/finqa/snapshot"])
        try:
            config = load_config(envs["FINQA_RL_CONFIG"], overrides)
            if not read_tasks(snapshot, splits=["train"], question_types=config.data.question_types,
                              sources=config.data.sources):
                raise ValueError(f"snapshot {snapshot_hash} {NO_TRAIN_TASK} with question_types="
                                 f"{config.data.question_types} sources={config.data.sources}")
        except Exception as e:  # as `with open_pipes()` in the entry point: closed with the exception, exit 1
            exception = PipesException(message="".join(traceback.format_exception_only(e)), name=type(e).__name__,
                                       stack=traceback.format_tb(e.__traceback__), cause=None, context=None)
            self.pipes(machine, {"method": "closed", "params": {"exception": exception}})
            machine.output_lines.append(f"{type(e).__name__}: {e}")
            return 1
        out = machine.output_dir()
        shutil.copytree(build_untrained_tiny_model(snapshot, self.models_root, "tiny-test"), out / "model")
        (out / "lineage.json").write_text(json.dumps({
            "snapshot_hash": snapshot_hash, "config_name": config.name, "config_hash": config.hash,
            "config_overrides": overrides, "git_commit": None, "code_version": "gpu-machine-standin",
            "base_model": config.model.base,
            "final_metrics": {"sft/steps": config.sft.max_steps, "grpo/steps": config.grpo.max_steps}}))
        self.pipes(machine, {"method": "closed", "params": {}})
        return 0

    def pipes(self, machine, message: dict) -> None:
        from dagster_pipes import PIPES_PROTOCOL_VERSION, PIPES_PROTOCOL_VERSION_FIELD, decode_param

        from rl_assets.pipes import existing_chunk_count

        params = decode_param(machine.envs["DAGSTER_PIPES_MESSAGES"])
        bucket, prefix = params["bucket"], params["key_prefix"]
        key = f"{prefix}/{existing_chunk_count(self.s3, bucket, prefix) + 1}.json"
        body = json.dumps({PIPES_PROTOCOL_VERSION_FIELD: PIPES_PROTOCOL_VERSION, **message})
        self.s3.put_object(Bucket=bucket, Key=key, Body=body.encode())


def test_qwen_arms_train_on_rented_gpus_through_skypilot_and_are_compared(workspace, s3_server, s3_bucket, tmp_path):
    import fake_sky
    from orchestration.launchers.skypilot import SkyPilotLauncher, skypilot_name
    from rl_assets.experiments import resolve_arm
    from rl_assets.training.config import parse_overrides

    client = s3_server.client()
    machine = GpuMachine(client, tmp_path / "machine-models")
    cloud = fake_sky.install(fake_sky.FakeCloud(client, tmp_path / "cloud", machine))
    launcher = SkyPilotLauncher(bucket=s3_bucket, endpoint_url=s3_server.endpoint_url, sdk_module="fake_sky",
                                managed_job=False, pipes_interval_s=0, job_poll_interval_s=0,
                                catalog_dir=str(tmp_path / "no-catalog"))

    done = run(workspace, QWEN, QWEN_EXPERIMENT, launcher="skypilot", resources={"skypilot_launcher": launcher})
    result = done.result

    # each arm reached the cloud with its own config name and overrides, in the experiment's order
    assert [(m["config"], parse_overrides(m["overrides"], Path(m["config"]))) for m in machine.launches] == [
        ("qwen3-4b-lora", parse_overrides(list(resolve_arm(a).overrides), Path("qwen3-4b-lora"))) for a in QWEN_ARMS]
    assert all(m["run_id"].startswith(f"{arm}-") for m, arm in zip(machine.launches, QWEN_ARMS))
    # one cluster per arm, launched then torn down, the failed arm's too
    names = [skypilot_name(m["run_id"]) for m in machine.launches]
    assert len(set(names)) == 3
    assert [(c, k["cluster_name"]) for c, k in cloud.calls if c in ("launch", "down")] == [
        (call, name) for name in names for call in ("launch", "down")]
    assert [t.envs["FINQA_RL_CONFIG"] for t in cloud.submitted_tasks] == ["qwen3-4b-lora"] * 3

    # outcomes: two trained from what the machines left in the bucket (with the launcher's compute record)
    assert {a: o.status for a, o in result.outcomes.items()} == {
        "qwen3-4b-lora": "trained", "qwen-lora-r8": "trained", "qwen-lora-finqa": "failed"}
    error = result.outcomes["qwen-lora-finqa"].detail
    assert NO_TRAIN_TASK in error and "sources=['finqa']" in error, error
    assert len({result.outcomes[a].run_dir for a in ("qwen3-4b-lora", "qwen-lora-r8")}) == 2
    for arm in ("qwen3-4b-lora", "qwen-lora-r8"):
        lineage = result.outcomes[arm].lineage
        assert lineage["config_hash"] == resolve_arm(arm).train_config().hash and lineage["arm"]["name"] == arm
        assert lineage["compute"]["accelerator"] == "H100" and lineage["compute"]["mode"] == "cluster"
    assert partitions(done.runs, "train_arm") == [
        ("qwen3-4b-lora", dg.DagsterRunStatus.SUCCESS), ("qwen-lora-r8", dg.DagsterRunStatus.SUCCESS),
        ("qwen-lora-finqa", dg.DagsterRunStatus.FAILURE)]

    # the two trained arms were evaluated and compared, with their GPU cost; the failed arm's cells say why.
    # (Their untrained counterpart, the base `Qwen/Qwen3-4B-Instruct-2507`, is neither a registered base model
    # nor a tiny one: no policy resolves it, so its row is not evaluated; nothing here asserts on it.)
    outcomes = {e.policy: e.status for e in result.evaluations}
    assert outcomes["qwen3-4b-lora"] == outcomes["qwen-lora-r8"] == "reported" and "qwen-lora-finqa" not in outcomes
    evaluated = partitions(done.runs, "evaluation")
    assert {(arm, SYNTH) for arm in ("qwen3-4b-lora", "qwen-lora-r8")} <= {k for k, status in evaluated
                                                                            if status == dg.DagsterRunStatus.SUCCESS}
    assert not any(policy == "qwen-lora-finqa" for (policy, _), _ in evaluated)
    written = json.loads((result.path.parent / "comparison.json").read_text())
    assert written["comparison_id"] == result.comparison["comparison_id"]
    rows = {(r["arm"], r["task_set"]): r for r in written["rows"]}
    trained = [rows[(a, SYNTH)] for a in ("qwen3-4b-lora", "qwen-lora-r8")]
    assert [r["status"] for r in trained] == ["ok", "ok"] and all(r["n_tasks"] == 4 for r in trained)
    assert trained[0]["policy_version"] and trained[0]["evaluation_id"] != trained[1]["evaluation_id"]
    assert (rows[("qwen-lora-finqa", SYNTH)]["status"], rows[("qwen-lora-finqa", SYNTH)]["detail"]) == (
        "training failed", error)
    for arm in ("qwen3-4b-lora", "qwen-lora-r8"):
        cost = written["arms"][arm]["cost"]
        assert cost["source"] == "compute (launcher)" and cost["device"] == "1x H100"
        assert cost["gpu_minutes"] is not None and cost["estimated_usd"] is not None
    cells = comparison_cells(workspace, result.comparison["comparison_id"])
    assert cells[("qwen-lora-r8", SYNTH)]["evaluation_id"] == trained[1]["evaluation_id"]


# ---------------------------------------------------------------------------------------------- the command
GOOD = f"""
arms:
  - name: cmd-a
    config: tiny-test
  - name: cmd-b
    config: tiny-test
    overrides: ["sft.max_steps=2"]
task_sets: [{SYNTH}, {MULTI}]
"""


def experiment_command(tmp_path: Path, *args: str):
    """`python -m rl_assets.cli experiment ...` with its experiments folder, Dagster home and every output folder
    in tmp_path; (process, the Dagster home)."""
    import os

    from child_processes import run_process

    home = tmp_path / "dagster_home"
    env = {**os.environ, "FINQA_RL_EXPERIMENTS_DIR": str(tmp_path / "experiments"), "DAGSTER_HOME": str(home),
           **{var: str(tmp_path / name) for var, name in (
               ("FINQA_RL_RUNS_DIR", "runs"), ("FINQA_RL_WAREHOUSE", "warehouse.duckdb"),
               ("FINQA_RL_SNAPSHOTS_DIR", "snapshots"), ("FINQA_RL_EVALUATIONS", "evaluations.duckdb"),
               ("FINQA_RL_REPORTS_DIR", "reports"), ("FINQA_RL_MODELS_DIR", "models"))}}
    done = run_process([sys.executable, "-m", "rl_assets.cli", "experiment", *args], timeout_s=120, cwd=REPO_ROOT,
                       env=env)
    return done, home


def test_experiment_list_names_each_file_and_why_one_does_not_load(tmp_path):
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "good.yaml").write_text(GOOD)
    (tmp_path / "experiments" / "broken.yaml").write_text(GOOD.replace("config: tiny-test\n  - name: cmd-b",
                                                                       "config: tiny-nope\n  - name: cmd-b"))
    done, _ = experiment_command(tmp_path, "list")
    assert done.returncode == 0, done.stderr
    broken, good = done.stdout.splitlines()
    assert broken.startswith(f"broken: does not load: {tmp_path / 'experiments' / 'broken.yaml'}: arms[0]: arm cmd-a: "
                             f"no training config {REPO_ROOT / 'rl_assets' / 'configs' / 'tiny-nope.yaml'} (known: ")
    assert good == f"good: arms cmd-a, cmd-b (baseline cmd-a); task sets {SYNTH}, {MULTI}"


@pytest.mark.parametrize("action", ["run", "compare"])
@pytest.mark.parametrize("text,problem", [
    (GOOD.replace("config: tiny-test\n  - name: cmd-b", "config: tiny-nope\n  - name: cmd-b"),
     ["arms[0]: arm cmd-a: no training config", "tiny-nope.yaml"]),
    (GOOD.replace("sft.max_steps", "sft.max_stepz"), ["arms[1]: arm cmd-b:", "unknown key(s) sft.max_stepz"]),
    (GOOD + "budget: 3\n", ["unknown key(s) budget"]),
    (GOOD.replace(MULTI, "multi_table-synth-best"), ["task_sets: unknown task set 'multi_table-synth-best'"]),
    (GOOD.replace("name: cmd-b", "name: cmd-a"), ["two arms are named 'cmd-a'"]),
], ids=["unknown-config", "unknown-config-key", "unknown-key", "unknown-task-set", "duplicate-arm"])
def test_a_bad_experiment_file_is_one_error_line_and_exit_2_before_anything_runs(tmp_path, text, problem, action):
    (tmp_path / "experiments").mkdir()
    path = tmp_path / "experiments" / "bad.yaml"
    path.write_text(text)
    done, home = experiment_command(tmp_path, action, "bad")
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"error: {path}: ") and all(p in line for p in problem), line
    assert not any(home.iterdir()) and not (tmp_path / "runs").exists()  # no Dagster instance, no training


def test_running_a_file_outside_the_experiments_folder_is_refused_before_anything_runs(tmp_path):
    """Its arms could not be resolved by name, nor its comparison asset found: nothing would train and the run
    would fail at the end."""
    (tmp_path / "experiments").mkdir()
    elsewhere = tmp_path / "elsewhere" / "mine.yaml"
    elsewhere.parent.mkdir()
    elsewhere.write_text(GOOD)
    done, home = experiment_command(tmp_path, "run", str(elsewhere))
    assert done.returncode == 2 and done.stdout == "", done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"error: {elsewhere}: not in the experiments folder {tmp_path / 'experiments'} ")
    assert not any(home.iterdir()) and not (tmp_path / "runs").exists()


def test_comparing_before_anything_ran_is_an_error_line_not_a_traceback(tmp_path):
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "good.yaml").write_text(GOOD)
    done, _ = experiment_command(tmp_path, "compare", "good")
    assert done.returncode == 1 and done.stdout == "", done.stderr
    assert done.stderr.splitlines()[-1] == "error: no environment snapshot: materialise environment_snapshot first"
    assert "Traceback" not in done.stderr


def test_an_unknown_experiment_name_is_an_error_naming_the_known_ones(tmp_path):
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "good.yaml").write_text(GOOD)
    done, _ = experiment_command(tmp_path, "run", "nope")
    assert done.returncode == 2 and done.stdout == ""
    nope = tmp_path / "experiments" / "nope.yaml"
    assert done.stderr.splitlines() == [f"error: no experiment file {nope} (known: good)"]
