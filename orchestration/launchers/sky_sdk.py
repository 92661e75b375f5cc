"""Every SkyPilot call the SkyPilot launcher makes, against the 0.14 client SDK.

The 0.14 SDK is asynchronous: `sky.launch`, `sky.down`, `sky.jobs.launch`, `sky.jobs.queue_v2`,
`sky.jobs.cancel` return a request id, and `sky.stream_and_get(request_id)` streams the request's logs and
returns its result; `sky.tail_logs` / `sky.jobs.tail_logs` follow a job's logs until it ends and return
its exit code. The calls go to a SkyPilot API server (started locally on first use, or the one
`sky api login` points at), which needs cloud credentials. `sky.Task.from_yaml_config` works offline.

`SkyPilot(module="sky")` imports the SDK by module name, so tests can hand in a module with the same
functions (tests/fake_sky.py) in place of a cloud.
"""

from __future__ import annotations

import collections
import importlib
import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from orchestration.launchers.compute_cost import Placement

# Managed-job record fields the launcher reads (sky.jobs.queue_v2(fields=...)).
JOB_RECORD_FIELDS = (
    "job_id",
    "task_id",
    "job_name",
    "status",
    "recovery_count",
    "job_duration",
    "submitted_at",
    "start_at",
    "end_at",
    "cloud",
    "region",
    "zone",
    "infra",
    "accelerators",
    "failure_reason",
)


class LogStream(io.TextIOBase):
    """A text stream for SkyPilot's `output_stream=`: each complete line goes to `sink`; the last lines are kept."""

    def __init__(self, sink: Callable[[str], None], keep_last: int = 50):
        super().__init__()
        self._sink = sink
        self._partial = ""
        self.last_lines: collections.deque[str] = collections.deque(maxlen=keep_last)

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._partial += text
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            self._emit(line)
        return len(text)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if self._partial:
            self._emit(self._partial)
            self._partial = ""
        super().close()

    def _emit(self, line: str) -> None:
        line = line.rstrip("\r")
        self.last_lines.append(line)
        self._sink(line)


@dataclass(frozen=True)
class ClusterJob:
    cluster_name: str
    job_id: int | None
    handle: Any  # SkyPilot's resource handle: .launched_resources, .launched_nodes


@dataclass(frozen=True)
class ManagedJobRecord:
    job_id: int
    status: str  # a sky.jobs.ManagedJobStatus value: SUCCEEDED, FAILED, CANCELLED, ...
    terminal: bool
    succeeded: bool
    recovery_count: int
    job_duration: float | None
    placement: Placement
    failure_reason: str | None
    submitted_at: float | None = None  # epoch seconds
    end_at: float | None = None


class SkyPilot:
    """The SkyPilot SDK calls of one launch. `module` names the SDK module (`sky`)."""

    def __init__(self, module: str = "sky", *, graceful_teardown_timeout_s: int | None = 300):
        self.sky = importlib.import_module(module)
        self.graceful_teardown_timeout_s = graceful_teardown_timeout_s

    # -- tasks -------------------------------------------------------------------------------------------
    def load_task(
        self, yaml_path: str | Path, envs: dict[str, str], *, workdir: str | None = None, use_spot: bool | None = None
    ) -> Any:
        """A sky.Task from a task YAML with `envs` set, as `sky launch <yaml> --env K=V ...` builds it.

        The envs are applied before the task is built, so `${VAR}` in file_mounts (bucket paths) are filled in.
        """
        path = Path(yaml_path)
        config = yaml.safe_load(path.read_text())
        if not isinstance(config, dict):
            raise ValueError(f"{path}: a SkyPilot task YAML must be a mapping")
        if workdir is not None:
            config["workdir"] = workdir
        task = self.sky.Task.from_yaml_config(config, env_overrides=[(k, str(v)) for k, v in envs.items()])
        if use_spot is not None:
            resources = task.resources
            copies = [r.copy(use_spot=use_spot) for r in resources]
            task.set_resources(copies if isinstance(resources, list) else set(copies))
        return task

    # -- clusters (sky launch) ---------------------------------------------------------------------------
    def launch_cluster(
        self, task: Any, cluster_name: str, log: LogStream, *, idle_minutes_to_autostop: int | None
    ) -> ClusterJob:
        """Provision a cluster and submit the task's job; returns once the job is submitted.

        `down=True`: the cluster also tears itself down after its jobs end (after `idle_minutes_to_autostop`),
        should this process die before its own teardown.
        """
        request_id = self.sky.launch(
            task, cluster_name=cluster_name, down=True, idle_minutes_to_autostop=idle_minutes_to_autostop
        )
        job_id, handle = self.sky.stream_and_get(request_id, output_stream=log)
        return ClusterJob(cluster_name, job_id, handle)

    def follow_cluster_job(self, job: ClusterJob, log: LogStream) -> int:
        """Stream the job's logs until it ends; its exit code (0 succeeded, 100 failed: sky.exceptions.JobExitCode)."""
        return int(self.sky.tail_logs(job.cluster_name, job.job_id, follow=True, output_stream=log))

    def down_cluster(self, cluster_name: str, log: LogStream) -> bool:
        """Tear the cluster down (after MOUNT_CACHED uploads finish); False when it no longer existed."""
        try:
            request_id = self.sky.down(
                cluster_name,
                graceful=self.graceful_teardown_timeout_s is not None,
                graceful_timeout=self.graceful_teardown_timeout_s,
            )
            self.sky.stream_and_get(request_id, output_stream=log)
        except self.sky.exceptions.ClusterDoesNotExist:
            return False
        return True

    # -- managed jobs (sky jobs launch) ------------------------------------------------------------------
    def launch_managed_job(self, task: Any, name: str, log: LogStream) -> int:
        """Submit a managed job (recovers from spot preemption on a new machine); its job id."""
        job_ids, _controller_handle = self.sky.stream_and_get(self.sky.jobs.launch(task, name=name), output_stream=log)
        if not job_ids:
            raise RuntimeError(f"SkyPilot accepted managed job {name!r} but returned no job id")
        return int(job_ids[0])

    def follow_managed_job(self, job_id: int, log: LogStream, *, poll_interval_s: float = 30.0) -> ManagedJobRecord:
        """Stream the job's logs across recoveries until it reaches a terminal status; its final record."""
        while True:
            self.sky.jobs.tail_logs(job_id=job_id, follow=True, output_stream=log)
            record = self.managed_job_record(job_id)
            if record.terminal:
                return record
            time.sleep(poll_interval_s)  # the log stream ended early (e.g. while recovering): look again

    def managed_job_record(self, job_id: int) -> ManagedJobRecord:
        request_id = self.sky.jobs.queue_v2(refresh=False, job_ids=[job_id], fields=list(JOB_RECORD_FIELDS))
        records, *_counts = self.sky.stream_and_get(request_id)
        mine = [r for r in records if r["job_id"] == job_id]
        if not mine:
            raise RuntimeError(f"SkyPilot's managed job queue has no job {job_id}")
        record = mine[-1]
        status = record["status"]
        accelerators = record["accelerators"] or {}
        name, count = next(iter(accelerators.items()), (None, 0))
        return ManagedJobRecord(
            job_id=job_id,
            status=status.value,
            terminal=status.is_terminal(),
            succeeded=status == self.sky.jobs.ManagedJobStatus.SUCCEEDED,
            recovery_count=int(record["recovery_count"] or 0),
            job_duration=record["job_duration"],
            placement=Placement(
                accelerator=name, count=count, cloud=record["cloud"], region=record["region"], zone=record["zone"]
            ),
            failure_reason=record["failure_reason"],
            submitted_at=record["submitted_at"],
            end_at=record["end_at"],
        )

    def cancel_managed_job(self, job_id: int | None, name: str, log: LogStream) -> None:
        """Cancel a managed job (its cluster goes with it); by name when the launch never returned its id."""
        request_id = self.sky.jobs.cancel(
            name=None if job_id is not None else name,
            job_ids=[job_id] if job_id is not None else None,
            graceful=self.graceful_teardown_timeout_s is not None,
            graceful_timeout=self.graceful_teardown_timeout_s,
        )
        self.sky.stream_and_get(request_id, output_stream=log)


def cluster_placement(handle: Any) -> Placement:
    """Accelerator, cloud, region, instance type and spot-ness of a launched cluster (from its handle)."""
    resources = getattr(handle, "launched_resources", None)
    if resources is None:
        return Placement(accelerator=None, count=0)
    accelerators = resources.accelerators or {}
    name, per_node = next(iter(accelerators.items()), (None, 0))
    nodes = getattr(handle, "launched_nodes", 1) or 1
    return Placement(
        accelerator=name,
        count=per_node * nodes,
        cloud=str(resources.cloud) if resources.cloud is not None else None,
        region=resources.region,
        zone=resources.zone,
        instance_type=resources.instance_type,
        use_spot=resources.use_spot,
    )


def task_use_spot(task: Any) -> bool | None:
    """True/False when every candidate resource of the task agrees on spot, else None."""
    values = {r.use_spot for r in task.resources}
    return values.pop() if len(values) == 1 else None
