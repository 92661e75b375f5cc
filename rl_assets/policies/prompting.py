"""The chat messages an episode starts from, shared with training (`rl_assets.prompts`).

Training renders episodes with `rl_assets.prompts.SYSTEM_PROMPT` / `initial_messages`; evaluation must
render them the same way. Where that module is not installed yet, the fallback below has the same names
and meaning.
"""

from __future__ import annotations

try:  # the training side's prompts: the one definition
    from rl_assets.prompts import SYSTEM_PROMPT, initial_messages
except ImportError:  # pragma: no cover - exercised only where rl_assets.prompts is absent
    SYSTEM_PROMPT = (
        "You answer questions about companies' financial filings using tools. List the company's tables "
        "with get_descriptions, inspect a table with get_table_info before querying it, fetch the numbers "
        "you need with filtered sql_query calls, compute with calculator, and finish by calling "
        "submit_answer with the final number."
    )

    def initial_messages(observation: str, system_prompt: str = SYSTEM_PROMPT) -> list[dict]:
        """The messages before the first model turn; `observation` is what FinQAEnv.reset returned."""
        return [
            {"role": "system", "content": system_prompt},
            {"role": "user", "content": "Answer the question with the tools." + observation},
        ]

__all__ = ["SYSTEM_PROMPT", "initial_messages"]
