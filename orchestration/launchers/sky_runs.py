"""Cloud runs by hand (`sky launch` / `sky jobs launch` without Dagster): the two steps around them.

    # before: put the snapshot where infra/sky/*.yaml look for it (skipped if that hash is there)
    python -m orchestration.launchers.sky_runs upload-snapshot --bucket my-bucket data/snapshots/<hash>

    # after: copy the run's outputs back (not its checkpoints/) and write its `compute` into lineage.json
    python -m orchestration.launchers.sky_runs pull-run --bucket my-bucket --run-id my-run --job-id 7
    python -m orchestration.launchers.sky_runs pull-run --bucket my-bucket --run-id my-run \\
        --accelerator H100:1 --hours 2.5 --cloud aws --region us-east-1 [--spot]    # a `sky launch` cluster

`--job-id` reads the managed job's record from SkyPilot (accelerator, cloud/region, duration, recoveries);
for a plain cluster, give what `sky status` / `sky cost-report` showed. Same code as the Dagster launcher.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from orchestration.launchers.bucket import download_run, run_prefix, s3_client, upload_file, upload_snapshot
from orchestration.launchers.compute_cost import Placement, write_compute
from orchestration.launchers.skypilot import RunOutcome, SkyPilotLauncher, managed_job_outcome


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m orchestration.launchers.sky_runs", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--bucket", help="S3 bucket (default: $FINQA_RL_BUCKET)")
    parser.add_argument("--endpoint-url", help="S3-compatible endpoint (default: AWS S3)")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("upload-snapshot", help="upload an environment snapshot to s3://<bucket>/snapshots/<hash>/")
    up.add_argument("snapshot", type=Path, help="a snapshot directory, data/snapshots/<hash>")

    pull = sub.add_parser("pull-run", help="copy s3://<bucket>/runs/<run id>/ back and record its compute")
    pull.add_argument("--run-id", required=True)
    pull.add_argument("--output", type=Path, help="local run directory (default: data/runs/<run id>)")
    pull.add_argument("--checkpoints", action="store_true", help="also copy checkpoints/")
    source = pull.add_mutually_exclusive_group()
    source.add_argument("--job-id", type=int, help="the managed job (sky jobs queue) that ran it")
    source.add_argument("--accelerator", help="a cluster run: accelerator and count, e.g. H100:1")
    pull.add_argument("--hours", type=float, help="with --accelerator: how long the cluster was up")
    pull.add_argument("--cloud")
    pull.add_argument("--region")
    pull.add_argument("--spot", action="store_true", help="with --accelerator: spot instances")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    launcher = SkyPilotLauncher(bucket=args.bucket, endpoint_url=args.endpoint_url)
    bucket = launcher.resolved_bucket()
    client = s3_client(args.endpoint_url)

    if args.command == "upload-snapshot":
        from rl_assets.snapshot import read_manifest

        snapshot_hash = read_manifest(args.snapshot)["snapshot_hash"]
        upload = upload_snapshot(client, bucket, args.snapshot, snapshot_hash)
        print(f"{'uploaded' if upload.uploaded else 'already there'}: {upload.uri} ({upload.files} files)")
        print(f"sky launch ... --env FINQA_RL_BUCKET={bucket} --env FINQA_RL_SNAPSHOT_HASH={snapshot_hash}")
        return 0

    if args.accelerator and args.hours is None:
        parser.error("--accelerator needs --hours")
    output = args.output or Path("data") / "runs" / args.run_id
    pulled = download_run(client, bucket, args.run_id, output, include_checkpoints=args.checkpoints)
    print(f"pulled {len(pulled)} files of s3://{bucket}/{run_prefix(args.run_id)}/ into {output}")
    outcome = _outcome(args)
    if outcome is None:
        print("no --job-id or --accelerator: lineage.json gets no compute record")
        return 0
    lineage = write_compute(output, launcher.compute_of(outcome))
    upload_file(client, bucket, lineage, f"{run_prefix(args.run_id)}/{lineage.name}")
    print(f"compute written to {lineage} (and the bucket's copy)")
    return 0


def _outcome(args: argparse.Namespace) -> RunOutcome | None:
    if args.job_id is not None:
        from orchestration.launchers.sky_sdk import SkyPilot

        record = SkyPilot().managed_job_record(args.job_id)
        wall = (record.end_at - record.submitted_at) if record.end_at and record.submitted_at else None
        return managed_job_outcome(
            record, name=f"job {args.job_id}", wall_seconds=wall or record.job_duration or 0.0, use_spot=None
        )
    if args.accelerator:
        name, _, count_text = args.accelerator.partition(":")
        count = float(count_text or 1)
        seconds = args.hours * 3600
        return RunOutcome(
            mode="cluster",
            succeeded=True,
            status="given on the command line",
            placement=Placement(
                name,
                int(count) if count.is_integer() else count,
                cloud=args.cloud,
                region=args.region,
                use_spot=args.spot,
            ),
            wall_seconds=seconds,
            billed_seconds=seconds,
            billed_basis="cluster hours given on the command line",
        )
    return None


if __name__ == "__main__":
    sys.exit(main())
