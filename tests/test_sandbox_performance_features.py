"""The sandbox's speed features must not change behaviour: result cache, validation memo, watchdog, LIMIT."""

from __future__ import annotations

import duckdb
import pytest

from rl_assets import sandbox


@pytest.fixture
def con(tmp_path):
    path = tmp_path / "world.duckdb"
    with duckdb.connect(str(path)) as c:
        c.execute("create schema acme")
        c.execute('create table acme.revenue (item varchar, "2024" varchar, "2023" varchar)')
        c.execute("insert into acme.revenue select 'row_' || i, '$' || i, '(' || i || ')' from range(200) t(i)")
        c.execute("create table acme.costs (item varchar, \"2024\" varchar)")
        c.execute("insert into acme.costs values ('total', '$7')")
    connection = sandbox.open_world_db(path)
    yield connection
    connection.close()


def test_cached_results_equal_fresh_results_and_are_keyed_by_table(con):
    cache = sandbox.ResultCache()
    q = "SELECT \"2024\" FROM revenue WHERE item = 'row_5'"
    fresh = sandbox.run_query(con, "acme", "revenue", q)
    first = sandbox.run_query(con, "acme", "revenue", q, cache=cache)
    second = sandbox.run_query(con, "acme", "revenue", q, cache=cache)
    assert fresh.text == first.text == second.text and '"$5"' in fresh.text
    assert (cache.hits, cache.misses) == (1, 1)
    # the same text against another table is a different entry, not a stale hit
    other = sandbox.run_query(con, "acme", "costs", "SELECT \"2024\" FROM costs WHERE item = 'total'", cache=cache)
    assert '"$7"' in other.text
    wrong_table = sandbox.run_query(con, "acme", "costs", q, cache=cache)
    assert not wrong_table.ok and wrong_table.error_kind == "forbidden_table"


def test_timeouts_are_not_cached_and_the_connection_survives(con):
    cache = sandbox.ResultCache()
    limits = sandbox.SandboxLimits(timeout_s=0.3)
    bomb = ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) "
            "SELECT count(*) FROM r WHERE n > 0")
    first = sandbox.run_query(con, "acme", "revenue", bomb, limits, cache=cache)
    assert not first.ok and first.error_kind in {"timeout", "resource_limit"}
    again = sandbox.run_query(con, "acme", "revenue", bomb, limits, cache=cache)
    assert not again.ok and cache.hits == 0  # evaluated again, not served from the cache
    ok = sandbox.run_query(con, "acme", "revenue", "SELECT item FROM revenue WHERE item = 'row_1'", limits)
    assert ok.ok and "row_1" in ok.text


def test_many_watched_queries_release_cleanly(con):
    # hundreds of short queries under the shared watchdog (early deadlines expire during the loop):
    # none is interrupted by a stale deadline
    for i in range(300):
        r = sandbox.run_query(con, "acme", "revenue", f"SELECT \"2023\" FROM revenue WHERE item = 'row_{i % 200}'",
                              sandbox.SandboxLimits(timeout_s=0.1))
        assert r.ok, r.text


@pytest.mark.parametrize(
    "query, expected_rows, truncated",
    [
        ("SELECT item FROM revenue WHERE item LIKE 'row_%'", 50, True),
        ("SELECT item FROM revenue WHERE item LIKE 'row_%' LIMIT 3", 3, False),
        ("SELECT item FROM revenue WHERE item LIKE 'row_%' LIMIT 1000", 50, True),
        ("SELECT item FROM revenue WHERE item = 'row_1' UNION ALL SELECT item FROM revenue WHERE item LIKE 'row_1%'", 50, True),
        ("SELECT item FROM revenue WHERE item LIKE 'row_%' LIMIT 10 OFFSET 195", 5, False),
    ],
    ids=["no-limit", "small-limit", "large-limit", "union", "offset"],
)
def test_row_limit_is_enforced_without_changing_small_results(con, query, expected_rows, truncated):
    result = sandbox.run_query(con, "acme", "revenue", query)
    assert result.ok, result.text
    assert result.rows == expected_rows
    assert result.truncated is truncated
