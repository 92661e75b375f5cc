"""The one interface every policy implements.

A policy plays episodes of the FinQA environment: `run_episodes(tasks, snapshot, settings)` returns one
`rl_assets.episodes.Episode` per task, in the order given (a task may appear several times: one episode
per sample). Everything an evaluation row needs to trace a score back to the policy is on the policy:
`name` (as the user named it), `spec` (what it resolved to), `version` (the artifact version: a hash of
the weights and config of a model directory, `oracle@<code version>`, ...) and `lineage()` (the run's
`lineage.json`, including the `compute` object a cloud run records, when there is one).

A policy never raises for a bad episode (an unreachable endpoint, garbage output, the step limit): the
episode is recorded as failed with `stop_reason` / `error`. It raises only when it cannot be built at all.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

from rl_assets.episodes import Episode

# called with the number of episodes finished so far
Progress = Callable[[int], None]


class PolicyError(ValueError):
    """A policy cannot be built: unknown spec, missing model directory, missing dependency."""


@dataclass(frozen=True)
class GenerationSettings:
    """How a policy plays: shared by every policy kind, part of the evaluation's config hash."""

    greedy: bool = True
    temperature: float = 1.0
    max_turns: int = 8  # model turns per episode (the step limit)
    max_new_tokens: int = 192  # per turn (as the local-model rollouts default)
    batch_size: int = 16  # episodes generated together (local models) / concurrent requests (endpoints)
    seed: int = 0

    def asdict(self) -> dict[str, Any]:
        return asdict(self)


class Policy(ABC):
    """See the module docstring."""

    name: str  # as the user named it: "oracle", "tiny-local", "hf:data/runs/x", "router:a,b"
    spec: str  # what the name resolved to, e.g. "hf:/abs/path/model"

    @property
    @abstractmethod
    def version(self) -> str:
        """The policy artifact version (content hash of a model, code version of the oracle, ...)."""

    def lineage(self) -> dict[str, Any]:
        """Where the artifact came from: its run's lineage.json (with `compute` for a cloud run) or {}."""
        return {}

    def base_model(self) -> dict[str, Any]:
        """The registered base model the policy is or sits on: {"name", "model_hash"} ({} for none)."""
        return {}

    @abstractmethod
    def run_episodes(
        self,
        tasks: Sequence[dict[str, Any]],
        snapshot: str | os.PathLike,
        settings: GenerationSettings = GenerationSettings(),
        progress: Progress | None = None,
    ) -> list[Episode]:
        """One episode per task, in order."""


def failed_episode(policy: str, task: dict[str, Any], stop_reason: str, error: str | None, **fields: Any) -> Episode:
    """An episode that produced nothing (no environment telemetry), e.g. a policy error before the first call."""
    from rl_assets.telemetry import behaviour_rubric

    rubric = behaviour_rubric([], None, False, "no_answer").asdict()
    return Episode(
        task_id=task["task_id"], policy=policy, answer=None, correct=False, reward=0.0, rubric=rubric,
        tool_calls=[], stop_reason=stop_reason, error=error, **fields,
    )
