"""Launchers run the one training entry point (`python -m rl_assets.train`) somewhere and report back
through Dagster Pipes: `local` (a subprocess on this machine) or `skypilot` (a rented cloud GPU).

Each launcher is a Dagster resource with `launch(context, TrainingLaunch) -> Iterator[Pipes results]`; when
the iterator is exhausted the artifact is in `TrainingLaunch.output_dir` on this machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TrainingLaunch:
    """Everything a launcher needs to run one training run."""

    run_id: str
    config_name: str  # a name under rl_assets/configs/ or a path to a YAML file
    snapshot_path: str  # a published environment snapshot on this machine
    snapshot_hash: str
    output_dir: str  # where the artifact must be on this machine when the launch ends
    config_overrides: dict[str, Any] = field(default_factory=dict)  # key=value overrides (--set)
