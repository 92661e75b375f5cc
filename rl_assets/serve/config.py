"""Settings of one FinQA environment service (the `finqa-rl serve` flags map one to one onto these)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

TOKEN_ENV = "FINQA_RL_SERVE_TOKEN"  # the shared secret of `finqa-rl serve` and its clients (or --token-file)
TOKEN_FILE_FLAG = "--token-file"
MIN_TOKEN_CHARS = 16
TOKEN_HINT = "e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach: 127.0.0.0/8, ::1 and "localhost"."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:  # a host name, "" or "0.0.0.0"-like wildcard spellings: not provably loopback
        return False


def check_token(token: str) -> str:
    """The token if it can be a shared secret in an Authorization header, else ValueError (never quoting it)."""
    if len(token) < MIN_TOKEN_CHARS:
        raise ValueError(f"the serve token is {len(token)} characters; use at least {MIN_TOKEN_CHARS} ({TOKEN_HINT})")
    if not all("!" <= c <= "~" for c in token):
        raise ValueError("the serve token must be printable ASCII without spaces (it travels in an HTTP header); "
                         + TOKEN_HINT)
    return token


def check_host_and_token(host: str, token: str | None) -> None:
    """ValueError unless `token` is a usable secret, or there is none and `host` is a loopback address."""
    if token is not None:
        check_token(token)
    elif not is_loopback(host):
        raise ValueError(
            f"refusing to serve {host!r} without a token: any host that can reach the port could hold every "
            f"session and read rewards. Set ${TOKEN_ENV} or pass {TOKEN_FILE_FLAG} PATH (a file holding the "
            f"token; {TOKEN_HINT}), and give clients the same token; or serve 127.0.0.1 only")


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
    # shared secret every request but GET /health must carry (Authorization: Bearer ...); None: no check, and
    # then only a loopback host may be served
    token: str | None = field(default=None, repr=False)

    def __post_init__(self):
        check_host_and_token(self.host, self.token)
        if self.max_sessions < 1:
            raise ValueError(f"max_sessions must be at least 1, not {self.max_sessions}")
        if self.session_timeout_s <= 0:
            raise ValueError(f"session_timeout_s must be positive, not {self.session_timeout_s}")
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, not {self.max_steps}")
        if self.tool_threads < 1:
            raise ValueError(f"tool_threads must be at least 1, not {self.tool_threads}")
