"""The whole asset graph materialised by the main job: raw -> dbt -> checks, lineage, curation targets."""

from __future__ import annotations

import os
import subprocess
import sys

import dagster as dg
import pytest

from orchestration.paths import REPO_ROOT


def _check_evaluations(result):
    return [e.asset_check_evaluation_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]


def test_code_location_loads_through_the_dagster_cli():
    """What `dagster dev -m orchestration.definitions` loads, validated by Dagster's own CLI — as under
    `dagster dev` (DAGSTER_IS_DEV_CLI set: the dbt manifest is re-parsed) and without .venv/bin on PATH."""
    bin_dir = os.path.dirname(sys.executable)
    env = dict(os.environ, DAGSTER_IS_DEV_CLI="1")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if os.path.abspath(p) != bin_dir)
    proc = subprocess.run(
        [os.path.join(bin_dir, "dagster"), "definitions", "validate", "-m", "orchestration.definitions"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_definitions_contain_the_whole_graph():
    from orchestration.definitions import defs

    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    for expected in ["raw/sec10k", "raw/finqa", "raw/tatqa", "marts/world_tables", "marts/world_cells", "marts/tasks",
                     "marts/tasks_single_table", "marts/tasks_multi_table", "marts/task_exclusions"]:
        assert expected in keys
    check_names = {k.name for k in defs.resolve_asset_graph().asset_check_keys}
    assert {"gx_tasks_suite", "gx_world_cells_suite"} <= check_names
    assert any(name.startswith("unique_tasks_task_id") for name in check_names)  # dbt tests are checks
    # the main job is the whole graph: every asset (the raw files observed first) and every check, but the
    # partitioned evaluation assets (run per partition after it)
    job = defs.resolve_job_def("main")
    graph = defs.resolve_asset_graph()
    unpartitioned = {k for k in graph.get_all_asset_keys() if k.path[0] != "evaluation" and graph.get(k).is_executable}
    assert set(job.asset_layer.selected_asset_keys) == unpartitioned
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys if graph.get(k).is_observable} == {
        "raw_files/sec10k", "raw_files/finqa", "raw_files/tatqa"}
    assert set(job.asset_layer.asset_graph.asset_check_keys) == {c for c in graph.asset_check_keys if c.asset_key in unpartitioned}


def test_main_job_succeeds_with_every_check_green(pipeline):
    assert pipeline.result.success
    evaluations = _check_evaluations(pipeline.result)
    names = {e.check_name for e in evaluations}
    assert {"gx_tasks_suite", "gx_world_cells_suite"} <= names
    assert len(evaluations) >= 50
    failed = [f"{e.asset_key.to_user_string()}:{e.check_name}" for e in evaluations
              if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR]
    assert failed == []
    # the only warnings: raw records rejected as malformed (137 empty sec10k tables, 1 FinQA table + its questions)
    warned = {f"{e.asset_key.to_user_string()}:{e.check_name}" for e in evaluations if not e.passed}
    assert warned == {"raw/sec10k:no_rejected_records", "raw/finqa:no_rejected_records"}
    by_key = {e.asset_key.to_user_string(): e for e in evaluations if e.check_name == "no_rejected_records"}
    assert by_key["raw/sec10k"].metadata["rejected_by_reason"].value == {"empty_table": 137}
    assert by_key["raw/tatqa"].passed
    assert by_key["raw/tatqa"].metadata["unclaimed_raw_folders"].value == []
    # every source has a blocking load check, and the tasks a blocking check that every source yields tasks
    blocking = {f"{e.asset_key.to_user_string()}:{e.check_name}" for e in evaluations if e.passed}
    assert {"raw/sec10k:source_loaded", "raw/finqa:source_loaded", "raw/tatqa:source_loaded",
            "marts/tasks:tasks_per_source"} <= blocking


def test_curation_targets(marts):
    single = marts.execute("select count(*) from marts.tasks_single_table").fetchone()[0]
    multi = marts.execute("select count(*) from marts.tasks_multi_table").fetchone()[0]
    real = marts.execute("select count(*) from marts.tasks_single_table where source in ('finqa', 'tatqa')").fetchone()[0]
    assert single >= 1500
    assert multi >= 300
    assert real >= 400
    families = {r[0] for r in marts.execute("select distinct analytic_type from marts.tasks where source = 'sec10k'").fetchall()}
    assert {"lookup", "abs_change", "pct_change", "ratio", "share_of_total", "cagr", "average"} <= families
    assert {"cross_table_ratio", "cross_table_difference", "cross_table_share"} <= families


def test_world_covers_every_non_empty_source_table(marts):
    rows = dict(marts.execute("select source, count(*) from marts.world_tables group by all").fetchall())
    raw = dict(marts.execute(
        "select 'sec10k', count(*) from raw.sec10k_tables union all select 'finqa', count(*) from raw.finqa_tables "
        "union all select 'tatqa', count(*) from raw.tatqa_tables").fetchall())
    assert rows == raw
    companies = marts.execute("select count(distinct world_id) from marts.world_tables where source = 'sec10k'").fetchone()[0]
    assert companies == 20


def test_splits_are_disjoint_by_company_and_real_questions_never_train(marts):
    leaks = marts.execute(
        "select split_group from marts.tasks group by all having count(distinct split) > 1").fetchall()
    assert leaks == []
    # across sources: a FinQA ticker of a 10-K company (AAPL -> apple) shares that company's split,
    # and its questions are excluded when that company trains
    cross = marts.execute(
        "select t.company, t.split, s.split from marts.tasks t join seeds.company_tickers k on k.ticker = t.company "
        "join intermediate.int_company_splits s on s.source = 'sec10k' and s.company = k.company "
        "where t.source = 'finqa'").fetchall()
    assert all(task_split == company_split for _, task_split, company_split in cross)
    in_train = marts.execute(
        "select count(*) from marts.task_exclusions where reason = 'company_in_train_split'").fetchone()[0]
    train_tickers = marts.execute(
        "select count(*) from intermediate.int_real_tasks r join intermediate.int_company_splits s "
        "on s.source = r.source and s.company = r.company where s.split = 'train' and r.base_status = 'ok'").fetchone()[0]
    assert in_train == train_tickers
    assert marts.execute("select count(*) from marts.tasks where source <> 'sec10k' and split = 'train'").fetchone()[0] == 0
    splits = {r[0] for r in marts.execute("select distinct split from marts.tasks").fetchall()}
    assert splits == {"train", "val", "test"}


def test_every_exclusion_has_a_reason_and_real_exclusions_are_explained(marts):
    reasons = dict(marts.execute(
        "select reason, count(*) from marts.task_exclusions where candidate_kind = 'real_question' group by all").fetchall())
    assert "span_answer" in reasons and "number_from_text" in reasons
    total_real = marts.execute(
        "select (select count(*) from staging.stg_finqa__questions) + (select count(*) from staging.stg_tatqa__questions)"
    ).fetchone()[0]
    kept = marts.execute("select count(*) from marts.tasks where source <> 'sec10k'").fetchone()[0]
    assert kept + sum(reasons.values()) == total_real  # every real question is a task or an exclusion


def test_downstream_materialisations_record_parent_data_versions(pipeline):
    """Lineage: the raw files' observed version is the content hash of their bytes, the raw asset's version
    is that hash with the loader's code version, and a dbt model's materialisation carries it."""
    import hashlib

    from orchestration.defs.raw import LOADER_CODE_VERSION
    from orchestration.paths import raw_root

    instance = pipeline.instance
    root = raw_root()
    files = sorted([p for p in (root / "sec10k_tables").glob("*/*.json")] + list((root / "sec10k_tables").glob("*.json")),
                   key=lambda p: p.relative_to(root).as_posix())
    digest = hashlib.sha256()
    for p in files:
        rel, data = p.relative_to(root).as_posix().encode(), p.read_bytes()
        digest.update(len(rel).to_bytes(8, "big") + rel + len(data).to_bytes(8, "big") + data)
    content_hash = digest.hexdigest()

    observed = instance.get_latest_data_version_record(dg.AssetKey(["raw_files", "sec10k"]), is_source=True)
    assert observed.asset_observation.tags["dagster/data_version"] == content_hash
    raw_event = instance.get_latest_materialization_event(dg.AssetKey(["raw", "sec10k"]))
    raw_version = raw_event.asset_materialization.tags["dagster/data_version"]
    assert raw_version == hashlib.sha256(f"{content_hash}:{LOADER_CODE_VERSION}".encode()).hexdigest()
    assert raw_event.asset_materialization.tags["dagster/input_data_version/raw_files/sec10k"] == content_hash
    assert raw_event.asset_materialization.tags["dagster/code_version"] == LOADER_CODE_VERSION != "raw-v1"

    model_event = instance.get_latest_materialization_event(dg.AssetKey(["staging", "stg_sec10k__cells"]))
    tags = model_event.asset_materialization.tags
    assert tags["dagster/input_data_version/raw/sec10k"] == raw_version
    assert tags.get("dagster/code_version")  # dbt models carry code versions (SQL + macros + vars)

    tasks_tags = instance.get_latest_materialization_event(dg.AssetKey(["marts", "tasks"])).asset_materialization.tags
    assert "dagster/input_data_version/intermediate/int_company_splits" in tasks_tags
    assert tasks_tags.get("dagster/data_version")


def test_code_versions_follow_the_code():
    """Raw assets: the hash of the loader modules; dbt models: their SQL with the macros and vars."""
    from orchestration.definitions import defs
    from orchestration.defs import dbt as dbt_defs
    from rl_assets.versioning import code_version

    graph = defs.resolve_asset_graph()
    raw_version = graph.get(dg.AssetKey(["raw", "finqa"])).code_version
    assert raw_version == code_version("rl_assets.raw", "rl_assets.programs", "rl_assets.numbers")
    macros = sorted((dbt_defs.DBT_PROJECT_DIR / "macros").rglob("*.sql"))
    assert dbt_defs.PROJECT_CODE_VERSION == code_version(extra_files=(dbt_defs.DBT_PROJECT_DIR / "dbt_project.yml", *macros))
    versions = {graph.get(dg.AssetKey(["marts", name])).code_version for name in ("tasks", "world_cells")}
    assert len(versions) == 2 and None not in versions


def test_dbt_manifest_is_reparsed_when_the_project_changes(tmp_path):
    """Editing a model or YAML makes the manifest stale; loading the definitions re-parses it first, so
    the dbt assets never run against a manifest that misses a model or test (no stale KeyError).
    Works on a copy of the dbt project: the checkout's files and target/ are not touched."""
    import shutil

    from orchestration.defs import dbt as dbt_defs

    project = tmp_path / "dbt_project"
    shutil.copytree(dbt_defs.DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs", ".user.yml"))
    assert dbt_defs._manifest_is_stale(project)  # no manifest yet
    manifest = project / "target" / "manifest.json"
    manifest.parent.mkdir()
    for name in ("manifest.json", "partial_parse.msgpack"):  # parsed when the definitions were imported
        if (dbt_defs.dbt_project.manifest_path.parent / name).exists():
            shutil.copy2(dbt_defs.dbt_project.manifest_path.parent / name, manifest.parent / name)
    os.utime(manifest, (manifest.stat().st_atime, max(p.stat().st_mtime for p in dbt_defs._project_files(project)) + 1))
    assert not dbt_defs._manifest_is_stale(project)
    model = project / "models" / "marts" / "tasks_multi_table.sql"
    os.utime(model, (model.stat().st_atime, manifest.stat().st_mtime + 1))
    assert dbt_defs._manifest_is_stale(project)
    dbt_defs.prepare_manifest(project_dir=project)
    assert not dbt_defs._manifest_is_stale(project)


def _dbt_vars() -> dict:
    import yaml

    return yaml.safe_load((REPO_ROOT / "dbt_project" / "dbt_project.yml").read_text())["vars"]


def test_each_company_split_is_a_function_of_its_own_key(marts):
    """split = the configured cumulative fractions at md5(salt || group_source ':' split_group) in [0, 1),
    computed here independently for every company; the shipped data splits close to the fractions."""
    import hashlib

    config = _dbt_vars()
    salt, fractions = config["split_salt"], config["split_fractions"]

    def expected(group_source: str, group: str) -> str:
        point = int(hashlib.md5(f"{salt}{group_source}:{group}".encode()).hexdigest()[:8], 16) / 2**32
        shares = fractions["sec10k" if group_source == "sec10k" else "real"]
        total = 0.0
        for name, share in list(shares.items())[:-1]:
            total += share
            if point < total:
                return name
        return list(shares)[-1]

    rows = marts.execute(
        "select s.source, s.split_group, s.split, case when s.source = 'finqa' and k.company is not null then 'sec10k' "
        "else s.source end from intermediate.int_company_splits s "
        "left join seeds.company_tickers k on s.source = 'finqa' and k.ticker = s.company").fetchall()
    assert rows and all(split == expected(group_source, group) for _, group, split, group_source in rows)
    sec = [split for source, _, split, _ in rows if source == "sec10k"]
    assert {s: sec.count(s) for s in ("train", "val", "test")} == {"train": 14, "val": 3, "test": 3}
    real = [split for source, _, split, _ in rows if source == "tatqa"]
    assert 0.4 < real.count("val") / len(real) < 0.6


def test_real_question_units_follow_question_program_and_answer(marts):
    rows = marts.execute(
        "select q.question, q.answer, t.gold_value, t.gold_unit from marts.tasks t "
        "join staging.stg_finqa__questions q on t.task_id = 'finqa:' || q.question_id").fetchall()
    assert rows
    by_unit = {}
    for question, answer, value, unit in rows:
        by_unit.setdefault(unit, []).append((question, answer, value))
    # 'what percentage ...' answered with a fraction is a ratio, whatever the answer text looks like
    asked = [(q, a, v) for q, a, v in by_unit["ratio"] if "percent" in q.lower() and "%" not in a]
    assert asked and all(abs(v) < 10 for _, _, v in asked)
    # a percentage answer: ratio when the gold is the fraction, percent when it is the percentage itself
    # (to 1% or to the precision the answer is written with: '-11%' for -11.27%)
    def close(gold: float, answer: str) -> bool:
        stated = float(answer.rstrip("%").replace(",", ""))
        decimals = len(answer.rstrip("%").partition(".")[2])
        return abs(gold - stated) <= max(0.011 * abs(stated), 0.5001 * 10 ** -decimals)

    assert all(close(value * 100, a) for _, a, value in by_unit["ratio"] if a.endswith("%"))
    assert all(close(value, a) for _, a, value in by_unit.get("percent", []) if a.endswith("%"))
    units = {r[0] for r in marts.execute("select distinct gold_unit from marts.tasks").fetchall()}
    assert units == {"number", "percent", "ratio"}


def test_tasks_carry_the_scale_their_table_states(marts):
    scales = dict(marts.execute("select gold_scale, count(*) from marts.tasks group by all").fetchall())
    assert set(scales) <= {"", "thousand", "million", "billion"} and scales.get("million", 0) > 500
    # amounts from a table "(in millions)" are in millions; percentages and ratios are scale-free
    rows = marts.execute("""
        select t.analytic_type, t.gold_scale, w.description
        from marts.tasks t join marts.world_tables w
          on w.world_id = t.world_id and w.table_name = json_extract_string(t.gold_tables, '$[0]')
        where t.source = 'sec10k' and t.question_type = 'single_table'""").fetchall()
    in_millions = [(a, s) for a, s, d in rows if "(in millions)" in d.lower() and "thousand" not in d.lower()]
    assert {s for a, s in in_millions if a in ("pct_change", "ratio", "share_of_total", "cagr")} == {""}
    amounts = [s for a, s in in_millions if a in ("abs_change", "average")]
    assert amounts and amounts.count("million") / len(amounts) > 0.8
    tatqa = dict(marts.execute(
        "select gold_scale, count(*) from marts.tasks where source = 'tatqa' group by all").fetchall())
    assert tatqa.get("thousand", 0) > 0 and tatqa.get("million", 0) > 0


def test_dbt_number_macro_agrees_with_the_python_parser_on_every_world_cell(marts):
    """Where the macro parse_number reads a number, rl_assets.numbers.parse_number reads the same value
    and sign. Deliberate difference: the macro is strict (the whole cell must be one number, with at most
    a currency, sign, parentheses and one unit or scale word), the Python parser reads the first number of
    any text; every cell where only Python finds a number has text besides one plain number."""
    import re

    from rl_assets.numbers import parse_answer, parse_number

    cells = marts.execute("select cell_text, value from marts.world_cells").fetchall()
    disagree, python_only = [], 0
    for text, value in cells:
        parsed = parse_number(text) if text is not None else None
        if value is not None:
            if parsed is None or abs(parsed.value - value) > 1e-9 * max(1.0, abs(value)):
                disagree.append((text, value, parsed))
        elif parsed is not None:
            python_only += 1
            if not (re.search(r"[^\d\s.,$()%+\-\u2212]", text) or len(parse_answer(text)) > 1):
                disagree.append((text, value, parsed))
    assert len(cells) > 40_000 and disagree == []
    assert python_only < 0.05 * len(cells)
