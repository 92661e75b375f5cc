"""Stands in for the training entry point on the remote machine in the SkyPilot Pipes test.

    python tests/remote_training_standin.py --config NAME --snapshot DIR --output DIR [--set key=value ...]

Same command line and the same Pipes reporting as `python -m rl_assets.train` (rl_assets.pipes.open_pipes:
per step a log line and a `report_custom_message` of its metrics, one `report_asset_materialization` at the
end), the same resume contract (re-running with the same --output continues after the last checkpoint under
<output>/checkpoints/) and the artifact files the launcher and evaluation rely on (model/, metrics.jsonl,
lineage.json, README.md). It trains nothing.

FAKE_CLOUD_PREEMPT_AFTER_STEP=n (set by the fake cloud on an attempt it preempts): after step n's
checkpoint and metrics, wait until the metrics have reached the bucket, then die as a preempted machine
does (SIGKILL: no clean Pipes close).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from pathlib import Path

STEPS = 4


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--snapshot", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()

    from rl_assets.pipes import open_pipes

    snapshot_hash = json.loads((Path(args.snapshot) / "manifest.json").read_text())["snapshot_hash"]
    output = Path(args.output)
    checkpoints = output / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    last = checkpoints / "last.json"
    start = json.loads(last.read_text())["step"] + 1 if last.exists() else 0
    preempt_after = os.environ.get("FAKE_CLOUD_PREEMPT_AFTER_STEP")

    with open_pipes() as pipes:
        pipes.log.info(f"training {args.config} on snapshot {snapshot_hash} from step {start}, overrides {args.set}")
        for step in range(start, STEPS):
            metrics = {"step": step, "loss": round(1.0 / (step + 1), 4), "reward": round(0.2 * step, 4)}
            with open(output / "metrics.jsonl", "a") as f:
                f.write(json.dumps(metrics) + "\n")
            last.write_text(json.dumps({"step": step}))
            pipes.log.info(f"step {step}: loss {metrics['loss']} reward {metrics['reward']}")
            pipes.report_custom_message({"kind": "training_step", **metrics})
            if preempt_after is not None and step == int(preempt_after):
                _wait_until_in_bucket(f'"step": {step}')
                os.kill(os.getpid(), signal.SIGKILL)
        model = output / "model"
        model.mkdir(exist_ok=True)
        (model / "config.json").write_text(json.dumps({"model_type": "standin"}))
        (model / "prompt.json").write_text(json.dumps({"system_prompt": "standin", "env": {}}))
        lineage = {
            "snapshot_hash": snapshot_hash,
            "config_name": args.config,
            "config_overrides": args.set,
            "resumed_from_step": start,
        }
        (output / "lineage.json").write_text(json.dumps(lineage, indent=2))
        (output / "README.md").write_text(f"# stand-in run\n\nsnapshot {snapshot_hash}\n")
        pipes.report_asset_materialization(
            metadata={"steps": STEPS, "resumed_from_step": start, "snapshot_hash": snapshot_hash}
        )
    return 0


def _wait_until_in_bucket(text: str, timeout_s: float = 60.0) -> None:
    """Poll the Pipes message chunks in the bucket until one contains `text`."""
    import boto3
    from dagster_pipes import DAGSTER_PIPES_MESSAGES_ENV_VAR, decode_param

    params = decode_param(os.environ[DAGSTER_PIPES_MESSAGES_ENV_VAR])
    client = boto3.client("s3")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        listing = client.list_objects_v2(Bucket=params["bucket"], Prefix=f"{params['key_prefix']}/")
        for obj in listing.get("Contents", []):
            body = client.get_object(Bucket=params["bucket"], Key=obj["Key"])["Body"].read().decode()
            if text in body:
                return
        time.sleep(0.2)
    raise TimeoutError(f"no Pipes message chunk with {text!r} reached the bucket in {timeout_s}s")


if __name__ == "__main__":
    raise SystemExit(main())
