"""The `policy` asset: a real Dagster materialisation (the main job of the `pipeline` fixture, tiny-test config)
through the local launcher and Dagster Pipes; and the rule that training reads only checked snapshots."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from orchestration.defs.training import ORACLE_CHECK, SNAPSHOT_KEY, TRAINING_CODE_VERSION, checked_snapshot

POLICY = dg.AssetKey("policy")


@pytest.fixture(scope="module")
def policy_materialization(pipeline):
    assert pipeline.result.success and pipeline.training is not None and pipeline.training.success
    events = [e for e in pipeline.training.get_asset_materialization_events() if e.asset_key == POLICY]
    assert len(events) == 1
    return events[0].step_materialization_data.materialization


def test_policy_is_trained_on_the_snapshot_the_same_run_produced(pipeline, policy_materialization, snapshot_dir):
    metadata = policy_materialization.metadata
    artifact = Path(metadata["artifact_path"].value)
    assert artifact.parent == pipeline.runs_root
    lineage = json.loads((artifact / "lineage.json").read_text())
    assert lineage["snapshot_hash"] == metadata["snapshot_hash"].value == snapshot_dir.name
    assert Path(lineage["snapshot_path"]) == snapshot_dir.resolve()
    assert metadata["config_name"].value == "tiny-test" and metadata["config_hash"].value == lineage["config_hash"]
    assert metadata["git_commit"].value == (lineage["git_commit"] or "")
    assert metadata["training_code_version"].value == lineage["code_version"]
    assert "data:image/png;base64," in metadata["training_curve"].value
    assert {"final/grpo/reward", "final/grpo/pass_rate", "final/sft/loss", "final/wall_s"} <= set(metadata)
    assert (artifact / "model" / "model.safetensors").exists()
    # the partition is the arm; the run knows which arm it is, what it used, and registered what to evaluate
    assert metadata["arm"].value == "tiny-test" and lineage["arm"]["name"] == "tiny-test"
    assert lineage["resources"]["cpu_seconds"] > 0 and lineage["resources"]["peak_rss_gb"] > 0
    assert {"tiny-test", "tiny-test-untrained"} <= set(pipeline.instance.get_dynamic_partitions("evaluation_policies"))


def test_policy_has_a_real_code_version_and_no_automation(pipeline):
    from orchestration.definitions import defs
    from rl_assets.training.lineage import training_code_version

    node = defs.resolve_asset_graph().get(POLICY)
    assert node.code_version == TRAINING_CODE_VERSION == training_code_version()
    assert node.automation_condition is None  # training is never started by a data change
    assert node.group_name == "training"
    assert SNAPSHOT_KEY in node.parent_keys


def test_training_progress_arrives_through_pipes_while_the_run_goes(pipeline, policy_materialization):
    artifact = Path(policy_materialization.metadata["artifact_path"].value)
    metrics = [json.loads(line) for line in (artifact / "metrics.jsonl").read_text().splitlines()]
    logs = [e for e in pipeline.instance.all_logs(pipeline.training.run_id)
            if e.user_message.startswith(("[sft ", "[grpo "))]
    arrived = [e.user_message.split("]")[0] + "]" for e in logs]
    assert arrived == [f"[{m['stage']} {m['step']}]" for m in metrics]  # every logging step, in order
    # live, not replayed at the end: the messages are spread over the run like the steps themselves
    event_span = logs[-1].timestamp - logs[0].timestamp
    step_span = metrics[-1]["wall_s"] - metrics[0]["wall_s"]
    assert step_span > 0 and event_span >= 0.5 * step_span


def snapshot_definitions(tmp_path: Path, passed: bool) -> dg.Definitions:
    snapshot = tmp_path / "snap"
    snapshot.mkdir(exist_ok=True)

    @dg.asset(key="environment_snapshot",
              check_specs=[dg.AssetCheckSpec("oracle_pass_rate", asset="environment_snapshot", blocking=True)])
    def environment_snapshot():
        return dg.MaterializeResult(
            metadata={"path": dg.MetadataValue.path(str(snapshot)), "snapshot_hash": "abc"},
            check_results=[dg.AssetCheckResult(check_name="oracle_pass_rate", passed=passed)],
        )

    return dg.Definitions(assets=[environment_snapshot])


def test_training_refuses_a_snapshot_whose_oracle_check_failed(tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    with pytest.raises(dg.Failure, match="no environment_snapshot"):
        checked_snapshot(instance)
    defs = snapshot_definitions(tmp_path, passed=False)
    dg.materialize(defs.assets, instance=instance, raise_on_error=False)
    with pytest.raises(dg.Failure, match="no passing oracle_pass_rate"):
        checked_snapshot(instance)
    dg.materialize(snapshot_definitions(tmp_path, passed=True).assets, instance=instance)
    assert checked_snapshot(instance) == (str(tmp_path / "snap"), "abc")
    assert ORACLE_CHECK.name == "oracle_pass_rate"
