"""`finqa-rl report`: write the report of a policy on a snapshot from the evaluation store.

    finqa-rl report --policy smollm2-cpu --snapshot data/snapshots/<hash>
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", required=True, help="the policy's name as evaluated (e.g. oracle, smollm2-cpu, smollm2-135m, openai:<model>)")
    parser.add_argument("--snapshot", help="snapshot directory (default: the newest under $FINQA_RL_SNAPSHOTS_DIR)")
    parser.add_argument("--db", help="evaluation store (default: $FINQA_RL_EVALUATIONS or data/evaluations.duckdb)")
    parser.add_argument("--out", help="reports folder (default: $FINQA_RL_REPORTS_DIR or reports/)")
    parser.add_argument("--baseline", default=None, help="policy to report deltas against (default: an arm's untrained counterpart)")


def run(args: argparse.Namespace) -> int:
    from rl_assets.env import default_snapshot
    from rl_assets.evaluation.report import build_report
    from rl_assets.evaluation.store import EvaluationStore
    from rl_assets.evaluation.task_sets import TaskSetError, check_snapshot

    try:
        snapshot = check_snapshot(args.snapshot) if args.snapshot else default_snapshot()
        report = build_report(snapshot, args.policy, EvaluationStore(args.db), args.out,
                              baseline=args.baseline or "")
    except (TaskSetError, LookupError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for task_set, value in report.pass_at_1.items():
        print(f"{task_set}: pass@1 {'n/a' if value is None else f'{value:.1%}'}")
    print(f"report: {report.path}")
    return 0
