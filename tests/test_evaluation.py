"""Evaluation core: task sets, pass@k and intervals, the append-only store, lineage on every row, the
oracle through the evaluation code, summaries with baseline deltas, the report, and the CLI."""

from __future__ import annotations

import json
import math
from itertools import combinations

import duckdb
import numpy as np
import pytest

from rl_assets.evaluation import metrics
from rl_assets.evaluation.report import build_report
from rl_assets.evaluation.runner import (EvaluationConfig, evaluation_code_version, headline, run_evaluation,
                                         summarise_evaluation)
from rl_assets.evaluation.store import EvaluationStore
from rl_assets.evaluation.task_sets import (TASK_SETS, TEST_TASK_SETS, TaskSetError, load_task_set, parse_task_set,
                                            sample_tasks, task_set_version)
from rl_assets.policies import load_policy
from rl_assets.snapshot import read_tasks

SYNTH = "single_table-synth-test"


@pytest.fixture
def store(tmp_path):
    return EvaluationStore(tmp_path / "evaluations.duckdb")


# ------------------------------------------------------------------ task sets
def test_task_sets_partition_the_evaluation_tasks_by_question_type_origin_and_split(snapshot_dir):
    val_test = [t for t in read_tasks(snapshot_dir) if t["split"] in ("val", "test")]
    seen = {}
    for name in TASK_SETS:
        spec = parse_task_set(name)
        for task in load_task_set(snapshot_dir, name):
            assert (task["question_type"], task["split"]) == (spec.question_type, spec.split)
            assert task["source"] in spec.sources
            assert task["task_id"] not in seen
            seen[task["task_id"]] = name
    assert set(seen) == {t["task_id"] for t in val_test}
    assert load_task_set(snapshot_dir, "multi_table-real-test") == []  # no multi-table real questions today


@pytest.mark.parametrize("name", ["single_table", "single_table-synth", "single_table-synth-train", "triple-real-test", ""])
def test_an_unknown_task_set_is_a_clear_error(name):
    with pytest.raises(TaskSetError, match="unknown task set .*expected <single_table\\|multi_table>"):
        parse_task_set(name)


def test_a_directory_that_is_not_a_snapshot_is_a_clear_error(tmp_path):
    with pytest.raises(TaskSetError, match="not an environment snapshot"):
        load_task_set(tmp_path, SYNTH)
    with pytest.raises(TaskSetError, match="does not exist"):
        load_task_set(tmp_path / "missing", SYNTH)


def test_sampling_is_seeded_and_task_set_versions_follow_the_content(snapshot_dir):
    tasks = load_task_set(snapshot_dir, SYNTH)
    first = sample_tasks(tasks, 10, seed=0)
    assert first == sample_tasks(tasks, 10, seed=0) and len(first) == 10
    assert first != sample_tasks(tasks, 10, seed=1)
    assert sample_tasks(tasks, None) == tasks and sample_tasks(tasks, 10**6) == tasks
    version = task_set_version(snapshot_dir, tasks)
    assert version == task_set_version(snapshot_dir, list(reversed(tasks)))
    changed = [dict(tasks[0], gold_value=tasks[0]["gold_value"] + 1)] + tasks[1:]
    assert task_set_version(snapshot_dir, changed) != version
    assert task_set_version(snapshot_dir, tasks[1:]) != version


# ------------------------------------------------------------------ metrics
def _brute_force_pass_at_k(n: int, c: int, k: int) -> float:
    outcomes = [True] * c + [False] * (n - c)
    draws = list(combinations(range(n), k))
    return sum(any(outcomes[i] for i in d) for d in draws) / len(draws)


@pytest.mark.parametrize("n,c,k", [(1, 0, 1), (1, 1, 1), (5, 2, 1), (5, 2, 3), (6, 1, 6), (8, 3, 4), (4, 0, 2)])
def test_pass_at_k_is_the_unbiased_estimator(n, c, k):
    assert metrics.pass_at_k(n, c, k) == pytest.approx(_brute_force_pass_at_k(n, c, k))


def test_pass_at_k_refuses_k_above_n():
    with pytest.raises(ValueError):
        metrics.pass_at_k(2, 1, 3)


def _row(task_id, correct, **fields):
    return {"task_id": task_id, "correct": correct, "answered": True, "stop_reason": "submitted",
            "analytic_type": fields.pop("analytic_type", "ratio"), "source": "sec10k", **fields}


def test_summary_bootstraps_over_tasks_and_reports_pass_at_k_for_every_k_up_to_n():
    # 20 tasks x 3 samples; task i correct in (i % 4 > 0) of its samples... deterministic pattern
    rows = [_row(f"t{i}", s < (i % 4), analytic_type="ratio" if i < 10 else "lookup") for i in range(20) for s in range(3)]
    summary = metrics.summarise(rows)
    by = {(r["group_kind"], r["group_value"], r["metric"]): r for r in summary}
    p1 = by[("all", "all", "pass@1")]
    expected = np.mean([min(i % 4, 3) / 3 for i in range(20)])
    assert p1["value"] == pytest.approx(expected)
    assert p1["ci_low"] < p1["value"] < p1["ci_high"] and p1["n_tasks"] == 20 and p1["n_episodes"] == 60
    assert {m for (_, _, m) in by if m.startswith("pass@")} == {"pass@1", "pass@2", "pass@3"}
    assert by[("all", "all", "pass@3")]["value"] == pytest.approx(15 / 20)  # tasks with at least one success
    assert by[("analytic_type", "lookup", "pass@1")]["n_tasks"] == 10
    assert metrics.summarise(rows) == summary  # seeded


def test_failure_modes_of_an_episode():
    modes = metrics.failure_modes({"inspected_schema_before_query": False, "hallucinated_identifiers": 2, "errors": 1,
                                   "recovered_after_error": False, "answered": False, "correct": False})
    assert modes == {"no_schema_inspected": True, "hallucinated_identifier": True, "gave_up_after_error": True,
                     "no_answer": True, "wrong_answer": False}
    clean = metrics.failure_modes({"inspected_schema_before_query": True, "hallucinated_identifiers": 0, "errors": 1,
                                   "recovered_after_error": True, "answered": True, "correct": False})
    assert clean == {"no_schema_inspected": False, "hallucinated_identifier": False, "gave_up_after_error": False,
                     "no_answer": False, "wrong_answer": True}


def test_deltas_are_paired_over_the_tasks_both_policies_played():
    rows = [_row(f"t{i}", True) for i in range(10)]
    baseline = [_row(f"t{i}", i < 4) for i in range(12)]  # two extra tasks the policy did not play
    p1 = next(r for r in metrics.summarise(rows, baseline) if r["metric"] == "pass@1" and r["group_kind"] == "all")
    assert p1["delta"] == pytest.approx(0.6)
    assert p1["delta_ci_low"] <= 0.6 <= p1["delta_ci_high"]


# ------------------------------------------------------------------ runner and store
def test_the_oracle_scores_at_least_98_percent_on_every_test_set_through_the_evaluation_code(snapshot_dir, store):
    oracle = load_policy("oracle")
    for task_set in TEST_TASK_SETS:
        result = run_evaluation(oracle, task_set, snapshot_dir, EvaluationConfig(), store)
        expected = len(load_task_set(snapshot_dir, task_set))
        assert result.run["n_tasks"] == expected
        if expected:
            assert result.pass_at_1 >= 0.98, task_set
        else:
            assert result.pass_at_1 is None and result.episodes == []


def test_every_episode_row_carries_its_lineage_and_every_rubric_field(snapshot_dir, store):
    result = run_evaluation(load_policy("oracle"), SYNTH, snapshot_dir, EvaluationConfig(sample_size=5), store)
    manifest = json.loads((snapshot_dir / "manifest.json").read_text())
    rows = store.query("SELECT * FROM episodes WHERE evaluation_id = ?", [result.evaluation_id])
    assert len(rows) == 5
    for row in rows:
        assert row["snapshot_hash"] == manifest["snapshot_hash"]
        assert row["policy_version"].startswith("oracle@") and row["code_version"] == evaluation_code_version()
        assert row["config_hash"] == EvaluationConfig(sample_size=5).config_hash
        assert row["task_set_version"] == task_set_version(snapshot_dir, load_task_set(snapshot_dir, SYNTH))
        assert row["split"] == "test" and row["question_type"] == "single_table" and row["analytic_type"]
        assert row["correct"] is True and row["stop_reason"] == "submitted" and row["answer"]
        assert row["n_tool_calls"] == len(row["tool_calls"]) > 0
        assert row["inspected_schema_before_query"] is True and row["errors"] == 0
        assert isinstance(row["calls_by_tool"], dict) and row["latency_s"] > 0


def test_rerunning_appends_a_new_version_and_keeps_the_old_rows(snapshot_dir, store):
    config = EvaluationConfig(sample_size=3)
    first = run_evaluation(load_policy("oracle"), SYNTH, snapshot_dir, config, store)
    second = run_evaluation(load_policy("oracle"), SYNTH, snapshot_dir, config, store)
    assert (first.version, second.version) == (1, 2)
    versions = store.query("SELECT version, count(*) AS n FROM episodes GROUP BY version ORDER BY version")
    assert versions == [{"version": 1, "n": 3}, {"version": 2, "n": 3}]
    assert store.latest_evaluation("oracle", SYNTH)["evaluation_id"] == second.evaluation_id
    assert store.evaluation(first.evaluation_id)["version"] == 1


def test_a_second_process_waits_for_the_writer_instead_of_failing(snapshot_dir, store, tmp_path):
    import subprocess
    import sys

    with store.connect():  # this process holds the file
        code = ("from rl_assets.evaluation.store import EvaluationStore; "
                f"print(len(EvaluationStore({str(store.path)!r}, lock_timeout_s=0.5).query('SELECT 1')))")
        refused = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert refused.returncode != 0 and "lock" in refused.stderr.lower()
    waited = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert waited.returncode == 0 and waited.stdout.strip() == "1"


def test_summary_with_a_baseline_and_the_report(snapshot_dir, store, tmp_path):
    config = EvaluationConfig(sample_size=12)
    oracle = run_evaluation(load_policy("oracle"), SYNTH, snapshot_dir, config, store)
    empty = run_evaluation(load_policy("oracle"), "multi_table-real-test", snapshot_dir, config, store)
    # a second "policy" on the same tasks: the oracle under another name, as a baseline
    other = load_policy("oracle")
    other.name = "oracle-copy"
    run_evaluation(other, SYNTH, snapshot_dir, config, store)
    summary = summarise_evaluation(store, oracle.evaluation_id, baseline="oracle-copy", resamples=200)
    top = headline(summary)
    assert top["value"] == 1.0 and top["baseline_policy"] == "oracle-copy" and top["delta"] == 0.0
    assert all(r["snapshot_hash"] == oracle.run["snapshot_hash"] for r in summary)
    assert headline(summarise_evaluation(store, empty.evaluation_id))["value"] is None

    report = build_report(snapshot_dir, "oracle", store, tmp_path / "reports", baseline="oracle-copy")
    assert report.directory.name == f"{oracle.run['snapshot_hash']}-oracle"
    assert {p.name for p in report.images} == {"pass_at_1.png", "failure_modes.png"}
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in report.images)
    text = report.path.read_text()
    assert oracle.evaluation_id in text and empty.evaluation_id in text and "oracle-copy" in text
    assert "(empty task set)" in text and "FROM episodes WHERE evaluation_id IN" in text
    assert "| base model | none |" in text  # the oracle sits on no base model
    assert report.pass_at_1 == {SYNTH: 1.0, "multi_table-real-test": None}
    assert "data:image/png;base64," in report.markdown_with_embedded_images()
    # the query in the report traces the numbers
    sql = text.split("```sql\n")[1].split("```")[0]
    with duckdb.connect(str(store.path), read_only=True) as con:
        traced = con.execute(sql).fetchall()
    assert [(r[0], r[1], r[7]) for r in traced] == [(SYNTH, oracle.run["snapshot_hash"], 1.0)]


def test_a_report_for_a_policy_without_evaluations_is_a_clear_error(snapshot_dir, store, tmp_path):
    with pytest.raises(LookupError, match="no evaluation on snapshot"):
        build_report(snapshot_dir, "tiny-local", store, tmp_path)


# ------------------------------------------------------------------ CLI
def test_cli_eval_and_report(snapshot_dir, tmp_path, capsys, monkeypatch):
    from rl_assets.cli import main

    monkeypatch.setenv("FINQA_RL_REPORTS_DIR", str(tmp_path / "reports"))
    db = tmp_path / "cli.duckdb"
    code = main(["eval", "--policy", "oracle", "--tasks", "test", "--snapshot", str(snapshot_dir), "--limit", "8",
                 "--out", str(db), "--no-progress", "--report"])
    out = capsys.readouterr().out
    assert code == 0
    for task_set in TEST_TASK_SETS:
        assert task_set in out
    assert "multi_table-real-test: pass@1 n/a (empty task set)" in out
    assert "single_table-synth-test: pass@1 100.0%" in out
    assert (tmp_path / "reports").glob("*-oracle/report.md")
    rows = EvaluationStore(db).query("SELECT task_set, count(*) AS n FROM episodes GROUP BY ALL ORDER BY 1")
    assert all(r["n"] == 8 for r in rows) and len(rows) == 3
    assert main(["report", "--policy", "oracle", "--snapshot", str(snapshot_dir), "--db", str(db)]) == 0
    assert "report:" in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["eval", "--policy", "gpt", "--tasks", SYNTH], "unknown policy 'gpt'"),
    (["eval", "--policy", "oracle", "--tasks", "single_table-synthetic-test"], "unknown task set"),
    (["eval", "--policy", "hf:/no/such/model", "--tasks", SYNTH], "no model at /no/such/model"),
    (["eval", "--policy", "router:oracle", "--tasks", SYNTH], "router policy needs two policies"),
    (["report", "--policy", "oracle"], "no evaluation on snapshot"),
])
def test_cli_errors_are_clear(argv, message, snapshot_dir, tmp_path, capsys):
    from rl_assets.cli import main

    flag = "--out" if argv[0] == "eval" else "--db"
    code = main(argv + ["--snapshot", str(snapshot_dir), flag, str(tmp_path / "x.duckdb")])
    assert code == 2
    assert message in capsys.readouterr().err


def test_cli_refuses_a_directory_that_is_not_a_snapshot(tmp_path, capsys):
    from rl_assets.cli import main

    assert main(["eval", "--policy", "oracle", "--tasks", SYNTH, "--snapshot", str(tmp_path)]) == 2
    assert "not an environment snapshot" in capsys.readouterr().err


def test_a_store_from_before_a_new_column_gains_it_and_keeps_its_rows(tmp_path):
    path = tmp_path / "old.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE evaluations (evaluation_id VARCHAR, version INTEGER, policy VARCHAR, task_set VARCHAR)")
        con.execute("INSERT INTO evaluations VALUES ('e0', 1, 'oracle', 'single_table-synth-test')")
    store = EvaluationStore(path)
    assert store.latest_evaluation("oracle", SYNTH)["config_hash"] is None
    assert {r["name"] for r in store.query("SELECT column_name AS name FROM duckdb_columns() WHERE table_name = 'episodes'")} \
        >= {"snapshot_hash", "policy_version", "code_version", "config_hash", "n_tool_calls", "tool_calls"}


def test_an_unpublished_snapshot_is_refused_with_the_reason(snapshot_dir, tmp_path):
    import shutil

    copy = tmp_path / snapshot_dir.name
    shutil.copytree(snapshot_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps({k: v for k, v in manifest.items() if k != "published_at"}))
    with pytest.raises(TaskSetError, match="never published.*published snapshots only"):
        load_task_set(copy, SYNTH)
