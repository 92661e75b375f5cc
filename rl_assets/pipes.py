"""Open the Dagster Pipes channel the launcher chose, from inside a training or evaluation process.

    from rl_assets.pipes import open_pipes
    with open_pipes() as pipes:          # instead of dagster_pipes.open_dagster_pipes()
        pipes.log.info("step 1"); pipes.report_custom_message({...}); pipes.report_asset_materialization(...)

`dagster_pipes.open_dagster_pipes()` with its default loader and writer only understands a local file or
stdio, which is what the local launcher (`PipesSubprocessClient`) passes. A process on a rented GPU is
given an S3 bucket instead (the SkyPilot launcher's `PipesS3ContextInjector` / `PipesS3MessageReader`):
then the context is read from, and messages are written to, that bucket. Without Dagster (no bootstrap
env vars) it behaves exactly like `open_dagster_pipes()`: a warning and a context whose calls do nothing.

A managed spot job that is preempted runs the same command again on a new machine with the same
bootstrap env vars. `ResumableS3MessageWriter` numbers its message chunks on from the ones an earlier
attempt uploaded, so the reader on the Dagster side, which reads chunk 1, 2, 3, ... in order, receives the
messages of every attempt (the lost tail of a preempted attempt excepted) and the final materialisation.

Env vars: `FINQA_RL_PIPES_INTERVAL` (seconds between message uploads to the bucket, default 10), and the
usual boto3 ones (credentials; `AWS_ENDPOINT_URL_S3` for an S3-compatible store).
"""

from __future__ import annotations

import os
from io import StringIO
from typing import Any

from dagster_pipes import (
    PipesBlobStoreMessageWriter,
    PipesBlobStoreMessageWriterChannel,
    PipesContext,
    PipesEnvVarParamsLoader,
    PipesParams,
    PipesS3ContextLoader,
    open_dagster_pipes,
)

INTERVAL_ENV_VAR = "FINQA_RL_PIPES_INTERVAL"
DEFAULT_INTERVAL_S = 10.0


def open_pipes() -> PipesContext:
    """`open_dagster_pipes()` with the context loader and message writer that match the bootstrap params."""
    params = PipesEnvVarParamsLoader()
    if not params.is_dagster_pipes_process():
        return open_dagster_pipes()
    context_in_bucket = "bucket" in params.load_context_params()
    messages_to_bucket = "bucket" in params.load_messages_params()
    if not (context_in_bucket or messages_to_bucket):
        return open_dagster_pipes()
    import boto3  # only on machines that talk to a bucket

    client = boto3.client("s3")
    return open_dagster_pipes(
        context_loader=PipesS3ContextLoader(client) if context_in_bucket else None,
        message_writer=ResumableS3MessageWriter(client, interval=_interval()) if messages_to_bucket else None,
    )


def _interval() -> float:
    raw = os.environ.get(INTERVAL_ENV_VAR)
    if not raw:
        return DEFAULT_INTERVAL_S
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{INTERVAL_ENV_VAR}={raw!r} is not a number of seconds") from None
    if value < 0:
        raise ValueError(f"{INTERVAL_ENV_VAR}={raw!r} must be >= 0")
    return value


class ResumableS3MessageWriter(PipesBlobStoreMessageWriter):
    """`PipesS3MessageWriter` whose chunk numbers continue after the chunks already in the bucket."""

    def __init__(self, client: Any, *, interval: float = DEFAULT_INTERVAL_S):
        super().__init__(interval=interval)
        self._client = client

    def make_channel(self, params: PipesParams) -> "ResumableS3MessageChannel":
        bucket = params.get("bucket")
        key_prefix = params.get("key_prefix")
        if not isinstance(bucket, str) or not isinstance(key_prefix, str):
            raise ValueError(f"Pipes message params need a 'bucket' and a 'key_prefix', got {params}")
        return ResumableS3MessageChannel(self._client, bucket, key_prefix, interval=self.interval)


class ResumableS3MessageChannel(PipesBlobStoreMessageWriterChannel):
    """Uploads message chunks to s3://bucket/<key_prefix>/<n>.json, n continuing after existing chunks."""

    def __init__(self, client: Any, bucket: str, key_prefix: str, *, interval: float):
        super().__init__(interval=interval)
        self._client = client
        self._bucket = bucket
        self._key_prefix = key_prefix
        self._offset = existing_chunk_count(client, bucket, key_prefix)

    def upload_messages_chunk(self, payload: StringIO, index: int) -> None:
        key = f"{self._key_prefix}/{index + self._offset}.json"
        self._client.put_object(Body=payload.read().encode("utf-8"), Bucket=self._bucket, Key=key)


def existing_chunk_count(client: Any, bucket: str, key_prefix: str) -> int:
    """The highest chunk number n of s3://bucket/<key_prefix>/<n>.json (0 when there is none)."""
    highest = 0
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=f"{key_prefix}/"):
        for obj in page.get("Contents", []):
            name = obj["Key"][len(key_prefix) + 1 :]
            stem = name[: -len(".json")] if name.endswith(".json") else ""
            if stem.isdigit():
                highest = max(highest, int(stem))
    return highest
