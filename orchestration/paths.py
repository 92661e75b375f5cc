"""Where the pipeline reads and writes on local defaults, each overridable by one environment variable.

| What                         | Default                     | Override                   |
|------------------------------|-----------------------------|----------------------------|
| raw sources (one folder each)| data/raw/                   | FINQA_RL_RAW_DIR           |
| DuckDB warehouse             | data/warehouse.duckdb       | FINQA_RL_WAREHOUSE         |
| environment snapshots        | data/snapshots/             | FINQA_RL_SNAPSHOTS_DIR     |
| training runs (policy asset) | data/runs/                  | FINQA_RL_RUNS_DIR          |

Relative overrides are resolved against the current directory.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"


def _path(env_var: str, default: Path) -> Path:
    value = os.environ.get(env_var)
    return Path(value).expanduser().resolve() if value else default


def raw_root() -> Path:
    return _path("FINQA_RL_RAW_DIR", REPO_ROOT / "data" / "raw")


def warehouse_path() -> Path:
    return _path("FINQA_RL_WAREHOUSE", REPO_ROOT / "data" / "warehouse.duckdb")


def snapshots_root() -> Path:
    from rl_assets.snapshot import snapshots_root as root  # the one definition (FinQAEnv's default uses it too)

    return root()


def runs_root() -> Path:
    return _path("FINQA_RL_RUNS_DIR", REPO_ROOT / "data" / "runs")
