"""The service speaks OpenEnv's protocol over a real server process on loopback: 32 concurrent sessions
replay oracle trajectories through /ws, sessions over JSON-RPC /mcp and HTTP, task selection, episode ends."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from rl_assets.env import FinQAEnv
from rl_assets.serve.process import get_json
from rl_assets.serve.tasks import TaskCatalog, TaskSelectionError
from rl_assets.serve.tools import TOOLS

from serve_helpers import N_TRAJECTORIES, WsClient, active_sessions, post, replay_over_ws, rpc, wait_until


# ---------------------------------------------------------------- tools and tasks (no server needed)
@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_tool_schemas_are_what_trl_shows_the_model(tool):
    from transformers.utils import get_json_schema

    function = get_json_schema(getattr(FinQAEnv, tool))["function"]
    spec = TOOLS[tool]
    assert spec.description == function["description"]
    assert spec.input_schema == function["parameters"]


def test_the_tools_are_the_reference_servers_plus_calculator():
    reference = {"get_descriptions": ["company_name"], "get_table_info": ["company_name", "table_name"],
                 "sql_query": ["company_name", "table_name", "query"], "submit_answer": ["answer"]}
    assert {name: list(spec.parameters) for name, spec in TOOLS.items()} == {**reference, "calculator": ["expression"]}


def test_task_selection_by_id_split_index_and_seed(tasks):
    catalog = TaskCatalog(tasks)
    train = sorted((t for t in tasks if t["split"] == "train"), key=lambda t: t["task_id"])
    assert catalog.select({"task_id": train[5]["task_id"]}) is catalog.by_id[train[5]["task_id"]]
    assert catalog.select({"split": "train", "index": 5})["task_id"] == train[5]["task_id"]
    permuted = [catalog.select({"split": "train", "index": i, "seed": 3})["task_id"] for i in range(len(train))]
    assert sorted(permuted) == [t["task_id"] for t in train] and permuted != [t["task_id"] for t in train]
    drawn = {catalog.select({"split": "train", "seed": 11})["task_id"] for _ in range(5)}
    assert len(drawn) == 1 and catalog.by_id[drawn.pop()]["split"] == "train"
    cycle = [catalog.select({})["task_id"] for _ in range(len(tasks))]
    assert sorted(cycle) == sorted(t["task_id"] for t in tasks)  # one pass of the cycle hands out every task once
    for bad, message in [({"task_id": "nope"}, "unknown task_id"), ({"split": "nope", "index": 0}, "unknown split"),
                         ({"split": "train", "index": len(train)}, "out of range"),
                         ({"index": "3"}, "must be an integer"), ({"taskid": "x"}, "unknown reset argument"),
                         ({"task_id": train[0]["task_id"], "seed": 1}, "not both"), ({"split": "train"}, "index")]:
        with pytest.raises(TaskSelectionError, match=message):
            catalog.select(bad)


# ---------------------------------------------------------------- the /ws protocol, 32 sessions at once
def test_32_concurrent_sessions_replay_oracle_trajectories_to_correct_answers(server, trajectories):
    assert len(trajectories) == N_TRAJECTORIES
    with ThreadPoolExecutor(N_TRAJECTORIES) as pool:
        replays = list(pool.map(lambda t: replay_over_ws(server.url, t), trajectories))
    for trajectory, replay in zip(trajectories, replays):
        reset = replay["reset"]
        assert reset["type"] == "observation" and reset["data"]["done"] is False
        prompt = f"\n\nCompany: {trajectory.task['world_id']}\nQuestion: {trajectory.task['question']}"
        assert reset["data"]["observation"]["prompt"] == prompt
        assert reset["data"]["metadata"]["task_id"] == trajectory.task_id
        steps = replay["steps"]
        assert [s["type"] for s in steps] == ["observation"] * len(steps)
        outputs = [s["data"]["observation"]["result"]["data"] for s in steps]
        assert outputs == trajectory.outputs  # every tool answered exactly as in-process
        assert [s["data"]["done"] for s in steps] == [False] * (len(steps) - 1) + [True]
        final = steps[-1]["data"]
        assert final["reward"] == 1.0
        assert final["metadata"] == final["observation"]["metadata"]  # both places, for old and new clients
        assert final["metadata"]["stop_reason"] == "answer_submitted"
        assert final["metadata"]["report"]["rubric"] == trajectory.rubric
        assert final["metadata"]["report"]["task_id"] == trajectory.task_id
        assert replay["after_done"]["type"] == "error" and replay["after_done"]["data"]["code"] == "EPISODE_DONE"
        assert replay["state"]["data"]["step_count"] == len(trajectory.calls)
        assert replay["state"]["data"]["done"] is True
    wait_until(lambda: active_sessions(server.url) == 0, what="every connection's session to end with it")


def test_every_generation_of_a_group_gets_the_same_task(server):
    def reset_with_seed(_):
        with WsClient(server.url) as client:
            return client.reset(split="train", seed=1234)["data"]["metadata"]["task_id"]

    with ThreadPoolExecutor(8) as pool:
        assert len(set(pool.map(reset_with_seed, range(8)))) == 1


def test_reset_starts_a_new_episode_in_the_same_session(server, trajectories):
    first, second = trajectories[0], trajectories[1]
    with WsClient(server.url) as client:
        episode = client.reset(task_id=first.task_id)["data"]["metadata"]["episode_id"]
        for tool, arguments in first.calls:
            client.call(tool, **arguments)
        again = client.reset(task_id=second.task_id)
        assert again["data"]["metadata"]["task_id"] == second.task_id
        assert again["data"]["metadata"]["episode_id"] != episode
        steps = [client.call(tool, **arguments) for tool, arguments in second.calls]
        assert steps[-1]["data"]["reward"] == 1.0 and steps[0]["data"]["metadata"]["step_count"] == 1


def test_a_tool_call_before_reset_is_an_error(server):
    with WsClient(server.url) as client:
        reply = client.call("calculator", expression="1 + 1")
        assert reply["type"] == "error" and reply["data"]["code"] == "NO_EPISODE"
        tools = client.send({"type": "step", "data": {"type": "list_tools"}})  # discovery needs no episode
        assert [t["name"] for t in tools["data"]["observation"]["tools"]] == list(TOOLS)


def test_list_tools_state_and_mcp_messages_on_the_same_connection(server, trajectories):
    trajectory = trajectories[0]
    with WsClient(server.url) as client:
        client.reset(task_id=trajectory.task_id)
        tool, arguments = trajectory.calls[0]
        reply = client.send({"type": "mcp", "data": {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                                                     "params": {"name": tool, "arguments": arguments}}})
        assert reply["type"] == "mcp" and reply["data"]["id"] == 7
        assert reply["data"]["result"]["data"] == trajectory.outputs[0]
        state = client.send({"type": "state"})["data"]
        assert state["task_id"] == trajectory.task_id and state["step_count"] == 1 and state["done"] is False
        assert state["report"]["rubric"]["tool_calls"] == 1


# ---------------------------------------------------------------- JSON-RPC /mcp and HTTP
def test_mcp_session_attached_websocket_and_http_share_one_episode(server, trajectories):
    """The newer client's sequence: session over /mcp, reset over /ws?session_id=, tool calls over /mcp."""
    trajectory = trajectories[2]
    session_id = rpc(server.url, "openenv/session/create")["result"]["session_id"]
    with WsClient(server.url, session_id=session_id) as client:
        assert client.reset(task_id=trajectory.task_id)["data"]["metadata"]["task_id"] == trajectory.task_id
        *middle, (last_tool, last_arguments) = trajectory.calls
        for i, (tool, arguments) in enumerate(middle):
            response = rpc(server.url, "tools/call", {"name": tool, "arguments": arguments, "session_id": session_id},
                           request_id=i)
            assert response["id"] == i and response["result"]["data"] == trajectory.outputs[i]
        final = client.call(last_tool, **last_arguments)["data"]
        assert final["done"] is True and final["reward"] == 1.0
    assert active_sessions(server.url) >= 1  # a detached /mcp session lives on until closed (or reaped)
    response = rpc(server.url, "tools/call", {"name": "calculator", "arguments": {"expression": "1"},
                                              "session_id": session_id})
    assert response["error"]["data"]["code"] == "EPISODE_DONE"
    state = get_json(f"{server.url}/state?session_id={session_id}")
    assert state["report"]["rubric"] == trajectory.rubric
    assert rpc(server.url, "openenv/session/close", {"session_id": session_id})["result"]["closed"] is True
    assert rpc(server.url, "openenv/session/close", {"session_id": session_id})["error"]["code"] == -32602


def test_json_rpc_errors(server):
    assert rpc(server.url, "no/such/method")["error"]["code"] == -32601
    assert post(f"{server.url}/mcp", None, raw=b"{not json")[1]["error"]["code"] == -32700
    assert post(f"{server.url}/mcp", {"method": "tools/list"})[1]["error"]["code"] == -32600  # no "jsonrpc": "2.0"
    unknown = rpc(server.url, "tools/call", {"name": "calculator", "arguments": {"expression": "1"}, "session_id": "x"})
    assert unknown["error"]["code"] == -32602 and "unknown session_id" in unknown["error"]["message"]
    stateless = rpc(server.url, "tools/call", {"name": "calculator", "arguments": {"expression": "1"}})
    assert stateless["error"]["data"]["code"] == "NO_EPISODE"
    assert [t["name"] for t in rpc(server.url, "tools/list")["result"]["tools"]] == list(TOOLS)


def test_http_endpoints(server, trajectories, snapshot_dir):
    health = get_json(f"{server.url}/health")
    assert health["status"] == "healthy" and health["max_sessions"] == 48
    assert health["snapshot_hash"] == json.loads((snapshot_dir / "manifest.json").read_text())["snapshot_hash"]
    assert get_json(f"{server.url}/metadata")["name"] == "finqa_env"
    schema = get_json(f"{server.url}/schema")
    assert {"action", "observation", "state"} <= set(schema)
    assert get_json(f"{server.url}/state") == {"episode_id": None, "step_count": 0}

    trajectory = trajectories[3]
    status, reset = post(f"{server.url}/reset", {"task_id": trajectory.task_id})  # stateless, as OpenEnv's
    assert status == 200 and reset["metadata"]["task_id"] == trajectory.task_id and reset["done"] is False
    status, tools = post(f"{server.url}/step", {"action": {"type": "list_tools"}})
    assert status == 200 and len(tools["observation"]["tools"]) == len(TOOLS)
    status, refused = post(f"{server.url}/step", {"action": {"type": "call_tool", "tool_name": "calculator",
                                                             "arguments": {"expression": "1"}}})
    assert status == 409 and refused["code"] == "NO_EPISODE"
    assert post(f"{server.url}/reset", {"task_id": "nope"})[0] == 400

    session_id = rpc(server.url, "openenv/session/create")["result"]["session_id"]  # an HTTP-only episode
    post(f"{server.url}/reset", {"task_id": trajectory.task_id, "session_id": session_id})
    for tool, arguments in trajectory.calls:
        status, step = post(f"{server.url}/step", {"session_id": session_id, "action": {
            "type": "call_tool", "tool_name": tool, "arguments": arguments}})
    assert status == 200 and step["done"] is True and step["reward"] == 1.0
    assert get_json(f"{server.url}/state?session_id={session_id}")["done"] is True
    rpc(server.url, "openenv/session/close", {"session_id": session_id})
    assert post(f"{server.url}/step", {"session_id": session_id, "action": {"type": "list_tools"}})[0] == 404


def test_a_training_server_serves_one_split_and_ends_episodes_at_the_step_limit(snapshot_dir, trajectories):
    from rl_assets.serve.process import start_server

    train = next(t for t in trajectories if t.task["split"] == "train")
    held_out = next(t for t in trajectories if t.task["split"] != "train")
    with start_server(snapshot_dir, max_sessions=2, max_steps=3, splits=["train"]) as small:
        assert list(get_json(f"{small.url}/health")["splits"]) == ["train"]
        with WsClient(small.url) as client:
            refused = client.reset(task_id=held_out.task_id)
            assert refused["data"]["code"] == "VALIDATION_ERROR" and "unknown task_id" in refused["data"]["message"]
            company = train.task["world_id"]
            client.reset(task_id=train.task_id)
            replies = [client.call("get_descriptions", company_name=company) for _ in range(2)]
            replies.append(client.call("no_such_tool"))  # an invalid call counts as a step too
            assert [r["data"]["done"] for r in replies] == [False, False, True]
            final = replies[-1]["data"]
            assert final["reward"] == 0.0 and final["metadata"]["stop_reason"] == "step_limit"
            assert final["metadata"]["report"]["rubric"]["answered"] is False
            assert client.call("submit_answer", answer="1")["data"]["code"] == "EPISODE_DONE"


def test_serve_refuses_a_directory_that_is_not_a_snapshot(tmp_path):
    from rl_assets.serve.process import start_server

    with pytest.raises(RuntimeError, match="not a snapshot directory"):
        start_server(tmp_path, startup_timeout_s=60)
