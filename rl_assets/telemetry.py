"""Tool-call telemetry and the deterministic behaviour rubric of one episode.

Every tool call of a FinQAEnv episode is a `ToolCall`; `behaviour_rubric(calls, ...)` turns the list
into a `Rubric`. Both are plain dataclasses whose `asdict()` is JSON-serialisable.

ToolCall fields
    step            0-based position of the call in the episode
    tool            tool name: get_descriptions, get_table_info, sql_query, calculator, submit_answer
    arguments       the arguments as passed (dict of strings)
    ok              the call succeeded
    error_kind      None when ok; else one of: unknown_company, other_company (a company that exists but is not the
                    episode's), unknown_table, unknown_column, bad_arguments,
                    calculator_error, already_answered, or a sandbox kind (parse_error, not_select,
                    multiple_statements, forbidden_function, forbidden_table, unfiltered_query, timeout,
                    resource_limit, execution_error, query_too_long)
    latency_ms      wall time of the call inside the environment
    rows            rows returned (sql_query; 0 otherwise)
    chars           characters of the tool output the agent saw

Rubric fields
    tool_calls                      total number of tool calls
    calls_by_tool                   {tool: count}
    errors                          calls with ok = False
    listed_tables_before_query      the company's tables were listed (get_descriptions) before
                                    the first sql_query; None if the episode made no sql_query
    inspected_schema_before_query   every table queried with sql_query had get_table_info called on it before its
                                    first query; None if no sql_query
    hallucinated_identifiers        calls that named a company, table or column that does not exist
    other_company_calls             calls that named an existing company other than the episode's (error kind
                                    other_company): a discipline failure like a hallucinated identifier, counted
                                    apart because the name is real: the agent wandered off its task (or tried
                                    to read another company's, possibly held-out, tables)
    recovered_after_error           after the last failed call, a later call of the same tool succeeded;
                                    None if no call failed
    redundant_calls                 calls repeating an earlier call's tool and arguments exactly
    rows_pulled                     total rows returned by sql_query
    answered                        submit_answer was called successfully
    correct                         the submitted answer is correct (False if not answered)
    submitted_answer                the answer string submitted, or None
    grade_reason                    the grader's reason (match, wrong_value, no_answer, ...)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

LISTING_TOOLS = ("get_descriptions",)
HALLUCINATION_KINDS = frozenset({"unknown_company", "unknown_table", "unknown_column"})
OFF_TASK_KINDS = frozenset({"other_company"})


@dataclass
class ToolCall:
    step: int
    tool: str
    arguments: dict[str, Any]
    ok: bool
    error_kind: str | None
    latency_ms: float
    rows: int = 0
    chars: int = 0

    def asdict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Rubric:
    tool_calls: int
    calls_by_tool: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    listed_tables_before_query: bool | None = None
    inspected_schema_before_query: bool | None = None
    hallucinated_identifiers: int = 0
    other_company_calls: int = 0
    recovered_after_error: bool | None = None
    redundant_calls: int = 0
    rows_pulled: int = 0
    answered: bool = False
    correct: bool = False
    submitted_answer: str | None = None
    grade_reason: str | None = None

    def asdict(self) -> dict[str, Any]:
        return asdict(self)


def behaviour_rubric(
    calls: list[ToolCall], submitted_answer: str | None, correct: bool, grade_reason: str | None
) -> Rubric:
    queries = [c for c in calls if c.tool == "sql_query"]
    first_query = queries[0].step if queries else None

    listed = None
    inspected = None
    if first_query is not None:
        listed = any(c.tool in LISTING_TOOLS and c.ok and c.step < first_query for c in calls)
        inspected = True
        for q in queries:
            key = (q.arguments.get("company_name"), q.arguments.get("table_name"))
            first_use = min(c.step for c in queries if (c.arguments.get("company_name"), c.arguments.get("table_name")) == key)
            if not any(
                c.tool == "get_table_info" and c.ok and c.step < first_use
                and (c.arguments.get("company_name"), c.arguments.get("table_name")) == key
                for c in calls
            ):
                inspected = False
                break

    failed = [c for c in calls if not c.ok]
    recovered = None
    if failed:
        last = failed[-1]
        recovered = any(c.ok and c.tool == last.tool and c.step > last.step for c in calls)

    seen: set[tuple[str, tuple]] = set()
    redundant = 0
    for c in calls:
        key = (c.tool, tuple(sorted((k, repr(v)) for k, v in c.arguments.items())))
        if key in seen:
            redundant += 1
        seen.add(key)

    return Rubric(
        tool_calls=len(calls),
        calls_by_tool=dict(Counter(c.tool for c in calls)),
        errors=len(failed),
        listed_tables_before_query=listed,
        inspected_schema_before_query=inspected,
        hallucinated_identifiers=sum(1 for c in calls if c.error_kind in HALLUCINATION_KINDS),
        other_company_calls=sum(1 for c in calls if c.error_kind in OFF_TASK_KINDS),
        recovered_after_error=recovered,
        redundant_calls=redundant,
        rows_pulled=sum(c.rows for c in queries),
        answered=submitted_answer is not None,
        correct=bool(correct),
        submitted_answer=submitted_answer,
        grade_reason=grade_reason,
    )
