"""The local launcher: the training entry point as a subprocess of the Dagster step, through Dagster Pipes.

    python -m rl_assets.train --config <name> --snapshot <dir> --output <dir> --set key=value ...

`dg.PipesSubprocessClient` passes the Pipes context to the child in environment variables and reads its
messages while it runs, so each logging step's line appears in the run's event log live; the child's
stdout/stderr go to the step's compute logs.
"""

from __future__ import annotations

import json
import sys
from typing import Iterator

import dagster as dg

from orchestration.launchers import TrainingLaunch
from orchestration.paths import REPO_ROOT


def entry_point_command(launch: TrainingLaunch, python: str) -> list[str]:
    command = [python, "-m", "rl_assets.train", "--config", launch.config_name,
               "--snapshot", launch.snapshot_path, "--output", launch.output_dir]
    for key, value in sorted(launch.config_overrides.items()):
        command += ["--set", f"{key}={json.dumps(value)}"]  # JSON is YAML: the entry point reads it back typed
    return command


class LocalLauncher(dg.ConfigurableResource):
    """Trains on this machine, in a subprocess running the project's entry point."""

    python: str = ""  # interpreter for the subprocess; default: the one running Dagster

    def launch(self, context: dg.AssetExecutionContext, launch: TrainingLaunch) -> Iterator[dg.MaterializeResult]:
        command = entry_point_command(launch, self.python or sys.executable)
        context.log.info(f"local launcher: {' '.join(command)}")
        client = dg.PipesSubprocessClient(cwd=str(REPO_ROOT))
        yield from client.run(context=context, command=command).get_results()
