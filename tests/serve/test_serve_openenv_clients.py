"""OpenEnv's released clients, unmodified, against the real server: `openenv` 0.10.0 (MCPToolClient: session
over POST /mcp, reset over /ws?session_id=, tool calls over /mcp) and `openenv-core` 0.3.0 (MCPToolClient over
/ws only). Each runs from a virtualenv of its own (tests/serve/openenv_clients.py)."""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from rl_assets.serve.process import start_server
from rl_assets.serve.tools import TOOLS

from openenv_clients import CLIENTS, IndexUnreachable, client_python
from serve_helpers import N_TRAJECTORIES, active_sessions, wait_until

REPLAY = Path(__file__).with_name("openenv_client_replay.py")


@pytest.fixture(scope="module")
def client_runs(server, snapshot_dir, trajectories) -> dict[str, dict | str]:
    """package -> what its client saw, or why it could not run: both clients (virtualenvs built on first use)
    replay the 32 trajectories at once against `server`, then probe a server limited to 2 sessions."""
    job = {"url": server.url, "episodes": [{"task_id": t.task_id, "calls": t.calls} for t in trajectories],
           "capacity": 2}

    def run(package: str, capacity_url: str) -> dict | str:
        try:
            python = client_python(package)
        except IndexUnreachable as e:
            return str(e)
        done = subprocess.run([str(python), str(REPLAY)], input=json.dumps({**job, "capacity_url": capacity_url}),
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{package} client failed:\n{done.stderr[-4000:]}"
        run = json.loads(done.stdout)
        if package == "openenv":  # its command line checks a running server against OpenEnv's HTTP contract
            validate = subprocess.run([str(python), "-m", "openenv.cli", "validate", "--url", server.url, "--json"],
                                      capture_output=True, text=True, timeout=300)
            run["validate"] = {"exit_status": validate.returncode, "report": json.loads(validate.stdout)}
        return run

    with start_server(snapshot_dir, max_sessions=2) as first, start_server(snapshot_dir, max_sessions=2) as second:
        with ThreadPoolExecutor(len(CLIENTS)) as pool:
            runs = dict(zip(CLIENTS, pool.map(run, CLIENTS, [first.url, second.url])))
        for capacity_server in (first, second):  # the held sessions were closed
            wait_until(lambda: active_sessions(capacity_server.url) == 0, what="the clients' sessions to end")
    return runs


def client_run(client_runs, package: str) -> dict:
    run = client_runs[package]
    if isinstance(run, str):
        pytest.skip(f"package index unreachable: {run}")
    return run


@pytest.mark.parametrize("package", list(CLIENTS))
def test_32_concurrent_openenv_clients_replay_oracle_trajectories(package, client_runs, server, trajectories):
    results = client_run(client_runs, package)["episodes"]
    assert len(results) == N_TRAJECTORIES
    for trajectory, result in zip(trajectories, results):
        assert result["task_id"] == trajectory.task_id
        assert result["reset_observation_metadata"]["task_id"] == trajectory.task_id
        assert result["reset_observation_metadata"]["question"] == trajectory.task["question"]
        assert result["tools"] == list(TOOLS)
        assert result["outputs"] == trajectory.outputs  # every tool answered exactly as in-process
        assert result["done"] is True and result["reward"] == 1.0
        report = result["observation_metadata"]["report"]
        assert report["task_id"] == trajectory.task_id and report["rubric"] == trajectory.rubric
        if package == "openenv":  # the newer client also reads metadata at the top level
            assert result["top_metadata"] == result["observation_metadata"]
        assert "is done" in result["after_done"]  # a call after done is an error, not a new episode
        assert result["step_count"] == len(trajectory.calls)
    wait_until(lambda: active_sessions(server.url) == 0, what="each client's session to end")


@pytest.mark.parametrize("package", list(CLIENTS))
def test_openenv_clients_see_capacity_reached_with_the_limit(package, client_runs):
    refused = client_run(client_runs, package)["refused"]
    assert refused is not None and "2 of 2 sessions" in refused, refused


def test_openenv_validate_passes_against_the_server(client_runs):
    validate = client_run(client_runs, "openenv")["validate"]
    report = validate["report"]
    failed = [c for c in report["criteria"] if not c["passed"]]
    assert validate["exit_status"] == 0 and report["passed"] and not failed, failed
    assert {c["id"] for c in report["criteria"]} >= {"health_endpoint", "metadata_endpoint", "schema_endpoint",
                                                     "mcp_endpoint", "mode_endpoint_consistency"}
