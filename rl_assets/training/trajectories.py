"""Oracle trajectories as chat conversations: the behaviour-cloning data of the SFT stage.

`oracle_conversation(env, task)` plays one task the way the oracle does (rl_assets.oracle) — list the
tables, inspect each gold table, fetch each operand with a filtered `sql_query`, compute with `calculator`,
submit — *through the real tools of the environment it is given* (a `TrainingEnv`, so with the episode's
aliases), and records every call and output as the messages a model must produce and will see. The
calculator expression is written from the cells as the agent saw them (`$1,234` -> `1,234`, `(56)` -> `-56`,
`3.4%` -> `3.4`), so every number in it can be copied from a tool output. A conversation is kept only
when the environment grades its submitted answer correct.

`replay(conversation, env, task)` runs a conversation's tool calls against an environment again (used by
the tests to show that the data are real trajectories).
"""

from __future__ import annotations

import json
import re
from typing import Any

from rl_assets import calculator as calc
from rl_assets.numbers import parse_number
from rl_assets.oracle import quote_identifier, quote_literal
from rl_assets.prompts import initial_messages
from rl_assets.training.environment import TrainingEnv

OPERAND = re.compile(r"\ba(\d+)\b")


class NotClonable(Exception):
    """The task cannot be played as a clean oracle trajectory (not a template task, or a tool failed)."""


def oracle_conversation(env: TrainingEnv, task: dict[str, Any], system_prompt: str) -> list[dict[str, Any]]:
    """The oracle's episode for `task` as chat messages (system, user, then assistant/tool turns)."""
    if task.get("gold_program_kind") != "template":
        raise NotClonable(f"{task['task_id']}: gold program kind {task.get('gold_program_kind')!r} (template tasks only)")
    observation = env.reset(**task)
    messages = initial_messages(observation, system_prompt)
    aliases = env.aliases
    company = aliases.company_alias if aliases else task["world_id"]

    def table_name(real: str) -> str:
        return aliases.tables.get(real, real) if aliases else real

    def call(tool: str, **arguments: Any) -> str:
        output = getattr(env, tool)(**arguments)
        messages.append({"role": "assistant", "content": "",
                         "tool_calls": [{"type": "function", "function": {"name": tool, "arguments": arguments}}]})
        messages.append({"role": "tool", "name": tool, "content": output})
        if output.startswith("Error"):
            raise NotClonable(f"{task['task_id']}: {tool} failed: {output[:200]}")
        return output

    operands = json.loads(task["gold_operands"])
    call("get_descriptions", company_name=company)
    for table in dict.fromkeys(op["table"] for op in operands):
        call("get_table_info", company_name=company, table_name=table_name(table))
    literals = []
    for op in operands:
        table = table_name(op["table"])
        query = (f"SELECT {quote_identifier(op['column'])} FROM {table} "
                 f"WHERE {quote_identifier(op['row_label_column'])} = {quote_literal(op['row_label'])}")
        rows = json.loads(call("sql_query", company_name=company, table_name=table, query=query))
        cells = [next(iter(r.values())) for r in rows if r]
        text = op["cell_text"] if op["cell_text"] in cells else (cells[0] if cells else None)
        if text is None:
            raise NotClonable(f"{task['task_id']}: operand {op['row_label']!r} not found")
        literals.append(copyable_number(text, op["value"]))
    expression = OPERAND.sub(lambda m: literals[int(m.group(1))], task["gold_expression"])
    answer = call("calculator", expression=expression)
    call("submit_answer", answer=answer)
    messages.append({"role": "assistant", "content": answer})
    if env.get_reward() != 1.0:
        raise NotClonable(f"{task['task_id']}: oracle answer {answer} graded wrong")
    return messages


def copyable_number(cell_text: str, value: float) -> str:
    """The cell's number as the agent can copy it into the calculator: `$1,234` -> `1,234`, `(56)` -> `(-56)`."""
    literal = cell_text.strip().replace("$", "").replace("%", "").strip()
    if literal.startswith("(") and literal.endswith(")"):
        literal = "-" + literal[1:-1].strip()
    try:
        ok = abs(calc.evaluate(literal) - value) <= 1e-9 * max(1.0, abs(value))
    except calc.CalculatorError:
        ok = False
    if not ok:
        parsed = parse_number(cell_text)
        literal = calc.format_number(parsed.value if parsed is not None else value)
    return f"({literal})" if literal.startswith("-") else literal


def tool_calls(conversation: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(tool, arguments) of every assistant tool call, in order."""
    return [(c["function"]["name"], c["function"]["arguments"])
            for m in conversation if m["role"] == "assistant" for c in m.get("tool_calls") or []]


def replay(conversation: list[dict[str, Any]], env: TrainingEnv, task: dict[str, Any]) -> list[str]:
    """Run the conversation's tool calls on `env` for `task`; returns the outputs (compare with the tool messages)."""
    env.reset(**task)
    return [getattr(env, tool)(**arguments) for tool, arguments in tool_calls(conversation)]
