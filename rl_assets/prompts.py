"""The prompt an agent sees at the start of an episode, shared by training, rollouts and evaluation.

    messages = initial_messages(env.reset(**task))

An episode starts with a system message (`SYSTEM_PROMPT`) and one user message: `USER_INSTRUCTION`
followed by the environment's observation (`FinQAEnv.reset` returns "\\n\\nCompany: <id>\\nQuestion: <q>").
That is exactly what TRL's `GRPOTrainer(environment_factory=...)` builds from a dataset row whose prompt is
`dataset_prompt()`: it appends the observation to the last user message. The tool list itself is rendered
by the chat template (see rl_assets.training.tiny.compact_chat_template), not written here.
"""

from __future__ import annotations

SYSTEM_PROMPT = (
    "You answer a question about one company's financial tables with tools, one call per turn: "
    "get_descriptions lists its tables, get_table_info shows a table's columns and row labels, "
    "sql_query fetches cells, calculator computes, submit_answer gives the final answer."
)
USER_INSTRUCTION = "Answer with the tools."
# FinQAEnv's get_descriptions lists table names only during training unless a config says otherwise
# (rl_assets.training.config.EnvConfig): every model is played as it was trained
TRAINING_DESCRIPTION_CHARS = 0


def play_prompt(system_prompt: str | None = None, description_chars: int = TRAINING_DESCRIPTION_CHARS,
                dtype: str = "float32") -> dict:
    """How a model is played (a model directory's `prompt.json` minus its base): the system prompt, the
    environment options and the dtype of its weights (a model is played in the dtype it was trained in). The
    defaults are a default training config's, which an untrained base model gets too (with its registry dtype)."""
    return {"system_prompt": SYSTEM_PROMPT if system_prompt is None else system_prompt,
            "env": {"description_chars": description_chars}, "dtype": dtype}


def dataset_prompt(system_prompt: str = SYSTEM_PROMPT) -> list[dict[str, str]]:
    """The messages before the environment's observation: a training dataset row's `prompt`."""
    messages = [{"role": "user", "content": USER_INSTRUCTION}]
    if system_prompt:
        messages.insert(0, {"role": "system", "content": system_prompt})
    return messages


def initial_messages(observation: str, system_prompt: str = SYSTEM_PROMPT) -> list[dict[str, str]]:
    """The chat messages of an episode before the first model turn (`observation` = `FinQAEnv.reset(...)`)."""
    messages = dataset_prompt(system_prompt)
    messages[-1] = {**messages[-1], "content": messages[-1]["content"] + observation}
    return messages
