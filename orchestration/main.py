"""The main job on local defaults: materialise what changed in the asset graph and run its checks, then
evaluate the policies on the test sets (a seeded sample of `DEFAULT_SAMPLE_SIZE` tasks of each) and write
their reports.

    .venv/bin/python -m orchestration.main

Runs in-process against the Dagster instance in $DAGSTER_HOME (default: .dagster_home/ in the
repository, so `dagster dev` with the same DAGSTER_HOME shows these runs). The raw files are observed
first; only assets whose inputs or code changed since their last materialisation (and everything
downstream of them) run, so a first run materialises everything and a run on unchanged data does
nothing (orchestration.incremental). Prints what the raw sources loaded and rejected, raw folders no
source reads, and every failed or warning check. Exits non-zero if any asset or blocking check fails.
The evaluation (orchestration.defs.evaluation.run_evaluations) then runs every policy of POLICIES whose
artifact is there and prints pass@1 per test set and the report of each.
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
    from orchestration import incremental, paths, report
    from orchestration.definitions import defs
    from orchestration.defs.evaluation import run_evaluations

    started = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        observed = incremental.observe_sources(defs, instance)
        if not observed.success:
            print("\nmain job: FAILED — could not observe the raw files (see the log above)")
            return 1
        run_plan = incremental.plan(defs, instance, paths.warehouse_path())
        result = None if run_plan.up_to_date else incremental.execute(defs, instance, run_plan)
        elapsed = time.perf_counter() - started
        code = report.print_report(defs, instance, result, run_plan, elapsed, paths.raw_root())
        if code:
            return code

        started = time.perf_counter()
        outcomes = run_evaluations(defs, instance, log=lambda line: print(f"  {line}"))
        print(f"\nevaluation in {time.perf_counter() - started:.1f}s:")
        for o in outcomes:
            scores = ", ".join(f"{t} {'n/a' if v is None else f'{v:.1%}'}" for t, v in (o.pass_at_1 or {}).items())
            print(f"  {o.policy}: {o.status}{' — ' + o.detail if o.detail else ''}"
                  + (f"\n    pass@1: {scores}\n    report: {o.report}" if o.report else ""))
        return 0 if all(o.status != "failed" for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
