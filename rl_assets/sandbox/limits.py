"""Resource limits of one agent query."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits for one agent query."""

    max_rows: int = 50  # rows returned to the agent; more -> truncated + note
    max_chars: int = 4000  # characters of rendered output (``len(text)`` never exceeds it)
    timeout_s: float = 2.0  # wall time; a runaway query is interrupted
    memory_limit: str = "256MB"  # DuckDB memory_limit (used by open_world_db)
    max_query_chars: int = 4000  # longer query texts are rejected unparsed
