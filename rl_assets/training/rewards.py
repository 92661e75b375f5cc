"""GRPO reward: the environment's correctness plus behaviour-rubric shaping terms, each a TRL reward function.

TRL calls every reward function with the batch's `completions` (the messages each rollout produced: the
model's turns and the tool results), the dataset columns (e.g. `world_id`) and `environments` (the
`TrainingEnv` of each rollout, whose telemetry and rubric are the real environment's). Each term is in
[0, 1]; the weights come from the config (`reward:`), and TRL logs each term as `rewards/<name>/mean`.
Correctness is the environment's own `get_reward()`, which TRL adds by itself (named after the
environment class).

| term | 1.0 when |
|---|---|
| `well_formed` | (fraction of) the model's turns that are a tool call naming a tool with exactly its arguments |
| `company_used` | every call that names a company names the episode's company (at least one does) |
| `schema_before_query` | every queried table had `get_table_info` first (rubric `inspected_schema_before_query`) |
| `no_hallucination` | calls were made and none named a company, table or column that does not exist |
| `recovered` | calls were made and the episode did not end stuck after an error (no error, or recovered) |
| `submitted` | an answer was submitted |
| `no_repeats` | (fraction of) calls that do not repeat an earlier call's tool and arguments exactly (rubric `redundant_calls`) |

A tiny model trained from scratch is almost never correct on a CPU budget, so correctness alone gives GRPO
no signal there: the tiny configs weight the shaping terms; real-model configs use correctness only.
"""

from __future__ import annotations

from typing import Any, Callable

from rl_assets.rollouts import well_formed_call

SHAPING_TERMS = ("well_formed", "company_used", "schema_before_query", "no_hallucination", "recovered", "submitted",
                 "no_repeats")


def model_turns(completion: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The model's turns of a rollout, without the closing text turn that follows a successful submission."""
    turns = [m for m in completion if m.get("role") == "assistant"]
    submitted = any(m.get("role") == "tool" and m.get("name") == "submit_answer"
                    and str(m.get("content", "")).startswith("Answer submitted") for m in completion)
    if submitted and turns and not turns[-1].get("tool_calls"):
        turns = turns[:-1]
    return turns


def well_formed(completions, **kwargs) -> list[float]:
    scores = []
    for completion in completions:
        turns = model_turns(completion)
        ok = sum(bool(t.get("tool_calls")) and all(well_formed_call(c) for c in t["tool_calls"]) for t in turns)
        scores.append(ok / len(turns) if turns else 0.0)
    return scores


def company_used(completions, environments, world_id, **kwargs) -> list[float]:
    scores = []
    for env, company in zip(environments, world_id):
        named = [c.arguments.get("company_name") for c in env.tool_calls if "company_name" in c.arguments]
        scores.append(float(bool(named) and all(str(n).strip().lower() == company for n in named)))
    return scores


def schema_before_query(completions, environments, **kwargs) -> list[float]:
    return [float(env.report["rubric"]["inspected_schema_before_query"] is True) for env in environments]


def no_hallucination(completions, environments, **kwargs) -> list[float]:
    scores = []
    for env in environments:
        rubric = env.report["rubric"]
        scores.append(float(rubric["tool_calls"] > 0 and rubric["hallucinated_identifiers"] == 0))
    return scores


def recovered(completions, environments, **kwargs) -> list[float]:
    scores = []
    for env in environments:
        rubric = env.report["rubric"]
        scores.append(float(rubric["tool_calls"] > 0 and rubric["recovered_after_error"] is not False))
    return scores


def submitted(completions, environments, **kwargs) -> list[float]:
    return [float(env.report["rubric"]["answered"]) for env in environments]


def no_repeats(completions, environments, **kwargs) -> list[float]:
    """The fraction of calls that are not an exact repeat of an earlier one: a policy that repeats one call (failing
    or not) until its turns run out scores near 0, one that moves on scores 1 (graded, so that rollouts of one group
    that repeat more or less differ in reward)."""
    scores = []
    for env in environments:
        rubric = env.report["rubric"]
        calls = rubric["tool_calls"]
        scores.append((calls - rubric["redundant_calls"]) / calls if calls else 0.0)
    return scores


TERMS: dict[str, Callable[..., list[float]]] = {f.__name__: f for f in
                                                 (well_formed, company_used, schema_before_query, no_hallucination,
                                                  recovered, submitted, no_repeats)}
