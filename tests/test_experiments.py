"""Experiments as data (rl_assets.experiments): arms, experiment files and their errors, and the comparison written
from an evaluation store (real DuckDB store, episode rows in the store's own shape)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from rl_assets.evaluation.store import EvaluationStore
from rl_assets.experiments import ExperimentError, load_experiment, resolve_arm
from rl_assets.experiments.comparison import TRACE_QUERY, ArmOutcome, compare

REPO = Path(__file__).resolve().parents[1]
TWO_ARMS = """
description: two arms on one base
arms:
  - name: arm-s
    config: smollm2-cpu
  - name: arm-m
    config: smollm2-cpu
    overrides: ["data.question_types=[single_table, multi_table]"]
baseline: arm-s
task_sets: [single_table-synth-test, multi_table-synth-test]
sample_size: 4
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def test_the_shipped_experiments_load_with_their_arms():
    single = load_experiment(REPO / "experiments" / "single-vs-mixed.yaml")
    assert single.arm_names == ["smollm2-cpu", "smollm2-cpu-mixed"] and single.baseline == "smollm2-cpu"
    mixed = single.arm("smollm2-cpu-mixed").train_config()
    assert mixed.data.question_types == ["single_table", "multi_table"]
    assert single.arm("smollm2-cpu").train_config().hash != mixed.hash  # same config, another arm
    assert single.policies == ["smollm2-cpu", "smollm2-cpu-mixed", "smollm2-135m"]  # one shared untrained base
    grpo = load_experiment(REPO / "experiments" / "grpo-vs-sft.yaml")
    assert grpo.arm("smollm2-cpu-sft").train_config().grpo.enabled is False
    assert resolve_arm("smollm2-cpu-mixed").overrides == single.arm("smollm2-cpu-mixed").overrides
    assert resolve_arm("tiny-test").untrained == "tiny-test-untrained"  # a config is an arm of its own name


@pytest.mark.parametrize("text,message", [
    (TWO_ARMS.replace("config: smollm2-cpu\n  - name: arm-m", "config: no-such-config\n  - name: arm-m"),
     r"arms\[0\]: arm arm-s: config is required|no training config"),
    (TWO_ARMS.replace("data.question_types", "data.no_such_key"), r"arms\[1\]: arm arm-m:.*unknown key"),
    (TWO_ARMS.replace("multi_table-synth-test]", "multi_table-synth-best]"), r"task_sets: unknown task set"),
    (TWO_ARMS.replace("name: arm-m", "name: arm-s"), r"two arms are named 'arm-s'"),
    (TWO_ARMS.replace("baseline: arm-s", "baseline: arm-x"), r"baseline 'arm-x' is not one of the arms"),
    (TWO_ARMS + "sample_size: 8\n", r"key 'sample_size' appears twice"),
    (TWO_ARMS + "budget: 3\n", r"unknown key\(s\) budget"),
])
def test_bad_experiment_files_are_errors_naming_the_file_and_the_reason(tmp_path, text, message):
    path = write(tmp_path, "bad", text)
    with pytest.raises(ExperimentError, match=message) as error:
        load_experiment(path)
    assert str(path) in str(error.value)


def test_an_arm_name_means_one_thing_everywhere(tmp_path, monkeypatch):
    write(tmp_path, "one", TWO_ARMS)
    write(tmp_path, "two", TWO_ARMS.replace("single_table, multi_table", "multi_table"))
    monkeypatch.setenv("FINQA_RL_EXPERIMENTS_DIR", str(tmp_path))
    with pytest.raises(ExperimentError, match="arm arm-m is defined differently"):
        resolve_arm("arm-m")
    (tmp_path / "two.yaml").unlink()
    assert resolve_arm("arm-m").defined_in == str(tmp_path / "one.yaml")
    with pytest.raises(ExperimentError, match="unknown arm 'nope'"):
        resolve_arm("nope")


def _episode(task_id: str, correct: bool, world: str = "acme", inspected: bool = True) -> dict:
    return {"sample": 0, "task_id": task_id, "world_id": world, "correct": correct, "answered": True,
            "stop_reason": "submitted", "n_tool_calls": 3, "errors": 0, "hallucinated_identifiers": 0,
            "inspected_schema_before_query": inspected, "recovered_after_error": None, "turns": 3,
            "well_formed_turns": 3, "tool_calls": [{"tool": "get_descriptions", "arguments": {"company_name": world}}]}


def _evaluate(store: EvaluationStore, policy: str, task_set: str, correct: list[bool]) -> str:
    evaluation_id = f"{policy}-{task_set}"
    run = {"evaluation_id": evaluation_id, "created_at": datetime.now(timezone.utc), "policy": policy,
           "policy_spec": policy, "policy_version": f"hf@{policy}", "task_set": task_set, "task_set_version": "v1",
           "snapshot_hash": "snap", "snapshot_path": "/snap", "git_commit": None, "config": {}, "code_version": "code",
           "config_hash": "cfg", "base_model": "smollm2-135m",
           "base_model_hash": "basehash"}
    store.append_evaluation(run, [_episode(f"t{i}", c) for i, c in enumerate(correct)])
    return evaluation_id


def test_the_comparison_pairs_arms_over_the_same_tasks_and_keeps_a_failed_arm(tmp_path):
    experiment = load_experiment(write(tmp_path, "two-arms", TWO_ARMS))
    store = EvaluationStore(tmp_path / "evaluations.duckdb")
    synth, multi = experiment.task_sets
    evaluations = {
        ("arm-s", synth): _evaluate(store, "arm-s", synth, [True, False, False, False]),
        ("arm-s", multi): _evaluate(store, "arm-s", multi, [False, False, False, False]),
        ("smollm2-135m", synth): _evaluate(store, "smollm2-135m", synth, [False] * 4),
        ("smollm2-135m", multi): None,
        ("arm-m", synth): None, ("arm-m", multi): None,
    }
    lineage = {"config_hash": "c0ffee", "code_version": "train1", "base_model_record": {
        "name": "smollm2-135m", "model_hash": "basehash"}, "resources": {"device": "cpu (2 cores)", "cpu_seconds": 600.0, "wall_s": 330.0}}
    outcomes = {"arm-s": ArmOutcome("arm-s", "trained", run_dir="/runs/s", lineage=lineage),
                "arm-m": ArmOutcome("arm-m", "failed", "config smollm2-cpu does not fit in memory")}
    comparison = compare(experiment, store, outcomes, evaluations, resamples=200)
    rows = {(r["arm"], r["task_set"]): r for r in comparison.rows}
    assert rows[("arm-s", synth)]["pass@1"] == 0.25 and rows[("arm-s", synth)]["status"] == "ok"
    low, high = rows[("arm-s", synth)]["pass@1_ci"]
    assert 0.0 <= low <= 0.25 <= high <= 1.0
    assert rows[("arm-m", synth)]["status"] == "training failed" and "does not fit" in rows[("arm-m", synth)]["detail"]
    assert rows[("arm-s", synth)].get("delta") is None  # the baseline has no delta against itself
    assert rows[("smollm2-135m (untrained)", multi)]["status"] == "not evaluated"
    assert rows[("arm-s", synth)]["company_used"] == 1.0 and rows[("arm-s", synth)]["table_inspected_first"] == 1.0
    assert comparison.arms["arm-s"]["cost"]["cpu_minutes"] == 10.0
    assert comparison.arms["arm-m"]["status"] == "failed"

    markdown = comparison.write(tmp_path / "report")
    text = markdown.read_text()
    assert "training failed: config smollm2-cpu does not fit in memory" in text and "25.0% [" in text
    assert (tmp_path / "report" / "pass_at_1.png").is_file() and (tmp_path / "report" / "comparison.json").is_file()
    assert json.loads((tmp_path / "report" / "comparison.json").read_text())["experiment"]["name"] == "two-arms"

    store.append_comparison(comparison.store_rows())
    traced = store.query(TRACE_QUERY, [comparison.comparison_id])
    cell = next(r for r in traced if r["arm"] == "arm-s" and r["task_set"] == synth and r["metric"] == "pass@1")
    assert cell["value"] == 0.25 and cell["training_config_hash"] == "c0ffee" and cell["base_model_hash"] == "basehash"
    assert cell["snapshot_hash"] == "snap" and cell["policy_version"] == "hf@arm-s"


def test_a_paired_delta_uses_only_the_tasks_both_arms_played(tmp_path):
    text = TWO_ARMS.replace("name: arm-m\n    config: smollm2-cpu", "name: arm-m\n    config: smollm2-cpu")
    experiment = load_experiment(write(tmp_path, "paired", text))
    store = EvaluationStore(tmp_path / "evaluations.duckdb")
    synth = experiment.task_sets[0]
    evaluations = {("arm-s", synth): _evaluate(store, "arm-s", synth, [False, False, True]),
                   ("arm-m", synth): _evaluate(store, "arm-m", synth, [True, True, True, True])}
    trained = {a: ArmOutcome(a, "trained") for a in ("arm-s", "arm-m")}
    comparison = compare(experiment, store, trained, evaluations, resamples=200)
    row = next(r for r in comparison.rows if r["arm"] == "arm-m" and r["task_set"] == synth)
    assert row["delta_tasks"] == 3 and abs(row["delta"] - 2 / 3) < 1e-9  # t3 only arm-m played
    assert row["delta_ci"][0] <= row["delta"] <= row["delta_ci"][1]
