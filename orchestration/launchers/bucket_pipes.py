"""Dagster Pipes through the run bucket: how a process on a rented GPU talks to the Dagster run.

The context goes to s3://<bucket>/pipes/<run id>/<launch id>/ (dagster-aws `PipesS3ContextInjector`); the
remote process (rl_assets.pipes.open_pipes) writes message chunks to .../messages/<n>.json, which
`RunS3MessageReader` polls while the run trains: its log lines appear in the Dagster run as they arrive,
its custom messages and materialisation are collected, exactly as with the local subprocess launcher. Each
launch gets its own launch id, so a relaunch of the same run never reads an earlier launch's messages.
"""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from typing import Any, Iterator

import dagster as dg
from dagster_aws.pipes import PipesS3ContextInjector, PipesS3MessageReader
from dagster_pipes import PipesBlobStoreMessageWriter

from orchestration.launchers.bucket import pipes_prefix


class RunS3MessageReader(PipesS3MessageReader):
    """`PipesS3MessageReader` reading s3://<bucket>/<key_prefix>/<n>.json (a fixed prefix, not a random one)."""

    def __init__(self, *, bucket: str, client: Any, key_prefix: str, interval: float):
        super().__init__(bucket=bucket, client=client, interval=interval, include_stdio_in_messages=False)
        self.key_prefix = key_prefix

    @contextmanager
    def get_params(self) -> Iterator[dict[str, Any]]:
        yield {
            "bucket": self.bucket,
            "key_prefix": self.key_prefix,
            PipesBlobStoreMessageWriter.INCLUDE_STDIO_IN_MESSAGES_KEY: False,
        }


def open_bucket_pipes_session(
    context: dg.AssetExecutionContext, *, bucket: str, client: Any, run_id: str, interval: float
):
    """`dg.open_pipes_session` whose context and messages go through s3://bucket/pipes/<run id>/<launch id>/."""
    prefix = f"{pipes_prefix(run_id)}/{uuid.uuid4().hex[:12]}"
    return dg.open_pipes_session(
        context=context,
        context_injector=PipesS3ContextInjector(bucket=bucket, client=client, key_prefix=f"{prefix}/"),
        message_reader=RunS3MessageReader(
            bucket=bucket, client=client, key_prefix=f"{prefix}/messages", interval=interval
        ),
    )
