"""The README main command as a person sees it: `--help`, `--data-only` on small data (a published snapshot, no
training, a short output with the log path, the full event log in the log file, an unchanged second run), and
the pieces of its output (the closing summary, step lines and bars) from made-up events."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from orchestration import console, report
from orchestration.paths import REPO_ROOT

RAW = REPO_ROOT / "data" / "raw"
MAX_LINES = 150  # the bound for a first run on a terminal


def main_command(*args: str, env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestration.main", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_help_names_the_modes_and_the_log():
    proc = main_command("--help", timeout=60)
    assert proc.returncode == 0, proc.stderr
    for text in ("--data-only", "--verbose", "--arm", "logs/main-"):
        assert text in proc.stdout
    assert proc.stderr == ""


def small_raw(root: Path) -> Path:
    """One 10-K company per split (apple train, amazon val, microsoft test: enough tasks for the checks), 60
    FinQA questions, 20 TAT-QA documents."""
    raw = root / "raw"
    for company in ("apple", "amazon", "microsoft"):
        shutil.copytree(RAW / "sec10k_tables" / company, raw / "sec10k_tables" / company)
    shutil.copy(RAW / "sec10k_tables" / "tables_cleaned_all_companies.json", raw / "sec10k_tables")
    (raw / "finqa").mkdir()
    lines = (RAW / "finqa" / "finqa_examples.jsonl").read_text().splitlines()[:60]
    (raw / "finqa" / "finqa_examples.jsonl").write_text("\n".join(lines) + "\n")
    (raw / "tatqa").mkdir()
    documents = json.loads((RAW / "tatqa" / "tatqa_dataset_dev.json").read_text())[:20]
    (raw / "tatqa" / "tatqa_dataset_dev.json").write_text(json.dumps(documents))
    return raw


@pytest.fixture(scope="module")
def data_only(tmp_path_factory):
    """Two `--data-only` runs (first, then unchanged) on small data, every path in a temporary folder."""
    root = tmp_path_factory.mktemp("main_command")
    home = root / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / ".dagster_home" / "dagster.yaml", home)
    env = {**os.environ, "DAGSTER_HOME": str(home), "FINQA_RL_RAW_DIR": str(small_raw(root)),
           "FINQA_RL_WAREHOUSE": str(root / "warehouse.duckdb"), "FINQA_RL_SNAPSHOTS_DIR": str(root / "snapshots"),
           "FINQA_RL_RUNS_DIR": str(root / "runs"), "FINQA_RL_EVALUATIONS": str(root / "evaluations.duckdb"),
           "FINQA_RL_REPORTS_DIR": str(root / "reports"), "FINQA_RL_MODELS_DIR": str(root / "models")}
    runs = [main_command("--data-only", env=env) for _ in range(2)]
    return SimpleNamespace(root=root, home=home, runs=runs)


def _log_path(output: str) -> Path:
    lines = output.splitlines()
    assert lines[1].startswith("full log: ") and lines[-1] == lines[1], output  # printed first and last
    return Path(lines[-1][len("full log: "):])


def test_data_only_publishes_a_snapshot_and_trains_nothing(data_only):
    from rl_assets.snapshot import latest_snapshot

    first = data_only.runs[0]
    assert first.returncode == 0, first.stdout + first.stderr
    snapshot = latest_snapshot(data_only.root / "snapshots")
    assert str(snapshot) in first.stdout
    assert not (data_only.root / "runs").exists() and not (data_only.root / "evaluations.duckdb").exists()
    assert "main command: SUCCESS" in first.stdout
    for text in ("summary (data only):", "sec10k", "rejected", "tasks", "checks:", "time: "):
        assert text in first.stdout
    assert "training" not in first.stdout.split("summary")[1] and "scores" not in first.stdout


def test_data_only_output_is_short_and_the_event_log_goes_to_the_file(data_only):
    first = data_only.runs[0]
    assert first.stderr == ""
    lines = first.stdout.splitlines()
    assert len(lines) <= 60 < MAX_LINES, first.stdout
    assert not any(" - DEBUG - " in line or "STEP_START" in line for line in lines)
    log = _log_path(first.stdout)
    assert log.parent == data_only.home / "logs"
    text = log.read_text()
    for event in ("RUN_START", "STEP_START", "ASSET_MATERIALIZATION", "ASSET_CHECK_EVALUATION", "RUN_SUCCESS"):
        assert event in text  # Dagster's event log, DEBUG included
    assert "dbt" in text and "environment_snapshot" in text


def test_an_unchanged_second_data_only_run_materialises_nothing(data_only):
    second = data_only.runs[1]
    assert second.returncode == 0, second.stdout + second.stderr
    assert "main command: UP TO DATE" in second.stdout and "0 of " in second.stdout
    assert _log_path(second.stdout) != _log_path(data_only.runs[0].stdout)
    assert len(second.stdout.splitlines()) <= 30


def test_a_failing_source_stops_the_run_with_its_error_on_the_terminal(tmp_path):
    raw = small_raw(tmp_path)
    (raw / "finqa" / "finqa_examples.jsonl").write_text("".join(f'{{"id": "x{i}", "bad": true}}\n' for i in range(20)))
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home"), "FINQA_RL_RAW_DIR": str(raw),
           "FINQA_RL_WAREHOUSE": str(tmp_path / "warehouse.duckdb"),
           "FINQA_RL_SNAPSHOTS_DIR": str(tmp_path / "snapshots"), "FINQA_RL_RUNS_DIR": str(tmp_path / "runs")}
    proc = main_command("--data-only", env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.split()[:3] == ["raw", "raw/finqa", "FAILED"] for line in lines), proc.stdout
    assert "  FAILED raw/finqa:source_loaded — source finqa: no record loaded from 1 file(s)" in proc.stdout
    assert "main command: FAILED" in proc.stdout and _log_path(proc.stdout).exists()
    assert not (tmp_path / "snapshots").exists()


# ---------------------------------------------------------------------------------------------- summary
def fake_summary() -> report.Summary:
    checks = [report.CheckOutcome(f"marts/tasks:test_{i}", True, "ERROR") for i in range(40)]
    checks += [report.CheckOutcome("raw/finqa:source_loaded", False, "ERROR", "finqa rejects 80% of its records")]
    checks += [report.CheckOutcome(f"raw/s{i}:no_rejected_records", False, "WARN", f"rejected bad_json {i}")
               for i in range(7)]
    checks += [report.CheckOutcome("environment_snapshot:oracle_pass_rate", True, "ERROR",
                                   pass_rates={"single_table": 0.995, "multi_table": 1.0})]
    scores = [report.Score("single_table-synth-test", 0.5, 0.3, 0.7, 24), report.Score("multi_table-synth-test", None)]
    return report.Summary(
        mode="everything", status="FAILED", log_path="/x/logs/main-1.log", raw_root="/x/raw",
        sources=[report.SourceCounts("sec10k", 73, 72, 66, 6, {"empty_table": 4, "bad_json": 2}, ["notes.txt"]),
                 report.SourceCounts("finqa", loaded_yet=False)],
        unclaimed_folders=["convfinqa/"], tasks={"sec10k": {"test": 3, "train": 10}, "finqa": {"val": 2}},
        snapshot="/x/snapshots/abc", assets_materialised=5, assets_in_scope=31, checks=checks,
        step_failures=[("raw/finqa", "finqa rejects 80% of its records\nsecond line")],
        training=report.TrainingSummary("tiny-test", "/x/runs/r1", [
            report.StageCurve("sft", 4, {"loss": 2.5}, {"loss": 0.25}),
            report.StageCurve("grpo", 2, {"loss": 0.01, "reward": 0.2}, {"loss": 0.02, "reward": 0.6})], 75.0, True),
        policies=[report.PolicySummary("oracle", "reported", report="/x/reports/abc-oracle", scores=scores),
                  report.PolicySummary("tiny-local", "skipped", "no artifact yet")],
        stage_seconds={"setup": 12.0, "raw": 3.5, "training": 75.0}, total_seconds=130.0,
    )


def test_the_summary_names_every_stage_in_a_few_lines():
    lines = report.render(fake_summary())
    text = "\n".join(lines)
    assert lines[0] == "summary (everything):" and lines[-1] == "full log: /x/logs/main-1.log"
    assert ("  sec10k  73 file(s), 66 of 72 records loaded; rejected 6 (empty_table 4, bad_json 2) "
            "-> raw.rejected_records") in lines
    assert "  finqa   not loaded" in lines and "read by no source: convfinqa/" in text and "notes.txt" in text
    assert "  tasks   15 in the snapshot /x/snapshots/abc" in lines
    assert "          sec10k  train 10 · test 3" in lines
    assert ("checks: 49 — 41 passed, 7 warned, 1 failed: raw/finqa:source_loaded") in lines
    assert "  FAILED raw/finqa:source_loaded — finqa rejects 80% of its records" in lines
    assert "  WARN   and 2 more (see the log)" in lines  # 5 warnings named, the rest counted
    assert "  environment_snapshot:oracle_pass_rate multi_table 100.00%, single_table 99.50%" in lines
    assert "training: tiny-test in 1m15s" in lines
    assert "  sft 4 steps (loss 2.5 → 0.25)" in lines
    assert "  grpo 2 steps (loss 0.01 → 0.02, reward 0.2 → 0.6)" in lines
    assert ["oracle", "single_table-synth-test", "50.0%", "[30.0%,", "70.0%]", "(24)"] in [line.split() for line in lines]
    assert any(line.split() == ["multi_table-synth-test", "n/a"] for line in lines)
    assert any(line.split()[:2] == ["tiny-local", "skipped"] for line in lines)
    assert any(line.split() == ["oracle", "/x/reports/abc-oracle"] for line in lines)
    assert "FAILED raw/finqa:" in lines and "  second line" in lines
    assert "time: setup 12.0s · raw 3.5s · training 1m15s · total 2m10s" in lines
    assert "main command: FAILED — see the log for details" in lines
    assert len(lines) < 45


def test_a_data_only_summary_leaves_training_and_evaluation_out():
    summary = fake_summary()
    summary.mode, summary.training, summary.policies, summary.stage_seconds = "data only", None, None, {"raw": 1.0}
    text = "\n".join(report.render(summary))
    assert "training" not in text and "scores" not in text and "summary (data only):" in text


# ---------------------------------------------------------------------------------------------- progress
def _record(step: str | None, message: str = "", event_type: str | None = None, **event_fields) -> logging.LogRecord:
    event = SimpleNamespace(event_type_value=event_type, **event_fields) if event_type else None
    record = logging.makeLogRecord({"msg": message})
    record.dagster_meta = {"run_id": "r1", "step_key": step, "orig_message": message, "dagster_event": event}
    return record


def _failure(description=None, message="ValueError: bad cell\n", cls_name="ValueError"):
    error = SimpleNamespace(message=message, cls_name=cls_name, cause=None)
    wrapped = SimpleNamespace(message="Error occurred while executing op", cause=error,
                              cls_name="DagsterExecutionStepExecutionError")
    user = SimpleNamespace(description=description) if description else None
    return SimpleNamespace(step_failure_data=SimpleNamespace(error=wrapped, user_failure_data=user))


def test_progress_prints_a_line_per_step_failures_with_their_error_and_training_milestones():
    out = io.StringIO()
    terminal = console.Terminal(out, tty=False)
    steps = {"raw__finqa": console.StepInfo("raw/finqa", "raw"), "policy": console.StepInfo("policy", "training")}
    progress = console.Progress(terminal, steps, {"sft": 8})
    progress.handle(_record("raw__finqa", event_type="STEP_START"))
    progress.handle(_record("raw__finqa", event_type="STEP_FAILURE", **vars(_failure())))
    progress.handle(_record("policy", event_type="STEP_START"))
    for step in range(1, 9):
        progress.handle(_record("policy", f"[sft {step}] loss={1 / step:.4g} token_accuracy=0.5 wall={step}s"))
    progress.handle(_record("policy", event_type="STEP_SUCCESS"))
    progress.quiet = True
    progress.handle(_record("raw__tatqa", event_type="STEP_START"))
    progress.handle(_record("raw__tatqa", event_type="STEP_FAILURE", **vars(_failure("tatqa: no records"))))
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["raw", "raw/finqa", "FAILED", "after", lines[0].split()[-1]]
    assert lines[1].strip() == "ValueError: bad cell"  # the user code's exception, not Dagster's wrapper
    assert [line.strip() for line in lines[2:6]] == [
        "training sft: 2/8 steps (loss=0.5)", "training sft: 4/8 steps (loss=0.25)",
        "training sft: 6/8 steps (loss=0.1667)", "training sft: 8/8 steps (loss=0.125)"]
    assert lines[6].split()[:3] == ["training", "policy", "ok"]
    assert lines[7].split()[:3] == ["other", "raw__tatqa", "FAILED"] and lines[8].strip() == "tatqa: no records"
    assert len(lines) == 9  # quiet: successes are not printed, failures are
    assert [t.status for t in progress.timings] == ["failed", "ok", "failed"]
    assert set(progress.stage_seconds()) == {"raw", "training", "other"}
    assert [t.label for t in progress.failures()] == ["raw/finqa", "raw__tatqa"]


def test_bars_only_on_a_terminal():
    out = io.StringIO()
    terminal = console.Terminal(out, tty=True)
    terminal.bar("k", "oracle", 10, "tasks")
    terminal.update("k", 5, postfix="0 failures")
    terminal.line("a line while a bar runs")
    terminal.close()
    assert "a line while a bar runs" in out.getvalue() and "5/10" in out.getvalue()
    assert terminal.lines == 1
