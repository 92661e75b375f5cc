"""Training data from a snapshot's train-split tasks: oracle conversations for SFT, task rows for GRPO.

Both are deterministic in the config's seed. Each use of a task in training is one *episode* with its own
`alias_seed` (a new alias for the company every time the task comes round); with aliases off the seed
is -1 and the episode shows real names.
"""

from __future__ import annotations

import json
import random
from typing import Any, Iterator

from rl_assets.training.environment import TrainingEnv
from rl_assets.training.trajectories import MISTAKES, NotClonable, oracle_conversation

NO_ALIAS = -1


def episode_stream(tasks: list[dict[str, Any]], seed: int, aliases: bool) -> Iterator[dict[str, Any]]:
    """Tasks in a seeded random order, pass after pass, each occurrence with its own alias seed."""
    rng = random.Random(seed)
    occurrence = 0
    while True:
        order = list(tasks)
        rng.shuffle(order)
        for task in order:
            yield {**task, "alias_seed": (seed * 1_000_003 + occurrence) % (1 << 31) if aliases else NO_ALIAS}
            occurrence += 1


def oracle_conversations(env: TrainingEnv, tasks: list[dict[str, Any]], count: int, seed: int, aliases: bool,
                         system_prompt: str, recovery: float = 0.0) -> tuple[list[list[dict[str, Any]]], list[str]]:
    """`count` oracle conversations (cycling over the tasks) and the ids of tasks that could not be cloned.

    A `recovery` fraction of them (seeded) are recovery demonstrations, their mistake kinds in turn
    (rl_assets.training.trajectories); the tasks and aliases are the same as with none."""
    draw = random.Random(f"{seed}:recovery")
    if not tasks:
        raise ValueError("no training tasks: the snapshot has no train-split task of the selected types/sources")
    conversations, skipped = [], set()
    stream = episode_stream(tasks, seed, aliases)
    attempts = 0
    while len(conversations) < count:
        task = next(stream)
        attempts += 1
        if attempts > 2 * count + len(tasks):
            raise ValueError(f"only {len(conversations)} of {count} oracle conversations could be built; "
                             f"not clonable: {sorted(skipped)[:10]}")
        mistake = MISTAKES[len(conversations) % len(MISTAKES)] if draw.random() < recovery else None
        try:
            conversations.append(oracle_conversation(env, task, system_prompt, mistake))
        except NotClonable:
            skipped.add(task["task_id"])
    return conversations, sorted(skipped)


def sft_examples(conversations: list[list[dict[str, Any]]], prefix_turns: list[int]) -> list[list[dict[str, Any]]]:
    """SFT examples from oracle conversations: in turn, a whole conversation, then one cut after its
    `prefix_turns[0]`-th assistant turn, and so on (every example is a different episode, with its own aliases).

    A prefix is the same context and target as that turn of a whole conversation at a fraction of the tokens:
    the first turns (copy the company from the question, pick a table from the listing) are the ones a small
    model learns last, and the cheapest to repeat."""
    pattern: list[int | None] = [None, *prefix_turns]
    return [conversation if (cut := pattern[i % len(pattern)]) is None else truncate_after_turn(conversation, cut)
            for i, conversation in enumerate(conversations)]


def truncate_after_turn(conversation: list[dict[str, Any]], turns: int) -> list[dict[str, Any]]:
    """The messages up to and including the `turns`-th assistant message (a recovery demonstration's mistake turn
    is not counted: a cut keeps the call that corrects it)."""
    seen = 0
    for i, message in enumerate(conversation):
        if message["role"] == "assistant" and not message.get("mistake"):
            seen += 1
            if seen == turns:
                return conversation[: i + 1]
    return conversation


def sft_row(conversation: list[dict[str, Any]], tools_json: str) -> dict[str, Any]:
    """A TRL SFT row. Tool-call arguments are JSON text (as the template's `tojson` would write them) so Arrow
    does not merge the different tools' argument dicts into one struct with nulls."""
    messages = []
    for message in conversation:
        if message.get("tool_calls"):
            message = {**message, "tool_calls": [
                {"type": "function", "function": {"name": c["function"]["name"],
                                                  "arguments": json.dumps(c["function"]["arguments"], ensure_ascii=False)}}
                for c in message["tool_calls"]]}
        messages.append(message)
    return {"messages": messages, "tools": tools_json}


def grpo_rows(tasks: list[dict[str, Any]], count: int, seed: int, aliases: bool, prompt: list[dict[str, str]]) -> list[dict[str, Any]]:
    """`count` GRPO dataset rows: the prompt messages plus every task column (TRL passes them to `reset`)."""
    stream = episode_stream(tasks, seed, aliases)
    rows = []
    for _ in range(count):
        task = next(stream)
        rows.append({"prompt": prompt, **{k: _arrow_safe(v) for k, v in task.items()}})
    return rows


def _arrow_safe(value: Any) -> Any:
    return value if value is None or isinstance(value, (str, int, float, bool)) else str(value)
