"""The SkyPilot launcher: the training entry point on a rented cloud GPU, reporting back through Dagster Pipes.

`SkyPilotLauncher.launch(context, TrainingLaunch)`:
1. uploads the environment snapshot to s3://<bucket>/snapshots/<hash>/ (skipped when that hash is there);
2. opens a Pipes session whose context and messages go through s3://<bucket>/pipes/<run id>/...;
3. builds the task from infra/sky/train.yaml with the run's envs and the Pipes bootstrap env vars;
4. launches it with SkyPilot 0.14: a managed job (`sky.jobs.launch`: recovers from spot preemption and
   resumes from the checkpoints in the bucket) or a plain cluster (`sky.launch`), and streams its logs
   to the step's stdout while the remote process's log lines and step metrics arrive through Pipes;
5. always tears down: the cluster is downed, an unfinished managed job cancelled, also on failure and
   when the Dagster run is terminated;
6. pulls s3://<bucket>/runs/<run id>/ (not its checkpoints/) into TrainingLaunch.output_dir, writes the
   `compute` object (accelerator, cloud/region, wall time, GPU-minutes, estimated USD, recoveries) into
   its lineage.json (and back to the bucket), and yields the Pipes results with that in the metadata.

All SkyPilot calls are in sky_sdk.py, all bucket I/O in bucket.py / bucket_pipes.py, all cost arithmetic
in compute_cost.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

import dagster as dg
from pydantic import Field

from orchestration.launchers import TrainingLaunch
from orchestration.launchers.bucket import download_run, run_prefix, s3_client, upload_file, upload_snapshot
from orchestration.launchers.bucket_pipes import open_bucket_pipes_session
from orchestration.launchers.compute_cost import (
    HourlyPrice,
    Placement,
    catalog_hourly_price,
    compute_record,
    configured_hourly_price,
    write_compute,
)
from orchestration.launchers.sky_sdk import LogStream, ManagedJobRecord, SkyPilot, cluster_placement, task_use_spot

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAIN_TASK_YAML = "infra/sky/train.yaml"
BUCKET_ENV_VAR = "FINQA_RL_BUCKET"

# Rough per-GPU-hour list prices, used only when SkyPilot's catalog is not on this machine. Set your own
# (resource config `gpu_hourly_usd` / `spot_gpu_hourly_usd`).
DEFAULT_GPU_HOURLY_USD = {"H100": 3.00, "H200": 4.00, "A100-80GB": 2.50, "A100": 2.00, "L4": 0.80}
DEFAULT_SPOT_GPU_HOURLY_USD = {"H100": 1.50, "H200": 2.00, "A100-80GB": 1.20, "A100": 1.00, "L4": 0.35}


@dataclass
class RunOutcome:
    """How a launched run ended, as SkyPilot reported it."""

    mode: str  # "managed_job" | "cluster"
    succeeded: bool
    status: str  # managed job status, or "exit code <n>" of a cluster job
    placement: Placement
    wall_seconds: float
    billed_seconds: float
    billed_basis: str
    recovery_count: int = 0
    ids: dict[str, Any] = field(default_factory=dict)
    detail: str | None = None


class SkyPilotLauncher(dg.ConfigurableResource):
    """Runs `python -m rl_assets.train` on a rented GPU through SkyPilot (see docs/operations.md)."""

    bucket: str | None = Field(
        default=None, description=f"S3 bucket for snapshots, outputs and Pipes messages (default: ${BUCKET_ENV_VAR})."
    )
    task_yaml: str = Field(default=TRAIN_TASK_YAML, description="SkyPilot task YAML, relative to the repository.")
    managed_job: bool = Field(
        default=True,
        description="A managed job (sky jobs launch: recovers from preemption, resumes from checkpoints) "
        "instead of a plain cluster (sky launch).",
    )
    use_spot: bool | None = Field(default=None, description="Spot instances (None: as in the task YAML).")
    idle_minutes_to_autostop: int = Field(
        default=10, description="Cluster mode: the cluster tears itself down this long after its job ends."
    )
    graceful_teardown_timeout_s: int | None = Field(
        default=300, description="Wait up to this long for outputs to finish uploading on teardown (None: don't)."
    )
    pull_checkpoints: bool = Field(default=False, description="Also copy the run's checkpoints/ back.")
    endpoint_url: str | None = Field(default=None, description="S3-compatible endpoint (default: AWS S3).")
    pipes_interval_s: float = Field(default=10.0, description="Seconds between Pipes message uploads / polls.")
    job_poll_interval_s: float = Field(default=30.0, description="Seconds between managed-job status checks.")
    gpu_hourly_usd: dict[str, float] = Field(
        default=DEFAULT_GPU_HOURLY_USD, description="On-demand USD per GPU-hour when SkyPilot's catalog is absent."
    )
    spot_gpu_hourly_usd: dict[str, float] = Field(
        default=DEFAULT_SPOT_GPU_HOURLY_USD, description="Spot USD per GPU-hour when SkyPilot's catalog is absent."
    )
    catalog_dir: str | None = Field(default=None, description="SkyPilot catalog copy (default: ~/.sky/catalogs/v8).")
    sdk_module: str = Field(default="sky", description="Module providing the SkyPilot SDK.")

    # -- the launcher contract -----------------------------------------------------------------------------
    def launch(self, context: dg.AssetExecutionContext, launch: TrainingLaunch) -> Iterator[Any]:
        """Run the training launch on a rented GPU; yields the Pipes results (see the module docstring)."""
        bucket = self.resolved_bucket()
        client = s3_client(self.endpoint_url)
        sdk = SkyPilot(self.sdk_module, graceful_teardown_timeout_s=self.graceful_teardown_timeout_s)
        log = LogStream(sink=_to_stdout)

        snapshot = upload_snapshot(client, bucket, launch.snapshot_path, launch.snapshot_hash)
        context.log.info(
            f"snapshot {launch.snapshot_hash}: {'uploaded to' if snapshot.uploaded else 'already in'} {snapshot.uri}"
        )
        name = skypilot_name(launch.run_id)
        with open_bucket_pipes_session(
            context, bucket=bucket, client=client, run_id=launch.run_id, interval=self.pipes_interval_s
        ) as session:
            envs = {**self.task_envs(launch, bucket), **session.get_bootstrap_env_vars()}
            task = sdk.load_task(self.task_yaml_path(), envs, workdir=str(REPO_ROOT), use_spot=self.use_spot)
            if self.managed_job:
                outcome = self._run_managed_job(context, sdk, task, name, log)
            else:
                outcome = self._run_cluster(context, sdk, task, name, log)
        # The session is closed: every message the remote process uploaded has been read.
        log.close()
        if not outcome.succeeded:
            raise dg.Failure(
                description=f"SkyPilot {outcome.mode} {name!r} ended with {outcome.status}"
                + (f": {outcome.detail}" if outcome.detail else ""),
                metadata={
                    "skypilot/status": outcome.status,
                    "skypilot/recovery_count": outcome.recovery_count,
                    "last_log_lines": dg.MetadataValue.md("```\n" + "\n".join(log.last_lines) + "\n```"),
                },
            )

        pulled = download_run(
            client, bucket, launch.run_id, launch.output_dir, include_checkpoints=self.pull_checkpoints
        )
        context.log.info(
            f"pulled {len(pulled)} files of s3://{bucket}/{run_prefix(launch.run_id)}/ into {launch.output_dir}"
        )
        compute = self.compute_of(outcome)
        lineage_path = write_compute(launch.output_dir, compute)
        upload_file(client, bucket, lineage_path, f"{run_prefix(launch.run_id)}/{lineage_path.name}")
        context.log.info(f"compute: {json.dumps(compute, sort_keys=True)}")
        metadata = self.result_metadata(outcome, compute, bucket, launch, snapshot.uri)
        custom_messages = list(session.get_custom_messages())
        if custom_messages:  # the entry point's step metrics: how many arrived, and the last one
            metadata["remote/custom_messages"] = len(custom_messages)
            metadata["remote/last_custom_message"] = dg.MetadataValue.json(custom_messages[-1])
        yield from session.get_results(metadata=metadata)

    # -- pieces (public so the by-hand commands reuse them) ------------------------------------------------
    def resolved_bucket(self) -> str:
        bucket = self.bucket or os.environ.get(BUCKET_ENV_VAR)
        if not bucket:
            raise dg.Failure(
                f"The SkyPilot launcher needs an S3 bucket: set the resource's `bucket` or ${BUCKET_ENV_VAR}"
            )
        return bucket

    def task_yaml_path(self) -> Path:
        path = Path(self.task_yaml)
        return path if path.is_absolute() else REPO_ROOT / path

    def task_envs(self, launch: TrainingLaunch, bucket: str) -> dict[str, str]:
        """The task YAML's envs for this launch (what `sky launch ... --env` would set by hand)."""
        envs = {
            "FINQA_RL_BUCKET": bucket,
            "FINQA_RL_SNAPSHOT_HASH": launch.snapshot_hash,
            "FINQA_RL_RUN_ID": launch.run_id,
            "FINQA_RL_CONFIG": remote_config(launch.config_name),
            "FINQA_RL_TRAIN_ARGS": train_args(launch.config_overrides),
            "FINQA_RL_PIPES_INTERVAL": str(self.pipes_interval_s),
        }
        if self.endpoint_url:
            envs["AWS_ENDPOINT_URL_S3"] = self.endpoint_url
        return envs

    def hourly_price(self, placement: Placement) -> HourlyPrice | None:
        return catalog_hourly_price(placement, self.catalog_dir) or configured_hourly_price(
            placement, self.gpu_hourly_usd, self.spot_gpu_hourly_usd
        )

    def compute_of(self, outcome: RunOutcome) -> dict[str, Any]:
        return compute_record(
            outcome.placement,
            mode=outcome.mode,
            wall_seconds=outcome.wall_seconds,
            billed_seconds=outcome.billed_seconds,
            billed_basis=outcome.billed_basis,
            price=self.hourly_price(outcome.placement),
            recovery_count=outcome.recovery_count,
            **outcome.ids,
        )

    @staticmethod
    def result_metadata(
        outcome: RunOutcome, compute: dict[str, Any], bucket: str, launch: TrainingLaunch, snapshot_uri: str
    ) -> dict[str, Any]:
        scalars = {
            "skypilot/mode": outcome.mode,
            "skypilot/status": outcome.status,
            "skypilot/recovery_count": outcome.recovery_count,
            **{f"skypilot/{k}": v for k, v in outcome.ids.items()},
            **{
                f"compute/{k}": compute[k]
                for k in ("accelerator", "count", "cloud", "region", "wall_seconds", "gpu_minutes", "estimated_usd")
            },
        }
        return {
            **{k: v for k, v in scalars.items() if v is not None},
            "compute": dg.MetadataValue.json(compute),
            "output_dir": dg.MetadataValue.path(str(launch.output_dir)),
            "bucket/run": dg.MetadataValue.url(f"s3://{bucket}/{run_prefix(launch.run_id)}/"),
            "bucket/snapshot": dg.MetadataValue.url(snapshot_uri),
        }

    # -- the two ways to run -------------------------------------------------------------------------------
    def _run_cluster(
        self, context: dg.AssetExecutionContext, sdk: SkyPilot, task: Any, name: str, log: LogStream
    ) -> RunOutcome:
        started = time.monotonic()
        job = None
        exit_code = None
        with _always_tear_down(context, f"cluster {name!r}", f"sky down {name}", lambda: sdk.down_cluster(name, log)):
            job = sdk.launch_cluster(task, name, log, idle_minutes_to_autostop=self.idle_minutes_to_autostop)
            context.log.info(f"cluster {name!r} is up; job {job.job_id} submitted")
            exit_code = sdk.follow_cluster_job(job, log)
        seconds = time.monotonic() - started
        return RunOutcome(
            mode="cluster",
            succeeded=exit_code == 0,
            status=f"exit code {exit_code}",
            placement=cluster_placement(job.handle),
            wall_seconds=seconds,
            billed_seconds=seconds,
            billed_basis="cluster lifetime: launch to teardown",
            ids={"cluster_name": name, "job_id": job.job_id},
        )

    def _run_managed_job(
        self, context: dg.AssetExecutionContext, sdk: SkyPilot, task: Any, name: str, log: LogStream
    ) -> RunOutcome:
        started = time.monotonic()
        submitted: dict[str, Any] = {"job_id": None, "record": None}

        def cancel_if_unfinished() -> None:
            record = submitted["record"]
            if record is None or not record.terminal:
                sdk.cancel_managed_job(submitted["job_id"], name, log)

        with _always_tear_down(context, f"managed job {name!r}", f"sky jobs cancel -n {name}", cancel_if_unfinished):
            submitted["job_id"] = sdk.launch_managed_job(task, name, log)
            context.log.info(f"managed job {submitted['job_id']} ({name!r}) submitted")
            submitted["record"] = sdk.follow_managed_job(
                submitted["job_id"], log, poll_interval_s=self.job_poll_interval_s
            )
        record = submitted["record"]
        if record.recovery_count:
            context.log.info(f"managed job {record.job_id} recovered {record.recovery_count} time(s)")
        return managed_job_outcome(
            record, name=name, wall_seconds=time.monotonic() - started, use_spot=task_use_spot(task)
        )


def managed_job_outcome(
    record: ManagedJobRecord, *, name: str, wall_seconds: float, use_spot: bool | None
) -> RunOutcome:
    """A finished managed job as a RunOutcome: billed for SkyPilot's job duration when it reports one."""
    return RunOutcome(
        mode="managed_job",
        succeeded=record.succeeded,
        status=record.status,
        placement=replace(record.placement, use_spot=use_spot),
        wall_seconds=wall_seconds,
        billed_seconds=record.job_duration if record.job_duration is not None else wall_seconds,
        billed_basis=(
            "managed job duration reported by SkyPilot"
            if record.job_duration is not None
            else "launch to end of the managed job"
        ),
        recovery_count=record.recovery_count,
        ids={"job_id": record.job_id, "job_name": name},
        detail=record.failure_reason,
    )


@contextmanager
def _always_tear_down(context: dg.AssetExecutionContext, what: str, by_hand: str, tear_down) -> Iterator[None]:
    """Run `tear_down` when the block ends, however it ends (success, error, run terminated).

    A failing teardown after an error is logged with the command to run by hand, and the original error
    propagates; after success it is raised.
    """
    failed = False
    try:
        yield
    except BaseException:
        failed = True
        raise
    finally:
        try:
            tear_down()
            context.log.info(f"tore down {what}" + (" after a failure or cancellation" if failed else ""))
        except Exception as error:
            context.log.error(f"teardown of {what} failed ({error!r}): run `{by_hand}` by hand")
            if not failed:
                raise


def _to_stdout(line: str) -> None:
    print(line, file=sys.stdout, flush=True)


def skypilot_name(run_id: str) -> str:
    """A valid SkyPilot cluster / job name for a run: `finqa-<run id>`, lowercase, at most 35 characters."""
    slug = re.sub(r"[^a-z0-9]+", "-", run_id.lower()).strip("-") or "run"
    name = f"finqa-{slug}"
    if len(name) <= 35:
        return name
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:8]
    return f"finqa-{slug[:19].rstrip('-')}-{digest}"


def remote_config(config_name: str) -> str:
    """The --config the remote machine can resolve: a config name, or a YAML path inside the repository."""
    looks_like_path = "/" in config_name or config_name.endswith((".yaml", ".yml"))
    if not looks_like_path:
        return config_name
    path = Path(config_name).resolve()
    try:
        return path.relative_to(REPO_ROOT).as_posix()
    except ValueError:
        raise ValueError(
            f"training config {config_name} is outside the repository, which is all a cloud machine receives: "
            "put it under rl_assets/configs/ (or elsewhere in the repository)"
        ) from None


def train_args(overrides: dict[str, Any]) -> str:
    """`--set key=value ...` for the entry point, shell-quoted (values other than strings as JSON)."""
    args: list[str] = []
    for key, value in overrides.items():
        text = value if isinstance(value, str) else json.dumps(value)
        args += ["--set", f"{key}={text}"]
    return shlex.join(args)
