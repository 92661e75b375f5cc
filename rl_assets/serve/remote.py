"""RemoteFinQAEnv: FinQAEnv's tools served by `finqa-rl serve`, for a trainer on another machine.

    from rl_assets.serve.remote import RemoteFinQAEnv
    trainer = GRPOTrainer(..., environment_factory=lambda: RemoteFinQAEnv("http://env-host:8000"))

Same public tool methods, signatures and docstrings as `rl_assets.env.FinQAEnv` (so TRL shows the model the
same tools), `reset(**row)` and `get_reward()`. `reset` sends only the row's `task_id` (or `split` with
`index` / `seed`): the server holds the snapshot and grades with its own gold answer, so the trainer's
dataset needs no gold columns. Each instance is one session on one WebSocket, opened on first use and
reopened by `reset` if the server closed it (e.g. idle between training steps longer than the server's
`--session-timeout`).

A server started with a token (`finqa-rl serve` with $FINQA_RL_SERVE_TOKEN or --token-file) needs the same
one: `RemoteFinQAEnv(url, token=...)`, or $FINQA_RL_SERVE_TOKEN in the trainer's environment; it is sent as
`Authorization: Bearer <token>` on the WebSocket handshake (and by `fetch_tasks` on its request). A missing or
wrong token makes `reset` raise ConnectionError (UNAUTHORIZED).

The session ends when the connection does: `with RemoteFinQAEnv(url) as env: ...`, `close(env)`, the
process exiting, or the server's idle timeout. (`close` is a function, not a method: TRL would offer any
public method to the model as a tool.)

Tools never raise for the agent's mistakes (like FinQAEnv, the answer is an "Error: ..." text, also after
the episode ended with `submit_answer`); a lost connection or a refused session raises ConnectionError.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from rl_assets.env import FinQAEnv
from rl_assets.serve.config import TOKEN_ENV

RESET_FIELDS = ("split", "index", "seed")


def websocket_url(url: str) -> str:
    """http(s)://host:port[/] or ws(s)://... -> ws(s)://host:port/ws"""
    base = url.rstrip("/")
    for http, ws in (("http://", "ws://"), ("https://", "wss://")):
        if base.startswith(http):
            base = ws + base[len(http):]
    if not base.startswith(("ws://", "wss://")):
        raise ValueError(f"server URL must start with http://, https://, ws:// or wss://, not {url!r}")
    return base if base.endswith("/ws") else base + "/ws"


class RemoteFinQAEnv:
    """One episode at a time in one session of a FinQA environment server. See the module docstring."""

    def __init__(self, url: str, timeout_s: float = 60.0, connect_timeout_s: float = 10.0,
                 token: str | None = None):
        """
        Args:
            url: the server, e.g. "http://127.0.0.1:8000".
            timeout_s: seconds to wait for one reply.
            connect_timeout_s: seconds to wait for the connection (and the session) to open.
            token: the server's shared secret (default: $FINQA_RL_SERVE_TOKEN; none if that is unset).
        """
        self.url = url
        self._ws_url = websocket_url(url)
        self._headers = _auth_headers(token)
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._ws = None
        self._done = False
        self._reward: float | None = None
        self._final: dict[str, Any] | None = None

    # ------------------------------------------------------------------ episode
    def reset(self, **task: Any) -> str:
        """Start an episode on the server for one task (a dataset row with its task_id); returns the task text
        exactly as FinQAEnv.reset does."""
        if "task_id" in task:
            request = {"task_id": task["task_id"]}
        elif any(k in task for k in RESET_FIELDS):
            request = {k: task[k] for k in RESET_FIELDS if k in task}
        else:
            raise ValueError("RemoteFinQAEnv.reset needs the row's task_id (or split with index and/or seed); "
                             f"got columns {sorted(task)}")
        message = {"type": "reset", "data": request}
        try:
            reply = self._exchange(message)
        except ConnectionError:
            self._disconnect()  # closed by the server (idle too long, restarted): one fresh session
            reply = self._exchange(message)
        data = self._observation(reply, "reset")
        self._done, self._reward, self._final = False, None, None
        return (data.get("metadata") or data["observation"]["metadata"])["prompt"]

    def get_reward(self) -> float:
        """1.0 if the submitted answer is correct (graded by the server), else 0.0."""
        return float(self._reward) if self._done and self._reward is not None else 0.0

    @property
    def report(self) -> dict[str, Any]:
        """Telemetry and behaviour rubric of the current episode (FinQAEnv.report, from the server)."""
        if self._final is not None:
            return self._final["report"]
        reply = self._exchange({"type": "state"})
        if reply.get("type") != "state":
            raise ConnectionError(f"state: unexpected reply {str(reply)[:300]}")
        return reply["data"]["report"]

    def __enter__(self) -> "RemoteFinQAEnv":
        return self

    def __exit__(self, *exc) -> None:
        close(self)

    def _close(self) -> None:
        if self._ws is not None:
            try:
                self._ws.send(json.dumps({"type": "close"}))
            except Exception:
                pass
            self._disconnect()

    # ------------------------------------------------------------------ tools (FinQAEnv's signatures and docs)
    def get_descriptions(self, company_name: str) -> str:
        return self._call("get_descriptions", company_name=company_name)

    def get_table_info(self, company_name: str, table_name: str) -> str:
        return self._call("get_table_info", company_name=company_name, table_name=table_name)

    def sql_query(self, company_name: str, table_name: str, query: str) -> str:
        return self._call("sql_query", company_name=company_name, table_name=table_name, query=query)

    def calculator(self, expression: str) -> str:
        return self._call("calculator", expression=expression)

    def submit_answer(self, answer: str) -> str:
        return self._call("submit_answer", answer=answer)

    get_descriptions.__doc__ = FinQAEnv.get_descriptions.__doc__
    get_table_info.__doc__ = FinQAEnv.get_table_info.__doc__
    sql_query.__doc__ = FinQAEnv.sql_query.__doc__
    calculator.__doc__ = FinQAEnv.calculator.__doc__
    submit_answer.__doc__ = FinQAEnv.submit_answer.__doc__

    # ------------------------------------------------------------------ wire
    def _call(self, tool: str, **arguments: Any) -> str:
        reply = self._exchange({"type": "step", "data": {"type": "call_tool", "tool_name": tool, "arguments": arguments}})
        if reply.get("type") == "error":
            return f"Error: {reply['data'].get('message')}"
        data = self._observation(reply, tool)
        observation = data["observation"]
        if data["done"]:
            metadata = data.get("metadata") or observation.get("metadata") or {}
            self._done, self._reward = True, data["reward"]
            self._final = metadata if "report" in metadata else None
        if observation.get("error"):
            return f"Error: {observation['error']['message']}"
        return observation["result"]["data"]

    @staticmethod
    def _observation(reply: dict[str, Any], what: str) -> dict[str, Any]:
        if reply.get("type") == "observation":
            return reply["data"]
        if reply.get("type") == "error":
            data = reply.get("data", {})
            raise ConnectionError(f"{what}: server error {data.get('code')}: {data.get('message')}")
        raise ConnectionError(f"{what}: unexpected reply {str(reply)[:300]}")

    def _exchange(self, message: dict[str, Any]) -> dict[str, Any]:
        from websockets.exceptions import ConnectionClosed

        ws = self._connection()
        try:
            ws.send(json.dumps(message))
            return json.loads(ws.recv(timeout=self._timeout_s))
        except TimeoutError:
            self._disconnect()
            raise ConnectionError(f"no reply from {self._ws_url} within {self._timeout_s:g} s") from None
        except ConnectionClosed as e:
            self._disconnect()
            raise ConnectionError(f"connection to {self._ws_url} closed: {e}") from None

    def _connection(self):
        if self._ws is None:
            from websockets.sync.client import connect

            try:
                self._ws = connect(self._ws_url, open_timeout=self._connect_timeout_s, compression=None,
                                   max_size=None, additional_headers=self._headers, legacy=True)
            except (OSError, TimeoutError) as e:
                raise ConnectionError(f"cannot connect to {self._ws_url}: {e}") from None
        return self._ws

    def _disconnect(self) -> None:
        if self._ws is not None:
            try:
                self._ws.close()
            except Exception:
                pass
            self._ws = None


def close(env: RemoteFinQAEnv) -> None:
    """End the environment's session now (the server frees its slot at once)."""
    env._close()


def _auth_headers(token: str | None) -> dict[str, str]:
    token = token if token is not None else (os.environ.get(TOKEN_ENV, "").strip() or None)
    return {"Authorization": f"Bearer {token}"} if token else {}


def fetch_tasks(url: str, split: str | None = None, question_type: str | None = None,
                source: str | None = None, timeout_s: float = 60.0, token: str | None = None) -> list[dict[str, Any]]:
    """The tasks a server serves ({task_id, split, question_type, source}, ordered by task_id), e.g. to build
    a trainer's dataset without a local copy of the snapshot. `token`: as for RemoteFinQAEnv."""
    query = urllib.parse.urlencode({k: v for k, v in (("split", split), ("question_type", question_type),
                                                      ("source", source)) if v is not None})
    base = url.rstrip("/").replace("ws://", "http://", 1).replace("wss://", "https://", 1).removesuffix("/ws")
    request = urllib.request.Request(f"{base}/tasks" + (f"?{query}" if query else ""), headers=_auth_headers(token))
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read())["tasks"]
    except urllib.error.HTTPError as e:
        if e.code == 401:
            raise ConnectionError(f"{base}/tasks: 401 unauthorized: the server needs its token (token=... or "
                                  f"${TOKEN_ENV})") from None
        raise
