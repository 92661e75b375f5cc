"""Bad input, vanishing clients, the session limit and the idle reaper, each against a real server process:
the offending client gets a clear error, every other session carries on, and the server never dies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from websockets.exceptions import ConnectionClosed

from rl_assets.serve.process import start_server
from rl_assets.serve.remote import RemoteFinQAEnv, close

from child_processes import child_process
from serve_helpers import WsClient, active_sessions, post, rpc, wait_until


@pytest.fixture(scope="module")
def small_server(snapshot_dir):
    with start_server(snapshot_dir, max_sessions=2, session_timeout_s=120) as process:
        yield process
        assert process.process.poll() is None, process.log_tail()


@pytest.fixture(scope="module")
def reaping_server(snapshot_dir):
    with start_server(snapshot_dir, max_sessions=4, session_timeout_s=0.5) as process:
        yield process
        assert process.process.poll() is None, process.log_tail()


def test_bad_input_gets_a_clear_error_and_disturbs_nobody_else(server, trajectories):
    bystander_trajectory, victim = trajectories[4], trajectories[5]
    company = victim.task["world_id"]
    with WsClient(server.url) as bystander, WsClient(server.url) as client:
        bystander.reset(task_id=bystander_trajectory.task_id)
        client.reset(task_id=victim.task_id)

        def error(reply):
            assert reply["type"] == "error", reply
            return reply["data"]["code"], reply["data"]["message"]

        def tool_error(reply):
            assert reply["type"] == "observation" and reply["data"]["observation"]["result"] is None, reply
            return reply["data"]["observation"]["error"]["error_type"], reply["data"]["observation"]["error"]["message"]

        def bystander_step():  # the other session answers as in-process, whatever this client sends
            (tool, arguments), expected = bystander_trajectory.calls[0], bystander_trajectory.outputs[0]
            assert bystander.call(tool, **arguments)["data"]["observation"]["result"]["data"] == expected

        cases = [
            (lambda: error(client.send_text("{not json")), "INVALID_JSON", "Invalid JSON"),
            (lambda: error(client.send_text("[1, 2]")), "VALIDATION_ERROR", "JSON object"),
            (lambda: error(client.send({"type": "jump"})), "UNKNOWN_TYPE", "'jump'"),
            (lambda: error(client.send({"type": "step", "data": {"type": "call_tool", "tool_name": "calculator",
                                                                 "args": {}}})), "VALIDATION_ERROR", "'args'"),
            (lambda: error(client.send({"type": "reset", "data": {"task_id": 5}})), "VALIDATION_ERROR", "unknown task_id"),
            (lambda: tool_error(client.call("drop_table", name="x")), "tool_not_found", "Unknown tool 'drop_table'"),
            (lambda: tool_error(client.call("sql_query", company=company, sql="SELECT 1")), "invalid_args",
             "missing 'company_name', 'table_name', 'query'; unexpected 'company', 'sql'"),
            (lambda: tool_error(client.send({"type": "step", "data": {"type": "call_tool", "tool_name": "calculator",
                                                                      "arguments": "1 + 1"}})),
             "invalid_args", "must be a JSON object"),
            (lambda: tool_error(client.call("sql_query", company_name=company, table_name="t", query="x" * 20_000)),
             "invalid_args", "argument 'query' is 20,000 characters; the limit is 16,384"),
        ]
        for send, code, message in cases:
            got_code, got_message = send()
            assert got_code == code and message in got_message, (got_code, got_message)
            bystander_step()

        client.ws.send(b"\x00\x01binary")
        assert json.loads(client.ws.recv(timeout=30))["data"]["code"] == "VALIDATION_ERROR"
        # a wrong argument *type* reaches the tool, which answers as it would in-process
        wrong_type = client.call("get_descriptions", company_name=123)["data"]
        assert wrong_type["observation"]["result"]["data"].startswith("Error: company_name must be a non-empty string")
        assert wrong_type["metadata"]["error_kind"] == "bad_arguments"

        # the same connection still runs the whole episode correctly
        steps = [client.call(tool, **arguments) for tool, arguments in victim.calls]
        assert [s["data"]["observation"]["result"]["data"] for s in steps] == victim.outputs
        assert steps[-1]["data"]["reward"] == 1.0
        rubric = steps[-1]["data"]["metadata"]["report"]["rubric"]
        assert rubric["tool_calls"] == len(victim.calls) + 1  # calls that never reached a tool are not telemetry
        rest = [bystander.call(tool, **arguments) for tool, arguments in bystander_trajectory.calls[1:]]
        assert [r["data"]["observation"]["result"]["data"] for r in rest] == bystander_trajectory.outputs[1:]
        assert rest[-1]["data"]["reward"] == 1.0


def test_an_oversized_message_closes_only_that_connection(snapshot_dir, trajectories):
    # a server of its own: the refused connection's session lingers until the close handshake times out (10 s)
    trajectory = trajectories[6]
    with start_server(snapshot_dir, max_sessions=4) as server, WsClient(server.url) as bystander:
        bystander.reset(task_id=trajectory.task_id)
        with WsClient(server.url) as client:
            client.reset(task_id=trajectory.task_id)
            with pytest.raises(ConnectionClosed) as closed:
                client.call("calculator", expression="1" * (2 << 20))  # 2 MiB; the limit is 1 MiB
            assert closed.value.rcvd.code == 1009  # "message too big"
        status, body = post(f"{server.url}/mcp", {"jsonrpc": "2.0", "method": "tools/list", "id": 1,
                                                  "params": {"padding": "x" * (2 << 20)}})
        assert body["error"]["data"]["code"] == "MESSAGE_TOO_LARGE"
        status, body = post(f"{server.url}/reset", None, raw=b"{oops")
        assert status == 400 and body["code"] == "INVALID_JSON"
        outputs = [bystander.call(tool, **arguments)["data"]["observation"]["result"]["data"]
                   for tool, arguments in trajectory.calls]
        assert outputs == trajectory.outputs


VANISHING_CLIENT = """
import json, sys
from websockets.sync.client import connect
ws = connect(sys.argv[1].replace("http://", "ws://") + "/ws", legacy=True)
ws.send(json.dumps({"type": "reset", "data": {"task_id": sys.argv[2]}})); ws.recv()
ws.send(json.dumps({"type": "step", "data": {"type": "call_tool", "tool_name": "get_descriptions",
                                             "arguments": {"company_name": sys.argv[3]}}})); ws.recv()
print("mid-episode", flush=True)
sys.stdin.read()  # until killed
"""


def test_a_client_that_vanishes_mid_episode_frees_its_session(server, trajectories):
    trajectory = trajectories[7]
    wait_until(lambda: active_sessions(server.url) == 0, what="earlier tests' sessions to end")
    with WsClient(server.url) as bystander:
        bystander.reset(task_id=trajectory.task_id)
        before = active_sessions(server.url)
        assert before == 1
        with child_process([sys.executable, "-c", VANISHING_CLIENT, server.url, trajectory.task_id,
                            trajectory.task["world_id"]], stdin=subprocess.PIPE) as child:
            child.wait_for_line("mid-episode", timeout_s=120)
            assert active_sessions(server.url) == before + 1
            os.kill(child.pid, signal.SIGKILL)  # vanishes without closing its connection
            child.process.wait(30)
        wait_until(lambda: active_sessions(server.url) == before, what="the vanished client's session to end")
        outputs = [bystander.call(tool, **arguments)["data"]["observation"]["result"]["data"]
                   for tool, arguments in trajectory.calls]
        assert outputs == trajectory.outputs


def test_capacity_reached_is_a_clear_error_with_the_limit(small_server, trajectories):
    first, second = WsClient(small_server.url), WsClient(small_server.url)
    try:
        assert active_sessions(small_server.url) == 2
        refused = WsClient(small_server.url)
        reply = json.loads(refused.ws.recv(timeout=30))
        assert reply["type"] == "error" and reply["data"]["code"] == "CAPACITY_REACHED"
        assert "2 of 2 sessions" in reply["data"]["message"] and reply["data"]["max_sessions"] == 2
        with pytest.raises(ConnectionClosed) as closed:
            refused.ws.recv(timeout=30)
        assert closed.value.rcvd.code == 1013  # try again later
        over_mcp = rpc(small_server.url, "openenv/session/create")["error"]
        assert over_mcp["data"]["code"] == "CAPACITY_REACHED" and "max sessions 2" in over_mcp["message"]
        remote = RemoteFinQAEnv(small_server.url)
        with pytest.raises(ConnectionError, match="CAPACITY_REACHED|at capacity"):
            remote.reset(task_id=trajectories[0].task_id)
        first.close()
        wait_until(lambda: active_sessions(small_server.url) == 1, what="the closed session to free its slot")
        assert remote.reset(task_id=trajectories[0].task_id).endswith(trajectories[0].task["question"])
        close(remote)
    finally:
        first.close()
        second.close()


def test_the_reaper_frees_abandoned_sessions_and_spares_active_ones(reaping_server, trajectories):
    trajectory = trajectories[8]
    abandoned = rpc(reaping_server.url, "openenv/session/create")["result"]["session_id"]
    with WsClient(reaping_server.url) as idle:
        idle.reset(task_id=trajectory.task_id)
        with pytest.raises(ConnectionClosed) as closed:
            idle.ws.recv(timeout=60)  # nothing sent: the server closes the idle session's connection
        assert closed.value.rcvd.code == 4408 and "idle" in closed.value.rcvd.reason
    wait_until(lambda: active_sessions(reaping_server.url) == 0, what="the reaper to free both sessions")
    gone = rpc(reaping_server.url, "tools/call", {"name": "calculator", "arguments": {"expression": "1"},
                                                  "session_id": abandoned})["error"]
    assert "closed after 0.5 s idle" in gone["message"]

    with WsClient(reaping_server.url) as busy:  # a session in use is never reaped
        busy.reset(task_id=trajectory.task_id)
        company = trajectory.task["world_id"]
        deadline = time.monotonic() + 2.0  # four idle timeouts of continuous activity
        while time.monotonic() < deadline:
            assert busy.call("get_descriptions", company_name=company)["type"] == "observation"
            busy.reset(task_id=trajectory.task_id)


def test_a_remote_environment_reconnects_after_its_session_was_reaped(reaping_server, trajectories):
    from rl_assets import oracle

    env = RemoteFinQAEnv(reaping_server.url)
    assert oracle.solve(env, trajectories[9].task).correct
    wait_until(lambda: active_sessions(reaping_server.url) == 0, what="the idle session to be reaped")
    assert oracle.solve(env, trajectories[10].task).correct  # reset opened a fresh session
    close(env)
