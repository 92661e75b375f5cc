"""Behaviour rates of a policy's episodes on held-out tasks: discipline that memorising one trajectory
cannot fake, because every rate is checked against the episode's own task.

| rate | per episode |
|---|---|
| `company_used` | every call naming a company names the task's own company, and at least one does |
| `table_inspected_first` | it queried, and every queried table had `get_table_info` (succeeding) before its first query |
| `identifiers_exist` | it made calls and none named a company, table or column that does not exist |
| `recovered_after_error` | among episodes with a failed call: a later call of the same tool succeeded |
| `submitted` | an answer was submitted |
| `pass_at_1` | the submitted answer is correct |
| `well_formed_turns` | over all turns: the turn was a well-formed tool call (rl_assets.rollouts) |
| `tool_error_rate` | over all calls: the call failed |
"""

from __future__ import annotations

from typing import Any, Iterable

from rl_assets.episodes import Episode

RATES = ("company_used", "table_inspected_first", "identifiers_exist", "recovered_after_error", "submitted",
         "pass_at_1", "well_formed_turns", "tool_error_rate")


def company_used(episode: Episode, world_id: str) -> bool:
    named = [c["arguments"].get("company_name") for c in episode.tool_calls if "company_name" in c["arguments"]]
    return bool(named) and all(str(n).strip().lower() == world_id for n in named)


def behaviour_rates(episodes: Iterable[Episode], tasks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The rates of the module docstring (fractions in [0, 1]) plus counts; `tasks` maps task_id -> task."""
    episodes = list(episodes)
    n = len(episodes)
    if not n:
        return {"episodes": 0}
    with_error = [e for e in episodes if e.rubric.get("errors")]
    turns = sum(e.turns for e in episodes)
    calls = sum(e.rubric.get("tool_calls", 0) for e in episodes)
    return {
        "episodes": n,
        "company_used": sum(company_used(e, tasks[e.task_id]["world_id"]) for e in episodes) / n,
        "table_inspected_first": sum(e.rubric.get("inspected_schema_before_query") is True for e in episodes) / n,
        "identifiers_exist": sum(e.rubric.get("tool_calls", 0) > 0 and e.rubric.get("hallucinated_identifiers", 0) == 0
                                 for e in episodes) / n,
        "recovered_after_error": (sum(e.rubric.get("recovered_after_error") is True for e in with_error) / len(with_error)
                                  if with_error else None),
        "episodes_with_error": len(with_error),
        "submitted": sum(bool(e.rubric.get("answered")) for e in episodes) / n,
        "pass_at_1": sum(e.correct for e in episodes) / n,
        "well_formed_turns": sum(e.well_formed_turns for e in episodes) / turns if turns else 0.0,
        "tool_error_rate": sum(e.rubric.get("errors", 0) for e in episodes) / calls if calls else 0.0,
        "turns_per_episode": turns / n,
        "tokens_out_per_episode": sum(e.tokens_out for e in episodes) / n,
    }


def heldout_tasks(snapshot, episodes: int, seed: int = 0, question_types: tuple[str, ...] = ("single_table",)) -> list[dict[str, Any]]:
    """A seeded sample of test-split tasks (companies no training episode saw)."""
    import random

    from rl_assets.snapshot import read_tasks

    tasks = read_tasks(snapshot, splits=["test"], question_types=list(question_types))
    random.Random(seed).shuffle(tasks)
    return tasks[:episodes]
