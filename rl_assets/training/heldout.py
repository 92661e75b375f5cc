"""Behaviour of a policy's episodes on held-out tasks (test-split companies no training episode saw): the rates of
rl_assets.evaluation.behaviour (company used, queried table inspected first, identifiers exist, recovery, submitted,
pass@1 with bootstrap intervals; well-formed turns, tool-error rate), for episodes played outside an evaluation
(benchmarks/training_heldout.py), and the paired difference of two policies on the same tasks."""

from __future__ import annotations

from typing import Any, Iterable

from rl_assets.episodes import Episode
from rl_assets.evaluation.behaviour import RATES, behaviour_rates as row_rates, paired_differences

__all__ = ["RATES", "behaviour_rates", "episode_rows", "heldout_tasks", "paired_differences"]


def episode_rows(episodes: Iterable[Episode], tasks: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Episodes as evaluation rows (rl_assets.evaluation.runner.episode_row), each read against its own task
    (`tasks` maps task_id -> task): what the rates and paired differences of rl_assets.evaluation.behaviour take."""
    from rl_assets.evaluation.runner import episode_row

    return [episode_row(e, tasks[e.task_id], 0, (None, None, None)) for e in episodes]


def behaviour_rates(episodes: Iterable[Episode], tasks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The rates of `episodes`; `tasks` maps task_id -> task."""
    return row_rates(episode_rows(episodes, tasks))


def heldout_tasks(snapshot, episodes: int, seed: int = 0, question_types: tuple[str, ...] = ("single_table",)) -> list[dict[str, Any]]:
    """A seeded sample of test-split tasks (companies no training episode saw)."""
    import random

    from rl_assets.snapshot import read_tasks

    tasks = read_tasks(snapshot, splits=["test"], question_types=list(question_types))
    random.Random(seed).shuffle(tasks)
    return tasks[:episodes]
