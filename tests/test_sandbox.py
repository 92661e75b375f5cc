"""Tests for rl_assets.sandbox: the hardened read-only SQL layer for agent queries.

A small world database is built once per module with two schemas (``apple``,
``meta``); every query runs against ``apple.us_gaap_IncomeTaxTableTextBlock``
through one shared, hardened connection.  The attack corpus checks that every
abusive query is rejected (or stays within the limits) without raising, and a
separate test checks that running it writes nothing to disk.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import duckdb
import pytest

from rl_assets.sandbox import (
    ERROR_KINDS,
    QueryResult,
    SandboxLimits,
    open_world_db,
    quoting_example,
    result_rows,
    run_query,
)

SCHEMA = "apple"
T = "us_gaap_IncomeTaxTableTextBlock"
COLUMNS = ["component", "2024", "2023"]
LIMITS = SandboxLimits(timeout_s=0.5)  # small timeout keeps the suite fast

# 4 real rows + 16 filler rows: 20 rows make 8-way self joins (2.56e10 rows)
# genuinely expensive.
INCOME_TAX_ROWS = [
    ("Federal", "$1,234", "$1,000"),
    ("State", "$200", "(50)"),
    ("Foreign", "$3,000", "$2,500"),
    ("Total", "$4,434", "$3,450"),
] + [(f"Other item {i:02d}", f"${i}", f"${i * 2}") for i in range(1, 17)]

SECRET = "top secret value"


def _build_world(path: Path) -> None:
    con = duckdb.connect(str(path))
    con.execute("CREATE SCHEMA apple")
    con.execute("CREATE SCHEMA meta")
    con.execute(f'CREATE TABLE apple.{T} (component VARCHAR, "2024" VARCHAR, "2023" VARCHAR)')
    con.executemany(f"INSERT INTO apple.{T} VALUES (?, ?, ?)", INCOME_TAX_ROWS)
    con.execute('CREATE TABLE apple.revenue_by_segment (segment VARCHAR, "2024" VARCHAR)')
    con.execute("INSERT INTO apple.revenue_by_segment VALUES ('Americas', '$167,045')")
    con.execute("CREATE TABLE meta.secret (x VARCHAR)")
    con.execute("INSERT INTO meta.secret VALUES (?)", [SECRET])
    con.close()


@pytest.fixture(scope="module")
def world_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("world") / "world.duckdb"
    _build_world(path)
    return path


@pytest.fixture(scope="module")
def con(world_path):
    connection = open_world_db(world_path, LIMITS)
    yield connection
    connection.close()


def q(con, query: str, limits: SandboxLimits = LIMITS, columns=None) -> QueryResult:
    return run_query(con, SCHEMA, T, query, limits, columns=columns)


def records(result: QueryResult) -> list[dict]:
    assert result.ok, result.text
    return json.loads(result.text)


# ---------------------------------------------------------------------------
# open_world_db
# ---------------------------------------------------------------------------
def test_open_world_db_is_read_only_and_locked(world_path):
    con = open_world_db(world_path, SandboxLimits(memory_limit="128MB"))
    try:
        settings = dict(
            con.execute(
                "SELECT name, value FROM duckdb_settings() WHERE name IN ("
                "'enable_external_access', 'lock_configuration', 'threads', "
                "'autoload_known_extensions', 'autoinstall_known_extensions', "
                "'allow_community_extensions', 'max_temp_directory_size', 'temp_directory')"
            ).fetchall()
        )
        assert settings["enable_external_access"] == "false"
        assert settings["lock_configuration"] == "true"
        assert settings["threads"] == "1"
        assert settings["autoload_known_extensions"] == "false"
        assert settings["autoinstall_known_extensions"] == "false"
        assert settings["allow_community_extensions"] == "false"
        assert settings["max_temp_directory_size"] == "0 bytes"
        assert settings["temp_directory"] == ""
        memory = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
        assert "MiB" in memory and float(memory.split()[0]) < 130

        # The raw connection cannot loosen anything: the configuration is locked.
        for statement in (
            "SET enable_external_access = true",
            "SET lock_configuration = false",
            "RESET lock_configuration",
            "SET memory_limit = '10GB'",
            "SET temp_directory = '/tmp/spill'",
        ):
            with pytest.raises(duckdb.Error, match="locked"):
                con.execute(statement)
        # ... and it is read-only with no file access.
        with pytest.raises(duckdb.Error):
            con.execute("CREATE TABLE apple.x (a INTEGER)")
        with pytest.raises(duckdb.Error):
            con.execute("SELECT * FROM read_csv('/etc/passwd')")
        assert con.execute(f"SELECT count(*) FROM apple.{T}").fetchone()[0] == len(INCOME_TAX_ROWS)
    finally:
        con.close()


# ---------------------------------------------------------------------------
# Normal, filtered queries
# ---------------------------------------------------------------------------
def test_where_on_label_with_quoted_numeric_column(con):
    result = q(con, f"SELECT \"2024\" FROM {T} WHERE component = 'Federal'", columns=COLUMNS)
    assert records(result) == [{"2024": "$1,234"}]
    assert result.rows == 1 and not result.truncated and result.chars == len(result.text)


def test_aggregate_over_cleaned_values(con):
    result = q(
        con,
        "SELECT sum(CAST(replace(replace(\"2024\", '$', ''), ',', '') AS INTEGER)) AS total "
        f"FROM {T} WHERE component IN ('Federal', 'State', 'Foreign')",
        columns=COLUMNS,
    )
    assert records(result) == [{"total": 4434}]


def test_unfiltered_aggregate_is_allowed(con):
    assert records(q(con, f"SELECT count(*) AS n FROM {T}")) == [{"n": 20}]


def test_cte_and_qualified_names(con):
    result = q(
        con,
        f"WITH x AS (SELECT component, \"2023\" AS prior FROM {T.lower()} WHERE component LIKE 'F%') "
        "SELECT x.component, prior FROM x ORDER BY component",
        columns=COLUMNS,
    )
    assert records(result) == [
        {"component": "Federal", "prior": "$1,000"},
        {"component": "Foreign", "prior": "$2,500"},
    ]
    # Schema-qualified, aliased and table-qualified references all work.
    for query in (
        f"SELECT t.component FROM apple.{T} t WHERE t.\"2024\" = '$200'",
        f"SELECT {T}.component FROM {T} WHERE {T}.\"2024\" = '$200'",
        f"SELECT component FROM \"{T}\" WHERE \"2024\" = '$200'",
        f"FROM {T} SELECT component WHERE \"2024\" = '$200'",
    ):
        assert records(q(con, query, columns=COLUMNS)) == [{"component": "State"}], query


def test_limit_order_union_and_regexp(con):
    result = q(con, f"SELECT component FROM {T} ORDER BY component DESC LIMIT 2")
    assert records(result) == [{"component": "Total"}, {"component": "State"}]
    result = q(
        con,
        f"SELECT component FROM {T} WHERE component = 'State' "
        f"UNION ALL SELECT component FROM {T} WHERE component = 'Total'",
    )
    assert sorted(r["component"] for r in records(result)) == ["State", "Total"]
    result = q(
        con,
        "SELECT CAST(regexp_replace(\"2023\", '^\\((.*)\\)$', '-\\1') AS INTEGER) AS v "
        f"FROM {T} WHERE component = 'State'",
    )
    assert records(result) == [{"v": -50}]


def test_recursive_cte_with_filter_is_allowed(con):
    result = q(
        con,
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) "
        "SELECT sum(n) AS s FROM r",
    )
    assert records(result) == [{"s": 15}]


def test_trailing_semicolon_and_comments_are_fine(con):
    result = q(con, f"-- leading comment\nSELECT \"2024\" FROM {T} /* inline */ WHERE component = 'Total';")
    assert records(result) == [{"2024": "$4,434"}]


@pytest.mark.parametrize(
    "query",
    [
        # A comment cannot smuggle code: comments are dropped before execution.
        f"SELECT component FROM {T} WHERE component = 'State' -- */ ; DROP TABLE {T}; /*",
        f"SELECT component FROM {T} WHERE component = 'State' /* ; ATTACH 'x' AS y; */",
        # Quotes inside literals / aliases are escaped when SQL is regenerated.
        f"SELECT component AS \"x\"\";DROP TABLE t;--\" FROM {T} WHERE component = 'State'",
        f"SELECT component FROM {T} WHERE component = 'State' OR component = E'\\x27; DROP TABLE t; --'",
        f"SELECT component FROM {T} WHERE component = 'State' OR component = '\u202eetatS'",
    ],
)
def test_harmless_tricks_run_as_a_single_select(con, query):
    result = q(con, query)
    assert result.ok, result.text
    assert [list(r.values()) for r in json.loads(result.text)] == [["State"]]


# ---------------------------------------------------------------------------
# Validation messages
# ---------------------------------------------------------------------------
def test_unknown_column_lists_available_columns(con):
    result = q(con, f"SELECT revenue FROM {T} WHERE component = 'Total'", columns=COLUMNS)
    assert result.error_kind == "unknown_column"
    assert 'component, "2024", "2023"' in result.text
    # Double-quoted "strings" are columns in SQL: the message says so.
    result = q(con, f'SELECT "2024" FROM {T} WHERE component = "Total"', columns=COLUMNS)
    assert result.error_kind == "unknown_column" and "single quotes" in result.text


def test_the_quoting_example_is_one_of_the_tables_own_columns(con):
    # a fixed example ("2024") was copied by a small policy into queries on tables without such a column
    result = q(con, f"SELECT revenue FROM {T} WHERE component = 'Total'", columns=["item", "2014_in_millions", "2013"])
    assert result.error_kind == "unknown_column"
    assert 'e.g. SELECT "2014_in_millions"' in result.text and '"2024"' not in result.text
    result = q(con, f"SELECT revenue FROM {T} WHERE component = 'Total'", columns=["item", "application_software"])
    assert result.error_kind == "unknown_column"
    assert "double-quoted" not in result.text and "e.g." not in result.text
    assert quoting_example(["item", "total", "2019_m", "2018"]) == '"2019_m"'
    assert quoting_example(["item", "total"]) is None


def test_column_check_is_lenient_for_aliases_and_ctes(con):
    queries = [
        f'SELECT "2024" AS v FROM {T} WHERE component = \'Total\' ORDER BY v',
        f"WITH c(label, amount) AS (SELECT component, \"2024\" FROM {T}) SELECT amount FROM c WHERE label = 'Total'",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT max(n) AS m FROM r",
        f"SELECT v.amount FROM (SELECT \"2024\" AS amount FROM {T} WHERE component = 'Total') v",
    ]
    for query in queries:
        assert q(con, query, columns=COLUMNS).ok, query


def test_unknown_column_without_column_list_is_a_duckdb_binder_error(con):
    result = q(con, f"SELECT revenue FROM {T} WHERE component = 'Total'")
    assert result.error_kind == "execution_error"
    assert "Binder Error" in result.text and "LINE" not in result.text


def test_unfiltered_message_matches_reference_env(con):
    result = q(con, f"SELECT component FROM {T}")
    assert result.error_kind == "unfiltered_query"
    assert "Only filtered queries are allowed" in result.text and "SELECT *" in result.text


def test_forbidden_table_message_names_the_allowed_table(con):
    result = q(con, "SELECT x FROM meta.secret LIMIT 1")
    assert result.error_kind == "forbidden_table" and T in result.text


@pytest.mark.parametrize(
    "query, name",
    [
        ("SELECT getenv('HOME') AS h LIMIT 1", "getenv()"),
        # sqlglot normalises these names (PAD, GROUP_CONCAT); the message does not.
        ("SELECT lpad('x', 5, '0') AS p LIMIT 1", "lpad()"),
        (f"SELECT string_agg(component, ',') AS s FROM {T}", "string_agg()"),
    ],
)
def test_forbidden_function_message_names_the_function(con, query, name):
    result = q(con, query)
    assert result.error_kind == "forbidden_function" and name in result.text


def test_not_select_message_names_the_statement(con):
    assert "(got LOAD)" in q(con, "LOAD httpfs").text
    assert "(got EXPORT)" in q(con, "EXPORT DATABASE '/tmp/export'").text


# ---------------------------------------------------------------------------
# Limits
# ---------------------------------------------------------------------------
def test_row_limit_truncates_with_note(con):
    limits = SandboxLimits(max_rows=5, timeout_s=0.5)
    result = q(con, f"SELECT component FROM {T} WHERE component <> ''", limits)
    assert result.ok and result.truncated and result.rows == 5
    assert "[truncated: showing 5 of >5 rows]" in result.text
    assert len(json.loads(result.text.rsplit("\n", 1)[0])) == 5
    assert result_rows(result.text) == json.loads(result.text.rsplit("\n", 1)[0])  # the rows, without the note


def test_result_rows_reads_the_rows_and_refuses_an_error():
    assert result_rows('[{"2024": "$5"}]') == [{"2024": "$5"}]
    assert result_rows("[]\nNo row has item = 'x'. Closest row labels: 'X'.") == []
    for text in ("Error (unknown_column): ...", '{"a": 1}'):
        with pytest.raises(ValueError):
            result_rows(text)


def test_exactly_max_rows_is_not_truncated(con):
    limits = SandboxLimits(max_rows=20, timeout_s=0.5)
    result = q(con, f"SELECT component FROM {T} WHERE component <> ''", limits)
    assert result.ok and not result.truncated and result.rows == 20


def test_char_limit_truncates_whole_rows(con):
    limits = SandboxLimits(max_chars=300, timeout_s=0.5)
    result = q(con, f"SELECT component, \"2024\", \"2023\" FROM {T} WHERE component <> ''", limits)
    assert result.ok and result.truncated
    assert result.chars == len(result.text) <= 300
    body, note = result.text.rsplit("\n", 1)
    assert note.startswith("[truncated:") and "300 characters" in note
    assert len(json.loads(body)) == result.rows < 20


def test_error_messages_respect_max_chars(con):
    limits = SandboxLimits(max_chars=40, timeout_s=0.5)
    result = q(con, "SELECT x FROM meta.secret LIMIT 1", limits)
    assert not result.ok and result.chars == len(result.text) <= 40


def test_query_length_limit(con):
    limits = SandboxLimits(max_query_chars=100, timeout_s=0.5)
    ok_query = f"SELECT count(*) AS n FROM {T}"
    assert q(con, ok_query + " " * (100 - len(ok_query)), limits).ok
    assert q(con, ok_query + " " * (101 - len(ok_query)), limits).error_kind == "query_too_long"


def test_runaway_query_is_interrupted_and_connection_survives(con):
    join = ", ".join(f"{T} t{i}" for i in range(8))
    start = time.monotonic()
    result = q(con, f"SELECT count(*) AS n FROM {join} WHERE t0.component <> t7.component")
    elapsed = time.monotonic() - start
    assert result.error_kind == "timeout", result.text
    assert elapsed < 5 * LIMITS.timeout_s
    # The shared connection still answers correctly, through run_query and raw.
    assert records(q(con, f"SELECT \"2024\" FROM {T} WHERE component = 'Total'")) == [{"2024": "$4,434"}]
    assert con.execute("SELECT 42").fetchone() == (42,)


def test_concurrent_queries_on_shared_connection(con):
    runaway = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) AS c FROM r"
    results: dict[str, QueryResult] = {}

    def worker(name: str, query: str) -> None:
        results[name] = q(con, query)

    threads = [threading.Thread(target=worker, args=("runaway", runaway))] + [
        threading.Thread(
            target=worker, args=(f"ok{i}", f"SELECT \"2024\" FROM {T} WHERE component = 'Foreign'")
        )
        for i in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert results["runaway"].error_kind == "timeout"
    for i in range(4):
        assert records(results[f"ok{i}"]) == [{"2024": "$3,000"}]


# ---------------------------------------------------------------------------
# Attack / abuse corpus
# ---------------------------------------------------------------------------
# BOUNDED: the query may run, but only within the limits: either ok with at
# most max_rows rows and max_chars characters, or stopped by timeout/memory.
BOUNDED = "bounded"
J8 = ", ".join(f"{T} t{i}" for i in range(8))
NESTED_REPLACE = "component"
for _ in range(10):
    NESTED_REPLACE = f"replace({NESTED_REPLACE}, 'e', 'eeeeeeeeee')"

ATTACKS = [
    # --- file and network access via table functions ---
    ("read_csv", "SELECT * FROM read_csv('/etc/passwd')", "forbidden_function"),
    ("read_csv_auto", "SELECT column0 FROM read_csv_auto('/etc/passwd') LIMIT 5", "forbidden_function"),
    ("read_csv_http", "SELECT count(*) FROM read_csv('https://example.com/x.csv')", "forbidden_function"),
    ("read_parquet", "SELECT count(*) FROM read_parquet('/tmp/x.parquet')", "forbidden_function"),
    ("read_json", "SELECT count(*) FROM read_json('/etc/hosts')", "forbidden_function"),
    ("read_text", "SELECT content FROM read_text('/etc/passwd') LIMIT 1", "forbidden_function"),
    ("read_blob", "SELECT content FROM read_blob('/etc/passwd') LIMIT 1", "forbidden_function"),
    ("glob", "SELECT file FROM glob('/etc/*') LIMIT 5", "forbidden_function"),
    ("parquet_scan", "SELECT count(*) FROM parquet_scan('/tmp/x.parquet')", "forbidden_function"),
    ("sniff_csv", "SELECT Delimiter FROM sniff_csv('/etc/passwd') LIMIT 1", "forbidden_function"),
    ("replacement_scan", "SELECT count(*) FROM '/etc/passwd'", "forbidden_table"),
    ("read_csv_scalar_subquery", f"SELECT (SELECT count(*) FROM read_csv('/etc/passwd')) AS n FROM {T} LIMIT 1", "forbidden_function"),
    ("read_csv_in_where", f"SELECT component FROM {T} WHERE component IN (SELECT column0 FROM read_csv('/etc/passwd'))", "forbidden_function"),
    ("qualified_read_csv", "SELECT main.read_csv('/etc/passwd') AS x LIMIT 1", "forbidden_function"),
    ("qualified_allowed_function", f"SELECT system.main.upper(component) AS u FROM {T} LIMIT 1", "forbidden_function"),
    # --- writing files / other databases / extensions ---
    ("copy_table_to", f"COPY {T} TO '/tmp/x.csv'", "not_select"),
    ("copy_query_to", f"COPY (SELECT component FROM {T} LIMIT 1) TO '/tmp/x.csv'", "not_select"),
    ("export_database", "EXPORT DATABASE '/tmp/export'", "not_select"),
    ("attach", "ATTACH '/tmp/evil.duckdb' AS evil", "not_select"),
    ("detach", "DETACH world", "not_select"),
    ("install_httpfs", "INSTALL httpfs", "not_select"),
    ("load_httpfs", "LOAD httpfs", "not_select"),
    ("use_schema", "USE meta", "not_select"),
    # --- configuration and session state ---
    ("pragma", "PRAGMA database_list", "not_select"),
    ("pragma_function", "SELECT name FROM pragma_table_info('meta.secret') LIMIT 5", "forbidden_function"),
    ("set_external_access", "SET enable_external_access = true", "not_select"),
    ("set_search_path", "SET search_path = 'meta'", "not_select"),
    ("set_variable", "SET VARIABLE x = 1", "not_select"),
    ("reset", "RESET memory_limit", "not_select"),
    ("call", "CALL pragma_version()", "not_select"),
    ("checkpoint", "CHECKPOINT", "not_select"),
    ("vacuum", "VACUUM", "not_select"),
    ("begin", "BEGIN TRANSACTION", "not_select"),
    ("prepare", "PREPARE p AS SELECT 1", "not_select"),
    ("execute", "EXECUTE p", "not_select"),
    ("describe", f"DESCRIBE {T}", "not_select"),
    ("show_tables", "SHOW TABLES", "not_select"),
    ("summarize", f"SUMMARIZE {T}", "not_select"),
    ("pivot_statement", f"PIVOT {T} ON component USING first(\"2024\")", "not_select"),
    ("values_statement", "VALUES (1), (2)", "not_select"),
    # --- DDL / DML ---
    ("create_table", "CREATE TABLE x AS SELECT 1 AS a", "not_select"),
    ("create_temp_table", "CREATE TEMP TABLE x (a INTEGER)", "not_select"),
    ("create_view", f"CREATE VIEW v AS SELECT component FROM {T}", "not_select"),
    ("create_macro", "CREATE MACRO m(a) AS a", "not_select"),
    ("insert", f"INSERT INTO {T} VALUES ('x', '1', '2')", "not_select"),
    ("update", f"UPDATE {T} SET \"2024\" = '0'", "not_select"),
    ("delete", f"DELETE FROM {T}", "not_select"),
    ("drop", f"DROP TABLE {T}", "not_select"),
    ("alter", f"ALTER TABLE {T} ADD COLUMN x INTEGER", "not_select"),
    ("select_into", f"SELECT component INTO newtab FROM {T} WHERE true", "not_select"),
    # --- multiple statements, also hidden behind comments ---
    ("two_selects", "SELECT 1; SELECT 2", "multiple_statements"),
    ("select_then_drop", f"SELECT component FROM {T} LIMIT 1; DROP TABLE {T}", "multiple_statements"),
    ("line_comment_then_drop", f"SELECT component FROM {T} LIMIT 1 -- harmless\n; DROP TABLE {T}", "multiple_statements"),
    ("block_comment_then_drop", f"SELECT component FROM {T} LIMIT 1 /* harmless */; DROP TABLE {T}", "multiple_statements"),
    ("comment_then_attach", f"SELECT component FROM {T} LIMIT 1; /* x */ ATTACH '/tmp/y.db' AS y", "multiple_statements"),
    ("nul_between_statements", f"SELECT 1\x00; DROP TABLE {T}", "parse_error"),
    # --- other tables, schemas and catalogs ---
    ("other_schema", "SELECT x FROM meta.secret LIMIT 1", "forbidden_table"),
    ("other_table", "SELECT segment FROM revenue_by_segment LIMIT 1", "forbidden_table"),
    ("other_table_qualified", "SELECT segment FROM apple.revenue_by_segment LIMIT 1", "forbidden_table"),
    ("same_name_other_schema", f"SELECT component FROM meta.{T} LIMIT 1", "forbidden_table"),
    ("catalog_qualified", f"SELECT component FROM world.apple.{T} LIMIT 1", "forbidden_table"),
    ("join_other_schema", f"SELECT a.component FROM {T} a JOIN meta.secret s ON true LIMIT 1", "forbidden_table"),
    ("lateral_other_schema", f"SELECT component FROM {T}, LATERAL (SELECT x FROM meta.secret) s LIMIT 1", "forbidden_table"),
    ("subquery_other_schema", f"SELECT component FROM {T} WHERE component IN (SELECT x FROM meta.secret)", "forbidden_table"),
    ("union_other_schema", f"SELECT component FROM {T} UNION SELECT x FROM meta.secret LIMIT 5", "forbidden_table"),
    ("cte_other_schema", "WITH s AS (SELECT x FROM meta.secret) SELECT x FROM s LIMIT 1", "forbidden_table"),
    ("information_schema", "SELECT table_name FROM information_schema.tables LIMIT 5", "forbidden_table"),
    ("duckdb_tables_function", "SELECT table_name FROM duckdb_tables() LIMIT 5", "forbidden_function"),
    ("duckdb_tables_view", "SELECT table_name FROM duckdb_tables LIMIT 5", "forbidden_table"),
    ("duckdb_settings", "SELECT name, value FROM duckdb_settings() LIMIT 5", "forbidden_function"),
    ("pg_catalog", "SELECT relname FROM pg_catalog.pg_class LIMIT 5", "forbidden_table"),
    ("sqlite_master", "SELECT sql FROM sqlite_master LIMIT 5", "forbidden_table"),
    ("query_function", "SELECT count(*) FROM query('SELECT * FROM meta.secret')", "forbidden_function"),
    ("query_table_function", "SELECT count(*) FROM query_table('meta.secret')", "forbidden_function"),
    # CTE names cannot be used to smuggle in a catalog view outside their scope
    # (CTEs are renamed, so such references fail closed).
    ("cte_scope_escape", "SELECT (WITH sqlite_master AS (SELECT 1 AS sql) SELECT sql FROM sqlite_master) AS a, (SELECT sql FROM sqlite_master LIMIT 1) AS b", "execution_error"),
    ("cte_self_shadow", "WITH sqlite_master AS (SELECT sql FROM sqlite_master) SELECT sql FROM sqlite_master LIMIT 1", "execution_error"),
    ("cte_forward_reference", "WITH b AS (SELECT sql FROM duckdb_views_cte), duckdb_views_cte AS (SELECT 1 AS sql) SELECT sql FROM b LIMIT 1", "execution_error"),
    # --- system / session functions ---
    ("current_setting", f"SELECT current_setting('memory_limit') AS m FROM {T} LIMIT 1", "forbidden_function"),
    ("getenv", f"SELECT getenv('HOME') AS h FROM {T} LIMIT 1", "forbidden_function"),
    ("getvariable", f"SELECT component FROM {T} WHERE getvariable('x') IS NULL", "forbidden_function"),
    ("version", f"SELECT version() AS v FROM {T} LIMIT 1", "forbidden_function"),
    ("columns_star", f"SELECT COLUMNS(*) FROM {T} LIMIT 5", "forbidden_function"),
    ("list_lambda", f"SELECT list_transform([1], x -> x + 1) AS l FROM {T} LIMIT 1", "forbidden_function"),
    ("unnest_in_from", f"SELECT count(*) FROM {T}, unnest([1, 2, 3])", "forbidden_function"),
    # --- unfiltered queries ---
    ("select_star", f"SELECT * FROM {T}", "unfiltered_query"),
    ("select_star_where", f"SELECT * FROM {T} WHERE true", "unfiltered_query"),
    ("select_star_or_trick", f"SELECT * FROM {T} WHERE component = '' OR '' = ''", "unfiltered_query"),
    ("table_star", f"SELECT t.* FROM {T} t LIMIT 5", "unfiltered_query"),
    ("star_exclude", f"SELECT * EXCLUDE (component) FROM {T} LIMIT 5", "unfiltered_query"),
    ("from_only", f"FROM {T}", "unfiltered_query"),
    ("table_statement", f"TABLE {T}", "unfiltered_query"),
    ("no_filter", f"SELECT component FROM {T}", "unfiltered_query"),
    ("order_is_not_a_filter", f"SELECT component, \"2024\" FROM {T} ORDER BY component", "unfiltered_query"),
    ("window_is_not_a_filter", f"SELECT component, count(*) OVER () AS n FROM {T}", "unfiltered_query"),
    # --- resource exhaustion ---
    ("recursive_cte_bomb", "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT n FROM r WHERE n > 0", BOUNDED),
    ("recursive_cte_count", "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) AS c FROM r", BOUNDED),
    ("recursive_string_doubling", "WITH RECURSIVE r(s, i) AS (SELECT 'x', 0 UNION ALL SELECT s || s, i + 1 FROM r WHERE i < 40) SELECT length(s) AS l FROM r WHERE i > 30", BOUNDED),
    ("self_join_8_rows", f"SELECT t0.component FROM {J8} WHERE t0.component <> t7.component", BOUNDED),
    ("self_join_8_count", f"SELECT count(*) AS n FROM {J8} WHERE t0.component <> t7.component", BOUNDED),
    ("self_join_8_sorted", f"SELECT t0.component FROM {J8} WHERE true ORDER BY t1.component || t2.component || t3.component DESC", BOUNDED),
    ("self_join_count_distinct", f"SELECT count(DISTINCT t0.component || t1.component || t2.component || t3.component || t4.component || t5.component) AS n FROM {J8}", BOUNDED),
    ("huge_output_row", f"SELECT t0.component || t1.component || t2.component || t3.component || t4.component AS c FROM {J8} WHERE true", BOUNDED),
    ("repeat_bomb", f"SELECT repeat('x', 1000000000) AS x FROM {T} LIMIT 1", "forbidden_function"),
    ("repeat_length", "SELECT length(repeat('x', 1000000000)) AS n LIMIT 1", "forbidden_function"),
    ("lpad_bomb", "SELECT lpad('x', 1000000000, 'y') AS x LIMIT 1", "forbidden_function"),
    ("printf_width_bomb", "SELECT printf('%01000000000d', 1) AS x LIMIT 1", "forbidden_function"),
    ("format_width_bomb", "SELECT format('{:>1000000000}', 'x') AS x LIMIT 1", "forbidden_function"),
    ("string_agg_bomb", f"SELECT length(string_agg(t0.component, ',')) AS n FROM {J8}", "forbidden_function"),
    ("list_agg_bomb", f"SELECT length(list(t0.component)::VARCHAR) AS n FROM {J8}", "forbidden_function"),
    ("nested_replace_bomb", f"SELECT length({NESTED_REPLACE}) AS n FROM {T} LIMIT 1", "resource_limit"),
    ("regexp_backref_bomb", f"SELECT length(regexp_replace(regexp_replace(component, '(.)', '\\1\\1\\1\\1', 'g'), '(.)', '\\1\\1\\1\\1', 'g')) AS n FROM {T} LIMIT 1", "resource_limit"),
    ("replace_with_column", f"SELECT replace(component, 'e', component) AS x FROM {T} LIMIT 1", "resource_limit"),
    ("range_table", "SELECT count(*) FROM range(1000000000000)", "forbidden_function"),
    ("range_1e12_float", "SELECT count(*) FROM range(1e12::BIGINT)", "forbidden_function"),
    ("generate_series_table", "SELECT count(*) FROM generate_series(1, 1000000000000)", "forbidden_function"),
    ("range_scalar", "SELECT range(1000000000) AS r LIMIT 1", "forbidden_function"),
    ("unnest_range", "SELECT unnest(range(1000000000)) AS n LIMIT 1", "forbidden_function"),
    ("deep_nesting", "SELECT " + "(" * 1500 + "1" + ")" * 1500 + " AS x LIMIT 1", "parse_error"),
    ("too_long", f"SELECT component FROM {T} WHERE component = '" + "x" * 5000 + "'", "query_too_long"),
    # --- malformed input, odd unicode and quoting ---
    ("empty", "", "parse_error"),
    ("whitespace", "   \n\t  ", "parse_error"),
    ("only_line_comment", "-- nothing to see here", "parse_error"),
    ("only_block_comment", "/* SELECT 1 */", "parse_error"),
    ("only_semicolons", ";;", "parse_error"),
    ("nul_byte", f"SELECT component FROM {T} WHERE component = 'a\x00' LIMIT 1", "parse_error"),
    ("control_char", f"SELECT component FROM {T}\x1b WHERE true", "parse_error"),
    ("homoglyph_table", f"SELECT component FROM {T.replace('a', chr(0x430))} LIMIT 1", "forbidden_table"),
    ("fullwidth_table", "SELECT component FROM \uff55\uff53_gaap_IncomeTaxTableTextBlock LIMIT 1", "forbidden_table"),
    ("zero_width_table", f"SELECT component FROM us_gaap_\u200b{T[8:]} LIMIT 1", "forbidden_table"),
    ("rtl_override_table", f"SELECT component FROM \u202e{T} LIMIT 1", "forbidden_table"),
    ("quoted_table_with_quote", f"SELECT component FROM \"{T}\"\"\" LIMIT 1", "forbidden_table"),
    ("triple_quoted_column", f'SELECT """component""" FROM {T} LIMIT 1', "execution_error"),
    ("backticks", f"SELECT `component` FROM {T} LIMIT 1", "parse_error"),
    ("square_brackets_table", f"SELECT component FROM [{T}] LIMIT 1", "parse_error"),
    ("unicode_escape_string", f"SELECT component FROM {T} WHERE component = U&'\\0046ederal' LIMIT 1", "execution_error"),
    ("unicode_escape_identifier", f'SELECT component FROM U&"{T}" LIMIT 1', "parse_error"),
    ("positional_parameter", f"SELECT component FROM {T} WHERE component = $1", "execution_error"),
    ("question_parameter", f"SELECT component FROM {T} WHERE component = ?", "execution_error"),
    ("not_a_string", None, "parse_error"),
]
ATTACK_IDS = [case[0] for case in ATTACKS]
assert len(set(ATTACK_IDS)) == len(ATTACK_IDS) >= 70


def _check_contained(result: QueryResult, limits: SandboxLimits) -> None:
    """Whatever happened: a QueryResult within the limits, and no data from elsewhere in the agent's view."""
    assert isinstance(result, QueryResult)
    assert result.chars == len(result.text) <= limits.max_chars
    assert SECRET not in result.text and "root:" not in result.text
    assert result.ok or (result.error_kind in ERROR_KINDS and result.rows == 0)
    if result.ok:
        assert result.rows <= limits.max_rows


def _check_attack(result: QueryResult, expected: str, limits: SandboxLimits) -> None:
    _check_contained(result, limits)
    if expected == BOUNDED:
        if result.ok:  # every BOUNDED query produces far more than max_rows rows
            assert result.truncated and result.rows <= limits.max_rows
        else:
            assert result.error_kind in {"timeout", "resource_limit"}, result.text
        return
    assert result.ok is False, result.text
    assert result.error_kind == expected, result.text
    assert result.error_kind in ERROR_KINDS and result.rows == 0 and not result.truncated


@pytest.mark.parametrize("case_id, query, expected", ATTACKS, ids=ATTACK_IDS)
def test_attack_corpus(con, case_id, query, expected):
    result = run_query(con, SCHEMA, T, query, LIMITS)
    _check_attack(result, expected, LIMITS)


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast_path", "full_validation"])
def test_attack_corpus_with_column_check(con, fast_path):
    """With the table's columns known (what the environment passes, and what enables the fast path), no
    attack leaks data or escapes the limits, and none turns into a success it was not before."""
    for case_id, query, expected in ATTACKS:
        result = run_query(con, SCHEMA, T, query, LIMITS, columns=COLUMNS, fast_path=fast_path)
        _check_contained(result, LIMITS)
        if expected in (BOUNDED, "execution_error"):
            # may now be caught earlier as an unknown column
            assert result.error_kind in {None, "unknown_column", "timeout", "resource_limit", "execution_error"}, case_id
            if result.ok:
                assert expected == BOUNDED and result.truncated, case_id
        else:
            _check_attack(result, expected, LIMITS)
    assert records(q(con, "SELECT count(*) AS n FROM " + T)) == [{"n": 20}]


def _snapshot(*dirs: Path) -> dict[str, tuple[int, int]]:
    """Every file and directory below ``dirs`` with its size and mtime."""
    files = {}
    for directory in dirs:
        for root, dirnames, filenames in os.walk(directory):
            for name in dirnames + filenames:
                path = os.path.join(root, name)
                stat = os.stat(path)
                files[path] = (stat.st_size, stat.st_mtime_ns)
    return files


# Absolute paths the corpus tries to write to.
ATTACK_TARGETS = ["/tmp/x.csv", "/tmp/export", "/tmp/evil.duckdb", "/tmp/y.db", "/tmp/spill"]


def test_corpus_writes_nothing_to_disk(world_path, tmp_path, monkeypatch):
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)  # relative paths (e.g. a default .tmp spill dir) land here
    before = _snapshot(world_path.parent, workdir)
    targets_before = {p: os.path.exists(p) for p in ATTACK_TARGETS}
    con = open_world_db(world_path, LIMITS)
    try:
        for _case_id, query, _expected in ATTACKS:
            run_query(con, SCHEMA, T, query, LIMITS)
    finally:
        con.close()
    assert _snapshot(world_path.parent, workdir) == before
    assert {p: os.path.exists(p) for p in ATTACK_TARGETS} == targets_before
