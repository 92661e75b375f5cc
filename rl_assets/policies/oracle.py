"""The oracle as a policy: each episode solves its task from the gold spec through the real tools
(`rl_assets.oracle.solve`). It is the evaluation's ceiling and its self-test: it must score >= 98% on
every test set through the same evaluation code every other policy goes through."""

from __future__ import annotations

import os
import time
from typing import Any, Sequence

from rl_assets import oracle
from rl_assets.env import FinQAEnv
from rl_assets.episodes import Episode
from rl_assets.policies.base import GenerationSettings, Policy, Progress
from rl_assets.versioning import code_version


class OraclePolicy(Policy):
    def __init__(self, name: str = "oracle"):
        self.name = name
        self.spec = "oracle"
        self._version = f"oracle@{code_version(oracle, 'rl_assets.policies.oracle')}"

    @property
    def version(self) -> str:
        return self._version

    def run_episodes(
        self,
        tasks: Sequence[dict[str, Any]],
        snapshot: str | os.PathLike,
        settings: GenerationSettings = GenerationSettings(),
        progress: Progress | None = None,
    ) -> list[Episode]:
        env = FinQAEnv(snapshot=snapshot)
        episodes = []
        for i, task in enumerate(tasks, start=1):
            started = time.perf_counter()
            result = oracle.solve(env, task)
            latency = time.perf_counter() - started
            report = env.report
            calls = report["tool_calls"]
            answered = result.submitted is not None
            episodes.append(Episode(
                task_id=task["task_id"],
                policy=self.name,
                answer=report["rubric"]["submitted_answer"],
                correct=bool(report["reward"] == 1.0),
                reward=report["reward"],
                rubric=report["rubric"],
                tool_calls=calls,
                stop_reason="submitted" if answered else "policy_error",
                turns=len(calls),
                well_formed_turns=len(calls),
                env_seconds=sum(c["latency_ms"] for c in calls) / 1000.0,
                latency_s=latency,
                cost_usd=0.0,
                error=None if answered else f"{result.reason}: {result.detail}",
            ))
            if progress is not None:
                progress(i)
        return episodes
