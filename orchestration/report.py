"""What the main command prints after a run: the raw sources (loaded, rejected by reason, ignored files,
failed sources), raw folders no source reads, what ran and why, and every failed or warning check."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from rl_assets import raw

SOURCES = raw.SOURCES


def _value(metadata, name, default=None):
    entry = metadata.get(name)
    return entry.value if entry is not None else default


def raw_lines(instance: dg.DagsterInstance, raw_root: Path) -> list[str]:
    """One line per source from its latest materialisation, then unclaimed raw folders."""
    lines = [f"raw data ({raw_root}):"]
    for source in SOURCES:
        event = instance.get_latest_materialization_event(dg.AssetKey(["raw", source]))
        if event is None or event.asset_materialization is None:
            lines.append(f"  {source:<7} not loaded")
            continue
        md = event.asset_materialization.metadata
        rejected = _value(md, "rejected_by_reason", {}) or {}
        by_reason = ", ".join(f"{reason} {n}" for reason, n in sorted(rejected.items(), key=lambda kv: -kv[1]))
        lines.append(f"  {source:<7} {_value(md, 'files', 0)} file(s), {_value(md, 'records_loaded', 0)} of "
                     f"{_value(md, 'records', 0)} records loaded"
                     + (f"; rejected {_value(md, 'rejected_records', 0)} ({by_reason}) -> raw.rejected_records" if rejected else ""))
        for name in (_value(md, "ignored_files", []) or [])[:10]:
            lines.append(f"          ignored file (not *.json / *.jsonl where {source} reads): {name}")
    unclaimed = raw.unclaimed_folders(raw_root)
    if unclaimed:
        lines.append(f"  read by no source (expected {', '.join(d + '/' for d in raw.SOURCE_DIRS.values())}): "
                     + ", ".join(unclaimed))
    return lines


def _latest_check_evaluations(defs: dg.Definitions, instance: dg.DagsterInstance) -> list:
    """The latest evaluation of every check of the definitions."""
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

    keys = list(defs.resolve_asset_graph().asset_check_keys)
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
    out = []
    for record in latest.values():
        if record.status == AssetCheckExecutionRecordStatus.PLANNED or record.event is None:
            continue
        data = record.event.dagster_event.event_specific_data if record.event.dagster_event else None
        if data is not None and hasattr(data, "passed"):
            out.append(data)
    return out


def check_lines(evaluations: list) -> tuple[list[str], int, int]:
    """Lines for failed (ERROR) and warning checks and pass rates; (lines, failed, warnings)."""
    failed = [c for c in evaluations if not c.passed and c.severity == dg.AssetCheckSeverity.ERROR]
    warned = [c for c in evaluations if not c.passed and c.severity != dg.AssetCheckSeverity.ERROR]
    lines = []
    for c in failed:
        why = c.description or _value(c.metadata, "failure", "") or ""
        lines.append(f"  FAILED check {c.asset_key.to_user_string()}:{c.check_name}" + (f" — {why}" if why else ""))
    for c in warned:
        detail = _value(c.metadata, "rejected_by_reason")
        lines.append(f"  WARN   check {c.asset_key.to_user_string()}:{c.check_name}" + (f" {detail}" if detail is not None else ""))
    for c in evaluations:
        rates = {k.split("/")[0]: v.value for k, v in c.metadata.items() if k.endswith("/pass_rate")}
        if rates:
            lines.append(f"  check {c.asset_key.to_user_string()}:{c.check_name} "
                         + ", ".join(f"{name} {rate:.2%}" for name, rate in sorted(rates.items())))
    return lines, len(failed), len(warned)


def print_report(defs: dg.Definitions, instance: dg.DagsterInstance, result, run_plan, elapsed: float,
                 raw_root: Path) -> int:
    """Print the run's outcome; the exit code (0 only if nothing failed)."""
    print()
    for line in raw_lines(instance, raw_root):
        print(line)
    if result is None:
        evaluations = _latest_check_evaluations(defs, instance)
        lines, n_failed, _ = check_lines(evaluations)
        print(f"main job: UP TO DATE in {elapsed:.1f}s — raw data and code unchanged since the last run, "
              f"0 of {len(run_plan.all_assets)} assets materialised; latest check results: {len(evaluations)} checks "
              f"({n_failed} failed)")
        for line in lines:
            print(line)
        return 0 if n_failed == 0 else 1

    evaluations = [e.asset_check_evaluation_data for e in result.all_events
                   if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    lines, n_failed, n_warned = check_lines(evaluations)
    materialized = result.get_asset_materialization_events()
    print(f"main job: {'SUCCESS' if result.success else 'FAILED'} in {elapsed:.1f}s — "
          f"{len(materialized)} of {len(run_plan.all_assets)} assets materialised "
          f"({len(run_plan.reasons)} out of date), {len(evaluations)} checks ({n_failed} failed, {n_warned} warnings)")
    by_reason: dict[str, list[str]] = {}
    for key, why in sorted(run_plan.reasons.items(), key=lambda kv: kv[0].to_user_string()):
        by_reason.setdefault(why, []).append(key.to_user_string())
    for why, keys in by_reason.items():
        shown = ", ".join(keys[:4]) + (f" and {len(keys) - 4} more" if len(keys) > 4 else "")
        print(f"  ran {shown}: {why}")
    for line in lines:
        print(line)
    return 0 if result.success and n_failed == 0 else 1
