"""Sessions of the service: each one a FinQAEnv running one episode at a time over the shared read-only world.

An episode starts with `reset` (a task chosen by rl_assets.serve.tasks) and is `done` once an answer was
submitted or after `max_steps` tool calls; its reward and behaviour rubric (`FinQAEnv.report`) then travel in
the observation metadata. A tool call after `done` is an error (`EPISODE_DONE`), never a silent new episode.

The manager enforces the session limit (`CAPACITY_REACHED`, with the limit in the message) and finds
sessions idle longer than the timeout for the reaper. Bookkeeping happens on the server's event loop; the
episode methods (`reset`, `call_tool`) run in worker threads, one at a time per session (its lock).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

from rl_assets.env import FinQAEnv
from rl_assets.serve.tasks import TaskCatalog, TaskSelectionError
from rl_assets.serve.tools import TOOLS, InvalidToolCall, check_call

# error codes: OpenEnv's WSErrorCode values, then this service's own
INVALID_JSON = "INVALID_JSON"
UNKNOWN_TYPE = "UNKNOWN_TYPE"
VALIDATION_ERROR = "VALIDATION_ERROR"
EXECUTION_ERROR = "EXECUTION_ERROR"
CAPACITY_REACHED = "CAPACITY_REACHED"
SESSION_ERROR = "SESSION_ERROR"
NO_EPISODE = "NO_EPISODE"  # a tool call before the session's first reset
EPISODE_DONE = "EPISODE_DONE"  # a tool call after the episode ended
MESSAGE_TOO_LARGE = "MESSAGE_TOO_LARGE"


class ServiceError(Exception):
    """A request the service refuses; `code` is one of the codes above, `details` go to the client too."""

    def __init__(self, code: str, message: str, **details: Any):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


@dataclass
class StepOutcome:
    tool_name: str
    text: str | None  # the tool's output; None when the call never reached the tool
    tool_error_kind: str | None  # the environment's error kind when the tool answered with an error
    invalid: InvalidToolCall | None  # why the call could not reach a tool
    done: bool
    reward: float | None  # set once done
    metadata: dict[str, Any]


@dataclass
class ResetOutcome:
    prompt: str
    metadata: dict[str, Any]


@dataclass
class Session:
    id: str
    env: FinQAEnv
    owner: str  # "ws": lives as long as its WebSocket; "mcp" / "http": until closed or reaped
    max_steps: int
    catalog: TaskCatalog
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    last_active: float = field(default_factory=time.monotonic)
    busy: int = 0  # requests in flight
    websocket: Any = None  # the attached WebSocket, if any
    episode_id: str | None = None
    task: dict[str, Any] | None = None
    step_count: int = 0
    done: bool = False
    reward: float | None = None
    stop_reason: str | None = None
    closed: str | None = None  # why the session ended, once it has

    def touch(self) -> None:
        self.last_active = time.monotonic()

    # ---------------------------------------------------------------- episode (runs in a worker thread)
    def reset(self, request: dict[str, Any]) -> ResetOutcome:
        try:
            task = self.catalog.select(request)
        except TaskSelectionError as e:
            raise ServiceError(VALIDATION_ERROR, f"reset: {e}") from None
        try:
            prompt = self.env.reset(**task)
        except ValueError as e:  # e.g. a task of a split this server does not serve
            raise ServiceError(VALIDATION_ERROR, f"reset: {e}") from None
        self.task = task
        self.episode_id = request.get("episode_id") or str(uuid.uuid4())
        self.step_count = 0
        self.done = False
        self.reward = None
        self.stop_reason = None
        metadata = {
            **self._base_metadata(),
            "prompt": prompt,
            "question": task.get("question"),
            "company": task.get("world_id"),
            "split": task.get("split"),
            "question_type": task.get("question_type"),
            "source": task.get("source"),
            "available_tools": list(TOOLS),
        }
        return ResetOutcome(prompt, metadata)

    def call_tool(self, name: Any, arguments: Any, max_argument_chars: int) -> StepOutcome:
        self.check_can_step()
        self.step_count += 1
        tool_name = name if isinstance(name, str) else repr(name)
        try:
            check_call(name, arguments, max_argument_chars)
        except InvalidToolCall as invalid:
            outcome = StepOutcome(tool_name, None, None, invalid, False, None, {})
        else:
            text = getattr(self.env, name)(**arguments)
            last = self.env.tool_calls[-1]
            outcome = StepOutcome(tool_name, text, last.error_kind, None, False, None, {})
            if name == "submit_answer" and last.ok:
                self._finish("answer_submitted")
        if not self.done and self.step_count >= self.max_steps:
            self._finish("step_limit")
        outcome.done = self.done
        outcome.reward = self.reward
        outcome.metadata = {**self._base_metadata(), "tool_name": tool_name}
        if outcome.invalid is not None:
            outcome.metadata["invalid_call"] = outcome.invalid.error_type
        else:
            outcome.metadata["tool_ok"] = outcome.tool_error_kind is None
            outcome.metadata["error_kind"] = outcome.tool_error_kind
        if self.done:
            outcome.metadata.update(self.final_metadata())
        return outcome

    def check_can_step(self) -> None:
        if self.task is None:
            raise ServiceError(NO_EPISODE, "no episode in this session: reset first, e.g. "
                                           '{"type": "reset", "data": {"task_id": "..."}}')
        if self.done:
            raise ServiceError(
                EPISODE_DONE,
                f"episode {self.episode_id} is done ({self.stop_reason}, reward {self.reward}); "
                "reset to start a new episode",
                episode_id=self.episode_id,
            )

    def _finish(self, reason: str) -> None:
        self.done = True
        self.stop_reason = reason
        self.reward = self.env.get_reward()

    def final_metadata(self) -> dict[str, Any]:
        return {"reward": self.reward, "stop_reason": self.stop_reason, "report": self.env.report}

    def _base_metadata(self) -> dict[str, Any]:
        return {
            "episode_id": self.episode_id,
            "task_id": self.task.get("task_id") if self.task else None,
            "step_count": self.step_count,
            "max_steps": self.max_steps,
        }

    def state(self) -> dict[str, Any]:
        state = {**self._base_metadata(), "session_id": self.id, "done": self.done, "reward": self.reward,
                 "stop_reason": self.stop_reason}
        if self.task is not None:
            state["report"] = self.env.report
        return state


class SessionManager:
    """Open sessions, the limit on them, and which ones are idle. Used from the event loop only."""

    def __init__(self, make_env: Callable[[], FinQAEnv], catalog: TaskCatalog, max_sessions: int,
                 idle_timeout_s: float, max_steps: int):
        self._make_env = make_env
        self.catalog = catalog
        self.max_sessions = max_sessions
        self.idle_timeout_s = idle_timeout_s
        self.max_steps = max_steps
        self.sessions: dict[str, Session] = {}
        self._ended: OrderedDict[str, str] = OrderedDict()  # recently ended session id -> why (for errors)

    def __len__(self) -> int:
        return len(self.sessions)

    def open(self, owner: str) -> Session:
        if len(self.sessions) >= self.max_sessions:
            raise ServiceError(
                CAPACITY_REACHED,
                f"server at capacity: {len(self.sessions)} of {self.max_sessions} sessions in use "
                f"(max sessions {self.max_sessions}); close a session or retry later",
                active_sessions=len(self.sessions), max_sessions=self.max_sessions,
            )
        return self.add(owner, self._make_env())

    def add(self, owner: str, env: FinQAEnv) -> Session:
        session = Session(str(uuid.uuid4()), env, owner, self.max_steps, self.catalog)
        self.sessions[session.id] = session
        return session

    def temporary(self) -> Session:
        """A session outside the registry (and the limit), for the stateless HTTP /reset and /step."""
        return Session("stateless", self._make_env(), "http", self.max_steps, self.catalog)

    def get(self, session_id: Any) -> Session:
        session = self.sessions.get(session_id) if isinstance(session_id, str) else None
        if session is None:
            why = self._ended.get(session_id) if isinstance(session_id, str) else None
            raise ServiceError(SESSION_ERROR, f"unknown session_id {session_id!r}"
                                              + (f": {why}" if why else " (never created, or closed)"))
        return session

    def close(self, session_id: str, why: str = "closed") -> Session | None:
        session = self.sessions.pop(session_id, None)
        if session is not None:
            session.closed = why
            self._ended[session_id] = why
            while len(self._ended) > 4096:
                self._ended.popitem(last=False)
        return session

    def idle(self, now: float | None = None) -> list[Session]:
        now = time.monotonic() if now is None else now
        return [s for s in self.sessions.values() if s.busy == 0 and now - s.last_active > self.idle_timeout_s]
