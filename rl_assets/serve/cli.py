"""`finqa-rl serve`: the FinQA environment as an OpenEnv-compatible HTTP + WebSocket service.

    finqa-rl serve --snapshot data/snapshots/<hash> --port 8000 --max-sessions 64
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rl_assets.serve.config import ServerConfig

DEFAULTS = ServerConfig(snapshot=Path("."))


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


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    from rl_assets.env import default_snapshot

    splits = tuple(s.strip() for s in args.splits.split(",") if s.strip()) if args.splits else None
    return ServerConfig(
        snapshot=(args.snapshot or default_snapshot()).absolute(), host=args.host, port=args.port,
        max_sessions=args.max_sessions, session_timeout_s=args.session_timeout, max_steps=args.max_steps,
        splits=splits, description_chars=args.description_chars, tool_threads=args.tool_threads,
        max_message_bytes=args.max_message_bytes, max_argument_chars=args.max_argument_chars,
        log_level=args.log_level,
    )


def run(args: argparse.Namespace) -> int:
    from rl_assets.serve.server import serve

    config = config_from_args(args)
    if not (config.snapshot / "manifest.json").exists():
        raise SystemExit(f"finqa-rl serve: {config.snapshot} is not a snapshot directory (no manifest.json)")
    serve(config)
    return 0
