"""Helpers of the service tests: the oracle trajectory record, a client for OpenEnv's /ws protocol (the older,
/ws-only one), JSON-RPC and HTTP calls (with or without the guarded server's token), and polling."""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from rl_assets.serve.process import auth_headers, get_json

N_TRAJECTORIES = 32
TOKEN = "test-token-" + secrets.token_urlsafe(24)  # the guarded server's shared secret, new each test session


@dataclass
class Trajectory:
    """An oracle episode recorded in-process: its calls and what each returned, its reward and rubric."""

    task: dict[str, Any]
    calls: list[tuple[str, dict[str, Any]]]
    outputs: list[str]
    reward: float
    rubric: dict[str, Any]

    @property
    def task_id(self) -> str:
        return self.task["task_id"]


class WsClient:
    """OpenEnv's /ws protocol, message by message (what openenv-core 0.3.0's client sends)."""

    def __init__(self, url: str, session_id: str | None = None, max_size: int | None = None,
                 token: str | None = None, path: str = "/ws", headers: dict[str, str] | None = None):
        from websockets.sync.client import connect

        ws_url = url.replace("http://", "ws://") + path + (f"?session_id={session_id}" if session_id else "")
        self.ws = connect(ws_url, open_timeout=30, compression=None, max_size=max_size, legacy=True,
                          additional_headers={**auth_headers(token), **(headers or {})})

    def send_text(self, text: str) -> dict[str, Any]:
        self.ws.send(text)
        return json.loads(self.ws.recv(timeout=60))

    def send(self, message: dict[str, Any]) -> dict[str, Any]:
        return self.send_text(json.dumps(message))

    def reset(self, **data: Any) -> dict[str, Any]:
        return self.send({"type": "reset", "data": data})

    def call(self, tool: str, **arguments: Any) -> dict[str, Any]:
        return self.send({"type": "step", "data": {"type": "call_tool", "tool_name": tool, "arguments": arguments}})

    def close(self) -> None:
        try:
            self.ws.send(json.dumps({"type": "close"}))
        except Exception:
            pass
        self.ws.close()

    def __enter__(self) -> "WsClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def replay_over_ws(url: str, trajectory: Trajectory) -> dict[str, Any]:
    """One oracle trajectory through the /ws protocol: the replies, in order."""
    with WsClient(url) as client:
        reset = client.reset(task_id=trajectory.task_id)
        steps = [client.call(tool, **arguments) for tool, arguments in trajectory.calls]
        after_done = client.call("calculator", expression="1 + 1")
        state = client.send({"type": "state"})
    return {"reset": reset, "steps": steps, "after_done": after_done, "state": state}


def active_sessions(url: str, token: str | None = None) -> int:
    return get_json(f"{url}/health", token=token)["active_sessions"]


def wait_until(predicate, timeout_s: float = 30.0, what: str = "condition"):
    """Poll `predicate` until it returns a truthy value (the value), or fail after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)


def post(url: str, body: Any, raw: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    data = raw if raw is not None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})},
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def rpc(url: str, method: str, params: dict | None = None, request_id: int = 1, token: str | None = None) -> dict:
    return post(f"{url}/mcp", {"jsonrpc": "2.0", "method": method, "params": params or {}, "id": request_id},
                headers=auth_headers(token))[1]
