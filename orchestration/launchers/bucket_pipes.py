"""Dagster Pipes through the run bucket: how a process on a rented GPU talks to the Dagster run.

The context goes to s3://<bucket>/pipes/<run id>/<launch id>/ (dagster-aws `PipesS3ContextInjector`); the
remote process (rl_assets.pipes.open_pipes) writes message chunks to .../messages/<n>.json, which
`RunS3MessageReader` polls. Each launch gets its own launch id, so a relaunch of the same run never reads
an earlier launch's messages. Step metrics (`report_custom_message`) are also logged to the Dagster run as
they arrive, so they show while the remote process trains.
"""

from __future__ import annotations

import json
import uuid
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import dagster as dg
from dagster_aws.pipes import PipesS3ContextInjector, PipesS3MessageReader
from dagster_pipes import PipesBlobStoreMessageWriter

from orchestration.launchers.bucket import pipes_prefix


class RunS3MessageReader(PipesS3MessageReader):
    """`PipesS3MessageReader` under a fixed key prefix that also hands each custom message to `on_custom_message`."""

    def __init__(
        self,
        *,
        bucket: str,
        client: Any,
        key_prefix: str,
        interval: float,
        on_custom_message: Callable[[Any], None] | None = None,
    ):
        super().__init__(bucket=bucket, client=client, interval=interval, include_stdio_in_messages=False)
        self.key_prefix = key_prefix
        self._on_custom_message = on_custom_message

    @contextmanager
    def get_params(self) -> Iterator[dict[str, Any]]:
        yield {
            "bucket": self.bucket,
            "key_prefix": self.key_prefix,
            PipesBlobStoreMessageWriter.INCLUDE_STDIO_IN_MESSAGES_KEY: False,
        }

    @contextmanager
    def read_messages(self, handler: Any) -> Iterator[dict[str, Any]]:
        if self._on_custom_message is not None:
            handler = _CustomMessageTap(handler, self._on_custom_message)
        with super().read_messages(handler) as params:
            yield params


class _CustomMessageTap:
    """Passes every message on to Dagster's handler and each custom message's payload to a callback."""

    def __init__(self, handler: Any, on_custom_message: Callable[[Any], None]):
        self._handler = handler
        self._on_custom_message = on_custom_message

    def handle_message(self, message: dict[str, Any]) -> None:
        self._handler.handle_message(message)
        if message.get("method") == "report_custom_message":
            self._on_custom_message((message.get("params") or {}).get("payload"))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handler, name)


def open_bucket_pipes_session(
    context: dg.AssetExecutionContext,
    *,
    bucket: str,
    client: Any,
    run_id: str,
    interval: float,
    extras: dict[str, Any] | None = None,
):
    """`dg.open_pipes_session` whose context and messages go through s3://bucket/pipes/<run id>/<launch id>/."""
    prefix = f"{pipes_prefix(run_id)}/{uuid.uuid4().hex[:12]}"

    def log_step_metrics(payload: Any) -> None:
        context.log.info(f"[remote] {json.dumps(payload, sort_keys=True, default=str)}")

    return dg.open_pipes_session(
        context=context,
        context_injector=PipesS3ContextInjector(bucket=bucket, client=client, key_prefix=f"{prefix}/"),
        message_reader=RunS3MessageReader(
            bucket=bucket,
            client=client,
            key_prefix=f"{prefix}/messages",
            interval=interval,
            on_custom_message=log_step_metrics,
        ),
        extras=extras,
    )
