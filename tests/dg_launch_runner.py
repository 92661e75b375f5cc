"""`dg launch --assets <selection>` several times in ONE process, each launch on the Dagster instance of its
own DAGSTER_HOME (used by tests/test_selections.py; run from the repository root):

    python tests/dg_launch_runner.py HOME SELECTION [HOME SELECTION ...]

Each launch is exactly the user's `dg launch --assets SELECTION` (dagster-dg-cli's own command), with
Dagster's default multiprocess executor; only its start method is `forkserver`, preloading the code
location, so each step forks from a loaded copy instead of importing the code location again (`spawn`,
the default start method, costs 10-25 s of imports per step on 2 busy cores; the steps are separate
processes either way). The environment (FINQA_RL_*) must not change between launches: the forkserver
keeps the code location as it was first imported. Prints one `RESULT {json}` line per launch and stops at
the first failure; exit status 0 when every launch succeeded.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

FORKSERVER = {"execution": {"config": {"multiprocess": {
    "start_method": {"forkserver": {"preload_modules": ["orchestration.definitions"]}}}}}}


def main(argv: list[str]) -> int:
    from dagster_dg_cli.cli.launch import launch_command

    if len(argv) % 2:
        raise SystemExit(__doc__)
    for home, selection in zip(argv[0::2], argv[1::2]):
        os.environ["DAGSTER_HOME"] = home
        try:
            launch_command.main(["--assets", selection, "--config-json", json.dumps(FORKSERVER)],
                                standalone_mode=False)
            result = {"home": home, "selection": selection, "ok": True}
        except BaseException as error:  # click exits, materialisation failures
            traceback.print_exc()
            result = {"home": home, "selection": selection, "ok": False, "error": repr(error)}
        print("RESULT " + json.dumps(result), flush=True)
        if not result["ok"]:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
