"""`finqa-rl serve`: the FinQA environment as an OpenEnv-compatible HTTP + WebSocket service.

    finqa-rl serve --snapshot data/snapshots/<hash> --port 8000 --max-sessions 64
    FINQA_RL_SERVE_TOKEN=... finqa-rl serve --host 0.0.0.0 ...      # or --token-file PATH

The token (a shared secret every request but GET /health must carry) comes from $FINQA_RL_SERVE_TOKEN or
--token-file, never from the command line itself, where `ps` shows it to every user of the machine.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from pathlib import Path

from rl_assets.serve.config import TOKEN_ENV, TOKEN_FILE_FLAG, TOKEN_HINT, ServerConfig, check_host_and_token

DEFAULTS = ServerConfig(snapshot=Path("."))


class _RefuseTokenArgument(argparse.Action):
    """`--token VALUE`: refused without echoing VALUE (argparse would otherwise take it for --token-file)."""

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"a token on the command line is visible to every user of the machine (ps); set ${TOKEN_ENV} "
                     f"or pass {TOKEN_FILE_FLAG} PATH instead")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--snapshot", type=Path, default=None,
                        help="snapshot directory (default: the newest under $FINQA_RL_SNAPSHOTS_DIR or data/snapshots)")
    parser.add_argument("--host", default=DEFAULTS.host, help=f"interface to listen on (default {DEFAULTS.host})")
    parser.add_argument("--port", type=int, default=DEFAULTS.port, help=f"port (default {DEFAULTS.port})")
    parser.add_argument("--max-sessions", type=int, default=DEFAULTS.max_sessions,
                        help=f"concurrent sessions (default {DEFAULTS.max_sessions}); more get CAPACITY_REACHED")
    parser.add_argument("--session-timeout", type=float, default=DEFAULTS.session_timeout_s,
                        help=f"seconds a session may stay idle before it is closed (default {DEFAULTS.session_timeout_s:g})")
    parser.add_argument("--max-steps", type=int, default=DEFAULTS.max_steps,
                        help=f"tool calls per episode before it ends without an answer (default {DEFAULTS.max_steps})")
    parser.add_argument("--splits", default=None,
                        help="comma-separated task splits to serve, e.g. train (default: all)")
    parser.add_argument("--description-chars", type=int, default=None,
                        help="characters per table description in get_descriptions (default: the environment's)")
    parser.add_argument("--tool-threads", type=int, default=DEFAULTS.tool_threads,
                        help=f"worker threads for tool calls (default {DEFAULTS.tool_threads})")
    parser.add_argument("--max-message-bytes", type=int, default=DEFAULTS.max_message_bytes,
                        help=f"largest WebSocket message or HTTP body (default {DEFAULTS.max_message_bytes})")
    parser.add_argument("--max-argument-chars", type=int, default=DEFAULTS.max_argument_chars,
                        help=f"largest single tool argument (default {DEFAULTS.max_argument_chars})")
    parser.add_argument("--log-level", default=DEFAULTS.log_level, choices=["debug", "info", "warning", "error"])
    parser.add_argument(TOKEN_FILE_FLAG, type=Path, default=None, metavar="PATH",
                        help=f"file holding the shared secret clients must send (Authorization: Bearer ...); default "
                             f"${TOKEN_ENV}. Required to serve a host other than 127.0.0.1 / ::1 / localhost")
    parser.add_argument("--token", nargs="?", action=_RefuseTokenArgument, help=argparse.SUPPRESS)


def read_token(token_file: Path | None) -> str | None:
    """The token: the contents of token_file (surrounding whitespace stripped), else $FINQA_RL_SERVE_TOKEN, else
    None. A missing or empty file is an error rather than a silently unprotected server."""
    if token_file is None:
        return os.environ.get(TOKEN_ENV, "").strip() or None
    try:
        text = token_file.read_text().strip()
        mode = token_file.stat().st_mode
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read the token file {token_file}: {type(e).__name__}: {e.strerror or e}") from None
    if not text:
        raise ValueError(f"the token file {token_file} is empty ({TOKEN_HINT})")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        print(f"finqa-rl serve: warning: the token file {token_file} is readable by other users "
              f"(chmod 600 {token_file})", file=sys.stderr)
    return text


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    from rl_assets.env import default_snapshot

    splits = tuple(s.strip() for s in args.splits.split(",") if s.strip()) if args.splits else None
    token = read_token(args.token_file)
    check_host_and_token(args.host, token)  # before looking for a snapshot: refuse at once
    return ServerConfig(
        snapshot=(args.snapshot or default_snapshot()).absolute(), host=args.host, port=args.port,
        max_sessions=args.max_sessions, session_timeout_s=args.session_timeout, max_steps=args.max_steps,
        splits=splits, description_chars=args.description_chars, tool_threads=args.tool_threads,
        max_message_bytes=args.max_message_bytes, max_argument_chars=args.max_argument_chars,
        log_level=args.log_level, token=token,
    )


def run(args: argparse.Namespace) -> int:
    from rl_assets.serve.server import serve

    try:
        config = config_from_args(args)
    except ValueError as e:  # no token for a network host, a bad token file, a bad limit: say so, no traceback
        raise SystemExit(f"finqa-rl serve: {e}") from None
    if not (config.snapshot / "manifest.json").exists():
        raise SystemExit(f"finqa-rl serve: {config.snapshot} is not a snapshot directory (no manifest.json)")
    serve(config)
    return 0
