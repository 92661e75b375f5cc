"""Every asset selection a user can pick materialises on any Dagster instance.

Each run goes through `dg` (dagster-dg-cli, the project's CLI) with the selection typed as a user types it,
Dagster's default multiprocess executor (every step its own process), a fresh DAGSTER_HOME with no
dagster.yaml (so no concurrency pool limits), and a small copy of the real raw data (one 10-K company per
split, enough tasks for every blocking check):

- `dg check defs` and `dg list defs` succeed;
- `dg launch --assets "*environment_snapshot"` (the snapshot with everything upstream) on a fresh warehouse:
  dbt does not run the tests of marts outside the selection, and the snapshot's lineage records the raw
  files that were never observed instead of failing on Dagster's "NULL" input pointers;
- the data half (`not group:"training" and not group:"evaluation" and not group:"experiments"`) on a fresh
  instance, then each group alone, in dependency order, on another fresh instance;
- two runs loading raw sources at the same moment wait for each other on the warehouse lock;
- the shipped instance (.dagster_home/dagster.yaml) bounds concurrent runs, model-loading runs are tagged;
- the warehouse lock itself (shared readers, exclusive writers, the timeout names the lock and its holder) and
  the lineage of a parent that was read before it was ever observed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from orchestration.defs.resources import (Warehouse, WarehouseLockTimeout, connect_warehouse, lock_dir, lock_holders,
                                          warehouse_lock)
from orchestration.defs.snapshot import data_lineage, storage_id
from orchestration.paths import REPO_ROOT
from rl_assets.snapshot import read_manifest

RAW = REPO_ROOT / "data" / "raw"
DG = Path(sys.executable).parent / "dg"  # the .venv's dg, next to the interpreter running the tests
RUNNER = REPO_ROOT / "tests" / "dg_launch_runner.py"
# raw -> dbt -> checks -> snapshot: everything but the model side (training, evaluation, experiments)
DATA_HALF = 'not group:"training" and not group:"evaluation" and not group:"experiments"'
GROUPS_IN_DEPENDENCY_ORDER = ("raw", "curation_seeds", "curation_staging", "curation_intermediate", "curation_marts",
                              "environment")
# one company per split (apple: train, amazon: val, fedex: test): every split has enough synthesised tasks for
# the Great Expectations minimum counts; a few FinQA and TAT-QA records so every source yields tasks
COMPANIES = ("apple", "amazon", "fedex")
FINQA_LINES, TATQA_DOCS = 60, 20
RAW_FILES = {f"raw_files/{source}" for source in ("sec10k", "finqa", "tatqa")}
SNAPSHOT = dg.AssetKey("environment_snapshot")
LAUNCH_TIMEOUT_S = 900

needs_dg = pytest.mark.skipif(not DG.exists(), reason=f"dg (dagster-dg-cli) is not next to {sys.executable}")


def small_raw_copy(root: Path) -> Path:
    sec = root / "sec10k_tables"
    sec.mkdir(parents=True)
    shutil.copy(RAW / "sec10k_tables" / "tables_cleaned_all_companies.json", sec)
    for company in COMPANIES:
        shutil.copytree(RAW / "sec10k_tables" / company, sec / company)
    (root / "finqa").mkdir()
    lines = (RAW / "finqa" / "finqa_examples.jsonl").read_text().splitlines()[:FINQA_LINES]
    (root / "finqa" / "finqa_examples.jsonl").write_text("\n".join(lines) + "\n")
    (root / "tatqa").mkdir()
    docs = json.loads((RAW / "tatqa" / "tatqa_dataset_dev.json").read_text())[:TATQA_DOCS]
    (root / "tatqa" / "tatqa_dataset_dev.json").write_text(json.dumps(docs))
    return root


@dataclass
class Workspace:
    """A small raw folder, a warehouse, snapshot/runs/evaluation folders, and DAGSTER_HOMEs, all under tmp."""

    root: Path
    warehouse: Path
    env: dict[str, str]

    def home(self, name: str) -> Path:
        """A fresh, empty DAGSTER_HOME: no dagster.yaml, so Dagster's defaults (no pool limits, no run queue limits)."""
        home = self.root / "homes" / name
        home.mkdir(parents=True)
        return home

    def run(self, command: list, home: Path | None = None, timeout: float = LAUNCH_TIMEOUT_S
            ) -> subprocess.CompletedProcess:
        env = self.env if home is None else {**self.env, "DAGSTER_HOME": str(home)}
        return run_command(command, env, timeout)


def run_command(command: list, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """Run a command from the repository root; on timeout end it and every process it started (run workers)."""
    process = subprocess.Popen([str(c) for c in command], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        raise AssertionError(f"{command} did not finish within {timeout:.0f}s:\n{(stdout + stderr)[-6000:]}")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.fixture
def workspace(tmp_path) -> Workspace:
    warehouse = tmp_path / "warehouse.duckdb"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FINQA_RL_", "DAGSTER_", "DBT_"))}
    env.update({
        "FINQA_RL_RAW_DIR": str(small_raw_copy(tmp_path / "raw")),
        "FINQA_RL_WAREHOUSE": str(warehouse),
        "FINQA_RL_SNAPSHOTS_DIR": str(tmp_path / "snapshots"),
        "FINQA_RL_RUNS_DIR": str(tmp_path / "runs"),
        "FINQA_RL_EVALUATIONS": str(tmp_path / "evaluations.duckdb"),
        "FINQA_RL_REPORTS_DIR": str(tmp_path / "reports"),
        "FINQA_RL_MODELS_DIR": str(tmp_path / "models"),
        "PYTHONUNBUFFERED": "1",
    })
    return Workspace(tmp_path, warehouse, env)


def output(process: subprocess.CompletedProcess, chars: int = 6000) -> str:
    """The failed steps' lines and the end of a command's output, for an assertion message."""
    text = process.stdout + process.stderr
    failures = [line[:2000] for line in text.splitlines() if "STEP_FAILURE" in line or "Error" in line]
    return "\n".join(failures[:20]) + "\n...\n" + text[-chars:]


@contextmanager
def instance_at(home: Path):
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance


def materialised(instance: dg.DagsterInstance, key: str | dg.AssetKey) -> bool:
    key = key if isinstance(key, dg.AssetKey) else dg.AssetKey.from_user_string(key)
    return instance.get_latest_materialization_event(key) is not None


def snapshot_manifest(instance: dg.DagsterInstance) -> dict:
    event = instance.get_latest_materialization_event(SNAPSHOT)
    return read_manifest(Path(event.asset_materialization.metadata["path"].value))


# ------------------------------------------------------------------------------------------------ dg project


@needs_dg
def test_dg_check_defs_and_dg_list_defs(workspace):
    home = workspace.home("check")
    checked = workspace.run([DG, "check", "defs"], home, timeout=600)
    assert checked.returncode == 0, output(checked)
    assert "All definitions loaded successfully" in checked.stdout + checked.stderr

    listed = workspace.run([DG, "list", "defs", "--json", "--assets", "*environment_snapshot"], home, timeout=600)
    assert listed.returncode == 0, output(listed)
    defs = json.loads(listed.stdout)
    assets = {a["asset_key"]: a for a in defs["assets"]}
    # the selection as a user types it: the snapshot and everything upstream, nothing downstream or beside it
    assert {"environment_snapshot", "marts/tasks", "marts/world_cells", "seeds/company_names",
            "raw/sec10k"} <= set(assets)
    assert not {"marts/tasks_single_table", "marts/tasks_multi_table", "policy"} & set(assets)
    assert not any(key.startswith("evaluation/") for key in assets)
    assert assets["environment_snapshot"]["group_name"] == "environment"


# ------------------------------------------------------------------------------------------------ selections


@needs_dg
def test_dg_launch_the_snapshot_with_everything_upstream_on_a_fresh_instance(workspace):
    home = workspace.home("snapshot")
    started = time.monotonic()
    launched = workspace.run([DG, "launch", "--assets", "*environment_snapshot"], home)
    assert launched.returncode == 0, output(launched)
    log = launched.stdout + launched.stderr
    assert "Multiprocess executor" in log  # Dagster's default executor: each step in its own process

    with instance_at(home) as instance:
        assert materialised(instance, SNAPSHOT)
        assert all(materialised(instance, key) for key in ("marts/tasks", "raw/sec10k", "seeds/company_tickers"))
        # outside the selection: dbt neither built these marts nor ran their relationship tests against `tasks`
        assert not materialised(instance, "marts/tasks_single_table")
        assert not materialised(instance, "marts/tasks_multi_table")
        manifest = snapshot_manifest(instance)
        raw_version = instance.get_latest_materialization_event(dg.AssetKey(["raw", "sec10k"])).tags[
            "dagster/data_version"]
    with duckdb.connect(str(workspace.warehouse), read_only=True) as con:
        marts = {t for (t,) in con.execute(
            "select table_name from information_schema.tables where table_schema = 'marts'").fetchall()}
    assert "tasks" in marts and "tasks_single_table" not in marts
    # the raw files were never observed (the run loaded them directly): lineage says so and keeps the rest
    assert set(manifest["unobserved_sources"]) == RAW_FILES
    assert {manifest["source_data_versions"][k] for k in RAW_FILES} == {"INITIAL"}
    assert manifest["lineage_data_versions"]["raw/sec10k"] == raw_version
    assert "marts/tasks" in manifest["upstream_data_versions"]
    print(f"dg launch --assets '*environment_snapshot': {time.monotonic() - started:.0f}s")


def run_many(workspace: Workspace, launches: list[tuple[Path, str]], timeout: float) -> list[dict]:
    """`dg launch --assets` for each (home, selection) in one process (tests/dg_launch_runner.py)."""
    process = workspace.run([sys.executable, RUNNER, *(x for pair in launches for x in pair)], timeout=timeout)
    results = [json.loads(line.removeprefix("RESULT ")) for line in process.stdout.splitlines()
               if line.startswith("RESULT ")]
    if process.returncode != 0 or len(results) != len(launches):
        pytest.fail(f"launches: {results}\n{output(process)}", pytrace=False)
    return results


@needs_dg
def test_the_data_half_on_a_fresh_instance_then_each_group_alone_in_dependency_order(workspace):
    """The data half first, on a fresh instance and an empty warehouse (what a fresh clone does); then each
    group alone, in dependency order, on another fresh instance. (On an empty warehouse no order of groups
    works alone: curation_intermediate reads marts/world_tables and marts/world_cells, and marts/tasks reads
    curation_intermediate.)"""
    from orchestration.definitions import defs

    data_half_home, groups_home = workspace.home("data_half"), workspace.home("groups")
    started = time.monotonic()
    run_many(workspace, [(data_half_home, DATA_HALF),
                         *((groups_home, f'group:"{group}"') for group in GROUPS_IN_DEPENDENCY_ORDER)],
             timeout=2 * LAUNCH_TIMEOUT_S)

    with instance_at(data_half_home) as instance:
        (run,) = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert materialised(instance, SNAPSHOT) and materialised(instance, "marts/tasks_multi_table")
        assert not materialised(instance, "policy")
        assert set(snapshot_manifest(instance)["unobserved_sources"]) == RAW_FILES
        gx = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(dg.AssetKey(["marts", "tasks"]), "gx_tasks_suite")])
        assert [c.status.value for c in gx.values()] == ["SUCCEEDED"]

    with instance_at(groups_home) as instance:
        runs = list(reversed(instance.get_runs()))  # oldest first
        assert [run.status for run in runs] == [dg.DagsterRunStatus.SUCCESS] * len(GROUPS_IN_DEPENDENCY_ORDER)
        graph = defs.resolve_asset_graph()
        assert [{graph.get(key).group_name for key in run.asset_selection} for run in runs] == [
            {group} for group in GROUPS_IN_DEPENDENCY_ORDER]  # each run: one group, alone
        assert materialised(instance, SNAPSHOT)
        assert set(snapshot_manifest(instance)["unobserved_sources"]) == RAW_FILES
    print(f"the data half + {len(GROUPS_IN_DEPENDENCY_ORDER)} groups: {time.monotonic() - started:.0f}s")


@needs_dg
def test_two_runs_loading_raw_sources_at_once_wait_for_each_other(workspace):
    """Two runs, each loading one raw source, started while the warehouse is held: both wait on the warehouse
    lock (not on a Dagster pool: this instance has none), then both load, one after the other."""
    home = workspace.home("concurrent")
    with instance_at(home):
        pass  # create the instance's storage once, as `dg dev` does before any run (two first runs would race)
    logs = [workspace.root / f"run_{source}.log" for source in ("sec10k", "finqa")]
    processes: list[subprocess.Popen] = []
    try:
        with warehouse_lock(workspace.warehouse, exclusive=True, purpose="the test, holding the warehouse"):
            for source, log in zip(("sec10k", "finqa"), logs):
                with log.open("w") as out:
                    processes.append(subprocess.Popen([sys.executable, RUNNER, home, f'key:"raw/{source}"'],
                                                      cwd=REPO_ROOT, env=workspace.env, stdout=out,
                                                      stderr=subprocess.STDOUT, start_new_session=True))
            deadline = time.monotonic() + LAUNCH_TIMEOUT_S
            while not all("waiting for the exclusive warehouse lock" in log.read_text() for log in logs):
                assert all(p.poll() is None for p in processes), [log.read_text()[-3000:] for log in logs]
                assert time.monotonic() < deadline, "the runs never reached the warehouse lock"
                time.sleep(1)
            assert all("the test, holding the warehouse" in log.read_text() for log in logs)  # who they wait for
        for process, log in zip(processes, logs):
            assert process.wait(timeout=LAUNCH_TIMEOUT_S) == 0, log.read_text()[-6000:]
    finally:
        for process in processes:  # on a failure above: end what this test started, with its run workers
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    with instance_at(home) as instance:
        runs = instance.get_runs()
        assert len(runs) == 2 and all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs)
    with duckdb.connect(str(workspace.warehouse), read_only=True) as con:
        assert con.execute("select count(*) from raw.sec10k_tables").fetchone()[0] > 0
        assert con.execute("select count(*) from raw.finqa_questions").fetchone()[0] > 0
    assert not lock_holders(workspace.warehouse)


# ------------------------------------------------------------------------------------------------ the instance


def test_the_shipped_instance_bounds_runs_for_one_machine_and_tags_model_loading_runs(tmp_path):
    from orchestration.defs.automation import automation_sensors
    from orchestration.defs.training import MODEL_LOADING_TAG

    shutil.copy(REPO_ROOT / ".dagster_home" / "dagster.yaml", tmp_path / "dagster.yaml")
    with instance_at(tmp_path) as instance:
        config = instance.get_concurrency_config()
    assert config.pool_config.default_pool_limit == 1  # warehouse writers: one step at a time
    queue = config.run_queue_config
    assert queue.max_concurrent_runs == 2
    ((key, value),) = MODEL_LOADING_TAG.items()
    assert {"key": key, "value": value, "limit": 1} in queue.tag_concurrency_limits
    # automation: the data sensor's runs are not tagged (a raw change does not queue behind evaluations),
    # the evaluation sensor's are
    data, evaluation = automation_sensors()
    assert key not in data.run_tags and evaluation.run_tags[key] == value


# ------------------------------------------------------------------------------------------------ the lock


HOLD_IN_ANOTHER_PROCESS = textwrap.dedent("""
    import sys
    from orchestration.defs.resources import warehouse_lock
    with warehouse_lock(sys.argv[1], exclusive=sys.argv[2] == "exclusive", purpose="another process"):
        print("held", flush=True)
        sys.stdin.readline()  # until the test closes stdin
""")


@contextmanager
def held_elsewhere(warehouse: Path, mode: str):
    process = subprocess.Popen([sys.executable, "-c", HOLD_IN_ANOTHER_PROCESS, str(warehouse), mode], cwd=REPO_ROOT,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "held"
        yield process.pid
    finally:
        process.stdin.close()
        process.wait(timeout=60)


def test_a_writer_waits_for_readers_and_times_out_naming_the_lock_and_its_holder(tmp_path):
    warehouse = tmp_path / "w.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute("create table t as select 1 as x")
    with held_elsewhere(warehouse, "shared") as pid:
        # readers share the lock (and DuckDB allows several read-only processes)
        with connect_warehouse(warehouse, read_only=True, timeout_s=5) as con:
            assert con.execute("select x from t").fetchone() == (1,)
        # a writer waits, then gives up with a message naming the lock file and who holds it
        waited = []
        with pytest.raises(WarehouseLockTimeout) as error:
            with Warehouse(path=str(warehouse), lock_timeout_s=0.5).connect(purpose="a writer", log=waited.append):
                pass
        message = str(error.value)
        assert str(lock_dir(warehouse) / "lock") in message and f"pid {pid}" in message
        assert "another process" in message and "shared" in message
        assert waited and f"pid {pid}" in waited[0]
    with held_elsewhere(warehouse, "exclusive") as pid:
        with pytest.raises(WarehouseLockTimeout, match=f"exclusive by pid {pid}"):
            with connect_warehouse(warehouse, read_only=True, timeout_s=0.5):
                pass
    # released: a writer gets in at once, and nothing is left recorded as holding the lock
    with connect_warehouse(warehouse, timeout_s=0.5) as con:
        con.execute("insert into t values (2)")
    assert lock_holders(warehouse) == []


def test_the_lock_is_reentrant_within_a_thread_but_never_upgraded(tmp_path):
    warehouse = tmp_path / "w.duckdb"
    with warehouse_lock(warehouse, exclusive=True, timeout_s=0.5):
        with warehouse_lock(warehouse, exclusive=False, timeout_s=0.5):  # no self-deadlock
            assert len(lock_holders(warehouse)) == 1
    with warehouse_lock(warehouse, exclusive=False, timeout_s=0.5):
        with pytest.raises(RuntimeError, match="shared and asks for it exclusively"):
            with warehouse_lock(warehouse, exclusive=True, timeout_s=0.5):
                pass


# ------------------------------------------------------------------------------------------------ lineage


@pytest.mark.filterwarnings("ignore::dagster.BetaWarning", "ignore::DeprecationWarning")
def test_lineage_of_a_parent_read_before_it_was_ever_observed():
    assert storage_id("NULL") is None and storage_id(None) is None and storage_id("42") == 42

    @dg.observable_source_asset(key="files")
    def files():
        return dg.DataVersion("content-1")

    @dg.asset(deps=[files])
    def loaded():
        return dg.MaterializeResult(data_version=dg.DataVersion("loaded-1"))

    @dg.asset(deps=[loaded])
    def mart():
        return dg.MaterializeResult(data_version=dg.DataVersion("mart-1"))

    instance = dg.DagsterInstance.ephemeral()
    defs = dg.Definitions(assets=[files, loaded, mart])
    job = defs.resolve_implicit_global_asset_job_def()
    assert job.execute_in_process(instance=instance, asset_selection=[loaded.key, mart.key]).success
    tags = instance.get_latest_materialization_event(loaded.key).asset_materialization.tags
    assert tags["dagster/input_event_pointer/files"] == "NULL"  # what Dagster records for a never-observed parent

    lineage = data_lineage(instance, [mart.key])
    assert lineage.inputs == {"mart": "mart-1"} and lineage.all["loaded"] == "loaded-1"
    assert lineage.unobserved == ("files",) and lineage.sources == {"files": "INITIAL"}

    # once observed and re-loaded, the observation itself is the source (no longer "unobserved")
    observed = dg.materialize([files, loaded, mart], instance=instance, selection=[files])
    assert observed.success
    assert job.execute_in_process(instance=instance, asset_selection=[loaded.key, mart.key]).success
    lineage = data_lineage(instance, [mart.key])
    assert lineage.unobserved == () and lineage.sources == {"files": "content-1"}
