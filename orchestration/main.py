"""The README main command: the whole pipeline in-process, a few lines per stage, the details in a log file.

    .venv/bin/python -m orchestration.main               # raw -> dbt -> checks -> snapshot -> training -> evaluation
    .venv/bin/python -m orchestration.main --data-only   # raw -> dbt -> checks -> environment snapshot
    .venv/bin/python -m orchestration.main --help

Runs in-process against the Dagster instance in $DAGSTER_HOME (default: .dagster_home/ in the repository, so
`dagster dev` with the same DAGSTER_HOME shows these runs). The raw files are observed first; only assets whose
inputs or code changed since their last materialisation (and everything downstream of them) run, so a first
run materialises everything and a run on unchanged data does nothing (orchestration.incremental). The
evaluation (orchestration.defs.evaluation.run_evaluations) then runs every policy whose artifact is there.

The terminal gets a few lines per stage, progress bars for the long ones when stdout is a terminal (raw
loading, dbt, the oracle check, training steps, evaluation episodes) and a closing summary
(orchestration.report). Dagster's full event log (DEBUG), dbt's output, the training subprocess's output and
every warning go to $DAGSTER_HOME/logs/main-<time>.log, whose path is printed first and last; a failing step's
error is shown in its first lines. Exits non-zero if any asset, blocking check or evaluation fails.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import traceback
from pathlib import Path

from orchestration.paths import REPO_ROOT

# asset group -> the stage it is shown as (a check with no asset of its own: "checks")
STAGES = {"raw": "raw", "curation": "dbt", "environment": "snapshot", "training": "training",
          "evaluation": "evaluation"}
STAGE_ORDER = ("setup", "observe", "raw", "dbt", "checks", "snapshot", "training", "evaluation")
REASON_LINES = 4  # why-lines shown before the data stage runs
DEFAULT_ARM = "smollm2-cpu"  # the main command's one arm: SmolLM2-135M-Instruct + LoRA, SFT + GRPO on 2 CPU cores
# tasks per test set the main command evaluates (seeded; FINQA_RL_EVAL_SAMPLE_SIZE overrides, 0 = every task); the
# UI, automation and `finqa-rl eval` evaluate whole sets
MAIN_SAMPLE_SIZE = 12


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m orchestration.main",
        description="Run the finqa-rl pipeline in-process: raw files -> DuckDB -> dbt models and tests -> Great "
                    "Expectations checks -> environment snapshot (oracle check) -> trained policy -> evaluation "
                    "of every policy on the test sets, with reports. Only what changed since the last run is run.",
        epilog="Prints a few lines per stage and a closing summary (data counts and rejects, checks, training "
               "curve, scores with intervals, report paths, time per stage). Dagster's full event log and all "
               "other output go to $DAGSTER_HOME/logs/main-<time>.log (DAGSTER_HOME defaults to .dagster_home/). "
               "Where data, snapshots, runs and reports are written: README.md. Exit status 1 if an asset, a "
               "blocking check or an evaluation failed.",
    )
    parser.add_argument("--data-only", action="store_true",
                        help="only the data half: observe the raw files, then raw -> dbt -> checks -> environment "
                             "snapshot and its oracle check; no training, no evaluation")
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="stream Dagster's full event log to the terminal (as dagster prints it), no progress "
                             "bars; the log file is written as well")
    parser.add_argument("--arm", "--train-config", dest="arm", metavar="NAME", default=None,
                        help="the arm to train and evaluate: a training config's name (rl_assets/configs/) or an arm "
                             f"of an experiment file (default: {DEFAULT_ARM}; docs/training.md, docs/experiments.md)")
    return parser.parse_args(argv)


def stage_of_group(group: str | None) -> str:
    return "checks" if group is None else STAGES.get(group, group)


def _training_totals(arm_name: str) -> dict[str, int]:
    """Steps per training stage (sft, grpo, ...) of an arm's config, for the progress bars."""
    from dataclasses import fields

    from rl_assets.experiments import resolve_arm

    try:
        config = resolve_arm(arm_name).train_config()
        if not config.grpo.enabled:
            config.grpo.max_steps = 0
    except Exception:  # the policy asset reports a bad arm itself
        return {}
    return {f.name: getattr(config, f.name).max_steps for f in fields(config)
            if isinstance(getattr(getattr(config, f.name), "max_steps", None), int)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("DAGSTER_HOME", str(REPO_ROOT / ".dagster_home"))
    home = Path(os.environ["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)

    from orchestration import console

    log_path = console.new_log_path(home / "logs")
    stream = console.terminal_stream()
    terminal = console.Terminal(stream, tty=False if args.verbose else None)
    what = ("raw files -> dbt -> checks -> environment snapshot" if args.data_only
            else "raw files -> dbt -> checks -> environment snapshot -> training -> evaluation")
    terminal.line(f"finqa-rl main command{' --data-only' if args.data_only else ''}: {what}")
    terminal.line(f"full log: {log_path}")
    handler = console.file_handler(log_path)
    log = logging.getLogger("finqa_rl.main")  # the plan's details: to the log file only
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    try:
        if args.verbose:
            return _guarded(args, terminal, handler, log_path)
        with console.capture_output(log_path):
            return _guarded(args, terminal, handler, log_path)
    finally:
        terminal.close()
        log.removeHandler(handler)
        handler.close()
        if stream is not sys.stdout:
            stream.close()


def _guarded(args, terminal, handler, log_path: Path) -> int:
    """Run, turning an unexpected error or Ctrl-C into a short message (the traceback goes to the log)."""
    try:
        return run(args, terminal, handler, log_path)
    except KeyboardInterrupt:
        traceback.print_exc()
        terminal.close_bars()
        terminal.line(f"main command: INTERRUPTED\nfull log: {log_path}")
        return 130
    except Exception as e:
        traceback.print_exc()
        terminal.close_bars()
        first = (str(e).strip().splitlines() or [""])[0][:240]
        terminal.line(f"main command: FAILED — {type(e).__name__}: {first}")
        terminal.line(f"full log: {log_path} (the traceback is at its end)")
        return 1


def run(args, terminal, handler, log_path: Path) -> int:
    from orchestration import console

    log = logging.getLogger("finqa_rl.main")
    started = time.perf_counter()
    times: dict[str, float] = {}
    terminal.bar("setup", "loading the definitions (dbt project, assets)", None)
    import dagster as dg

    # importing the definitions re-parses the dbt project first if any of its files changed
    from orchestration import incremental, paths, report
    from orchestration.arms import train_arm
    from orchestration.definitions import build_definitions
    from orchestration.defs.evaluation import ORACLE, SNAPSHOT_KEY, TRAINED_POLICY_KEY, default_evaluation_settings, run_evaluations
    from rl_assets.experiments import resolve_arm

    arm = resolve_arm(args.arm or DEFAULT_ARM)  # an unknown arm is an error before anything runs
    sample_size = int(os.environ.get("FINQA_RL_EVAL_SAMPLE_SIZE", MAIN_SAMPLE_SIZE))
    base_defs = build_definitions({"evaluation": default_evaluation_settings().with_sample(sample_size, 1, 0)})
    progress = console.Progress(terminal, {}, _training_totals(arm.name), quiet=True)
    loggers = console.event_loggers(handler, progress, console=args.verbose)
    defs = dg.Definitions.merge(base_defs, dg.Definitions(loggers=loggers))
    logging_config = console.loggers_run_config(loggers)  # every run below: these loggers, not Dagster's console
    progress.steps = console.step_infos(defs, stage_of_group)
    terminal.close_bar("setup")
    times["setup"] = time.perf_counter() - started

    with dg.DagsterInstance.get() as instance:
        t = time.perf_counter()
        observed = incremental.observe_sources(defs, instance, run_config=logging_config)
        times["observe"] = time.perf_counter() - t
        progress.timings.clear()
        if not observed.success:
            terminal.line(f"raw files: FAILED to observe the files under {paths.raw_root()}")
            for timing in progress.failures():
                terminal.line(f"  {timing.label}: {timing.error}")
            terminal.line(f"main command: FAILED\nfull log: {log_path}")
            return 1
        terminal.line(f"raw files: observed {len(incremental.source_keys(defs))} sources under {paths.raw_root()} "
                      f"in {console.duration(times['observe'])}")

        run_plan = incremental.plan(defs, instance, paths.warehouse_path(), targets=[SNAPSHOT_KEY])
        stage_name = "data"
        result = None
        if run_plan.up_to_date:
            terminal.line(f"{stage_name}: up to date — raw files and code unchanged since the last run, "
                          f"0 of {len(run_plan.all_assets)} assets to materialise")
        else:
            terminal.line(f"{stage_name}: {len(run_plan.reasons)} of {len(run_plan.all_assets)} assets out of date")
            for line in _reason_lines(run_plan):
                terminal.line(line)
            for key, why in sorted(run_plan.reasons.items(), key=lambda kv: kv[0].to_user_string()):
                log.info(f"out of date: {key.to_user_string()}: {why}")
            progress.expect(run_plan.selection)
            progress.quiet = False
            result = incremental.execute(defs, instance, run_plan, run_config=dict(logging_config))
            progress.quiet = True
        checks = report.collect_checks(defs, instance, run_plan.all_assets)
        ok = (result is None or result.success) and not report.failed_checks(checks)
        materialised = {e.asset_key for e in result.get_asset_materialization_events()} if result else set()

        trained = None  # the arm's training outcome (orchestration.arms.ArmOutcome)
        if not args.data_only and ok:
            terminal.line(f"training: arm {arm.name} (config {arm.config}, base {arm.base})")
            t = time.perf_counter()
            progress.quiet = False
            trained = train_arm(defs, instance, arm.name, "local", run_config=dict(logging_config),
                                log=lambda line: terminal.line(f"  {line}"))
            progress.quiet = True
            times["training"] = time.perf_counter() - t
            if trained.status != "trained":
                terminal.line(f"  {arm.name}: {trained.status} — {trained.detail}")
                ok = False

        outcomes = None
        evaluation_note = "not run: the data and training stage failed" if not ok else ""
        if not args.data_only and ok:
            policies = (ORACLE, arm.untrained, arm.name)
            terminal.line(f"evaluation: {', '.join(policies)} on the test sets "
                          f"({sample_size or 'all'} tasks each, seeded)")
            t = time.perf_counter()
            outcomes = run_evaluations(defs, instance, policies, log=lambda line: terminal.line(f"  {line}"),
                                       run_config=logging_config)
            times["evaluation"] = time.perf_counter() - t
            for o in outcomes:
                if o.status != "reported":
                    terminal.line(f"  {o.policy}: {o.status}" + (f" — {o.detail}" if o.detail else ""))
            ok = ok and all(o.status != "failed" for o in outcomes)

        training, training_note = None, "not trained yet"
        if trained is not None and trained.status != "trained":
            training_note = f"{arm.name}: training {trained.status} — {trained.detail}"
        elif trained is None and not args.data_only:
            training_note = "not trained in this run (the data stage failed: see above and the log)"
        elif not args.data_only:
            training = report.collect_training(instance, TRAINED_POLICY_KEY, trained.trained_now, arm.name)
        stage_seconds = {**progress.stage_seconds(), **times}
        snapshot = report.metadata_path(instance, SNAPSHOT_KEY)
        sources, unclaimed = report.collect_sources(instance, paths.raw_root())
        summary = report.Summary(
            mode="data only" if args.data_only else "everything",
            status="FAILED" if not ok else "UP TO DATE" if run_plan.up_to_date and outcomes is None else "SUCCESS",
            log_path=str(log_path), raw_root=str(paths.raw_root()), sources=sources, unclaimed_folders=unclaimed,
            tasks=report.collect_tasks(snapshot), snapshot=snapshot,
            assets_materialised=len(materialised & set(run_plan.all_assets)), assets_in_scope=len(run_plan.all_assets),
            checks=checks, step_failures=report.step_failure_lines(progress.failures()),
            training=training, training_note=training_note,
            policies=report.policy_summaries(outcomes) if outcomes is not None else None,
            evaluation_note=evaluation_note,
            stage_seconds={s: stage_seconds[s] for s in (*STAGE_ORDER, *stage_seconds) if s in stage_seconds},
            total_seconds=time.perf_counter() - started,
        )
        terminal.line("")
        for line in report.render(summary):
            terminal.line(line)
        return 0 if ok else 1


def _reason_lines(run_plan) -> list[str]:
    """Why the out-of-date assets run, one line per reason (the first few)."""
    by_reason: dict[str, list[str]] = {}
    for key, why in sorted(run_plan.reasons.items(), key=lambda kv: kv[0].to_user_string()):
        by_reason.setdefault(why, []).append(key.to_user_string())
    lines = []
    for why, keys in list(by_reason.items())[:REASON_LINES]:
        shown = ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
        lines.append(f"  {shown}: {why}")
    if len(by_reason) > REASON_LINES:
        lines.append(f"  ... and {len(by_reason) - REASON_LINES} more reasons (every asset and why: the log)")
    return lines


if __name__ == "__main__":
    sys.exit(main())
