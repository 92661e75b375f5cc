"""The tools the service exposes: exactly FinQAEnv's public tool methods, with the JSON schema TRL shows a model.

A tool is every public method of `FinQAEnv` except `reset` and `get_reward` (the rule TRL's
`environment_factory` applies), so the in-process environment, the service and the remote client never
disagree on names, arguments or descriptions. The schema is built from the method's signature and its
Google-style docstring the way `transformers.utils.get_json_schema` builds it (checked in the tests),
without importing transformers into the server.
"""

from __future__ import annotations

import inspect
import json
import re
from dataclasses import dataclass
from typing import Any

from rl_assets.env import FinQAEnv

NOT_TOOLS = frozenset({"reset", "get_reward"})
_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean"}


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: tuple[str, ...]
    input_schema: dict[str, Any]

    def listing(self) -> dict[str, Any]:
        """The MCP `tools/list` entry (both spellings of the schema key, as OpenEnv's clients read either)."""
        return {"name": self.name, "description": self.description,
                "inputSchema": self.input_schema, "input_schema": self.input_schema}

    def signature(self) -> str:
        return f"{self.name}({', '.join(self.parameters)})"


class InvalidToolCall(Exception):
    """A call that cannot reach a tool: unknown tool (`tool_not_found`) or bad arguments (`invalid_args`)."""

    def __init__(self, error_type: str, message: str):
        super().__init__(message)
        self.error_type = error_type
        self.message = message


def _tool_methods() -> list[tuple[str, Any]]:
    return [
        (name, member)
        for name, member in inspect.getmembers(FinQAEnv, predicate=inspect.isfunction)
        if not name.startswith("_") and name not in NOT_TOOLS
    ]


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """(description, {argument: description}) of a Google-style docstring."""
    doc = inspect.cleandoc(doc or "")
    head, _, rest = doc.partition("\nArgs:")
    arguments: dict[str, str] = {}
    if rest:
        args_block = re.split(r"\n\s*(?:Returns|Raises):", rest, maxsplit=1)[0]
        current = None
        for line in args_block.splitlines():
            match = re.match(r"\s+(\w+)(?:\s*\([^)]*\))?:\s*(.*)", line)
            if match and (current is None or len(line) - len(line.lstrip()) <= 4):
                current = match.group(1)
                arguments[current] = match.group(2).strip()
            elif current and line.strip():
                arguments[current] += " " + line.strip()
    return head.strip(), arguments


def _spec(name: str, method: Any) -> ToolSpec:
    description, arg_docs = _parse_docstring(method.__doc__)
    hints = inspect.get_annotations(method, eval_str=True)
    parameters = [p for p in inspect.signature(method).parameters.values() if p.name != "self"]
    properties = {}
    for p in parameters:
        prop = {"type": _JSON_TYPES.get(hints.get(p.name), "string")}
        if p.name in arg_docs:
            prop["description"] = arg_docs[p.name]
        properties[p.name] = prop
    schema = {
        "type": "object",
        "properties": properties,
        "required": [p.name for p in parameters if p.default is inspect.Parameter.empty],
    }
    return ToolSpec(name, description, tuple(p.name for p in parameters), schema)


TOOLS: dict[str, ToolSpec] = {name: _spec(name, method) for name, method in _tool_methods()}


def check_call(name: Any, arguments: Any, max_argument_chars: int) -> ToolSpec:
    """The tool to run, or InvalidToolCall naming what is wrong.

    Argument *names* must match the signature exactly (in-process, Python raises TypeError before the tool
    runs); argument *values* of any JSON type go to the tool, which answers a wrong type with its own error
    message, exactly as an in-process call would. Each argument is limited to `max_argument_chars`
    characters (its JSON text for non-strings).
    """
    if not isinstance(name, str) or name not in TOOLS:
        raise InvalidToolCall(
            "tool_not_found",
            f"Unknown tool {name!r}. Tools: {', '.join(spec.signature() for spec in TOOLS.values())}.",
        )
    spec = TOOLS[name]
    if not isinstance(arguments, dict):
        raise InvalidToolCall("invalid_args", f"arguments of {name} must be a JSON object, e.g. "
                                              f"{{{', '.join(json.dumps(p) + ': ...' for p in spec.parameters)}}}.")
    missing = [p for p in spec.input_schema["required"] if p not in arguments]
    unexpected = [a for a in arguments if a not in spec.parameters]
    if missing or unexpected:
        problems = []
        if missing:
            problems.append(f"missing {', '.join(map(repr, missing))}")
        if unexpected:
            problems.append(f"unexpected {', '.join(map(repr, unexpected))}")
        raise InvalidToolCall("invalid_args", f"{name}: {'; '.join(problems)}. Signature: {spec.signature()}.")
    for argument, value in arguments.items():
        size = len(value) if isinstance(value, str) else len(json.dumps(value))
        if size > max_argument_chars:
            raise InvalidToolCall(
                "invalid_args",
                f"{name}: argument {argument!r} is {size:,} characters; the limit is {max_argument_chars:,}.",
            )
    return spec
