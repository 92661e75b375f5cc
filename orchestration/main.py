"""The main job on local defaults: materialise the whole asset graph and run every check.

    .venv/bin/python -m orchestration.main

Runs in-process against the Dagster instance in $DAGSTER_HOME (default: .dagster_home/ in the
repository, so `dagster dev` with the same DAGSTER_HOME shows these runs). Exits non-zero if any
asset or check fails.
"""

from __future__ import annotations

import os
import sys
import time

from orchestration.paths import REPO_ROOT


def main() -> int:
    os.environ.setdefault("DAGSTER_HOME", str(REPO_ROOT / ".dagster_home"))
    os.makedirs(os.environ["DAGSTER_HOME"], exist_ok=True)

    import dagster as dg

    # importing the definitions re-parses the dbt project first if any of its files changed
    from orchestration.definitions import defs

    started = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        result = defs.resolve_job_def("main").execute_in_process(instance=instance, raise_on_error=False)
        elapsed = time.perf_counter() - started

        checks = [
            e.asset_check_evaluation_data
            for e in result.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION"
        ]
        failed = [c for c in checks if not c.passed and c.severity == dg.AssetCheckSeverity.ERROR]
        warned = [c for c in checks if not c.passed and c.severity != dg.AssetCheckSeverity.ERROR]
        materialized = result.get_asset_materialization_events()
        print(f"\nmain job: {'SUCCESS' if result.success else 'FAILED'} in {elapsed:.1f}s — "
              f"{len(materialized)} assets materialised, {len(checks)} checks "
              f"({len(failed)} failed, {len(warned)} warnings)")
        for c in failed:
            print(f"  FAILED check {c.asset_key.to_user_string()}:{c.check_name}")
        for c in warned:
            detail = c.metadata.get("rejected_by_reason")
            print(f"  WARN   check {c.asset_key.to_user_string()}:{c.check_name}"
                  + (f" {detail.value}" if detail is not None else ""))
        return 0 if result.success and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
