"""`Episode`: the record of one agent episode, whoever played it (oracle, a local model, an endpoint, a
router) and wherever it ran (in-process environment or the network service). Rollouts produce it,
evaluation stores it, reports read it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# why an episode ended
STOP_REASONS = (
    "submitted",  # submit_answer succeeded
    "max_turns",  # the step limit was reached without an answer
    "no_tool_call",  # the model answered in text without calling a tool (nothing submitted)
    "context_full",  # the conversation no longer fits the model's context / completion budget
    "policy_error",  # the policy failed (endpoint unreachable, generation error): see `error`
)


@dataclass
class Episode:
    task_id: str
    policy: str  # the policy's name as given (e.g. "oracle", "hf:data/runs/<id>")
    answer: str | None  # the submitted answer, None if nothing was submitted
    correct: bool
    reward: float  # the environment's reward (get_reward)
    rubric: dict[str, Any]  # the environment's behaviour rubric (rl_assets.telemetry.Rubric.asdict())
    tool_calls: list[dict[str, Any]]  # the environment's ToolCall records, as dicts
    stop_reason: str  # one of STOP_REASONS
    turns: int = 0  # model turns
    well_formed_turns: int = 0  # turns whose output parsed as a tool call (or a final answer)
    tokens_in: int = 0  # prompt tokens over all turns
    tokens_out: int = 0  # generated tokens over all turns
    tokens_encoded: int = 0  # tokens fed through the model (local models: less than tokens_in + tokens_out when
    # each turn reuses the episode's KV cache; rl_assets.training.decoding)
    model_seconds: float = 0.0  # time spent generating
    env_seconds: float = 0.0  # time spent in the environment's tools
    latency_s: float = 0.0  # wall time of the whole episode
    cost_usd: float | None = None  # estimated cost where the policy has a price
    error: str | None = None  # what went wrong, for stop_reason == "policy_error"
    messages: list[dict[str, Any]] = field(default_factory=list)  # the chat transcript
    extra: dict[str, Any] = field(default_factory=dict)  # policy-specific (e.g. router escalations)

    def asdict(self) -> dict[str, Any]:
        return asdict(self)
