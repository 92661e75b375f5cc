"""The run bucket: where a cloud run finds its environment snapshot and leaves its outputs.

Layout (the task files under infra/sky/ mount the same prefixes):

    s3://<bucket>/snapshots/<snapshot hash>/...   content-addressed: uploaded once, never modified
    s3://<bucket>/runs/<run id>/...               the training entry point's --output (model/, metrics.jsonl,
                                                  lineage.json, checkpoints/ for spot recovery, ...)
    s3://<bucket>/pipes/<run id>/...              Dagster Pipes context and messages of a launch

Plain boto3; no dagster, no SkyPilot.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

SNAPSHOTS_PREFIX = "snapshots"
RUNS_PREFIX = "runs"
PIPES_PREFIX = "pipes"
MANIFEST = "manifest.json"  # written last: its presence means the snapshot upload is complete
CHECKPOINTS_DIR = "checkpoints"


def s3_client(endpoint_url: str | None = None) -> Any:
    """A boto3 S3 client (credentials from the usual AWS env vars / files; endpoint for S3-compatible stores)."""
    import boto3

    return boto3.client("s3", endpoint_url=endpoint_url or None)


def snapshot_prefix(snapshot_hash: str) -> str:
    return f"{SNAPSHOTS_PREFIX}/{snapshot_hash}"


def run_prefix(run_id: str) -> str:
    return f"{RUNS_PREFIX}/{run_id}"


def pipes_prefix(run_id: str) -> str:
    return f"{PIPES_PREFIX}/{run_id}"


def object_exists(client: Any, bucket: str, key: str) -> bool:
    try:
        client.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise


@dataclass(frozen=True)
class SnapshotUpload:
    uri: str  # s3://bucket/snapshots/<hash>
    uploaded: bool  # False when the bucket already held this snapshot
    files: int
    bytes: int


def upload_snapshot(client: Any, bucket: str, snapshot_path: str | Path, snapshot_hash: str) -> SnapshotUpload:
    """Upload a local snapshot directory to s3://bucket/snapshots/<hash>/ unless that hash is already there.

    The snapshot's manifest.json must name the same hash; it is uploaded last, so a half-finished upload
    is never mistaken for a complete one.
    """
    root = Path(snapshot_path)
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{root} is not an environment snapshot: {MANIFEST} is missing")
    manifest_hash = json.loads(manifest_path.read_text()).get("snapshot_hash")  # as rl_assets.snapshot writes it
    if manifest_hash != snapshot_hash:
        raise ValueError(
            f"{manifest_path}: hash {manifest_hash!r} does not match the requested snapshot {snapshot_hash!r}"
        )
    prefix = snapshot_prefix(snapshot_hash)
    uri = f"s3://{bucket}/{prefix}"
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST) + [manifest_path]
    size = sum(p.stat().st_size for p in files)
    if object_exists(client, bucket, f"{prefix}/{MANIFEST}"):
        return SnapshotUpload(uri, uploaded=False, files=len(files), bytes=size)
    for path in files:
        client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(root).as_posix()}")
    return SnapshotUpload(uri, uploaded=True, files=len(files), bytes=size)


def list_keys(client: Any, bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix.rstrip('/')}/"):
        keys.extend(obj["Key"] for obj in page.get("Contents", []))
    return sorted(keys)


def download_run(
    client: Any, bucket: str, run_id: str, output_dir: str | Path, *, include_checkpoints: bool = False
) -> list[str]:
    """Copy s3://bucket/runs/<run id>/ into output_dir (checkpoints/ left in the bucket unless asked for).

    Returns the relative paths written. Raises FileNotFoundError when the run left nothing in the bucket.
    """
    prefix = run_prefix(run_id)
    keys = list_keys(client, bucket, prefix)
    if not keys:
        raise FileNotFoundError(f"s3://{bucket}/{prefix}/ is empty: the run wrote no outputs")
    out = Path(output_dir)
    written = []
    for key in keys:
        relative = key[len(prefix) + 1 :]
        if not relative or relative.endswith("/"):
            continue
        if not include_checkpoints and relative.split("/", 1)[0] == CHECKPOINTS_DIR:
            continue
        target = out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(bucket, key, str(target))
        written.append(relative)
    return written


def upload_file(client: Any, bucket: str, path: str | Path, key: str) -> str:
    client.upload_file(str(path), bucket, key)
    return f"s3://{bucket}/{key}"
