"""The ASGI application: OpenEnv's HTTP + WebSocket + MCP protocol over FinQA sessions (Starlette).

Endpoints (as OpenEnv's server library defines them, plus what it lacks for training):

    GET  /health     {"status": "healthy", active/max sessions, snapshot hash, tasks served} (without the
                     token, when the server has one: {"status": "healthy"} only)
    GET  /metadata   name, description, version
    GET  /openapi.json  the HTTP endpoints (OpenAPI 3.1), which `openenv validate --url` reads
    GET  /schema     JSON schemas of action, observation, state (and of the reset arguments)
    GET  /state      a session's state (?session_id=...), else an empty state
    GET  /tasks      the tasks served: task_id, split, question_type, source (filters: ?split=&question_type=&source=)
    POST /reset      reset arguments (rl_assets.serve.tasks) -> observation; with "session_id", that
                     session's episode; without, a throwaway episode (OpenEnv's stateless /reset)
    POST /step       {"action": {...}, "session_id": ...} -> observation; without a session only
                     list_tools (a tool call needs an episode)
    POST /mcp        JSON-RPC 2.0: openenv/session/create, openenv/session/close, tools/list,
                     tools/call {name, arguments, session_id}
    WS   /ws         one session per connection (or ?session_id=... attaches to one created over /mcp):
                     {"type": "reset" | "step" | "state" | "close" | "mcp", "data": ...}
    WS   /mcp        JSON-RPC 2.0 messages, one session per connection

With a token (ServerConfig.token), everything but GET /health needs it (rl_assets.serve.auth).
Tool calls run in a thread pool, one at a time per session; a session's bookkeeping stays on the event
loop. Every malformed request gets an error for that client alone; nothing a client sends can stop the
server. Why not OpenEnv's own server library: see docs/serving.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata as package_metadata
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from rl_assets.env import FinQAEnv, load_world
from rl_assets.serve import protocol
from rl_assets.serve.auth import AUTHORIZED_KEY, TokenAuth
from rl_assets.serve.config import ServerConfig
from rl_assets.serve.sessions import (
    CAPACITY_REACHED, EPISODE_DONE, EXECUTION_ERROR, INVALID_JSON, MESSAGE_TOO_LARGE, NO_EPISODE, SESSION_ERROR,
    UNKNOWN_TYPE, VALIDATION_ERROR, ServiceError, Session, SessionManager,
)
from rl_assets.serve.tasks import TaskCatalog
from rl_assets.snapshot import read_tasks

log = logging.getLogger("rl_assets.serve")

HTTP_STATUS = {INVALID_JSON: 400, VALIDATION_ERROR: 400, UNKNOWN_TYPE: 400, SESSION_ERROR: 404,
               NO_EPISODE: 409, EPISODE_DONE: 409, MESSAGE_TOO_LARGE: 413, CAPACITY_REACHED: 503,
               EXECUTION_ERROR: 500}
WS_CLOSE_TRY_AGAIN_LATER = 1013
WS_CLOSE_POLICY = 1008
WS_CLOSE_IDLE = 4408  # application close code: the session was idle too long
DRAIN_FACTOR = 16  # an oversized HTTP body is drained up to this many times the limit, then the connection closes
TASK_LISTING = ("task_id", "split", "question_type", "source")
STEP_KEYS = {"call_tool": {"type", "tool_name", "arguments", "metadata"}, "list_tools": {"type", "metadata"}}


class FinQAService:
    """Transport-independent operations on sessions, shared by the WebSocket, JSON-RPC and HTTP handlers."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.world = load_world(config.snapshot)
        tasks = read_tasks(config.snapshot, splits=config.splits)
        self.catalog = TaskCatalog(tasks, seed=config.task_cycle_seed)
        env_kwargs = {"splits": config.splits, **config.env_kwargs}
        if config.description_chars is not None:
            env_kwargs["description_chars"] = config.description_chars
        self.sessions = SessionManager(lambda: FinQAEnv(snapshot=config.snapshot, **env_kwargs), self.catalog,
                                       config.max_sessions, config.session_timeout_s, config.max_steps)
        self.executor = ThreadPoolExecutor(config.tool_threads, thread_name_prefix="finqa-tool")
        self._reaper: asyncio.Task | None = None

    # ---------------------------------------------------------------- lifecycle
    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette):
        self._reaper = asyncio.create_task(self._reap_forever())
        log.info("serving %d tasks of snapshot %s, at most %d sessions", len(self.catalog),
                 self.world.snapshot_hash, self.config.max_sessions)
        try:
            yield
        finally:
            self._reaper.cancel()
            self.executor.shutdown(wait=False, cancel_futures=True)

    async def _reap_forever(self) -> None:
        interval = max(0.05, min(self.config.session_timeout_s / 4, 5.0))
        while True:
            await asyncio.sleep(interval)
            try:
                await self.reap_idle()
            except Exception:  # the reaper must outlive any one bad session
                log.exception("idle-session reaper failed; retrying")

    async def reap_idle(self) -> int:
        idle = self.sessions.idle()
        for session in idle:
            why = f"closed after {self.config.session_timeout_s:g} s idle"
            self.sessions.close(session.id, why)
            log.info("session %s %s", session.id, why)
            if session.websocket is not None:
                with contextlib.suppress(Exception):
                    await session.websocket.close(code=WS_CLOSE_IDLE, reason=f"session {why}")
        return len(idle)

    # ---------------------------------------------------------------- operations
    async def _run(self, session: Session, fn, *args):
        if session.closed:
            raise ServiceError(SESSION_ERROR, f"session {session.id} was {session.closed}")
        session.busy += 1
        try:
            async with session.lock:
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(self.executor, fn, *args)
        finally:
            session.busy -= 1
            session.touch()

    async def reset(self, session: Session, request: Any) -> dict[str, Any]:
        if not isinstance(request, dict):
            raise ServiceError(VALIDATION_ERROR, f"reset data must be a JSON object, not {type(request).__name__}")
        return protocol.reset_payload(await self._run(session, session.reset, request))

    async def step(self, session: Session | None, action: Any) -> dict[str, Any]:
        kind = action.get("type") if isinstance(action, dict) else None
        if kind not in STEP_KEYS:
            raise ServiceError(VALIDATION_ERROR, 'a step action is {"type": "call_tool", "tool_name": ..., '
                                                 '"arguments": {...}} or {"type": "list_tools"}')
        extra = set(action) - STEP_KEYS[kind]
        if extra:
            raise ServiceError(VALIDATION_ERROR, f"unexpected field(s) in a {kind} action: "
                                                 f"{', '.join(sorted(map(repr, extra)))}")
        if kind == "list_tools":
            if session is not None:
                session.touch()
            return protocol.list_tools_payload()
        if session is None:
            raise ServiceError(NO_EPISODE, "a tool call needs an episode: open a session (WebSocket /ws, or "
                                           "openenv/session/create over /mcp), reset it, and pass its session_id")
        session.check_can_step()
        outcome = await self._run(session, session.call_tool, action.get("tool_name"), action.get("arguments", {}),
                                  self.config.max_argument_chars)
        return protocol.step_payload(outcome)

    def health(self) -> dict[str, Any]:
        return {"status": "healthy", "active_sessions": len(self.sessions), "max_sessions": self.config.max_sessions,
                "snapshot_hash": self.world.snapshot_hash, "tasks": len(self.catalog), "splits": self.catalog.counts()}

    # ---------------------------------------------------------------- JSON-RPC
    async def jsonrpc(self, message: Any, bound: Session | None = None) -> dict[str, Any]:
        """One JSON-RPC 2.0 request -> its response. `bound`: the session of the connection it came on."""
        if not isinstance(message, dict):
            return protocol.rpc_error(None, protocol.INVALID_REQUEST, "Invalid request: expected a JSON object")
        request_id = message.get("id")
        if not isinstance(request_id, (str, int, type(None))) or isinstance(request_id, bool):
            request_id = None
        method, params = message.get("method"), message.get("params", {})
        if message.get("jsonrpc") != "2.0" or not isinstance(method, str) or not isinstance(params, dict):
            return protocol.rpc_error(request_id, protocol.INVALID_REQUEST,
                                      'Invalid request: need "jsonrpc": "2.0", a string "method" and object "params"')
        try:
            if method == "openenv/session/create":
                session = bound or self.sessions.open(owner="mcp")
                return protocol.rpc_result(request_id, {"session_id": session.id})
            if method == "openenv/session/close":
                target = params.get("session_id")
                if not target:
                    return protocol.rpc_error(request_id, protocol.INVALID_PARAMS,
                                              "Invalid params - 'session_id' is required")
                if bound is not None and target == bound.id:
                    return protocol.rpc_error(request_id, protocol.INVALID_REQUEST,
                                              "this connection's own session closes with the connection")
                self.sessions.get(target)
                self.sessions.close(target)
                return protocol.rpc_result(request_id, {"session_id": target, "closed": True})
            if method == "tools/list":
                return protocol.rpc_result(request_id, {"tools": protocol.tool_listing()})
            if method == "tools/call":
                session = bound or (self.sessions.get(params["session_id"]) if "session_id" in params else None)
                observation = await self.step(session, {"type": "call_tool", "tool_name": params.get("name"),
                                                        "arguments": params.get("arguments", {})})
                error = observation["observation"]["error"]
                if error is not None:
                    return protocol.rpc_error(request_id, protocol.INVALID_PARAMS, error["message"], error)
                result = {**observation["observation"]["result"], "done": observation["done"],
                          "reward": observation["reward"], "metadata": observation["metadata"]}
                return protocol.rpc_result(request_id, result)
            return protocol.rpc_error(request_id, protocol.METHOD_NOT_FOUND, f"Method not found: {method}")
        except ServiceError as e:
            return protocol.rpc_service_error(request_id, e)
        except Exception as e:  # never let one request take the server down
            log.exception("JSON-RPC %s failed", method)
            return protocol.rpc_error(request_id, protocol.INTERNAL_ERROR, f"{type(e).__name__}: {e}")

    # ---------------------------------------------------------------- WebSocket /ws
    async def ws_message(self, session: Session, text: str) -> str | None:
        """The reply to one /ws message; None for "close"."""
        try:
            message = json.loads(text)
        except json.JSONDecodeError as e:
            return protocol.ws_error(INVALID_JSON, f"Invalid JSON: {e}")
        if not isinstance(message, dict):
            return protocol.ws_error(VALIDATION_ERROR, 'a message is a JSON object {"type": "reset" | "step" | '
                                                       '"state" | "close" | "mcp", "data": ...}')
        kind = message.get("type")
        try:
            if kind == "reset":
                data = await self.reset(session, message.get("data", {}))
                return json.dumps({"type": "observation", "data": data})
            if kind == "step":
                data = await self.step(session, message.get("data"))
                return json.dumps({"type": "observation", "data": data})
            if kind == "state":
                session.touch()
                return json.dumps({"type": "state", "data": session.state()})
            if kind == "close":
                return None
            if kind == "mcp":
                return json.dumps({"type": "mcp", "data": await self.jsonrpc(message.get("data"), bound=session)})
            return protocol.ws_error(UNKNOWN_TYPE, f"Unknown message type: {kind!r} "
                                                   "(reset, step, state, close or mcp)")
        except ServiceError as e:
            return protocol.ws_service_error(e)
        except Exception as e:
            log.exception("WebSocket %r message failed", kind)
            return protocol.ws_error(EXECUTION_ERROR, f"{type(e).__name__}: {e}")

    async def ws_endpoint(self, websocket: WebSocket) -> None:
        # the session exists before the handshake completes, so a client that has connected holds its slot
        requested = websocket.query_params.get("session_id")
        try:
            if requested:
                session = self.sessions.get(requested)
                if session.websocket is not None:
                    raise ServiceError(SESSION_ERROR, f"session {requested} already has a WebSocket attached")
                owned = False
            else:
                session = self.sessions.open(owner="ws")
                owned = True
        except ServiceError as e:
            await websocket.accept()
            await _send_then_close(websocket, protocol.ws_service_error(e), e)
            return
        session.websocket = websocket
        session.touch()
        try:
            await websocket.accept()
            while True:
                received = await websocket.receive()
                if received["type"] == "websocket.disconnect":
                    break
                if session.closed:  # reaped, or closed over /mcp, while this connection stayed open
                    message = f"session {session.id} was {session.closed}"
                    await websocket.send_text(protocol.ws_error(SESSION_ERROR, message))
                    break
                text = received.get("text")
                if text is None:
                    reply = protocol.ws_error(VALIDATION_ERROR, "send JSON as text frames, not binary")
                else:
                    reply = await self.ws_message(session, text)
                    if reply is None:
                        break
                await websocket.send_text(reply)
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass  # the client went away mid-exchange: its session ends below, nobody else notices
        finally:
            session.websocket = None
            if owned:
                self.sessions.close(session.id, "closed when its WebSocket closed")
            with contextlib.suppress(Exception):
                await websocket.close()

    # ---------------------------------------------------------------- WebSocket /mcp
    async def mcp_ws_endpoint(self, websocket: WebSocket) -> None:
        try:
            session = self.sessions.open(owner="ws")
        except ServiceError as e:
            await websocket.accept()
            await _send_then_close(websocket, json.dumps(protocol.rpc_service_error(None, e)), e)
            return
        session.websocket = websocket
        try:
            await websocket.accept()
            while True:
                received = await websocket.receive()
                if received["type"] == "websocket.disconnect":
                    break
                try:
                    message = json.loads(received.get("text") or "")
                except json.JSONDecodeError as e:
                    response = protocol.rpc_error(None, protocol.PARSE_ERROR, f"Parse error: {e}")
                else:
                    response = await self.jsonrpc(message, bound=session)
                await websocket.send_text(json.dumps(response))
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
        finally:
            session.websocket = None
            self.sessions.close(session.id, "closed when its WebSocket closed")
            with contextlib.suppress(Exception):
                await websocket.close()

    # ---------------------------------------------------------------- HTTP
    async def read_json(self, request: Request) -> Any:
        # An oversized body is read to its end (up to a bound) and dropped, so that a client that sends all of
        # its request before reading the answer gets the error instead of a broken pipe.
        limit = self.config.max_message_bytes
        body, received = bytearray(), 0
        async for chunk in request.stream():
            received += len(chunk)
            if received <= limit:
                body += chunk
            elif received > DRAIN_FACTOR * limit:
                break
        if received > limit:
            raise ServiceError(MESSAGE_TOO_LARGE, f"request body is over {limit:,} bytes (the limit)")
        if not body:
            return {}
        try:
            return json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ServiceError(INVALID_JSON, f"Invalid JSON: {e}") from None


def _http_error(error: ServiceError) -> JSONResponse:
    return JSONResponse({"detail": error.message, "code": error.code, **error.details},
                        status_code=HTTP_STATUS.get(error.code, 400))


async def _send_then_close(websocket: WebSocket, text: str, error: ServiceError) -> None:
    """Refuse a connection: the error frame (what OpenEnv's clients read), then a close with the reason."""
    close_code = WS_CLOSE_TRY_AGAIN_LATER if error.code == CAPACITY_REACHED else WS_CLOSE_POLICY
    reason = error.message.encode()[:120].decode(errors="ignore")  # a close reason is at most 123 bytes
    with contextlib.suppress(Exception):
        await websocket.send_text(text)
        await websocket.close(code=close_code, reason=reason)


def create_app(config: ServerConfig) -> Starlette:
    """The service as an ASGI app (loads the world and the tasks now, so a bad snapshot fails here)."""
    service = FinQAService(config)

    async def health(request: Request) -> JSONResponse:
        if not request.scope.get(AUTHORIZED_KEY, True):  # no token sent to a server that has one: liveness only
            return JSONResponse({"status": "healthy"})
        return JSONResponse(service.health())

    async def metadata(request: Request) -> JSONResponse:
        return JSONResponse({
            "name": "finqa_env",
            "description": "FinQA tool-use environment: list a company's tables, inspect them, run filtered "
                           "SQL, calculate, submit an answer (finqa-rl).",
            "version": package_metadata.version("finqa-rl"),
            "readme_content": None, "author": None, "documentation_url": None,
        })

    async def schema(request: Request) -> JSONResponse:
        return JSONResponse(protocol.json_schemas())

    async def openapi(request: Request) -> JSONResponse:
        return JSONResponse(protocol.openapi_document(package_metadata.version("finqa-rl")))

    async def state(request: Request) -> JSONResponse:
        session_id = request.query_params.get("session_id")
        if session_id is None:
            return JSONResponse({"episode_id": None, "step_count": 0})
        try:
            session = service.sessions.get(session_id)
        except ServiceError as e:
            return _http_error(e)
        session.touch()
        return JSONResponse(session.state())

    async def tasks(request: Request) -> JSONResponse:
        filters = {k: request.query_params.get(k) for k in ("split", "question_type", "source")}
        listed = [{k: t.get(k) for k in TASK_LISTING} for t in service.catalog.all
                  if all(v is None or t.get(k) == v for k, v in filters.items())]
        return JSONResponse({"tasks": listed})

    async def reset(request: Request) -> JSONResponse:
        try:
            body = await service.read_json(request)
            if not isinstance(body, dict):
                raise ServiceError(VALIDATION_ERROR, "the /reset body is a JSON object of reset arguments")
            arguments = dict(body)
            session_id = arguments.pop("session_id", None)
            session = service.sessions.get(session_id) if session_id is not None else service.sessions.temporary()
            return JSONResponse(await service.reset(session, arguments))
        except ServiceError as e:
            return _http_error(e)

    async def step(request: Request) -> JSONResponse:
        try:
            body = await service.read_json(request)
            if not isinstance(body, dict) or not isinstance(body.get("action"), dict):
                raise ServiceError(VALIDATION_ERROR, 'the /step body is {"action": {...}, "session_id": ...}')
            session_id = body.get("session_id")
            session = service.sessions.get(session_id) if session_id is not None else None
            return JSONResponse(await service.step(session, body["action"]))
        except ServiceError as e:
            return _http_error(e)

    async def mcp(request: Request) -> JSONResponse:
        try:
            message = await service.read_json(request)
        except ServiceError as e:
            code = protocol.PARSE_ERROR if e.code == INVALID_JSON else protocol.INVALID_REQUEST
            return JSONResponse(protocol.rpc_error(None, code, e.message, {"code": e.code}))
        return JSONResponse(await service.jsonrpc(message))

    app = Starlette(
        routes=[
            Route("/health", health), Route("/metadata", metadata), Route("/schema", schema),
            Route("/openapi.json", openapi), Route("/state", state),
            Route("/tasks", tasks),
            Route("/reset", reset, methods=["POST"]), Route("/step", step, methods=["POST"]),
            Route("/mcp", mcp, methods=["POST"]),
            WebSocketRoute("/ws", service.ws_endpoint), WebSocketRoute("/mcp", service.mcp_ws_endpoint),
        ],
        lifespan=service.lifespan,
        middleware=[Middleware(TokenAuth, token=config.token)] if config.token is not None else [],
    )
    app.state.service = service
    return app
