"""The sandbox's fast path (rl_assets.sandbox.simple_select) against the full sqlglot validation.

The fast path may only change speed: it recognises common simple queries and must defer everything
else. Checked three ways: typical agent queries are recognised (so the fast path is really used);
queries outside the subset -- including every kind of attack -- are deferred; and for a corpus of
hand-written and randomly generated queries, whatever the fast path accepts is accepted by the full
validator too and gives exactly the same result.
"""

from __future__ import annotations

import random
from pathlib import Path

import duckdb
import pytest

from rl_assets import sandbox
from rl_assets.sandbox import simple_select
from rl_assets.sandbox import QueryResult, SandboxLimits, open_world_db, run_query

SCHEMA = "apple"
T = "us_gaap_IncomeTaxTableTextBlock"
COLUMNS = ("component", "2024", "2023", "Total tax")
LIMITS = SandboxLimits(max_rows=5, timeout_s=1.0)
SECRET = "top secret value"
OTHER_TABLE_ROW = "row of another table"
ROWS = [
    ("Federal", "$1,234", "$1,000", "1"),
    ("State", "$200", "(50)", "2"),
    ("Foreign", "3000", "2500", None),
    ("Total", "4434", "3450", "4"),
    ("it's", "", "—", "5"),
] + [(f"Other {i}", str(i), str(i * 2), str(i)) for i in range(1, 9)]


@pytest.fixture(scope="module")
def con(tmp_path_factory):
    path: Path = tmp_path_factory.mktemp("fast") / "world.duckdb"
    build = duckdb.connect(str(path))
    build.execute("CREATE SCHEMA apple")
    build.execute("CREATE SCHEMA meta")
    build.execute(f'CREATE TABLE apple.{T} (component VARCHAR, "2024" VARCHAR, "2023" VARCHAR, "Total tax" VARCHAR)')
    build.executemany(f"INSERT INTO apple.{T} VALUES (?, ?, ?, ?)", ROWS)
    build.execute("CREATE TABLE apple.other_table (component VARCHAR)")
    build.execute("INSERT INTO apple.other_table VALUES (?)", [OTHER_TABLE_ROW])
    build.execute("CREATE TABLE meta.secret (x VARCHAR)")
    build.execute("INSERT INTO meta.secret VALUES (?)", [SECRET])
    build.close()
    connection = open_world_db(path, LIMITS)
    yield connection
    connection.close()


def recognise(query: str) -> str | None:
    return simple_select.recognise(query, SCHEMA, T, COLUMNS, LIMITS.max_rows + 1)


def both_paths(con, query: str) -> tuple[QueryResult, QueryResult]:
    """(result with the fast path, result of the full validation alone) for one query."""
    return tuple(
        run_query(con, SCHEMA, T, query, LIMITS, COLUMNS, fast_path=fast) for fast in (True, False)
    )


def full_validator_accepts(query: str) -> bool:
    try:
        sandbox.validate(query, SCHEMA, T, LIMITS, COLUMNS, fast_path=False)
    except sandbox.QueryRejected:
        return False
    return True


COMMON = [
    f'SELECT "2024" FROM {T} WHERE component = \'Federal\'',
    f'select "2024", "2023" from "{T}" where "component" = \'State\'',
    f'SELECT "2024" FROM {T.lower()} WHERE component LIKE \'%tal%\'',
    f'SELECT "2024", "2023" FROM {T} WHERE component IN (\'Federal\', \'State\') ORDER BY component',
    f'SELECT component FROM {T} WHERE "2024" IS NOT NULL LIMIT 3',
    f'SELECT component FROM {T} LIMIT 100',
    f'SELECT count(*) FROM {T}',
    f'SELECT count(DISTINCT component) AS n FROM {T}',
    f'SELECT sum(try_cast("2024" AS DOUBLE)) AS total FROM {T} WHERE component <> \'Total\'',
    f'SELECT try_cast("2024" AS DOUBLE) / try_cast("2023" AS DOUBLE) - 1 AS growth FROM {T} WHERE component = \'Total\'',
    f'SELECT round(avg(CAST("2023" AS DOUBLE)), 2) FROM {T} WHERE component ILIKE \'other%\'',
    f'SELECT component, "Total tax" FROM {T} WHERE "Total tax" = \'4\' OR (component = \'State\' AND NOT "2024" = \'\')',
    f'SELECT max(length(component)), min(component) FROM {T} GROUP BY "2024" HAVING count(*) > 0',
    f'SELECT DISTINCT upper(trim(component)) AS c FROM {T} WHERE component BETWEEN \'A\' AND \'Z\' ORDER BY c DESC NULLS LAST',
    f'SELECT coalesce(nullif("2023", \'\'), \'-\') AS v FROM {T} WHERE component = \'it\'\'s\'',
    f'SELECT CASE WHEN "2024" = \'\' THEN \'blank\' ELSE "2024" END AS v FROM {T} WHERE TRUE',
    f'SELECT abs(-1.5e2) * 2 AS x, median(try_cast("2024" AS INTEGER)) FROM {T}',
    f'\n  SELECT "2024"\n  FROM {T}\n  WHERE component = \'Total\'\n  LIMIT 2\n',
    f'SELECT "2024" FROM {T} WHERE component = \'Total\' LIMIT 0',
]


@pytest.mark.parametrize("query", COMMON)
def test_common_agent_queries_take_the_fast_path_with_identical_results(con, query):
    assert recognise(query) is not None, query
    fast, full = both_paths(con, query)
    assert (fast.ok, fast.error_kind, fast.text, fast.rows, fast.truncated) == (
        full.ok, full.error_kind, full.text, full.rows, full.truncated
    )


def test_fast_path_qualifies_the_table_and_bounds_rows():
    sql = recognise(f'SELECT "2024" FROM {T} WHERE component = \'Total\'')
    assert f'FROM "{SCHEMA}"."{T}" WHERE' in sql and sql.endswith(f" LIMIT {LIMITS.max_rows + 1}")
    assert recognise(f"SELECT component FROM {T} LIMIT 1000").endswith(f"LIMIT {LIMITS.max_rows + 1}")
    assert recognise(f"SELECT component FROM {T} LIMIT 2").endswith("LIMIT 2")


def test_fast_path_result_is_truncated_like_the_full_path(con):
    result = run_query(con, SCHEMA, T, f"SELECT component FROM {T} LIMIT 1000", LIMITS, columns=COLUMNS)
    assert result.ok and result.truncated and result.rows == LIMITS.max_rows


DEFERRED = [
    # outside the subset but fine for the full validator
    f"WITH x AS (SELECT component FROM {T}) SELECT component FROM x LIMIT 1",
    f"SELECT t.component FROM {T} t LIMIT 1",
    f"SELECT component FROM {T} AS t LIMIT 1",
    f"SELECT component FROM apple.{T} LIMIT 1",
    f"SELECT component FROM {T} LIMIT 1;",
    f"SELECT component FROM {T} LIMIT 1 -- comment",
    f"SELECT /* c */ component FROM {T} LIMIT 1",
    f'SELECT "2024"::DOUBLE FROM {T} LIMIT 1',
    f"SELECT replace(\"2024\", ',', '') FROM {T} LIMIT 1",
    f"SELECT component || 'x' FROM {T} LIMIT 1",
    f"SELECT component FROM {T} LIMIT 2 OFFSET 1",
    f"SELECT component FROM {T} WHERE component IN (SELECT component FROM {T} LIMIT 1)",
    f"SELECT component, count(*) OVER () FROM {T} LIMIT 1",
    f"SELECT component total FROM {T} LIMIT 1",
    f"SELECT CAST(\"2024\" AS DECIMAL(10, 2)) FROM {T} LIMIT 1",
    f"SELECT component FROM {T} WHERE component = e'x' LIMIT 1",
    f"SELECT component FROM {T} ORDER BY ALL LIMIT 1",
    f"SELECT first(component) FROM {T} LIMIT 1",
    f'SELECT "component"(1) FROM {T} LIMIT 1',
    f'SELECT "count"(*) FROM {T}',
    f"SELECT last(component) FROM {T} WHERE component IS NOT NULL",
    f"SELECT component FROM {T} WHERE component IS (NULL)",
    f"FROM {T} SELECT component LIMIT 1",
    # errors: the full validator writes the message
    f"SELECT * FROM {T} WHERE true",
    f"SELECT component, * FROM {T} LIMIT 1",
    f"SELECT component FROM {T}",
    f"SELECT component FROM {T} ORDER BY component",
    f"SELECT revenue FROM {T} LIMIT 1",
    f"SELECT \"2025\" FROM {T} LIMIT 1",
    f"SELECT component FROM {T} WHERE component = \"Federal\"",
    "SELECT component FROM other_table LIMIT 1",
    "SELECT x FROM meta.secret LIMIT 1",
    f"SELECT component FROM {T}, meta.secret LIMIT 1",
    f"SELECT component FROM {T} JOIN meta.secret ON true LIMIT 1",
    f"SELECT component FROM {T} UNION SELECT x FROM meta.secret LIMIT 1",
    "SELECT count(*) FROM read_csv('/etc/passwd')",
    "SELECT count(*) FROM duckdb_tables()",
    "SELECT count(*) FROM information_schema.tables",
    f"SELECT getenv('HOME') FROM {T} LIMIT 1",
    f"SELECT repeat('x', 1000000000) FROM {T} LIMIT 1",
    f"SELECT component FROM {T} LIMIT 1; DROP TABLE {T}",
    f"SELECT component FROM {T} WHERE component = 'a' -- '; ATTACH 'x.db'",
    "PRAGMA database_list",
    "SET enable_external_access = true",
    f"COPY {T} TO '/tmp/x.csv'",
    f"SELECT component FROM {T} WHERE component = 'unterminated''",
    f'SELECT "component FROM {T} LIMIT 1',
    f"SELECT component FROM {T.replace('a', chr(0x430))} LIMIT 1",
    f"SELECT component FROM {T} WHERE component = ? LIMIT 1",
    f"SELECT component FROM {T} WHERE component = $1 LIMIT 1",
    f"SELECT component FROM {T} LIMIT 1\x00",
    f"SELECT " + "(" * 40 + "1" + ")" * 40 + f" FROM {T} LIMIT 1",
    "",
    "SELECT",
]


@pytest.mark.parametrize("query", DEFERRED)
def test_everything_else_is_deferred_to_the_full_validator(query):
    assert recognise(query) is None


VOCAB = [
    "SELECT", "SELECT", "FROM", "FROM", "WHERE", "LIMIT", "GROUP BY", "ORDER BY", "HAVING", "AS", "AND",
    "OR", "NOT", "IN", "LIKE", "IS", "NULL", "DISTINCT", "CASE", "WHEN", "THEN", "ELSE", "END",
    "BETWEEN", "UNION", "JOIN", "ON", "WITH", "OVER", "*", "(", ")", "(", ")", ",", "=", "<>", "+", "-",
    "/", ";", "::", ".", "||", "--", "/*", "*/", "$1", "?",
    T, T, T.upper(), f'"{T}"', "other_table", "meta.secret", "meta", "secret", "information_schema.tables",
    "duckdb_tables()", "read_csv('/etc/passwd')",
    "component", "component", '"2024"', '"2023"', '"Total tax"', "x", "total",
    "count(", "sum(", "avg(", "max(", "round(", "try_cast(", "CAST(", "DOUBLE", "getenv(", "repeat(",
    "current_setting(", "query(", "lower(", "replace(", "first(", "last(", '"count"(', '"getenv"(',
    "'Federal'", "'State'", "'%a%'", "''", "'it''s'", "1", "2", "1000", "3.5", "1e3",
]


# replacements that often keep a query valid
BENIGN = [
    "component", '"2024"', '"2023"', '"Total tax"', "'Federal'", "'Total'", "1", "2.5", "AND", "OR", "NOT",
    "count(*)", "sum(1)", "max(component)", "lower(component)", "=", "<>", "+", "-", "*", "/", "LIMIT 3",
    "ORDER BY component", "WHERE component = 'State'", "IS NULL", "DESC",
]


def _random_queries(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    queries = []
    for _ in range(n):
        # start from a recognisable query and mutate it, or build token soup
        if rng.random() < 0.7:
            words = rng.choice(COMMON).split()
            for _ in range(rng.choice((0, 1, 1, 2, 3))):
                vocab = BENIGN if rng.random() < 0.6 else VOCAB
                op = rng.random()
                pos = rng.randrange(len(words) + 1)
                if op < 0.4:
                    words.insert(pos, rng.choice(vocab))
                elif op < 0.8 and words:
                    words[min(pos, len(words) - 1)] = rng.choice(vocab)
                elif words:
                    del words[min(pos, len(words) - 1)]
        else:
            words = ["SELECT"] + [rng.choice(VOCAB) for _ in range(rng.randint(3, 14))]
        queries.append(" ".join(words))
    return queries


def test_whatever_the_fast_path_runs_the_full_validator_accepts_and_results_are_identical(con):
    queries = _random_queries(2500, seed=7)
    accepted = ran = 0
    for query in queries:
        fast, full = both_paths(con, query)
        assert (fast.ok, fast.error_kind, fast.text, fast.rows, fast.truncated) == (
            full.ok, full.error_kind, full.text, full.rows, full.truncated
        ), query
        sql = recognise(query)
        if sql is None:
            continue
        accepted += 1
        assert sql.count(f'"{SCHEMA}"."{T}"') == 1 and sql.lower().count("from") == 1, sql
        direct = sandbox.execute(con, sql, LIMITS)
        if direct.ok:  # DuckDB ran it: the full validator must allow it too
            ran += 1
            assert full_validator_accepts(query), query
            assert SECRET not in direct.text and OTHER_TABLE_ROW not in direct.text
    # the generator must really exercise the fast path (and also produce plenty it defers)
    assert ran >= 100 and accepted <= len(queries) - 500, (ran, accepted)


def test_attack_like_queries_never_reach_duckdb_through_the_fast_path(con):
    """Every generated query that names something other than the allowed table is deferred."""
    for query in _random_queries(2500, seed=11):
        lowered = query.lower()
        if any(s in lowered for s in ("secret", "other_table", "information_schema", "read_csv", "duckdb_tables", "getenv", "repeat(", "query(", "current_setting")):
            assert recognise(query) is None, query
