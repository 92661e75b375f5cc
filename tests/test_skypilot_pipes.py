"""Dagster Pipes end to end through a bucket, as on a rented GPU.

Real: the S3 API (moto in server mode, a separate process on loopback), the Dagster run (the SkyPilot
launcher inside a real asset materialisation), and the "remote" training process (a separate process that
gets only the task's envs — the Pipes bootstrap variables and the bucket — and talks to Dagster through
the bucket alone). Faked: SkyPilot's API server and the cloud machine (tests/fake_sky.py): it emulates the
task's bucket mounts and preempts the first attempt of the managed job, which then resumes.

The preempted-and-resumed run uses the stand-in tests/remote_training_standin.py (same command line, same
Pipes reporting, same resume contract as the training entry point, but it dies at an exact step on cue);
the real entry point, started by infra/sky/train.yaml's own run script, goes the same way without a
preemption (its own resume after a kill is tested in tests/test_training_entry_point.py).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import dagster as dg
import pytest

import fake_sky
from orchestration.launchers.skypilot import REPO_ROOT, SkyPilotLauncher
from skypilot_support import log_messages, make_snapshot, materialization, materialize, training_launch

STANDIN_COMMAND = [
    sys.executable, "tests/remote_training_standin.py",
    "--config", "tiny-test", "--snapshot", "{snapshot}", "--output", "{output}", "{train_args}",
]  # fmt: skip


@pytest.mark.parametrize("remote_command", [STANDIN_COMMAND], ids=["standin"])
def test_metrics_and_materialisation_of_a_preempted_and_resumed_remote_run_arrive_through_the_bucket(
    remote_command, s3_server, s3_bucket, tmp_path
):
    client = s3_server.client()
    snapshot, snapshot_hash = make_snapshot(tmp_path / "snapshots")
    machine_env = fake_sky.minimal_env(
        HOME=str(tmp_path / "home"), AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )  # fmt: skip
    cloud = fake_sky.install(
        fake_sky.FakeCloud(
            client,
            tmp_path / "cloud",
            fake_sky.subprocess_attempt(remote_command, machine_env, cwd=REPO_ROOT),
            preemptions=1,
            preempt_after_step=1,
        )
    )
    launcher = SkyPilotLauncher(
        bucket=s3_bucket,
        endpoint_url=s3_server.endpoint_url,
        sdk_module="fake_sky",
        managed_job=True,
        pipes_interval_s=0,
        job_poll_interval_s=0,
        catalog_dir=str(tmp_path / "no-catalog"),
    )
    launch = training_launch(tmp_path, snapshot, snapshot_hash, run_id="pipes-e2e", **{"grpo.max_steps": 4})
    instance = dg.DagsterInstance.ephemeral()

    result = materialize(launcher, launch, instance)

    assert result.success, [e.message for e in result.all_events if e.is_failure]
    # The remote process was given the run's envs and the Pipes bootstrap variables, nothing else of ours.
    (task,) = cloud.submitted_tasks
    assert {"DAGSTER_PIPES_CONTEXT", "DAGSTER_PIPES_MESSAGES", "FINQA_RL_BUCKET", "FINQA_RL_RUN_ID"} <= set(task.envs)

    # Its log lines arrived in the Dagster run, in order, across the preemption: one start line per
    # machine, steps 0-1 from the first machine, 2-3 from the one that resumed.
    logs = log_messages(instance, result)
    assert sum(f"training tiny-test on snapshot {snapshot_hash}" in line for line in logs) == 2
    assert [line.split(":")[0] for line in logs if line.startswith("step ")] == ["step 0", "step 1", "step 2", "step 3"]

    # Its one materialisation arrived, with the launcher's recovery count and compute record added.
    event = materialization(result)
    assert event.metadata["steps"].value == 4
    assert event.metadata["resumed_from_step"].value == 2
    assert event.metadata["snapshot_hash"].value == snapshot_hash
    assert event.metadata["skypilot/recovery_count"].value == 1
    assert event.metadata["compute"].value["recovery_count"] == 1
    # ... and its step metrics (custom messages) of both machines.
    assert event.metadata["remote/custom_messages"].value == 4
    assert event.metadata["remote/last_custom_message"].value == {
        "kind": "training_step",
        "step": 3,
        "loss": 0.25,
        "reward": 0.6,
    }

    # The outputs came back from the bucket (checkpoints stay there), lineage.json with `compute`.
    out = Path(launch.output_dir)
    lineage = json.loads((out / "lineage.json").read_text())
    assert lineage["snapshot_hash"] == snapshot_hash
    assert lineage["config_overrides"] == ["grpo.max_steps=4"]
    assert lineage["compute"]["accelerator"] == "H100" and lineage["compute"]["recovery_count"] == 1
    assert [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()] == [0, 1, 2, 3]
    assert (out / "model" / "prompt.json").is_file()
    assert not (out / "checkpoints").exists()
    assert client.head_object(Bucket=s3_bucket, Key="runs/pipes-e2e/checkpoints/last.json")


def test_the_training_entry_point_reports_through_the_bucket_and_its_artifact_comes_back(
    snapshot_dir, s3_server, s3_bucket, tmp_path
):
    from rl_assets.snapshot import read_manifest

    client = s3_server.client()
    snapshot_hash = read_manifest(snapshot_dir)["snapshot_hash"]
    machine_env = fake_sky.minimal_env(
        HOME=str(tmp_path / "home"), AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )  # fmt: skip
    run_line = fake_sky.run_line_attempt(REPO_ROOT / "infra" / "sky" / "train.yaml", machine_env, cwd=REPO_ROOT)
    fake_sky.install(fake_sky.FakeCloud(client, tmp_path / "cloud", run_line, preemptions=0))
    launcher = SkyPilotLauncher(
        bucket=s3_bucket, endpoint_url=s3_server.endpoint_url, sdk_module="fake_sky", managed_job=True,
        pipes_interval_s=0, job_poll_interval_s=0, catalog_dir=str(tmp_path / "no-catalog"),
    )  # fmt: skip
    launch = training_launch(tmp_path, snapshot_dir, snapshot_hash, run_id="entry-point-e2e", **{"grpo.max_steps": 2})
    instance = dg.DagsterInstance.ephemeral()

    result = materialize(launcher, launch, instance)

    assert result.success, [e.message for e in result.all_events if e.is_failure]
    out = Path(launch.output_dir)
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if m["stage"] == "grpo"] == [1, 2]
    # every logging step's line reached the Dagster run through the bucket, and its custom message
    logs = log_messages(instance, result)
    assert [line.split("]")[0] + "]" for line in logs if re.match(r"\[(sft|grpo) \d+\]", line)] == [
        f"[{m['stage']} {m['step']}]" for m in metrics
    ]
    event = materialization(result)
    assert event.metadata["remote/custom_messages"].value == len(metrics)
    assert event.metadata["remote/last_custom_message"].value["step"] == 2
    assert event.metadata["snapshot_hash"].value == snapshot_hash
    assert event.metadata["final/grpo/steps"].value == 2
    lineage = json.loads((out / "lineage.json").read_text())
    assert lineage["snapshot_hash"] == snapshot_hash and lineage["compute"]["recovery_count"] == 0
    assert (out / "model" / "prompt.json").is_file() and (out / "model" / "config.json").is_file()
