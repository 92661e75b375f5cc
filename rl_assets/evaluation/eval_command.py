"""`finqa-rl eval`: evaluate a policy on task sets of a snapshot (the code path of the Dagster assets).

    finqa-rl eval --policy oracle --tasks single_table-synth-test --snapshot data/snapshots/<hash>
    finqa-rl eval --policy hf:data/runs/<id> --tasks test --samples 4 --limit 100
    finqa-rl eval --policy openai:Qwen/Qwen3-4B-Instruct-2507 --base-url http://localhost:8000/v1 --tasks test
    finqa-rl eval --policy router:smollm2-cpu,openai:gpt-4o-mini --tasks single_table-real-test --report

Appends the episodes and the summary to the evaluation store and prints pass@1 per task set.
"""

from __future__ import annotations

import argparse
import sys

from rl_assets.evaluation.task_sets import TASK_SET_FORMAT, TASK_SETS, TEST_TASK_SETS, TaskSetError

SHORTCUTS = {"test": TEST_TASK_SETS, "val": tuple(t for t in TASK_SETS if t.endswith("-val")), "all": TASK_SETS}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", required=True,
                        help="oracle | <arm> (newest run, e.g. smollm2-cpu) | <base model> (untrained, e.g. smollm2-135m) | "
                             "<arm>-untrained | hf:<model-or-run-dir> | openai:<model> | router:<small>,<large>")
    parser.add_argument("--tasks", required=True,
                        help=f"task set(s), comma-separated: {TASK_SET_FORMAT}, or test / val / all")
    parser.add_argument("--snapshot", help="snapshot directory (default: the newest under $FINQA_RL_SNAPSHOTS_DIR)")
    parser.add_argument("--samples", type=int, default=1, help="episodes per task (pass@k for k <= samples; sampled when > 1)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate a seeded sample of N tasks per set (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="evaluation store (default: $FINQA_RL_EVALUATIONS or data/evaluations.duckdb)")
    parser.add_argument("--baseline", default=None, help="policy to report deltas against (default: an arm's untrained counterpart)")
    parser.add_argument("--max-turns", type=int, default=None, help="model turns per episode (the step limit)")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="tokens per model turn")
    parser.add_argument("--batch-size", type=int, default=None, help="episodes generated together / requests in flight")
    parser.add_argument("--temperature", type=float, default=None, help="sampling temperature when --samples > 1")
    parser.add_argument("--base-url", help="OpenAI-compatible endpoint (default: $OPENAI_BASE_URL)")
    parser.add_argument("--api-key", help="endpoint key (default: $OPENAI_API_KEY)")
    parser.add_argument("--price-in", type=float, help="USD per million prompt tokens (endpoint cost)")
    parser.add_argument("--price-out", type=float, help="USD per million completion tokens (endpoint cost)")
    parser.add_argument("--report", action="store_true", help="also write the report (reports/<snapshot>-<policy>/)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def parse_task_sets(text: str) -> tuple[str, ...]:
    from rl_assets.evaluation.task_sets import parse_task_set

    names: list[str] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        names += SHORTCUTS[part] if part in SHORTCUTS else (parse_task_set(part).name,)
    if not names:
        raise TaskSetError(f"no task set given: expected {TASK_SET_FORMAT}")
    return tuple(dict.fromkeys(names))


def build_config(args: argparse.Namespace):
    from dataclasses import replace

    from rl_assets.evaluation.runner import EvaluationConfig
    from rl_assets.policies import GenerationSettings

    overrides = {k: v for k, v in (("max_turns", args.max_turns), ("max_new_tokens", args.max_new_tokens),
                                   ("batch_size", args.batch_size), ("temperature", args.temperature)) if v is not None}
    return EvaluationConfig(sample_size=args.limit, samples=args.samples, seed=args.seed,
                            generation=replace(GenerationSettings(), **overrides))


def progress_bar(enabled: bool, description: str):
    """A `progress(done, total)` callback drawing a tqdm bar, and a function that closes it."""
    from tqdm import tqdm

    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=description, unit="episode", disable=not enabled, file=sys.stderr)
        bar.n = done
        bar.refresh()

    def close() -> None:
        if bar is not None:
            bar.close()

    return progress, close


def run(args: argparse.Namespace) -> int:
    from rl_assets.env import default_snapshot
    from rl_assets.evaluation.report import build_report
    from rl_assets.evaluation.runner import default_baseline, headline, run_evaluation, summarise_evaluation
    from rl_assets.evaluation.store import EvaluationStore
    from rl_assets.evaluation.task_sets import check_snapshot
    from rl_assets.policies import PolicyError, load_policy

    try:
        task_sets = parse_task_sets(args.tasks)
        snapshot = check_snapshot(args.snapshot) if args.snapshot else default_snapshot()
        if args.samples < 1:
            raise ValueError("--samples must be at least 1")
        openai_options = {k: v for k, v in (("base_url", args.base_url), ("api_key", args.api_key),
                                            ("price_in_per_mtok", args.price_in), ("price_out_per_mtok", args.price_out))
                          if v is not None}
        policy = load_policy(args.policy, snapshot=snapshot, openai_options=openai_options)
        store = EvaluationStore(args.out)
        config = build_config(args)
        baseline = args.baseline or default_baseline(policy.name)
        print(f"policy {policy.name} ({policy.version}) on snapshot {snapshot.name} -> {store.path}")
        for task_set in task_sets:
            progress, close = progress_bar(not args.no_progress, task_set)
            try:
                result = run_evaluation(policy, task_set, snapshot, config, store, progress=progress)
            finally:
                close()
            row = headline(summarise_evaluation(store, result.evaluation_id, baseline=baseline))
            score = "n/a (empty task set)" if row["value"] is None else \
                f"{row['value']:.1%} [{row['ci_low']:.1%}, {row['ci_high']:.1%}]"
            print(f"{task_set}: pass@1 {score} over {result.run['n_tasks']} tasks "
                  f"(evaluation {result.evaluation_id}, version {result.version})")
        if args.report:
            report = build_report(snapshot, policy.name, store, baseline=baseline)
            print(f"report: {report.path}")
    except (PolicyError, TaskSetError, LookupError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
