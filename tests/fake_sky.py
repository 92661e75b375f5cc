"""A stand-in for the `sky` module (SkyPilot 0.14 client SDK) with a fake cloud behind it.

Same function names, arguments and return shapes as the real SDK for what the launcher uses:
`launch` / `down` / `jobs.launch` / `jobs.queue_v2` / `jobs.cancel` return request ids, `stream_and_get`
returns the request's result ((job_id, handle), ([job_ids], handle), (records, total, counts, total) with
real `ManagedJobRecord`s, None), `tail_logs` / `jobs.tail_logs` stream the job's output to `output_stream`
and return its exit code. `Task`, `exceptions` and `jobs.ManagedJobStatus` are SkyPilot's own.

Behind it, `FakeCloud` plays the machine: it emulates the task's bucket mounts against a real S3 API
(COPY: download the prefix before the job; MOUNT / MOUNT_CACHED: show the bucket before the job and
upload what the job wrote after it, as SkyPilot waits for the cached upload before a job ends), runs each
attempt of the job (a callable, or a separate process), and preempts attempts of a managed job when told.

Use: `fake_sky.install(FakeCloud(...))`, then point the launcher at `sdk_module="fake_sky"`.
"""

from __future__ import annotations

import itertools
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable
from urllib.parse import urlsplit

import sky as _sky
from sky.schemas.api.responses import ManagedJobRecord

Task = _sky.Task
exceptions = _sky.exceptions

_cloud: "FakeCloud | None" = None


def install(cloud: "FakeCloud") -> "FakeCloud":
    global _cloud
    _cloud = cloud
    return cloud


def _current() -> "FakeCloud":
    if _cloud is None:
        raise RuntimeError("no fake cloud installed: call fake_sky.install(FakeCloud(...)) first")
    return _cloud


# -- the SDK surface --------------------------------------------------------------------------------------
def launch(
    task, cluster_name=None, retry_until_up=False, idle_minutes_to_autostop=None, dryrun=False, down=False, **kwargs
):
    return _current().request(
        "launch", task=task, cluster_name=cluster_name, down=down, idle_minutes_to_autostop=idle_minutes_to_autostop
    )


def stream_and_get(request_id=None, log_path=None, tail=None, follow=True, output_stream=None, relay_rich_status=False):
    return _current().result(request_id, output_stream)


def tail_logs(cluster_name, job_id, follow, tail=0, output_stream=None, *, preload_content=True):
    return _current().follow_job(("cluster", cluster_name, job_id), output_stream)


def down(cluster_name, purge=False, graceful=False, graceful_timeout=None):
    return _current().request("down", cluster_name=cluster_name, graceful=graceful, graceful_timeout=graceful_timeout)


class _Jobs:
    ManagedJobStatus = _sky.jobs.ManagedJobStatus

    @staticmethod
    def launch(task, name=None, pool=None, num_jobs=None, job_group=None, _need_confirmation=False):
        return _current().request("jobs.launch", task=task, name=name)

    @staticmethod
    def queue_v2(refresh, skip_finished=False, all_users=False, job_ids=None, limit=None, fields=None, **kwargs):
        return _current().request("jobs.queue_v2", job_ids=job_ids, fields=fields)

    @staticmethod
    def tail_logs(
        name=None,
        job_id=None,
        follow=True,
        controller=False,
        refresh=False,
        tail=None,
        tail_offset=None,
        output_stream=None,
        task=None,
        *,
        preload_content=True,
    ):
        return _current().follow_job(("managed", name, job_id), output_stream)

    @staticmethod
    def cancel(
        name=None, job_ids=None, all=False, all_users=False, pool=None, graceful=False, graceful_timeout=None, task=None
    ):
        return _current().request("jobs.cancel", name=name, job_ids=job_ids, graceful=graceful)


jobs = _Jobs()


# -- the fake cloud ---------------------------------------------------------------------------------------
@dataclass
class Machine:
    """One attempt of a job on one (fake) machine."""

    attempt: int
    envs: dict[str, str]
    mounts: dict[str, Path]  # mount path in the task -> local directory standing in for it
    preempt_after_step: int | None  # set on attempts the cloud will preempt
    output_lines: list[str] = field(default_factory=list)

    def output_dir(self) -> Path:
        """Where the task's run line writes: /finqa/bucket/runs/$FINQA_RL_RUN_ID."""
        return self.mounts["/finqa/bucket"] / "runs" / self.envs["FINQA_RL_RUN_ID"]


Attempt = Callable[[Machine], int]


@dataclass
class _Job:
    kind: str
    key: tuple
    task: Any
    job_id: int
    exit_code: int | None = None
    status: Any = None
    recoveries: int = 0
    seconds: float = 0.0


class FakeCloud:
    """Records every SDK call; runs jobs as `attempt(machine) -> exit code`."""

    def __init__(
        self,
        s3: Any,
        workspace: Path,
        attempt: Attempt,
        *,
        preemptions: int = 0,
        preempt_after_step: int = 1,
        interrupt_while_following: BaseException | None = None,
        region: str = "us-east-1",
    ):
        self.s3 = s3
        self.workspace = Path(workspace)
        self.attempt = attempt
        self.preemptions = preemptions
        self.preempt_after_step = preempt_after_step
        self.interrupt_while_following = interrupt_while_following
        self.region = region
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.submitted_tasks: list[Any] = []
        self._requests: dict[str, tuple[str, dict[str, Any]]] = {}
        self._jobs: dict[tuple, _Job] = {}
        self._ids = itertools.count(1)
        self._mounted: dict[Path, dict[str, tuple[int, int]]] = {}  # local mount dir -> files as mounted

    # requests
    def request(self, call: str, **kwargs: Any) -> str:
        request_id = f"req-{next(self._ids)}-{call}"
        self.calls.append((call, kwargs))
        self._requests[request_id] = (call, kwargs)
        return request_id

    def calls_named(self, name: str) -> list[dict[str, Any]]:
        return [kwargs for call, kwargs in self.calls if call == name]

    def job_ids(self, kind: str) -> list[int]:
        """Ids of the jobs submitted so far: kind "cluster" or "managed"."""
        return [job.job_id for job in self._jobs.values() if job.kind == kind]

    def result(self, request_id: str, output_stream: Any) -> Any:
        name, kwargs = self._requests[request_id]
        if name == "launch":
            task = kwargs["task"]
            self.submitted_tasks.append(task)
            job = self._new_job("cluster", ("cluster", kwargs["cluster_name"]), task)
            _write(output_stream, f"fake cloud: cluster {kwargs['cluster_name']} up, job {job.job_id} submitted\n")
            return job.job_id, self._handle(task)
        if name == "jobs.launch":
            task = kwargs["task"]
            self.submitted_tasks.append(task)
            job_id = next(self._ids)
            job = self._new_job("managed", ("managed", job_id), task, job_id=job_id)
            _write(output_stream, f"fake cloud: managed job {job.job_id} submitted\n")
            return [job.job_id], None
        if name == "jobs.queue_v2":
            records = [
                self._record(j) for j in self._jobs.values() if j.kind == "managed" and j.job_id in kwargs["job_ids"]
            ]
            return records, len(records), {}, len(records)
        if name == "down":
            if not any(j.key == ("cluster", kwargs["cluster_name"]) for j in self._jobs.values()):
                raise exceptions.ClusterDoesNotExist(f"Cluster {kwargs['cluster_name']!r} does not exist.")
            return None
        if name == "jobs.cancel":
            return None
        raise AssertionError(f"unexpected request {name}")

    def _new_job(self, kind: str, key: tuple, task: Any, job_id: int | None = None) -> _Job:
        job = _Job(kind, key, task, job_id if job_id is not None else next(self._ids))
        self._jobs[key] = job
        return job

    def _find(self, key: tuple) -> _Job:
        kind, name, job_id = key
        if kind == "cluster":
            return self._jobs[("cluster", name)]
        return self._jobs[("managed", job_id)]

    @staticmethod
    def _chosen(task: Any) -> Any:
        """The candidate resources the cloud provides: the first of an `ordered:` list."""
        resources = task.resources
        return resources[0] if isinstance(resources, list) else sorted(resources, key=repr)[0]

    def _accelerator(self, task: Any) -> dict[str, int]:
        return dict(self._chosen(task).accelerators or {})

    def _handle(self, task: Any) -> Any:
        first = self._chosen(task)
        return SimpleNamespace(
            launched_resources=SimpleNamespace(
                cloud="AWS",
                region=self.region,
                zone=f"{self.region}a",
                accelerators=self._accelerator(task),
                instance_type="p5.4xlarge",
                use_spot=first.use_spot,
            ),
            launched_nodes=1,
        )

    def _record(self, job: _Job) -> ManagedJobRecord:
        return ManagedJobRecord(
            job_id=job.job_id,
            task_id=0,
            job_name=job.task.name,
            status=job.status,
            recovery_count=job.recoveries,
            job_duration=job.seconds,
            cloud="AWS",
            region=self.region,
            zone=f"{self.region}a",
            accelerators=self._accelerator(job.task),
            failure_reason=None,
        )

    # running a job
    def follow_job(self, key: tuple, output_stream: Any) -> int:
        if self.interrupt_while_following is not None:
            raise self.interrupt_while_following
        job = self._find(key)
        if job.exit_code is None:
            self._run(job, output_stream)
        return job.exit_code

    def _run(self, job: _Job, output_stream: Any) -> None:
        Status = _sky.jobs.ManagedJobStatus
        planned = self.preemptions if job.kind == "managed" else 0
        started = time.monotonic()
        for attempt in range(planned + 1):
            preempt = attempt < planned
            machine = self._machine(job, attempt, preempt)
            exit_code = self.attempt(machine)
            self._flush_cached_mounts(job.task, machine)
            for line in machine.output_lines:
                _write(output_stream, line if line.endswith("\n") else line + "\n")
            if preempt:
                _write(output_stream, f"fake cloud: attempt {attempt} preempted, recovering\n")
                job.recoveries += 1
                continue
            job.exit_code = 0 if exit_code == 0 else 100
        job.seconds = time.monotonic() - started
        job.status = Status.SUCCEEDED if job.exit_code == 0 else Status.FAILED

    def _machine(self, job: _Job, attempt: int, preempt: bool) -> Machine:
        root = self.workspace / f"job{job.job_id}-attempt{attempt}"
        mounts: dict[str, Path] = {}
        for mount_path, storage in job.task.storage_mounts.items():
            local = root / mount_path.strip("/").replace("/", "_")
            local.mkdir(parents=True)
            bucket, prefix = _split(storage.source)
            self._download(bucket, prefix, local)
            mounts[mount_path] = local
            self._mounted[local] = _stat_tree(local)
        return Machine(
            attempt=attempt,
            envs=dict(job.task.envs),
            mounts=mounts,
            preempt_after_step=self.preempt_after_step if preempt else None,
        )

    def _download(self, bucket: str, prefix: str, local: Path) -> None:
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=f"{prefix}/" if prefix else ""):
            for obj in page.get("Contents", []):
                relative = obj["Key"][len(prefix) + 1 :] if prefix else obj["Key"]
                target = local / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                self.s3.download_file(bucket, obj["Key"], str(target))

    def _flush_cached_mounts(self, task: Any, machine: Machine) -> None:
        for mount_path, storage in task.storage_mounts.items():
            if storage.mode.value == "COPY":
                continue
            bucket, prefix = _split(storage.source)
            local = machine.mounts[mount_path]
            before = self._mounted.get(local, {})
            for relative, stat in _stat_tree(local).items():
                if before.get(relative) != stat:
                    key = f"{prefix}/{relative}" if prefix else relative
                    self.s3.upload_file(str(local / relative), bucket, key)


def _split(uri: str) -> tuple[str, str]:
    parts = urlsplit(uri)
    return parts.netloc, parts.path.strip("/")


def _stat_tree(root: Path) -> dict[str, tuple[int, int]]:
    return {
        p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()
    }


def _write(stream: Any, text: str) -> None:
    print(text, end="", flush=True, file=stream)


def subprocess_attempt(command: list[str], base_env: dict[str, str], cwd: Path) -> Attempt:
    """An attempt that runs `command` as a separate process with only `base_env` + the task's envs.

    `{snapshot}` and `{output}` in the command become the machine's snapshot mount and run output
    directory (what /finqa/snapshot and /finqa/bucket/runs/$FINQA_RL_RUN_ID are on a real machine), and an
    argument `{train_args}` the words of $FINQA_RL_TRAIN_ARGS, as the task's run line splits them.
    A preempted attempt gets FAKE_CLOUD_PREEMPT_AFTER_STEP: the process is to die after that step.
    """

    def run(machine: Machine) -> int:
        argv: list[str] = []
        for part in command:
            if part == "{train_args}":
                argv += shlex.split(machine.envs.get("FINQA_RL_TRAIN_ARGS", ""))
            else:
                argv.append(part.format(snapshot=machine.mounts["/finqa/snapshot"], output=machine.output_dir()))
        env = {**base_env, **machine.envs}
        if machine.preempt_after_step is not None:
            env["FAKE_CLOUD_PREEMPT_AFTER_STEP"] = str(machine.preempt_after_step)
        done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
        machine.output_lines.extend((done.stdout + done.stderr).splitlines())
        return done.returncode

    return run


def run_line_attempt(task_yaml: Path, base_env: dict[str, str], cwd: Path) -> Attempt:
    """An attempt that runs the task file's own `run` script with bash, as the machine would: the task's
    mount paths (/finqa/...) stand for the machine's local mount directories, and the process gets only
    `base_env` + the task's envs."""
    import yaml

    script = yaml.safe_load(Path(task_yaml).read_text())["run"]

    def run(machine: Machine) -> int:
        text = script
        for mount in sorted(machine.mounts, key=len, reverse=True):
            text = text.replace(mount, str(machine.mounts[mount]))
        env = {**base_env, **machine.envs}
        done = subprocess.run(["bash", "-c", text], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
        machine.output_lines.extend((done.stdout + done.stderr).splitlines())
        return done.returncode

    return run


def minimal_env(**extra: str) -> dict[str, str]:
    """What a fresh machine's shell has: PATH and HOME, nothing of this test process."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": extra.pop("HOME", "/tmp"),
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


PYTHON = sys.executable
