"""The main command's closing summary: what the data stage loaded and rejected, the tasks, the checks, the
training curve, the scores per policy with intervals, report paths, time per stage and the log path.

`collect_*` read it from the Dagster instance (latest materialisations and check evaluations) and the files
they name (snapshot tasks, training metrics); `render` turns a `Summary` into lines, with no Dagster needed,
so it can be tested from made-up outcomes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SPLITS = ("train", "val", "test")
MAX_WARNING_LINES = 5  # WARN checks named in the summary; the rest are counted


# ---------------------------------------------------------------------------------------------- the record
@dataclass
class SourceCounts:
    source: str
    files: int = 0
    records: int = 0
    loaded: int = 0
    rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    ignored_files: list[str] = field(default_factory=list)
    loaded_yet: bool = True


@dataclass
class CheckOutcome:
    name: str  # asset:check
    passed: bool
    severity: str  # ERROR / WARN
    detail: str = ""
    pass_rates: dict[str, float] = field(default_factory=dict)  # from `<name>/pass_rate` metadata


@dataclass
class StageCurve:
    stage: str
    steps: int
    first: dict[str, float]
    last: dict[str, float]


@dataclass
class TrainingSummary:
    config: str
    run_dir: str
    curves: list[StageCurve]
    wall_s: float | None
    trained_now: bool


@dataclass
class Score:
    task_set: str
    pass_at_1: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    tasks: int | None = None


@dataclass
class PolicySummary:
    policy: str
    status: str  # reported / skipped / failed
    detail: str = ""
    report: str | None = None
    scores: list[Score] = field(default_factory=list)


@dataclass
class Summary:
    mode: str  # "data only" / "everything"
    status: str  # SUCCESS / FAILED / UP TO DATE
    log_path: str
    raw_root: str = ""
    sources: list[SourceCounts] = field(default_factory=list)
    unclaimed_folders: list[str] = field(default_factory=list)
    tasks: dict[str, dict[str, int]] = field(default_factory=dict)  # source -> split -> tasks
    snapshot: str | None = None
    assets_materialised: int = 0
    assets_in_scope: int = 0
    checks: list[CheckOutcome] = field(default_factory=list)
    step_failures: list[tuple[str, str]] = field(default_factory=list)  # (step label, first lines of its error)
    training: TrainingSummary | None = None
    training_note: str = ""  # why there is no training summary
    policies: list[PolicySummary] | None = None
    evaluation_note: str = ""
    stage_seconds: dict[str, float] = field(default_factory=dict)
    total_seconds: float = 0.0


# ---------------------------------------------------------------------------------------------- rendering
def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _duration(seconds: float) -> str:
    from orchestration.console import duration

    return duration(seconds)


def source_lines(summary: Summary) -> list[str]:
    lines = []
    for s in summary.sources:
        if not s.loaded_yet:
            lines.append(f"  {s.source:<7} not loaded")
            continue
        rejected = ""
        if s.rejected:
            by_count = sorted(s.rejected_by_reason.items(), key=lambda kv: (-kv[1], kv[0]))
            reasons = ", ".join(f"{reason} {n}" for reason, n in by_count)
            rejected = f"; rejected {s.rejected:,} ({reasons}) -> raw.rejected_records"
        lines.append(f"  {s.source:<7} {s.files:,} file(s), {s.loaded:,} of {s.records:,} records loaded{rejected}")
        for name in s.ignored_files[:5]:
            lines.append(f"          ignored file (not *.json / *.jsonl where {s.source} reads): {name}")
        if len(s.ignored_files) > 5:
            lines.append(f"          and {len(s.ignored_files) - 5} more ignored files")
    if summary.unclaimed_folders:
        lines.append(f"  read by no source: {', '.join(summary.unclaimed_folders)}")
    return lines


def task_lines(summary: Summary) -> list[str]:
    if not summary.tasks:
        return []
    total = sum(sum(by_split.values()) for by_split in summary.tasks.values())
    lines = [f"  tasks   {total:,} in the snapshot" + (f" {summary.snapshot}" if summary.snapshot else "")]
    for source, by_split in sorted(summary.tasks.items()):
        splits = [s for s in SPLITS if s in by_split] + sorted(s for s in by_split if s not in SPLITS)
        lines.append(f"          {source:<7} " + " · ".join(f"{s} {by_split[s]:,}" for s in splits))
    return lines


def check_lines(checks: list[CheckOutcome]) -> list[str]:
    failed = [c for c in checks if not c.passed and c.severity == "ERROR"]
    warned = [c for c in checks if not c.passed and c.severity != "ERROR"]
    passed = len(checks) - len(failed) - len(warned)
    lines = [f"checks: {len(checks)} — {passed} passed, {len(warned)} warned, {len(failed)} failed"
             + (": " + ", ".join(c.name for c in failed) if failed else "")]
    for c in failed:
        lines.append(f"  FAILED {c.name}" + (f" — {c.detail}" if c.detail else ""))
    for c in warned[:MAX_WARNING_LINES]:
        lines.append(f"  WARN   {c.name}" + (f" {c.detail}" if c.detail else ""))
    if len(warned) > MAX_WARNING_LINES:
        lines.append(f"  WARN   and {len(warned) - MAX_WARNING_LINES} more (see the log)")
    for c in checks:
        if c.pass_rates:
            rates = ", ".join(f"{name} {rate:.2%}" for name, rate in sorted(c.pass_rates.items()))
            lines.append(f"  {c.name} {rates}")
    return lines


def training_lines(summary: Summary) -> list[str]:
    t = summary.training
    if t is None:
        return [f"training: {summary.training_note or 'no trained policy'}"]
    parts = []
    for c in t.curves:
        metrics = [f"{name} {_num(c.first.get(name))} → {_num(c.last.get(name))}"
                   for name in ("loss", "reward") if name in c.first or name in c.last]
        parts.append(f"{c.stage} {c.steps} steps" + (f" ({', '.join(metrics)})" if metrics else ""))
    wall = f" in {_duration(t.wall_s)}" if t.wall_s is not None else ""
    when = "" if t.trained_now else " — unchanged, from an earlier run"
    return [f"training: {t.config}{wall}{when}", *(f"  {p}" for p in parts), f"  run dir: {t.run_dir}"]


def evaluation_lines(summary: Summary) -> list[str]:
    if summary.policies is None:
        return [f"evaluation: {summary.evaluation_note or 'not run'}"]
    lines = ["scores: pass@1 [95% bootstrap interval] (tasks) per test set"]
    width = max((len(p.policy) for p in summary.policies), default=0)
    for p in summary.policies:
        if not p.scores:
            lines.append(f"  {p.policy:<{width}}  {p.status}" + (f" — {p.detail}" if p.detail else ""))
            continue
        set_width = max(len(s.task_set) for s in p.scores)
        for i, s in enumerate(p.scores):
            ci = f" [{_pct(s.ci_low)}, {_pct(s.ci_high)}]" if s.ci_low is not None and s.ci_high is not None else ""
            n = f" ({s.tasks})" if s.tasks is not None else ""
            name = p.policy if i == 0 else ""
            lines.append(f"  {name:<{width}}  {s.task_set:<{set_width}}  {_pct(s.pass_at_1):>6}{ci}{n}")
        if p.status == "failed":
            lines.append(f"  {'':<{width}}  FAILED" + (f" — {p.detail}" if p.detail else ""))
    reports = [p for p in summary.policies if p.report]
    if reports:
        lines.append("reports:")
        lines.extend(f"  {p.policy:<{width}}  {p.report}" for p in reports)
    return lines


def render(summary: Summary) -> list[str]:
    """The closing summary, a few lines per stage."""
    lines = [f"summary ({summary.mode}):"]
    lines.append(f"data: {summary.raw_root}" if summary.raw_root else "data:")
    lines.extend(source_lines(summary))
    lines.extend(task_lines(summary))
    lines.append(f"  assets  {summary.assets_materialised} of {summary.assets_in_scope} materialised in this run")
    lines.extend(check_lines(summary.checks))
    if summary.mode != "data only":
        lines.extend(training_lines(summary))
        lines.extend(evaluation_lines(summary))
    for label, error in summary.step_failures:
        lines.append(f"FAILED {label}:")
        lines.extend(f"  {line}" for line in error.splitlines())
    if summary.stage_seconds:
        lines.append("time: " + " · ".join(f"{stage} {_duration(s)}" for stage, s in summary.stage_seconds.items())
                     + f" · total {_duration(summary.total_seconds)}")
    see_log = " — see the log for details" if summary.status == "FAILED" else ""
    lines.append(f"main command: {summary.status}{see_log}")
    lines.append(f"full log: {summary.log_path}")
    return lines


# ---------------------------------------------------------------------------------------------- collecting
def _value(metadata, name, default=None):
    entry = metadata.get(name)
    return entry.value if entry is not None else default


def collect_sources(instance, raw_root: Path) -> tuple[list[SourceCounts], list[str]]:
    """Per source, from its latest materialisation; then the raw folders no source reads."""
    import dagster as dg

    from rl_assets import raw

    out = []
    for source in raw.SOURCES:
        event = instance.get_latest_materialization_event(dg.AssetKey(["raw", source]))
        if event is None or event.asset_materialization is None:
            out.append(SourceCounts(source, loaded_yet=False))
            continue
        md = event.asset_materialization.metadata
        out.append(SourceCounts(
            source, files=_value(md, "files", 0), records=_value(md, "records", 0),
            loaded=_value(md, "records_loaded", 0), rejected=_value(md, "rejected_records", 0),
            rejected_by_reason=dict(_value(md, "rejected_by_reason", {}) or {}),
            ignored_files=list(_value(md, "ignored_files", []) or []),
        ))
    return out, raw.unclaimed_folders(raw_root)


def collect_tasks(snapshot: str | Path | None) -> dict[str, dict[str, int]]:
    """Tasks per source and split in a published snapshot's tasks.parquet."""
    if snapshot is None or not (Path(snapshot) / "tasks.parquet").exists():
        return {}
    import duckdb

    with duckdb.connect() as con:
        rows = con.execute(f"SELECT source, split, count(*) FROM read_parquet('{Path(snapshot) / 'tasks.parquet'}') "
                           "GROUP BY ALL").fetchall()
    out: dict[str, dict[str, int]] = {}
    for source, split, n in rows:
        out.setdefault(str(source), {})[str(split)] = int(n)
    return out


def collect_checks(defs, instance, assets) -> list[CheckOutcome]:
    """The latest evaluation of every check on `assets` (checks never evaluated are left out)."""
    import dagster as dg
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

    scope = set(assets)
    keys = [k for k in defs.resolve_asset_graph().asset_check_keys if k.asset_key in scope]
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
    out = []
    for key in sorted(latest, key=lambda k: k.to_user_string()):
        record = latest[key]
        if record.status == AssetCheckExecutionRecordStatus.PLANNED or record.event is None:
            continue
        data = record.event.dagster_event.event_specific_data if record.event.dagster_event else None
        if data is None or not hasattr(data, "passed"):
            continue
        error = data.severity == dg.AssetCheckSeverity.ERROR
        rejected = _value(data.metadata, "rejected_by_reason")
        detail = str(data.description or _value(data.metadata, "failure", "") or "")
        if isinstance(rejected, dict) and rejected and not (error and detail):
            detail = "rejected " + ", ".join(f"{reason} {n}" for reason, n in sorted(rejected.items()))
        rates = {k.split("/")[0]: v.value for k, v in data.metadata.items()
                 if k.endswith("/pass_rate") and isinstance(v.value, (int, float))}
        out.append(CheckOutcome(f"{data.asset_key.to_user_string()}:{data.check_name}", bool(data.passed),
                                "ERROR" if error else "WARN", "" if data.passed else detail, rates))
    return out


def collect_training(instance, policy_key, trained_now: bool, arm: str | None = None) -> TrainingSummary | None:
    """The newest `policy[arm]` materialisation: its arm, run directory and training curve (metrics.jsonl)."""
    import dagster as dg

    from rl_assets.training.reporting import read_metrics

    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=policy_key, asset_partitions=[arm] if arm else None), limit=1).records
    if not records or records[0].asset_materialization is None:
        return None
    md = records[0].asset_materialization.metadata
    run_dir = str(_value(md, "artifact_path", "") or _value(md, "path", "") or "")
    records = read_metrics(run_dir) if run_dir and Path(run_dir).exists() else []
    curves = []
    for stage in dict.fromkeys(r.get("stage") for r in records):
        rows = [r for r in records if r.get("stage") == stage]
        pick = lambda r: {k: r[k] for k in ("loss", "reward") if isinstance(r.get(k), (int, float))}  # noqa: E731
        curves.append(StageCurve(str(stage), int(rows[-1].get("step", 0)), pick(rows[0]), pick(rows[-1])))
    wall = records[-1].get("wall_s") if records else None
    return TrainingSummary(str(_value(md, "arm", "") or _value(md, "config_name", "") or "?"), run_dir, curves,
                           float(wall) if isinstance(wall, (int, float)) else None, trained_now)


def policy_summaries(outcomes) -> list[PolicySummary]:
    """PolicyOutcome (orchestration.defs.evaluation.run_evaluations) -> what the summary shows."""
    out = []
    for o in outcomes:
        scores = [Score(task_set, s.get("pass@1"), s.get("pass@1_ci_low"), s.get("pass@1_ci_high"), s.get("tasks"))
                  for task_set, s in (o.scores or {}).items()]
        if not scores and o.pass_at_1:
            scores = [Score(task_set, value) for task_set, value in o.pass_at_1.items()]
        out.append(PolicySummary(o.policy, o.status, o.detail, o.report, scores))
    return out


def failed_checks(checks: list[CheckOutcome]) -> list[str]:
    return [c.name for c in checks if not c.passed and c.severity == "ERROR"]


def step_failure_lines(failures) -> list[tuple[str, str]]:
    return [(t.label, t.error) for t in failures]


def metadata_path(instance, key) -> str | None:
    event = instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None:
        return None
    value: Any = _value(event.asset_materialization.metadata, "path")
    return str(value) if value else None
