"""The SkyPilot launcher against a fake SkyPilot SDK (tests/fake_sky.py: the 0.14 client's function names
and return shapes) and a real S3 API (moto server): the task it submits, the teardown on success, failure
and cancellation, the recovery count, the outputs and the compute record it leaves behind."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import dagster as dg
import pytest
from dagster_pipes import PIPES_PROTOCOL_VERSION, PIPES_PROTOCOL_VERSION_FIELD, decode_param

import fake_sky
from orchestration.launchers.bucket import upload_snapshot
from orchestration.launchers.skypilot import (
    DEFAULT_GPU_HOURLY_USD,
    REPO_ROOT,
    SkyPilotLauncher,
    remote_config,
    skypilot_name,
    train_args,
)
from rl_assets.pipes import existing_chunk_count
from skypilot_support import make_snapshot, materialization, materialize, training_launch

# Rows in the format of SkyPilot's catalog (catalogs/v8/aws/vms.csv).
CATALOG_HEADER = "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,Price,Region,GpuInfo,SpotPrice"
CATALOG_ROWS = [
    "p5.4xlarge,H100,1.0,16.0,256.0,6.88,us-east-1,,2.75",
    "p5.4xlarge,H100,1.0,16.0,256.0,6.10,us-west-2,,1.90",
    "p5.48xlarge,H100,8.0,192.0,2048.0,55.04,us-east-1,,22.00",
]


class Remote:
    """An in-process attempt of the job: writes what the training entry point writes, returns its exit code.

    It opens and (unless preempted) closes its Pipes session through the bucket, as the entry point does,
    so the Dagster side need not wait out its grace period for a process that never spoke.
    """

    def __init__(self, s3, exit_code: int = 0):
        self.s3 = s3
        self.exit_code = exit_code
        self.attempts: list[fake_sky.Machine] = []

    def __call__(self, machine: fake_sky.Machine) -> int:
        self.attempts.append(machine)
        self.pipes(machine, "opened", *(["closed"] if machine.preempt_after_step is None else []))
        out = machine.output_dir()
        (out / "model").mkdir(parents=True, exist_ok=True)
        (out / "checkpoints").mkdir(exist_ok=True)
        (out / "model" / "config.json").write_text("{}")
        (out / "checkpoints" / f"step-{machine.attempt}.json").write_text("{}")
        (out / "lineage.json").write_text(json.dumps({"snapshot_hash": machine.envs["FINQA_RL_SNAPSHOT_HASH"]}))
        machine.output_lines.append(f"attempt {machine.attempt} done")
        return self.exit_code

    def pipes(self, machine: fake_sky.Machine, *methods: str) -> None:
        params = decode_param(machine.envs["DAGSTER_PIPES_MESSAGES"])
        bucket, prefix = params["bucket"], params["key_prefix"]
        chunk = "\n".join(
            json.dumps({PIPES_PROTOCOL_VERSION_FIELD: PIPES_PROTOCOL_VERSION, "method": m, "params": {}})
            for m in methods
        )
        key = f"{prefix}/{existing_chunk_count(self.s3, bucket, prefix) + 1}.json"
        self.s3.put_object(Bucket=bucket, Key=key, Body=chunk.encode())


@pytest.fixture
def snapshot(tmp_path):
    return make_snapshot(tmp_path / "snapshots")


def launcher_for(s3_server, bucket: str, tmp_path: Path, **config) -> SkyPilotLauncher:
    return SkyPilotLauncher(
        bucket=bucket,
        endpoint_url=s3_server.endpoint_url,
        sdk_module="fake_sky",
        pipes_interval_s=0,
        job_poll_interval_s=0,
        **{"catalog_dir": str(tmp_path / "no-catalog"), **config},
    )


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    (event,) = [e for e in result.all_events if e.is_step_failure]
    return event.step_failure_data.error.message


def test_cluster_run_submits_the_train_task_tears_down_and_records_compute(s3_server, s3_bucket, tmp_path, snapshot):
    client = s3_server.client()
    remote = Remote(client)
    cloud = fake_sky.install(fake_sky.FakeCloud(client, tmp_path / "cloud", remote))
    launch = training_launch(tmp_path, *snapshot, **{"grpo.max_steps": 2})

    result = materialize(launcher_for(s3_server, s3_bucket, tmp_path, managed_job=False), launch)

    assert result.success
    name = skypilot_name(launch.run_id)
    # What was submitted: the train task with the run's envs, its mounts filled in, the repository as workdir.
    (launch_call,) = cloud.calls_named("launch")
    assert launch_call["cluster_name"] == name and launch_call["down"] is True
    (task,) = cloud.submitted_tasks
    assert task.name == "finqa-train" and task.workdir == str(REPO_ROOT)
    assert task.envs["FINQA_RL_RUN_ID"] == "run-1" and task.envs["FINQA_RL_CONFIG"] == "tiny-test"
    assert task.envs["FINQA_RL_SNAPSHOT_HASH"] == snapshot[1] and task.envs["FINQA_RL_BUCKET"] == s3_bucket
    assert shlex.split(task.envs["FINQA_RL_TRAIN_ARGS"]) == ["--set", "grpo.max_steps=2"]
    assert task.envs["AWS_ENDPOINT_URL_S3"] == s3_server.endpoint_url
    assert {"DAGSTER_PIPES_CONTEXT", "DAGSTER_PIPES_MESSAGES"} <= set(task.envs)
    assert {p: s.source for p, s in task.storage_mounts.items()} == {
        "/finqa/snapshot": f"s3://{s3_bucket}/snapshots/{snapshot[1]}",
        "/finqa/bucket": f"s3://{s3_bucket}",
    }
    # The machine found the snapshot in the bucket (uploaded by the launcher).
    (machine,) = remote.attempts
    assert json.loads((machine.mounts["/finqa/snapshot"] / "manifest.json").read_text())["snapshot_hash"] == snapshot[1]
    # Torn down after the job, once.
    assert [call for call, _ in cloud.calls if call in ("launch", "down")] == ["launch", "down"]
    assert cloud.calls_named("down")[0]["cluster_name"] == name
    # Outputs pulled back without checkpoints; lineage.json got `compute`, here and in the bucket.
    out = Path(launch.output_dir)
    assert (out / "model" / "config.json").is_file() and not (out / "checkpoints").exists()
    compute = json.loads((out / "lineage.json").read_text())["compute"]
    assert (compute["accelerator"], compute["count"], compute["cloud"], compute["region"]) == (
        "H100",
        1,
        "aws",
        "us-east-1",
    )
    assert compute["mode"] == "cluster" and compute["cluster_name"] == name and compute["use_spot"] is False
    assert compute["billed_seconds"] == compute["wall_seconds"] > 0
    assert compute["gpu_minutes"] == pytest.approx(compute["billed_seconds"] / 60, abs=1e-3)
    assert compute["hourly_usd"] == DEFAULT_GPU_HOURLY_USD["H100"] and compute["price_source"].startswith("configured")
    assert compute["estimated_usd"] == pytest.approx(compute["billed_seconds"] / 3600 * compute["hourly_usd"], abs=1e-3)
    in_bucket = json.loads(client.get_object(Bucket=s3_bucket, Key="runs/run-1/lineage.json")["Body"].read())
    assert in_bucket["compute"] == compute
    # ... and the asset's metadata.
    metadata = materialization(result).metadata
    assert metadata["compute"].value == compute
    assert metadata["compute/accelerator"].value == "H100" and metadata["skypilot/cluster_name"].value == name
    assert metadata["skypilot/recovery_count"].value == 0


def test_cluster_is_torn_down_when_the_job_fails(s3_server, s3_bucket, tmp_path, snapshot):
    client = s3_server.client()
    cloud = fake_sky.install(fake_sky.FakeCloud(client, tmp_path / "cloud", Remote(client, exit_code=1)))
    launch = training_launch(tmp_path, *snapshot)

    result = materialize(launcher_for(s3_server, s3_bucket, tmp_path, managed_job=False), launch)

    assert not result.success
    assert "ended with exit code 100" in failure_message(result)
    assert [call for call, _ in cloud.calls if call in ("launch", "down")] == ["launch", "down"]
    assert not Path(launch.output_dir).exists()


@pytest.fixture
def no_pipes_grace_period(monkeypatch):
    """A terminated run's remote process never spoke: don't wait Dagster's grace period for its messages."""
    import dagster._core.pipes.utils as pipes_utils

    monkeypatch.setattr(pipes_utils, "WAIT_FOR_LOGS_AFTER_EXECUTION_INTERVAL", 0)


@pytest.mark.usefixtures("no_pipes_grace_period")
def test_cluster_is_torn_down_when_the_run_is_terminated(s3_server, s3_bucket, tmp_path, snapshot):
    cloud = fake_sky.install(
        fake_sky.FakeCloud(
            s3_server.client(), tmp_path / "cloud", Remote(s3_server.client()),
            interrupt_while_following=dg.DagsterExecutionInterruptedError(),
        )
    )  # fmt: skip
    result = materialize(
        launcher_for(s3_server, s3_bucket, tmp_path, managed_job=False), training_launch(tmp_path, *snapshot)
    )

    assert not result.success
    assert [call for call, _ in cloud.calls if call in ("launch", "down")] == ["launch", "down"]


def test_managed_spot_job_recovers_resumes_and_records_recoveries_and_catalog_price(
    s3_server, s3_bucket, tmp_path, snapshot
):
    catalog = tmp_path / "catalog"
    (catalog / "aws").mkdir(parents=True)
    (catalog / "aws" / "vms.csv").write_text("\n".join([CATALOG_HEADER, *CATALOG_ROWS]) + "\n")
    client = s3_server.client()
    remote = Remote(client)
    cloud = fake_sky.install(fake_sky.FakeCloud(client, tmp_path / "cloud", remote, preemptions=2))
    launch = training_launch(tmp_path, *snapshot, run_id="spot-run")
    launcher = launcher_for(s3_server, s3_bucket, tmp_path, managed_job=True, use_spot=True, catalog_dir=str(catalog))

    result = materialize(launcher, launch)

    assert result.success
    (job_call,) = cloud.calls_named("jobs.launch")
    assert job_call["name"] == skypilot_name("spot-run")
    assert all(r.use_spot for r in cloud.submitted_tasks[0].resources)
    # Three machines; each later one saw the checkpoints the earlier ones left in the bucket.
    assert len(remote.attempts) == 3
    seen = sorted(p.name for p in (remote.attempts[2].output_dir() / "checkpoints").iterdir())
    assert seen == ["step-0.json", "step-1.json", "step-2.json"]
    metadata = materialization(result).metadata
    assert metadata["skypilot/recovery_count"].value == 2
    assert metadata["skypilot/status"].value == "SUCCEEDED"
    compute = json.loads((Path(launch.output_dir) / "lineage.json").read_text())["compute"]
    assert compute["recovery_count"] == 2 and compute["mode"] == "managed_job" and compute["use_spot"] is True
    assert compute["billed_basis"] == "managed job duration reported by SkyPilot"
    # Spot price of the one-H100 instance in the job's region, from the local copy of SkyPilot's catalog.
    assert compute["hourly_usd"] == 2.75
    assert compute["price_source"] == "skypilot catalog aws/vms.csv (p5.4xlarge, us-east-1, spot)"
    # A finished managed job needs no cancelling: its cluster is gone with it.
    assert cloud.calls_named("jobs.cancel") == []


def test_failed_managed_job_fails_the_asset_without_pulling_outputs(s3_server, s3_bucket, tmp_path, snapshot):
    client = s3_server.client()
    cloud = fake_sky.install(fake_sky.FakeCloud(client, tmp_path / "cloud", Remote(client, exit_code=3)))
    launch = training_launch(tmp_path, *snapshot)

    result = materialize(launcher_for(s3_server, s3_bucket, tmp_path), launch)

    assert not result.success
    assert "ended with FAILED" in failure_message(result)
    assert cloud.calls_named("jobs.cancel") == []
    assert not Path(launch.output_dir).exists()


@pytest.mark.usefixtures("no_pipes_grace_period")
def test_managed_job_is_cancelled_when_the_run_is_terminated(s3_server, s3_bucket, tmp_path, snapshot):
    cloud = fake_sky.install(
        fake_sky.FakeCloud(
            s3_server.client(), tmp_path / "cloud", Remote(s3_server.client()),
            interrupt_while_following=dg.DagsterExecutionInterruptedError(),
        )
    )  # fmt: skip
    result = materialize(launcher_for(s3_server, s3_bucket, tmp_path), training_launch(tmp_path, *snapshot))

    assert not result.success
    (cancel,) = cloud.calls_named("jobs.cancel")
    assert cancel["job_ids"] == cloud.job_ids("managed") != []
    assert cancel["name"] is None and cancel["graceful"] is True


def test_launch_without_a_bucket_names_the_setting(tmp_path, snapshot, monkeypatch):
    monkeypatch.delenv("FINQA_RL_BUCKET", raising=False)
    result = materialize(SkyPilotLauncher(sdk_module="fake_sky"), training_launch(tmp_path, *snapshot))
    assert not result.success
    assert "FINQA_RL_BUCKET" in failure_message(result)


def test_snapshot_is_uploaded_once_per_content_hash(s3_server, s3_bucket, tmp_path, snapshot):
    client = s3_server.client()
    path, snapshot_hash = snapshot
    first = upload_snapshot(client, s3_bucket, path, snapshot_hash)
    (path / "tasks.parquet").write_text("changed locally, same hash")
    second = upload_snapshot(client, s3_bucket, path, snapshot_hash)

    assert (first.uploaded, second.uploaded) == (True, False)
    assert first.uri == second.uri == f"s3://{s3_bucket}/snapshots/{snapshot_hash}"
    body = client.get_object(Bucket=s3_bucket, Key=f"snapshots/{snapshot_hash}/tasks.parquet")["Body"].read()
    assert body == b"tasks"
    with pytest.raises(ValueError, match="does not match the requested snapshot"):
        upload_snapshot(client, s3_bucket, path, "0" * 16)


def test_run_names_configs_and_overrides_are_what_a_cloud_machine_accepts(tmp_path):
    for run_id in ("run-1", "2026-11-29T18:05:00 GRPO qwen3-4b-lora on snapshot 939a08f9a70bd722", "x" * 80):
        name = skypilot_name(run_id)
        assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 35
    assert skypilot_name("a" * 60 + "1") != skypilot_name("a" * 60 + "2")
    assert remote_config("qwen3-4b-lora") == "qwen3-4b-lora"
    assert remote_config(str(REPO_ROOT / "rl_assets" / "configs" / "mine.yaml")) == "rl_assets/configs/mine.yaml"
    with pytest.raises(ValueError, match="outside the repository"):
        remote_config(str(tmp_path / "mine.yaml"))
    overrides = {"grpo.learning_rate": 1e-5, "run.note": "a b'c", "lora.enabled": True, "sizes": [1, 2]}
    assert shlex.split(train_args(overrides)) == [
        "--set", "grpo.learning_rate=1e-05", "--set", "run.note=a b'c", "--set", "lora.enabled=true",
        "--set", "sizes=[1, 2]",
    ]  # fmt: skip


def test_by_hand_upload_then_pull_with_compute(s3_server, s3_bucket, tmp_path, snapshot, capsys):
    from orchestration.launchers import sky_runs

    client = s3_server.client()
    path, snapshot_hash = snapshot
    common = ["--bucket", s3_bucket, "--endpoint-url", s3_server.endpoint_url]
    assert sky_runs.main([*common, "upload-snapshot", str(path)]) == 0
    assert f"--env FINQA_RL_SNAPSHOT_HASH={snapshot_hash}" in capsys.readouterr().out
    assert client.head_object(Bucket=s3_bucket, Key=f"snapshots/{snapshot_hash}/manifest.json")
    # What a `sky launch` run leaves in the bucket:
    for key, body in {"lineage.json": "{}", "model/config.json": "{}", "checkpoints/1.json": "{}"}.items():
        client.put_object(Bucket=s3_bucket, Key=f"runs/by-hand/{key}", Body=body.encode())

    out = tmp_path / "by-hand"
    argv = [*common, "pull-run", "--run-id", "by-hand", "--output", str(out), "--accelerator", "H100:1", "--hours", "2"]
    assert sky_runs.main([*argv, "--cloud", "aws", "--region", "us-east-1"]) == 0

    compute = json.loads((out / "lineage.json").read_text())["compute"]
    assert (compute["accelerator"], compute["count"], compute["gpu_minutes"]) == ("H100", 1, 120.0)
    assert compute["estimated_usd"] == pytest.approx(2 * compute["hourly_usd"])
    assert (out / "model" / "config.json").is_file() and not (out / "checkpoints").exists()


def test_the_code_location_offers_the_skypilot_launcher_without_any_cloud_setting(monkeypatch):
    monkeypatch.delenv("FINQA_RL_BUCKET", raising=False)
    from orchestration.definitions import build_definitions

    launcher = build_definitions().resources["skypilot_launcher"]
    assert isinstance(launcher, SkyPilotLauncher)
    assert launcher.task_yaml_path() == REPO_ROOT / "infra" / "sky" / "train.yaml"
