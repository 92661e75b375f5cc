"""The chat messages an episode starts from: the one definition is `rl_assets.prompts`, shared with training
(`SYSTEM_PROMPT`, `initial_messages`), so evaluation renders episodes exactly as training did."""

from __future__ import annotations

from rl_assets.prompts import SYSTEM_PROMPT, initial_messages

__all__ = ["SYSTEM_PROMPT", "initial_messages"]
