"""The environment's tools as a chat-completions tool list, and executing a model's tool call.

The schemas come from the environment's own docstrings (`transformers.utils.get_json_schema`, as TRL
builds them for training), so an endpoint sees exactly the tools a trained model saw. `call_tool` runs
one call the way TRL does: arguments that are not a JSON object, an unknown tool or wrong argument names
become an error message for the model (these never reach the environment's telemetry; the caller keeps
its own record of every attempted call).
"""

from __future__ import annotations

import functools
import json
from typing import Any

from rl_assets.env import FinQAEnv

TOOL_NAMES = ("get_descriptions", "get_table_info", "sql_query", "calculator", "submit_answer")


@functools.lru_cache(maxsize=1)
def tool_schemas() -> tuple[dict[str, Any], ...]:
    from transformers.utils import get_json_schema

    return tuple(get_json_schema(getattr(FinQAEnv, name)) for name in TOOL_NAMES)


def call_tool(env: FinQAEnv, name: str, arguments: Any) -> tuple[str, bool]:
    """(tool output for the model, whether the call reached the environment)."""
    if name not in TOOL_NAMES:
        return f"Error: unknown tool {name!r}; the tools are {', '.join(TOOL_NAMES)}.", False
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as e:
            return f"Error: the arguments of {name} are not valid JSON ({e.msg}); send a JSON object.", False
    if not isinstance(arguments, dict):
        return f"Error: the arguments of {name} must be a JSON object.", False
    try:
        return getattr(env, name)(**arguments), True
    except TypeError as e:  # missing or unknown argument names
        return f"Error: bad arguments for {name}: {e}", False
