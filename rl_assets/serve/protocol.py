"""The wire format OpenEnv's clients read, built from session outcomes.

Observations (WebSocket `{"type": "observation", "data": ...}`, HTTP /reset and /step bodies):

    {"observation": {..., "metadata": M}, "reward": r, "done": d, "metadata": M}

`metadata` is both inside `observation` (where `openenv-core` 0.3.0's client reads it; its own server
drops it) and at the top level (where `openenv` 0.10.0's client reads it). A tool call's observation is
OpenEnv's CallToolObservation: `tool_name`, `result` shaped like FastMCP's CallToolResult (the clients'
`call_tool` returns `result["data"]`, the tool's text), and `error` (`{"error_type", "message"}`) when the
call could not reach a tool, which makes the clients' `call_tool` raise with the message.

JSON-RPC 2.0 (`POST /mcp`, `WS /mcp`, and `{"type": "mcp"}` on `/ws`): OpenEnv's error codes; every
service error carries `data.code` (the same code a WebSocket error frame has).
"""

from __future__ import annotations

import json
from typing import Any

from rl_assets.serve.sessions import SESSION_ERROR, VALIDATION_ERROR, ResetOutcome, ServiceError, StepOutcome
from rl_assets.serve.tools import TOOLS

# JSON-RPC 2.0 error codes (as OpenEnv's JsonRpcErrorCode)
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SERVER_ERROR = -32000


def reset_payload(outcome: ResetOutcome) -> dict[str, Any]:
    m = outcome.metadata
    observation = {"prompt": outcome.prompt, "task_id": m["task_id"], "company_name": m["company"],
                   "question": m["question"], "metadata": m}
    return {"observation": observation, "reward": None, "done": False, "metadata": m}


def tool_result(outcome: StepOutcome) -> dict[str, Any]:
    text = outcome.text or ""
    return {
        "content": [{"type": "text", "text": text}],
        "structured_content": {"result": text},
        "data": text,
        "is_error": outcome.tool_error_kind is not None,
    }


def step_payload(outcome: StepOutcome) -> dict[str, Any]:
    observation = {
        "tool_name": outcome.tool_name,
        "result": None if outcome.invalid else tool_result(outcome),
        "error": ({"error_type": outcome.invalid.error_type, "message": outcome.invalid.message}
                  if outcome.invalid else None),
        "metadata": outcome.metadata,
    }
    return {"observation": observation, "reward": outcome.reward, "done": outcome.done, "metadata": outcome.metadata}


def list_tools_payload() -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    return {"observation": {"tools": tool_listing(), "metadata": metadata}, "reward": None, "done": False,
            "metadata": metadata}


def tool_listing() -> list[dict[str, Any]]:
    return [spec.listing() for spec in TOOLS.values()]


def ws_error(code: str, message: str, **details: Any) -> str:
    return json.dumps({"type": "error", "data": {"message": message, "code": code, **details}})


def ws_service_error(error: ServiceError) -> str:
    return ws_error(error.code, error.message, **error.details)


def rpc_result(request_id: Any, result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


def rpc_error(request_id: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


def rpc_service_error(request_id: Any, error: ServiceError) -> dict[str, Any]:
    code = INVALID_PARAMS if error.code in (VALIDATION_ERROR, SESSION_ERROR) else SERVER_ERROR
    return rpc_error(request_id, code, error.message, {"code": error.code, **error.details})


def json_schemas() -> dict[str, Any]:
    """GET /schema: the action, observation and state this service speaks (JSON Schema)."""
    call_tool = {
        "title": "CallToolAction", "type": "object", "additionalProperties": False,
        "properties": {
            "type": {"const": "call_tool"},
            "tool_name": {"enum": list(TOOLS)},
            "arguments": {"type": "object"},
            "metadata": {"type": "object"},
        },
        "required": ["type", "tool_name"],
    }
    list_tools = {"title": "ListToolsAction", "type": "object", "additionalProperties": False,
                  "properties": {"type": {"const": "list_tools"}, "metadata": {"type": "object"}},
                  "required": ["type"]}
    observation = {
        "title": "Observation", "type": "object",
        "properties": {
            "done": {"type": "boolean"},
            "reward": {"type": ["number", "null"]},
            "metadata": {"type": "object"},
            "prompt": {"type": "string"}, "task_id": {"type": "string"}, "company_name": {"type": "string"},
            "question": {"type": "string"},
            "tool_name": {"type": "string"}, "result": {}, "error": {"type": ["object", "null"]},
            "tools": {"type": "array"},
        },
    }
    state = {
        "title": "State", "type": "object",
        "properties": {
            "episode_id": {"type": ["string", "null"]}, "step_count": {"type": "integer"},
            "session_id": {"type": "string"}, "task_id": {"type": ["string", "null"]},
            "max_steps": {"type": "integer"}, "done": {"type": "boolean"}, "reward": {"type": ["number", "null"]},
            "stop_reason": {"type": ["string", "null"]}, "report": {"type": "object"},
        },
    }
    reset = {
        "title": "ResetRequest", "type": "object", "additionalProperties": False,
        "properties": {"task_id": {"type": "string"}, "split": {"type": "string"},
                       "index": {"type": "integer", "minimum": 0}, "seed": {"type": "integer"},
                       "episode_id": {"type": "string"}},
    }
    return {"action": {"oneOf": [call_tool, list_tools]}, "observation": observation, "state": state,
            "reset": reset}


HTTP_ENDPOINTS = {  # path -> {method: summary}, for GET /openapi.json
    "/health": {"get": "Health, sessions in use and their limit, snapshot hash, tasks served"},
    "/metadata": {"get": "Name, description and version of the environment"},
    "/schema": {"get": "JSON schemas of action, observation, state and reset arguments"},
    "/tasks": {"get": "The tasks served (filters: split, question_type, source)"},
    "/state": {"get": "A session's state (?session_id=...)"},
    "/reset": {"post": "Start an episode: of a session (session_id) or a throwaway one"},
    "/step": {"post": "One action in a session (session_id); list_tools needs none"},
    "/mcp": {"post": "JSON-RPC 2.0: openenv/session/create, openenv/session/close, tools/list, tools/call"},
}


def openapi_document(version: str) -> dict[str, Any]:
    """A minimal OpenAPI 3.1 description of the HTTP endpoints (the WebSockets /ws and /mcp are in docs/serving.md)."""
    paths = {path: {method: {"summary": summary, "responses": {"200": {"description": "OK"}}}
                    for method, summary in methods.items()}
             for path, methods in HTTP_ENDPOINTS.items()}
    return {"openapi": "3.1.0", "info": {"title": "FinQA environment (finqa-rl serve)", "version": version},
            "paths": paths}
