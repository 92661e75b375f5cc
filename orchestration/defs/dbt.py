"""dbt models (dbt_project/) as Dagster assets; dbt tests become Dagster asset checks.

`dbt build` runs models and their tests in dependency order, so a failing test stops the models
downstream of it. Each model's code version is the hash of its SQL together with the project's macros
and dbt_project.yml (its vars), so editing a macro or a var marks the models stale; each materialisation
records the data versions of its parents (`dagster/input_data_version/<asset>`).
"""


import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, DbtProject, dbt_assets

from orchestration.defs.resources import WAREHOUSE_POOL, Warehouse, step_purpose
from orchestration.paths import DBT_PROJECT_DIR
from rl_assets.versioning import code_version

# dbt from this interpreter's environment (works without activating .venv)
DBT_EXECUTABLE = os.path.join(os.path.dirname(sys.executable), "dbt")

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
PARTIAL_PARSE = "partial_parse.msgpack"


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
    assets always match the SQL and YAML on disk (a manifest re-parsed after import would not). Every
    process that loads the definitions imports this module (under `dg dev` each run's step processes
    too), so one process parses at a time (a file lock in target/; the others then find the manifest
    fresh and do not parse again), into a temporary target directory whose manifest then replaces the
    old one atomically: a process loading the definitions meanwhile never reads half a manifest.
    """
    project_dir = Path(project_dir)
    if not (force or _manifest_is_stale(project_dir)):
        return
    target = project_dir / "target"
    target.mkdir(parents=True, exist_ok=True)
    with open(target / ".parse.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed, or when this process dies
        if not (force or _manifest_is_stale(project_dir)):
            return  # parsed by the process this one waited for
        with tempfile.TemporaryDirectory(prefix=".parse-", dir=target) as tmp:
            if (target / PARTIAL_PARSE).exists():  # dbt's partial parsing: seconds instead of a full parse
                shutil.copy2(target / PARTIAL_PARSE, tmp)
            subprocess.run(
                [DBT_EXECUTABLE, "parse", "--quiet", "--project-dir", str(project_dir), "--profiles-dir",
                 str(project_dir), "--target-path", tmp],
                check=True,
                cwd=project_dir,
            )
            for name in (PARTIAL_PARSE, "semantic_manifest.json", "manifest.json"):  # the manifest last
                if (Path(tmp) / name).exists():
                    os.replace(Path(tmp) / name, target / name)


# What every model's SQL also depends on: the macros and the vars (dbt_project.yml).
PROJECT_CODE_VERSION = code_version(
    extra_files=tuple([DBT_PROJECT_DIR / "dbt_project.yml", *sorted((DBT_PROJECT_DIR / "macros").rglob("*.sql"))])
)


prepare_manifest()


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


# dbt's indirect test selection for a subset of the models (a selection in the UI, `dg launch --assets`,
# automation): "buildable" runs a test only when every model it reads is selected or upstream of the
# selection. dbt's default ("eager") also runs tests that merely touch a selected model, e.g. the
# relationship tests of tasks_single_table / tasks_multi_table when only `tasks` is selected, which fail
# on a warehouse where those models were never built. A whole-project build selects everything anyway.
# A DBT_INDIRECT_SELECTION set by the user wins; dagster-dbt still switches to "empty" itself when checks
# of selected models are deselected.
INDIRECT_SELECTION = "buildable"


@contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Set environment variables for the dbt subprocess, restoring the previous values afterwards."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dbt_assets(manifest=dbt_project.manifest_path, project=dbt_project, dagster_dbt_translator=translator, pool=WAREHOUSE_POOL)
def finqa_dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: Warehouse):
    # dbt (a subprocess) writes the warehouse: hold the warehouse lock exclusively for the whole invocation,
    # so no other step or run opens the file meanwhile, whatever the instance's pool settings.
    # dbt reads the warehouse path from FINQA_RL_WAREHOUSE (dbt_project/profiles.yml).
    with (warehouse.lock(exclusive=True, purpose=step_purpose(context), log=context.log.info),
          _environment(FINQA_RL_WAREHOUSE=str(warehouse.path),
                       DBT_INDIRECT_SELECTION=os.environ.get("DBT_INDIRECT_SELECTION", INDIRECT_SELECTION))):
        yield from dbt.cli(["build"], context=context).stream()


def dbt_resource() -> DbtCliResource:
    return DbtCliResource(project_dir=dbt_project, profiles_dir=str(DBT_PROJECT_DIR), dbt_executable=DBT_EXECUTABLE)
