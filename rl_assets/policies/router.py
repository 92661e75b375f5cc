"""A router: a small policy answers; an episode that shows a failure signal in its telemetry is played
again by a larger policy, whose episode becomes the answer.

Failure signals (`escalation_signals`):
    tool_errors_in_a_row    at least `max_consecutive_errors` failed tool calls in a row (calls the
                            environment refused, and malformed calls that never reached it)
    no_answer_by_step_limit the episode hit the step limit (or the context budget) without an answer
    unparsable_answer       the submitted answer holds no number, or the model replied in text without
                            calling a tool
    policy_error            the small policy failed (e.g. its endpoint is unreachable)

Tokens, cost and time are recorded per policy per episode in `Episode.extra["router"]["per_policy"]`;
the episode's own totals are the sums over both policies, its behaviour (answer, rubric, tool calls,
stop reason) that of the policy that answered.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from rl_assets.episodes import Episode
from rl_assets.numbers import parse_answer
from rl_assets.policies.base import GenerationSettings, Policy, Progress

MAX_CONSECUTIVE_ERRORS = 3


def _longest_failure_run(outcomes: list[bool]) -> int:
    longest = run = 0
    for ok in outcomes:
        run = 0 if ok else run + 1
        longest = max(longest, run)
    return longest


def escalation_signals(episode: Episode, max_consecutive_errors: int = MAX_CONSECUTIVE_ERRORS) -> list[str]:
    """The failure signals an episode shows (empty: the small policy's answer stands)."""
    signals = []
    # every attempted call where the policy recorded them, else the environment's telemetry
    outcomes = episode.extra.get("call_outcomes")
    if outcomes is None:
        outcomes = [bool(c.get("ok")) for c in episode.tool_calls]
    if _longest_failure_run(list(outcomes)) >= max_consecutive_errors:
        signals.append("tool_errors_in_a_row")
    if episode.answer is None and episode.stop_reason in ("max_turns", "context_full"):
        signals.append("no_answer_by_step_limit")
    if (episode.answer is not None and not parse_answer(episode.answer)) or episode.stop_reason == "no_tool_call":
        signals.append("unparsable_answer")
    if episode.stop_reason == "policy_error":
        signals.append("policy_error")
    return signals


def _usage(episode: Episode) -> dict[str, Any]:
    return {"tokens_in": episode.tokens_in, "tokens_out": episode.tokens_out, "cost_usd": episode.cost_usd,
            "model_seconds": episode.model_seconds, "env_seconds": episode.env_seconds,
            "latency_s": episode.latency_s, "stop_reason": episode.stop_reason, "correct": episode.correct}


class RouterPolicy(Policy):
    def __init__(self, small: Policy, large: Policy, *, name: str | None = None,
                 max_consecutive_errors: int = MAX_CONSECUTIVE_ERRORS):
        self.small = small
        self.large = large
        self.max_consecutive_errors = max_consecutive_errors
        self.name = name or f"router:{small.name},{large.name}"
        self.spec = f"router:{small.spec},{large.spec}"

    @property
    def version(self) -> str:
        return f"router({self.small.version},{self.large.version},errors_in_a_row={self.max_consecutive_errors})"

    def lineage(self) -> dict[str, Any]:
        return {"small": self.small.lineage(), "large": self.large.lineage()}

    def run_episodes(
        self,
        tasks: Sequence[dict[str, Any]],
        snapshot: str | os.PathLike,
        settings: GenerationSettings = GenerationSettings(),
        progress: Progress | None = None,
    ) -> list[Episode]:
        tasks = list(tasks)
        first = self.small.run_episodes(tasks, snapshot, settings, progress)
        signals = [escalation_signals(e, self.max_consecutive_errors) for e in first]
        escalated = [i for i, s in enumerate(signals) if s]
        second = dict(zip(escalated, self.large.run_episodes([tasks[i] for i in escalated], snapshot, settings)))
        episodes = []
        for i, small_episode in enumerate(first):
            large_episode = second.get(i)
            answering = large_episode or small_episode
            played = [small_episode] + ([large_episode] if large_episode else [])
            costs = [e.cost_usd for e in played if e.cost_usd is not None]
            per_policy = {self.small.name: _usage(small_episode)}
            if large_episode is not None:
                per_policy[self.large.name] = _usage(large_episode)
            episodes.append(Episode(
                task_id=answering.task_id,
                policy=self.name,
                answer=answering.answer,
                correct=answering.correct,
                reward=answering.reward,
                rubric=answering.rubric,
                tool_calls=answering.tool_calls,
                stop_reason=answering.stop_reason,
                turns=sum(e.turns for e in played),
                well_formed_turns=sum(e.well_formed_turns for e in played),
                tokens_in=sum(e.tokens_in for e in played),
                tokens_out=sum(e.tokens_out for e in played),
                tokens_encoded=sum(e.tokens_encoded for e in played),
                model_seconds=sum(e.model_seconds for e in played),
                env_seconds=sum(e.env_seconds for e in played),
                latency_s=sum(e.latency_s for e in played),
                cost_usd=sum(costs) if costs else None,
                error=answering.error,
                messages=answering.messages,
                extra={**answering.extra, "router": {
                    "escalated": large_episode is not None,
                    "signals": signals[i],
                    "answered_by": self.large.name if large_episode is not None else self.small.name,
                    "per_policy": per_policy,
                }},
            ))
        return episodes
