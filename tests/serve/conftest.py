"""Fixtures of the service tests: oracle trajectories recorded in-process, and real server processes on loopback
(one open, one that needs a token)."""

from __future__ import annotations

import pytest

from rl_assets import oracle
from rl_assets.env import FinQAEnv
from rl_assets.serve.process import start_server
from rl_assets.snapshot import read_tasks

from serve_helpers import N_TRAJECTORIES, TOKEN, Trajectory


@pytest.fixture(scope="session")
def trajectories(snapshot_dir) -> list[Trajectory]:
    """32 oracle trajectories over every source and task type, replayed in a fresh environment to record outputs."""
    tasks = read_tasks(snapshot_dir)  # what the server serves
    solver, replayer = FinQAEnv(snapshot=snapshot_dir), FinQAEnv(snapshot=snapshot_dir)
    groups: dict[tuple, list[dict]] = {}
    for task in tasks:
        groups.setdefault((task["source"], task["question_type"]), []).append(task)
    picked: list[Trajectory] = []
    seen: set[str] = set()
    position = 0
    while len(picked) < N_TRAJECTORIES:
        for group in groups.values():
            if position < len(group) and len(picked) < N_TRAJECTORIES:
                task = group[position * 7 % len(group)]
                if task["task_id"] in seen or not oracle.solve(solver, task).correct:
                    continue
                seen.add(task["task_id"])
                calls = [(c.tool, dict(c.arguments)) for c in solver.tool_calls]
                replayer.reset(**task)
                outputs = [getattr(replayer, tool)(**arguments) for tool, arguments in calls]
                picked.append(Trajectory(task, calls, outputs, replayer.get_reward(), replayer.report["rubric"]))
        position += 1
    assert {t.task["source"] for t in picked} == {t["source"] for t in tasks}
    assert all(t.reward == 1.0 and t.calls[-1][0] == "submit_answer" for t in picked)
    return picked


@pytest.fixture(scope="session")
def server(snapshot_dir):
    """The service as it runs for training: room for more sessions than any one test opens."""
    with start_server(snapshot_dir, max_sessions=48, session_timeout_s=120) as process:
        yield process
        assert process.process.poll() is None, f"the server died:\n{process.log_tail()}"


@pytest.fixture(scope="session")
def guarded_server(snapshot_dir):
    """A server that needs a token (serve_helpers.TOKEN, handed over in $FINQA_RL_SERVE_TOKEN), as it runs for a
    trainer on another machine; process.token is what its clients send."""
    with start_server(snapshot_dir, max_sessions=4, session_timeout_s=120, token=TOKEN) as process:
        yield process
        assert process.process.poll() is None, f"the server died:\n{process.log_tail()}"
