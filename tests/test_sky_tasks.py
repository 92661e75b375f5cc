"""The SkyPilot task files under infra/: each loads with SkyPilot's own parser (offline), and has the
resources, envs, mounts and commands the launcher and docs/operations.md rely on."""

from __future__ import annotations

import shlex
import socket
from pathlib import Path

import pytest
import yaml

from orchestration.launchers import TrainingLaunch
from orchestration.launchers.skypilot import REPO_ROOT, SkyPilotLauncher

INFRA = REPO_ROOT / "infra"
TASK_FILES = sorted(INFRA.rglob("*.yaml"))
REQUIRED = {
    "train.yaml": {"FINQA_RL_BUCKET": "my-bucket", "FINQA_RL_SNAPSHOT_HASH": "abc123", "FINQA_RL_RUN_ID": "run-7"},
    "eval.yaml": {
        "FINQA_RL_BUCKET": "my-bucket",
        "FINQA_RL_SNAPSHOT_HASH": "abc123",
        "FINQA_RL_EVAL_ID": "eval-3",
        "FINQA_RL_POLICY": "hf:/finqa/bucket/runs/run-7",
    },
}


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection (an API server, a catalog download) fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access while loading a task file: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def load(path: Path, envs: dict[str, str]):
    from orchestration.launchers.sky_sdk import SkyPilot

    return SkyPilot("sky").load_task(path, envs)


def test_every_task_file_is_known():
    assert [p.name for p in TASK_FILES] == sorted(REQUIRED)


@pytest.mark.parametrize("path", TASK_FILES, ids=lambda p: p.name)
def test_task_file_loads_offline_with_its_required_envs(path, no_network):
    import sky

    with pytest.raises(ValueError, match="Environment variable 'FINQA_RL_[A-Z_]+' is None"):
        sky.Task.from_yaml(str(path))  # the required envs have no defaults: `--env` must set them
    task = load(path, REQUIRED[path.name])
    assert {k: task.envs[k] for k in REQUIRED[path.name]} == REQUIRED[path.name]


@pytest.mark.parametrize("path", TASK_FILES, ids=lambda p: p.name)
def test_task_file_asks_for_one_gpu_on_demand_with_spot_as_an_option(path, no_network):
    task = load(path, REQUIRED[path.name])
    assert isinstance(task.resources, list), "accelerators are tried in order (`ordered:`)"
    accelerators = [r.accelerators for r in task.resources]
    assert all(len(a) == 1 and list(a.values()) == [1] for a in accelerators)
    assert {"H100": 1} in accelerators
    assert not any(r.use_spot for r in task.resources)
    spot = load_with_spot(path)
    assert all(r.use_spot for r in spot.resources)


def load_with_spot(path: Path):
    from orchestration.launchers.sky_sdk import SkyPilot

    return SkyPilot("sky").load_task(path, REQUIRED[path.name], use_spot=True)


@pytest.mark.parametrize("path", TASK_FILES, ids=lambda p: p.name)
def test_task_file_mounts_the_snapshot_and_the_bucket(path, no_network):
    task = load(path, REQUIRED[path.name])
    mounts = {p: (s.source, s.mode.value) for p, s in task.storage_mounts.items()}
    assert mounts["/finqa/snapshot"] == ("s3://my-bucket/snapshots/abc123", "COPY")
    # Outputs are written through a cached mount of the whole bucket (SkyPilot mounts buckets, not sub-paths).
    assert mounts["/finqa/bucket"] == ("s3://my-bucket", "MOUNT_CACHED")


@pytest.mark.parametrize("path", TASK_FILES, ids=lambda p: p.name)
def test_task_file_installs_the_project_as_the_readme_does(path):
    config = yaml.safe_load(path.read_text())
    assert config["workdir"] == "."
    assert "-m venv .venv" in config["setup"] and ".venv/bin/pip install -q -e ." in config["setup"]
    # SkyPilot appends its wait for the cached-mount upload after `run`: nothing may end the script early.
    run_words = config["run"].split()
    assert "exec" not in run_words and "set -e" not in config["run"] and "exit" not in run_words


def command_line(script: str) -> str:
    """A shell script with its line continuations joined and its whitespace collapsed."""
    return " ".join(script.replace("\\\n", " ").split())


def test_train_task_runs_the_training_entry_point_on_the_mounted_snapshot_and_bucket():
    config = yaml.safe_load((INFRA / "sky" / "train.yaml").read_text())
    run = command_line(config["run"])
    assert (
        '.venv/bin/python -m rl_assets.train --config "$FINQA_RL_CONFIG" '
        '--snapshot "$HOME/finqa-snapshots/$FINQA_RL_SNAPSHOT_HASH" '
        '--output "/finqa/bucket/runs/$FINQA_RL_RUN_ID" "${train_args[@]}"'
    ) in run
    assert config["resources"]["job_recovery"]["max_restarts_on_errors"] == 0


def test_eval_task_runs_the_evaluation_entry_point_and_leaves_its_database_in_the_bucket():
    run = command_line(yaml.safe_load((INFRA / "sky" / "eval.yaml").read_text())["run"])
    assert '.venv/bin/finqa-rl eval --policy "$FINQA_RL_POLICY"' in run
    assert '--tasks "$FINQA_RL_TASKS"' in run and '--snapshot "$HOME/finqa-snapshots/$FINQA_RL_SNAPSHOT_HASH"' in run
    assert '"/finqa/bucket/evals/$FINQA_RL_EVAL_ID/eval.duckdb"' in run


def test_launcher_sets_exactly_the_envs_the_train_task_declares(tmp_path):
    """What the Dagster launcher passes and what a person passes with `--env` are the same variables."""
    declared = set(yaml.safe_load((INFRA / "sky" / "train.yaml").read_text())["envs"])
    launch = TrainingLaunch("run-7", "tiny-test", str(tmp_path), "abc123", str(tmp_path / "out"), {"a.b": 1})
    envs = SkyPilotLauncher().task_envs(launch, "my-bucket")
    assert {k for k in envs if k.startswith("FINQA_RL_")} - {"FINQA_RL_PIPES_INTERVAL"} == declared
    assert shlex.split(envs["FINQA_RL_TRAIN_ARGS"]) == ["--set", "a.b=1"]


def test_skyignore_keeps_local_environments_and_data_out_of_the_upload():
    ignored = (REPO_ROOT / ".skyignore").read_text().split()
    assert {".venv/", "data/", ".dagster_home/"} <= set(ignored)
