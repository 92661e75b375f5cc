"""Oracle trajectories as chat conversations: the behaviour-cloning data of the SFT stage.

`oracle_conversation(env, task)` plays one task the way the oracle does (rl_assets.oracle) — list the
tables, inspect each gold table, fetch each operand with a filtered `sql_query`, compute with `calculator`,
submit — *through the real tools of the environment it is given* (a `TrainingEnv`, so with the episode's
aliases), and records every call and output as the messages a model must produce and will see. The
calculator expression is written from the cells as the agent saw them (`$1,234` -> `1,234`, `(56)` -> `-56`,
`3.4%` -> `3.4`), so every number in it can be copied from a tool output. A conversation is kept only
when the environment grades its submitted answer correct.

A *recovery demonstration* (`mistake=` one of `MISTAKES`) adds one wrong call before the right one — a table name
that is not in the listing, a column the table does not have (with renamed year columns often the bare year), a row label that matches no row — with the
environment's real answer to it (the error with its `Closest:` hint or column list, or `[]` with the closest row
labels), then carries on as
the oracle does. The wrong turn is marked `"mistake": True`: the chat template renders it without generation
markers, so SFT shows it as context and trains only on what follows (read the error, make a different call), the
behaviour a policy that repeats a failing call never saw. The conversation still ends in a correct answer.

`replay(conversation, env, task)` runs a conversation's tool calls against an environment again (used by
the tests to show that the data are real trajectories).
"""

from __future__ import annotations

import json
import random
import re
from typing import Any

from rl_assets import calculator as calc
from rl_assets.numbers import parse_number
from rl_assets.oracle import quote_identifier
from rl_assets.sandbox import quote_literal, result_rows
from rl_assets.prompts import initial_messages
from rl_assets.training.environment import TrainingEnv

OPERAND = re.compile(r"\ba(\d+)\b")
MISTAKES = ("unknown_table", "unknown_column", "no_rows")


class NotClonable(Exception):
    """The task cannot be played as a clean oracle trajectory (not a template task, or a tool failed)."""


def oracle_conversation(env: TrainingEnv, task: dict[str, Any], system_prompt: str,
                        mistake: str | None = None) -> list[dict[str, Any]]:
    """The oracle's episode for `task` as chat messages (system, user, then assistant/tool turns); with `mistake`,
    a recovery demonstration (module docstring). A mistake that the task gives no way to make (every candidate
    wrong name happens to exist) is left out: the conversation is then the plain oracle's."""
    if mistake is not None and mistake not in MISTAKES:
        raise ValueError(f"unknown mistake {mistake!r}; one of {MISTAKES}")
    if task.get("gold_program_kind") != "template":
        raise NotClonable(f"{task['task_id']}: gold program kind {task.get('gold_program_kind')!r} (template tasks only)")
    observation = env.reset(**task)
    messages = initial_messages(observation, system_prompt)
    aliases = env.aliases
    company = aliases.company_alias if aliases else task["world_id"]

    def table_name(real: str) -> str:
        return aliases.tables.get(real, real) if aliases else real

    def column_name(table: str, real: str) -> str:
        return env._shown_columns(table).get(real, real)

    def call(tool: str, **arguments: Any) -> str:
        output = getattr(env, tool)(**arguments)
        messages.append({"role": "assistant", "content": "",
                         "tool_calls": [{"type": "function", "function": {"name": tool, "arguments": arguments}}]})
        messages.append({"role": "tool", "name": tool, "content": output})
        if output.startswith("Error"):
            raise NotClonable(f"{task['task_id']}: {tool} failed: {output[:200]}")
        return output

    def wrong_call(tool: str, candidates: list[dict[str, Any]], recovers: Any) -> bool:
        """Try the candidate wrong arguments in turn; keep the first whose output `recovers(output)` accepts (an
        error or empty result the agent can recover from) as a mistake turn."""
        for arguments in candidates:
            output = getattr(env, tool)(**arguments)
            if recovers(output):
                messages.append({"role": "assistant", "content": "", "mistake": True, "tool_calls": [
                    {"type": "function", "function": {"name": tool, "arguments": arguments}}]})
                messages.append({"role": "tool", "name": tool, "content": output})
                return True
        return False

    def select(column: str, table: str, label_column: str, label: str) -> str:
        return (f"SELECT {quote_identifier(column)} FROM {table} "
                f"WHERE {quote_identifier(label_column)} = {quote_literal(label)}")

    rng = random.Random(f"{task.get('alias_seed')}:{task['task_id']}:{mistake}")
    operands = json.loads(task["gold_operands"])
    call("get_descriptions", company_name=company)
    for i, table in enumerate(dict.fromkeys(op["table"] for op in operands)):
        shown = table_name(table)
        if mistake == "unknown_table" and i == 0:
            wrong_call("get_table_info", [{"company_name": company, "table_name": name}
                                          for name in wrong_table_names(shown, rng)],
                       lambda out, shown=shown: out.startswith("Error: unknown table") and shown in _closest(out))
        info = json.loads(call("get_table_info", company_name=company, table_name=shown))
        if i == 0:
            first_columns = [c["name"] for c in info["columns"]]
    literals = []
    for i, op in enumerate(operands):
        table = table_name(op["table"])
        column = column_name(op["table"], op["column"])
        label_column = column_name(op["table"], op["row_label_column"])
        if i == 0 and mistake == "unknown_column":
            wrong_call("sql_query", [{"company_name": company, "table_name": table,
                                      "query": select(wrong, table, label_column, op["row_label"])}
                                     for wrong in wrong_columns(column, first_columns, rng)],
                       lambda out: out.startswith("Error (unknown_column)"))
        elif i == 0 and mistake == "no_rows":
            wrong_call("sql_query", [{"company_name": company, "table_name": table,
                                      "query": select(column, table, label_column, label)}
                                     for label in wrong_row_labels(op["row_label"], rng)],
                       lambda out, label=op["row_label"]: out.startswith("[]") and quote_literal(label) in out)
        query = select(column, table, label_column, op["row_label"])
        rows = result_rows(call("sql_query", company_name=company, table_name=table, query=query))
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


def wrong_table_names(name: str, rng: random.Random) -> list[str]:
    """Misspellings of a table name as a small model makes them (a suffix added, a part dropped or changed), in a
    seeded order."""
    head, _, tail = name.rpartition("_")
    candidates = [name + "_info", name + "s", name + "_table", name.replace("TableTextBlock", "Table")]
    if head:
        candidates.append(head)
        candidates.append(f"{head}_{int(tail) + 1}" if tail.isdigit() else f"{head}_{tail}_details")
    candidates = [c for c in dict.fromkeys(candidates) if c != name]
    rng.shuffle(candidates)
    return candidates


def wrong_columns(column: str, columns: list[str], rng: random.Random) -> list[str]:
    """Columns the table does not have: a neighbouring year, the bare year of a renamed year column (`2024` for
    `fiscal_2024`, what a policy trained on bare years writes), a generic name, a plural."""
    taken = {c.lower() for c in columns}
    candidates = [str(int(column) + d) for d in (1, -1, 2)] if column.isdigit() else []
    candidates += [year for year in re.findall(r"(?<!\d)(?:19|20)\d\d(?!\d)", column) if year != column]
    candidates += [column + "s", "value", "amount", "total", "2023"]
    candidates = [c for c in dict.fromkeys(candidates) if c.lower() not in taken]
    rng.shuffle(candidates)
    return candidates


def wrong_row_labels(label: str, rng: random.Random) -> list[str]:
    """Row labels that match no row: the label in lower case (what a policy trained on the SEC split's lower-case
    labels writes for `Acquired licenses`), a word added or dropped."""
    words = label.split()
    candidates = [label.lower(), f"total {label}", f"{label} total", f"{label}, net"]
    if len(words) > 1:
        candidates += [" ".join(words[:-1]), " ".join(words[1:])]
    candidates = [c for c in dict.fromkeys(candidates) if c.strip() and c != label]
    rng.shuffle(candidates)
    return candidates


def _closest(error: str) -> list[str]:
    """The names an unknown-table error suggests."""
    match = re.search(r"Closest: (.*?)\. Tables:", error)
    return [name.strip() for name in match.group(1).split(",")] if match else []


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
