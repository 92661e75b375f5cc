"""The evaluation report of one policy on one snapshot: `reports/<snapshot>-<policy>/report.md` plus PNG
plots (pass@1 per task set and policy with intervals, behaviour failure modes per policy, the training
curve of the policy's run), comparing the policy with every other policy evaluated on the same tasks.

For each task set the report uses the newest evaluation whose task set version equals the snapshot's
(an evaluation of identical tasks on an earlier snapshot counts: its rows name the snapshot they ran on).
Every number is traceable: the report lists the evaluation ids, and `docs/evaluation.md` shows the query.
"""

from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rl_assets.evaluation import plots
from rl_assets.evaluation.metrics import FAILURE_MODES, failure_modes
from rl_assets.evaluation.runner import default_baseline, headline, summarise_evaluation
from rl_assets.evaluation.store import EvaluationStore
from rl_assets.evaluation.task_sets import TASK_SETS, check_snapshot, load_task_set, task_set_version
from rl_assets.snapshot import read_manifest
from rl_assets.versioning import REPO_ROOT

PASS_PLOT, MODES_PLOT, CURVE_PLOT = "pass_at_1.png", "failure_modes.png", "training_curve.png"


def reports_root() -> Path:
    """$FINQA_RL_REPORTS_DIR (default reports/)."""
    value = os.environ.get("FINQA_RL_REPORTS_DIR")
    return Path(value).expanduser().resolve() if value else REPO_ROOT / "reports"


def report_dir_name(snapshot_hash: str, policy: str) -> str:
    return f"{snapshot_hash}-{re.sub(r'[^A-Za-z0-9._-]+', '_', policy).strip('_')}"


@dataclass
class Report:
    directory: Path
    markdown: str
    images: list[Path] = field(default_factory=list)
    evaluations: dict[str, dict[str, Any]] = field(default_factory=dict)  # task set -> the policy's evaluation
    pass_at_1: dict[str, float | None] = field(default_factory=dict)  # task set -> the policy's pass@1

    @property
    def path(self) -> Path:
        return self.directory / "report.md"

    def markdown_with_embedded_images(self) -> str:
        """The markdown with its PNGs inlined as data URIs (for the Dagster UI)."""
        text = self.markdown
        for image in self.images:
            data = base64.b64encode(image.read_bytes()).decode()
            text = text.replace(f"]({image.name})", f"](data:image/png;base64,{data})")
        return text


def _fmt(value: float | None, pct: bool = True) -> str:
    if value is None:
        return "n/a"
    return f"{100 * value:.1f}%" if pct else f"{value:.3g}"


def _interval(row: dict[str, Any] | None, key: str = "value", lo: str = "ci_low", hi: str = "ci_high") -> str:
    if not row or row.get(key) is None:
        return "n/a"
    return f"{_fmt(row[key])} [{_fmt(row[lo])}, {_fmt(row[hi])}]"


def _summary(store: EvaluationStore, run: dict[str, Any], baseline: str | None) -> list[dict[str, Any]]:
    rows = store.summaries(run["evaluation_id"])
    wanted = baseline if baseline != run["policy"] else None
    if not rows or (wanted and rows[0]["baseline_policy"] != wanted and
                    store.latest_evaluation(wanted, run["task_set"], task_set_version=run["task_set_version"])):
        rows = summarise_evaluation(store, run["evaluation_id"], baseline=baseline)
    return rows


def _training_metrics(policy_spec: str) -> list[dict[str, Any]]:
    if not policy_spec.startswith("hf:"):
        return []
    model_dir = Path(policy_spec[len("hf:"):])
    for candidate in (model_dir, model_dir.parent):
        if (candidate / "metrics.jsonl").is_file():
            return plots.read_training_metrics(candidate / "metrics.jsonl")
    return []


def build_report(
    snapshot: str | os.PathLike,
    policy: str,
    store: EvaluationStore | None = None,
    out_root: str | os.PathLike | None = None,
    baseline: str | None = "",
    task_sets: tuple[str, ...] = TASK_SETS,
) -> Report:
    """Write the report of `policy` (its name as evaluated, e.g. "smollm2-cpu") on `snapshot`; deltas against
    `baseline` (default: the policy's untrained counterpart when it is an arm; None: no deltas)."""
    if baseline == "":
        baseline = default_baseline(policy)
    store = store or EvaluationStore()
    snapshot = check_snapshot(snapshot)
    snapshot_hash = read_manifest(snapshot).get("snapshot_hash", snapshot.name)
    versions = {t: task_set_version(snapshot, load_task_set(snapshot, t)) for t in task_sets}
    # the newest evaluation of every policy on every task set of this snapshot
    runs: dict[str, dict[str, dict[str, Any]]] = {}
    for row in store.query(
        "SELECT * FROM evaluations WHERE task_set_version IN (SELECT unnest(?)) ORDER BY policy, task_set, version",
        [list(versions.values())],
    ):
        if versions.get(row["task_set"]) == row["task_set_version"]:
            runs.setdefault(row["policy"], {})[row["task_set"]] = row  # ordered by version: newest wins
    if policy not in runs:
        evaluated = ", ".join(sorted(runs)) or "none"
        raise LookupError(f"policy {policy!r} has no evaluation on snapshot {snapshot_hash} in {store.path} "
                          f"(evaluated there: {evaluated}); run `finqa-rl eval --policy {policy} ...` first")
    policies = [policy] + sorted(p for p in runs if p != policy)
    evaluated_sets = [t for t in task_sets if any(t in runs[p] for p in policies)]
    summaries = {p: {t: _summary(store, runs[p][t], baseline) for t in evaluated_sets if t in runs[p]} for p in policies}
    pass1 = {p: {t: headline(s) for t, s in summaries[p].items()} for p in policies}

    directory = Path(out_root or reports_root()) / report_dir_name(snapshot_hash, policy)
    directory.mkdir(parents=True, exist_ok=True)
    images = [plots.plot_pass_at_1(directory / PASS_PLOT, evaluated_sets, pass1)]
    mode_rates: dict[str, dict[str, float]] = {}
    stop_counts: dict[str, dict[str, int]] = {}
    for p in policies:
        ids = [r["evaluation_id"] for r in runs[p].values()]
        episodes = store.query(
            "SELECT task_id, correct, answered, errors, recovered_after_error, hallucinated_identifiers, "
            "inspected_schema_before_query, stop_reason FROM episodes WHERE evaluation_id IN (SELECT unnest(?))", [ids])
        if episodes:
            mode_rates[p] = {m: sum(failure_modes(e)[m] for e in episodes) / len(episodes) for m in FAILURE_MODES}
            stops: dict[str, int] = {}
            for e in episodes:
                stops[e["stop_reason"]] = stops.get(e["stop_reason"], 0) + 1
            stop_counts[p] = stops
    images.append(plots.plot_failure_modes(directory / MODES_PLOT, mode_rates))
    main_spec = next(iter(runs[policy].values()))["policy_spec"]
    curve = plots.plot_training_curve(directory / CURVE_PLOT, _training_metrics(main_spec))
    if curve is not None:
        images.append(curve)
    elif (directory / CURVE_PLOT).exists():
        (directory / CURVE_PLOT).unlink()

    md = _markdown(snapshot_hash, policy, policies, evaluated_sets, runs, summaries, pass1, mode_rates,
                   stop_counts, baseline, curve is not None, versions)
    (directory / "report.md").write_text(md)
    return Report(directory, md, images, dict(runs[policy]),
                  {t: (pass1[policy].get(t) or {}).get("value") for t in runs[policy]})


def _distinct(runs: dict[str, dict[str, Any]], key: str) -> str:
    return ", ".join(f"`{v}`" for v in sorted({str(r[key]) for r in runs.values()}))


def _base_model(runs: dict[str, dict[str, Any]]) -> str:
    """The registered base model the policy is or sits on, with the hashes its evaluations recorded: the model hash
    of every evaluation row and, from the training run's lineage, the weights' and the package wheel's SHA-256."""
    cells = set()
    for run in runs.values():
        if not run.get("base_model"):
            continue
        cell = f"`{run['base_model']}`, model hash `{run.get('base_model_hash')}`"
        record = (run.get("lineage") or {}).get("base_model_record") or {}
        if record.get("weights_sha256"):
            cell += f", weights SHA-256 `{record['weights_sha256']}`"
        if record.get("package"):
            cell += f", wheel `{record['package']['wheel']}` SHA-256 `{record['package']['sha256']}`"
        cells.add(cell)
    return "; ".join(sorted(cells)) or "none"


def _markdown(snapshot_hash, policy, policies, task_sets, runs, summaries, pass1, mode_rates, stop_counts,
              baseline, has_curve, versions) -> str:
    mine = runs[policy]
    first = next(iter(mine.values()))
    lines = [
        f"# Evaluation report: {policy} on snapshot {snapshot_hash}", "",
        "| | |", "|---|---|",
        f"| policy | `{policy}` (`{first['policy_spec']}`) |",
        f"| policy artifact version | {_distinct(mine, 'policy_version')} |",
        f"| code version | {_distinct(mine, 'code_version')} |",
        f"| git commit | {_distinct(mine, 'git_commit')} |",
        f"| config hash | {_distinct(mine, 'config_hash')} |",
        f"| base model | {_base_model(mine)} |",
        f"| config | `{first['config']}` |",
        f"| baseline for deltas | `{baseline or 'none'}` |", "",
        f"## {policy}: pass@1 per task set", "",
        "| task set | tasks evaluated | pass@1 [95% CI] | best pass@k | Δ pass@1 vs baseline [95% CI] | evaluation (version) | ran on snapshot |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in task_sets:
        run = mine.get(t)
        if run is None:
            lines.append(f"| {t} | not evaluated | | | | | |")
            continue
        rows = summaries[policy][t]
        top_k = max((r for r in rows if r["group_kind"] == "all" and r["metric"].startswith("pass@")),
                    key=lambda r: int(r["metric"][5:]), default=None)
        p1 = pass1[policy][t]
        delta = "n/a" if not p1 or p1.get("delta") is None else \
            f"{_fmt(p1['delta'])} [{_fmt(p1['delta_ci_low'])}, {_fmt(p1['delta_ci_high'])}] vs {p1['baseline_policy']}"
        note = " (empty task set)" if run["n_tasks"] == 0 else ""
        lines.append(f"| {t} | {run['n_tasks']}{note} | {_interval(p1)} | "
                     f"{top_k['metric'] + ' ' + _fmt(top_k['value']) if top_k else 'n/a'} | {delta} | "
                     f"`{run['evaluation_id']}` (v{run['version']}) | {run['snapshot_hash']} |")
    lines += ["", f"![pass@1 per task set and policy]({PASS_PLOT})", "", "## All policies on this snapshot: pass@1", "",
              "| policy | " + " | ".join(task_sets) + " |", "|---" * (len(task_sets) + 1) + "|"]
    for p in policies:
        lines.append(f"| {p} | " + " | ".join(_interval(pass1[p].get(t)) for t in task_sets) + " |")
    lines += ["", "## Behaviour failure modes (share of episodes, all task sets)", "",
              "| policy | " + " | ".join(m.replace("_", " ") for m in FAILURE_MODES) + " | stop reasons |",
              "|---" * (len(FAILURE_MODES) + 2) + "|"]
    for p in policies:
        if p in mode_rates:
            stops = ", ".join(f"{k} {v}" for k, v in sorted(stop_counts[p].items()))
            lines.append(f"| {p} | " + " | ".join(_fmt(mode_rates[p][m]) for m in FAILURE_MODES) + f" | {stops} |")
    lines += ["", f"![behaviour failure modes]({MODES_PLOT})", "",
              f"## {policy}: behaviour rubric and efficiency (mean per episode)", "",
              "| task set | " + " | ".join(_RUBRIC_SHOWN) + " |", "|---" * (len(_RUBRIC_SHOWN) + 1) + "|"]
    for t in task_sets:
        if t in summaries[policy]:
            by_metric = {r["metric"]: r for r in summaries[policy][t] if r["group_kind"] == "all"}
            cells = [_fmt((by_metric.get(m) or {}).get("value"), pct=m.split("/")[1] in _RATES) for m in _RUBRIC_SHOWN]
            lines.append(f"| {t} | " + " | ".join(cells) + " |")
    lines += ["", f"## {policy}: pass@1 by analytic type and source", "",
              "| task set | group | tasks | pass@1 [95% CI] |", "|---|---|---|---|"]
    for t in task_sets:
        for r in summaries[policy].get(t, []):
            if r["metric"] == "pass@1" and r["group_kind"] != "all":
                lines.append(f"| {t} | {r['group_kind']} = {r['group_value']} | {r['n_tasks']} | {_interval(r)} |")
    lines += ["", "## Training run", ""]
    lines.append(f"![training curve]({CURVE_PLOT})" if has_curve else
                 "No training metrics for this policy (not a training run's artifact).")
    ids = ", ".join(f"'{r['evaluation_id']}'" for r in mine.values())
    lines += ["", "## Trace these numbers", "",
              "Every number above comes from these rows of the `episodes` table (DuckDB, `FINQA_RL_EVALUATIONS`):", "",
              "```sql",
              "SELECT task_set, snapshot_hash, policy_version, code_version, config_hash, version,",
              "       count(*) AS episodes, avg(correct::INT) AS pass_at_1",
              f"FROM episodes WHERE evaluation_id IN ({ids})",
              "GROUP BY ALL ORDER BY task_set;",
              "```", "",
              "Task set versions of this snapshot: " + ", ".join(f"{t} `{v}`" for t, v in versions.items()), ""]
    return "\n".join(lines)


_RUBRIC_SHOWN = ("rubric/n_tool_calls", "rubric/errors", "rubric/answered", "rubric/inspected_schema_before_query",
                 "rubric/hallucinated_identifiers", "efficiency/tokens_in", "efficiency/tokens_out",
                 "efficiency/latency_s", "efficiency/cost_usd")
_RATES = {"answered", "inspected_schema_before_query"}
