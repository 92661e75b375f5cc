"""dbt models (dbt_project/) as Dagster assets; dbt tests become Dagster asset checks.

`dbt build` runs models and their tests in dependency order, so a failing test stops the models
downstream of it. Each model's code version is the hash of its SQL together with the project's macros
and dbt_project.yml (its vars), so editing a macro or a var marks the models stale; each materialisation
records the data versions of its parents (`dagster/input_data_version/<asset>`).
"""


import hashlib
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, DbtProject, dbt_assets
from dagster_dbt.dbt_project import using_dagster_dev

from orchestration.defs.resources import WAREHOUSE_POOL, Warehouse
from orchestration.paths import DBT_PROJECT_DIR
from rl_assets.versioning import code_version

# dbt from this interpreter's environment (works without activating .venv)
DBT_EXECUTABLE = os.path.join(os.path.dirname(sys.executable), "dbt")

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)


def _project_files(project_dir: Path) -> list[Path]:
    files = [project_dir / "dbt_project.yml", project_dir / "profiles.yml"]
    for folder in ("models", "macros", "seeds", "tests"):
        files += [p for p in (project_dir / folder).rglob("*") if p.is_file()]
    return [p for p in files if p.exists()]


def _manifest_is_stale(project_dir: Path = DBT_PROJECT_DIR) -> bool:
    """True if target/manifest.json is missing or older than any file of the dbt project."""
    manifest = Path(project_dir) / "target" / "manifest.json"
    if not manifest.exists():
        return True
    built = manifest.stat().st_mtime
    return any(p.stat().st_mtime > built for p in _project_files(Path(project_dir)))


def prepare_manifest(force: bool = False, project_dir: Path = DBT_PROJECT_DIR) -> None:
    """Write <project>/target/manifest.json (`dbt parse`) if it is missing or older than the project.

    Runs when this module is imported, BEFORE the dbt assets are defined from the manifest, so the
    assets always match the SQL and YAML on disk (a manifest re-parsed after import would not).
    """
    if force or _manifest_is_stale(project_dir):
        subprocess.run(
            [DBT_EXECUTABLE, "parse", "--quiet", "--project-dir", str(project_dir), "--profiles-dir", str(project_dir)],
            check=True,
            cwd=project_dir,
        )


# What every model's SQL also depends on: the macros and the vars (dbt_project.yml).
PROJECT_CODE_VERSION = code_version(
    extra_files=tuple([DBT_PROJECT_DIR / "dbt_project.yml", *sorted((DBT_PROJECT_DIR / "macros").rglob("*.sql"))])
)


prepare_manifest(force=using_dagster_dev())


class FinQADbtTranslator(DagsterDbtTranslator):
    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        # staging / intermediate / marts, from the model's folder
        fqn = dbt_resource_props.get("fqn", [])
        if dbt_resource_props.get("resource_type") == "seed":
            return "curation_seeds"
        return f"curation_{fqn[1]}" if len(fqn) > 2 else "curation"

    def get_code_version(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        own = super().get_code_version(dbt_resource_props) or ""
        return hashlib.sha256(f"{own}:{PROJECT_CODE_VERSION}".encode()).hexdigest()[:16]


translator = FinQADbtTranslator(
    settings=DagsterDbtTranslatorSettings(enable_asset_checks=True, enable_duplicate_source_asset_keys=True)
)


@dbt_assets(manifest=dbt_project.manifest_path, project=dbt_project, dagster_dbt_translator=translator, pool=WAREHOUSE_POOL)
def finqa_dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: Warehouse):
    # dbt reads the warehouse path from FINQA_RL_WAREHOUSE (dbt_project/profiles.yml)
    os.environ["FINQA_RL_WAREHOUSE"] = str(warehouse.path)
    yield from dbt.cli(["build"], context=context).stream()


def dbt_resource() -> DbtCliResource:
    return DbtCliResource(project_dir=dbt_project, profiles_dir=str(DBT_PROJECT_DIR), dbt_executable=DBT_EXECUTABLE)
