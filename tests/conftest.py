"""Shared fixtures. The expensive one, `pipeline`, runs the whole main job once per test session
into a temporary warehouse, snapshot folder and runs folder, on an ephemeral Dagster instance, and trains the
`tiny-test` arm (policy[tiny-test], the seconds-long config) on the snapshot it published."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


TEST_ARM = "tiny-test"  # the arm the pipeline fixture trains: the seconds-long tiny-test config


@pytest.fixture(scope="session", autouse=True)
def no_child_process_outlives_the_suite():
    """Every process a test starts must be ended by it (tests/child_processes.py): after the last teardown,
    any descendant of this process still running is ended here and the suite fails, naming it."""
    from child_processes import describe, end_all, surviving_children

    before = {p.pid for p in surviving_children()}
    yield
    survivors = surviving_children(ignore=before)
    if survivors:
        names = [describe(p) for p in survivors]
        end_all(survivors)
        pytest.fail("child processes outlived the test session (ended now):\n" + "\n".join(names), pytrace=False)


@dataclass
class PipelineRun:
    result: object  # the main job (the data half)
    instance: object
    warehouse: Path
    snapshots_root: Path
    runs_root: Path
    training: object = None  # the run that trained policy[TEST_ARM]


def _run_main_job(root: Path) -> PipelineRun:
    """Run the whole main job into `root` (warehouse + snapshots) on an ephemeral instance, then train the
    tiny-test arm (policy[tiny-test]) on the snapshot it published."""
    import dagster as dg

    from orchestration import paths
    from orchestration.definitions import build_definitions  # re-parses the dbt project if it changed
    from orchestration.defs.resources import DataPaths, Warehouse

    warehouse = root / "warehouse.duckdb"
    snapshots_root = root / "snapshots"
    runs_root = root / "runs"
    saved = os.environ.get("FINQA_RL_WAREHOUSE")
    saved_runs = os.environ.get("FINQA_RL_RUNS_DIR")
    os.environ["FINQA_RL_RUNS_DIR"] = str(runs_root)
    try:
        defs = build_definitions(
            {
                "warehouse": Warehouse(path=str(warehouse)),
                "data_paths": DataPaths(raw_root=str(paths.raw_root()), snapshots_root=str(snapshots_root)),
            }
        )
        instance = dg.DagsterInstance.ephemeral()
        result = defs.resolve_job_def("main").execute_in_process(instance=instance, raise_on_error=False)
        training = None
        if result.success:
            from orchestration.defs.training import register_arm

            register_arm(instance, TEST_ARM)
            training = defs.resolve_job_def("train_arm").execute_in_process(
                instance=instance, partition_key=TEST_ARM, raise_on_error=False)
    finally:
        if saved is None:
            os.environ.pop("FINQA_RL_WAREHOUSE", None)
        else:
            os.environ["FINQA_RL_WAREHOUSE"] = saved
        if saved_runs is None:
            os.environ.pop("FINQA_RL_RUNS_DIR", None)
        else:
            os.environ["FINQA_RL_RUNS_DIR"] = saved_runs
    return PipelineRun(result, instance, warehouse, snapshots_root, runs_root, training)


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory) -> PipelineRun:
    return _run_main_job(tmp_path_factory.mktemp("pipeline"))


@pytest.fixture(scope="session")
def run_main_job():
    """The job runner behind `pipeline`, for tests that need a second, independent run."""
    return _run_main_job


@pytest.fixture(scope="session")
def rebuilt(run_main_job, tmp_path_factory) -> PipelineRun:
    """A second, independent run of the main job (its own warehouse, snapshots and instance)."""
    return run_main_job(tmp_path_factory.mktemp("rebuilt"))


@pytest.fixture(scope="session")
def marts(pipeline):
    """Read-only connection to the pipeline's warehouse."""
    import duckdb

    con = duckdb.connect(str(pipeline.warehouse), read_only=True)
    yield con
    con.close()


@pytest.fixture(scope="session")
def snapshot_dir(pipeline) -> Path:
    """The environment snapshot the main job exported and published."""
    from rl_assets.snapshot import latest_snapshot

    return latest_snapshot(pipeline.snapshots_root)


@pytest.fixture(scope="session")
def tasks(snapshot_dir) -> list[dict]:
    from rl_assets.oracle import load_tasks

    return load_tasks(snapshot_dir)


@pytest.fixture(scope="session")
def oracle_conversations(snapshot_dir):
    """40 aliased oracle conversations of train-split tasks (rl_assets.training.trajectories), with their tasks."""
    from rl_assets.prompts import SYSTEM_PROMPT
    from rl_assets.snapshot import read_tasks
    from rl_assets.training.data import episode_stream
    from rl_assets.training.environment import TrainingEnv
    from rl_assets.training.trajectories import oracle_conversation

    train = read_tasks(snapshot_dir, splits=["train"], question_types=["single_table"])
    env = TrainingEnv(snapshot_dir, table_alias_prob=0.5, description_chars=0)
    stream = episode_stream(train, seed=0, aliases=True)
    episodes = [next(stream) for _ in range(40)]
    return [(task, oracle_conversation(env, task, SYSTEM_PROMPT)) for task in episodes]


@pytest.fixture(scope="session")
def tiny_tokenizer(oracle_conversations, snapshot_dir):
    """The tiny-test config's tokenizer (compact template, TRL response parser), trained on those conversations."""
    from transformers.utils import get_json_schema

    from rl_assets.env import FinQAEnv
    from rl_assets.rollouts import env_tools
    from rl_assets.training.config import load_config
    from rl_assets.training.models import tokenizer_corpus
    from rl_assets.training.tiny import train_tokenizer

    tiny = load_config("tiny-test").model.tiny
    tools = [get_json_schema(t) for t in env_tools(FinQAEnv(snapshot=snapshot_dir))]
    corpus = tokenizer_corpus([c for _, c in oracle_conversations], tools)
    companies = sorted({t["world_id"] for t, _ in oracle_conversations})
    return train_tokenizer(corpus, tiny.vocab_size, tiny.max_token_length, forbidden_words=companies)
@dataclass
class S3Server:
    endpoint_url: str

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3 API: moto in server mode, a separate process on loopback, for the whole session."""
    import socket
    import sys

    from child_processes import child_process

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    with open(tmp_path_factory.mktemp("moto") / "moto.log", "w") as log:
        with child_process([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                           capture_stdout=False, stdout=log, stderr=subprocess.STDOUT) as moto:
            try:
                moto.wait_for_url(f"{endpoint}/moto-api/", timeout_s=60)
            except AssertionError as e:
                raise RuntimeError(f"moto server: {e}; see {log.name}") from None
            yield S3Server(endpoint)


@pytest.fixture
def s3_bucket(s3_server, monkeypatch, request):
    """A fresh bucket on the session's S3 server, with test credentials in the environment."""
    import re
    import uuid

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-") + "-" + uuid.uuid4().hex[:8]
    s3_server.client().create_bucket(Bucket=name)
    return name
