"""Settings of one FinQA environment service (the `finqa-rl serve` flags map one to one onto these)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ServerConfig:
    snapshot: Path
    host: str = "127.0.0.1"
    port: int = 8000
    max_sessions: int = 64  # one GRPO batch of generations at a time, each its own session
    session_timeout_s: float = 300.0  # a session idle this long is closed and its slot freed
    max_steps: int = 50  # tool calls per episode before it ends without an answer (the reference's default)
    splits: tuple[str, ...] | None = None  # task splits served (None: all)
    description_chars: int | None = None  # FinQAEnv's description_chars (None: the environment's default)
    tool_threads: int = 8  # worker threads running tool calls (DuckDB releases the GIL while it runs)
    max_message_bytes: int = 1 << 20  # largest WebSocket message / HTTP body accepted
    max_argument_chars: int = 16_384  # largest single tool argument (the sandbox refuses queries over 4,000)
    task_cycle_seed: int = 0  # order of the tasks handed out by a reset without arguments
    log_level: str = "warning"
    env_kwargs: dict = field(default_factory=dict)  # further FinQAEnv options (rel_tol, limits, ...)

    def __post_init__(self):
        if self.max_sessions < 1:
            raise ValueError(f"max_sessions must be at least 1, not {self.max_sessions}")
        if self.session_timeout_s <= 0:
            raise ValueError(f"session_timeout_s must be positive, not {self.session_timeout_s}")
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, not {self.max_steps}")
        if self.tool_threads < 1:
            raise ValueError(f"tool_threads must be at least 1, not {self.tool_threads}")
