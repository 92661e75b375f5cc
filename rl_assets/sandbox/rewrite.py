"""Rewriting a validated query: the allowed table fully qualified, CTEs renamed to unique internal names,
and the result bounded by a LIMIT. Only this regenerated SQL (without comments) is executed."""

from __future__ import annotations

from sqlglot import exp

# Prefix for the names CTEs are renamed to (see _rewrite).
_CTE_PREFIX = "_sbx_cte_"


def cte_names(statement: exp.Expression) -> set[str]:
    """Lower-case names of all CTEs defined anywhere in the statement."""
    return {cte.alias.lower() for cte in statement.find_all(exp.CTE) if cte.alias}


def is_cte_reference(node: exp.Table, cte_names: set[str]) -> bool:
    # CTE scoping is approximated generously here (any CTE name anywhere);
    # _rewrite renames CTEs to unique names, so a reference that DuckDB would
    # NOT resolve to the CTE points at a non-existent table and fails closed.
    return (
        isinstance(node.this, exp.Identifier)
        and not node.args.get("db")
        and not node.args.get("catalog")
        and node.name.lower() in cte_names
    )


def rewrite(
    statement: exp.Expression, schema: str, table: str
) -> tuple[exp.Expression, dict[str, str]]:
    """Qualify the allowed table and give CTEs unique internal names.

    Each reference keeps its original name as alias, so qualified column
    references such as ``t.component`` or ``r.n`` keep working.
    """
    names = cte_names(statement)
    renamed = {name: f"{_CTE_PREFIX}{i}" for i, name in enumerate(sorted(names))}

    def transform(node: exp.Expression) -> exp.Expression:
        # Mutate in place (transform() works on a copy): returning a different
        # node would make sqlglot skip that node's children.
        if isinstance(node, exp.CTE) and node.alias.lower() in renamed:
            node.args["alias"].set("this", exp.to_identifier(renamed[node.alias.lower()], quoted=True))
        elif isinstance(node, exp.Table) and isinstance(node.this, exp.Identifier):
            is_cte = is_cte_reference(node, names)
            if not node.alias:
                node.set("alias", exp.TableAlias(this=exp.to_identifier(node.name, quoted=True)))
            if is_cte:
                node.set("this", exp.to_identifier(renamed[node.name.lower()], quoted=True))
            else:  # validated by _check_tables: this is the allowed table
                node.set("this", exp.to_identifier(table, quoted=True))
                node.set("db", exp.to_identifier(schema, quoted=True))
        return node

    # the tree was parsed for this call only: rewrite it in place (no deep copy)
    return statement.transform(transform, copy=False), {v: k for k, v in renamed.items()}



def bounded_sql(statement: exp.Expression, max_rows: int) -> str:
    """SQL that returns at most max_rows rows.

    A plain SELECT gets (or keeps a smaller literal) LIMIT directly, which is much cheaper in
    DuckDB than a wrapping subquery; anything else (UNION, a non-literal LIMIT) is wrapped.
    """
    if isinstance(statement, exp.Select):
        limit = statement.args.get("limit")
        current = limit.expression if isinstance(limit, exp.Limit) else None
        if limit is None or (
            isinstance(current, exp.Literal) and current.is_int and int(current.this) > max_rows
        ):
            statement.set("limit", exp.Limit(expression=exp.Literal.number(max_rows)))
            return statement.sql(dialect="duckdb", comments=False)
        if isinstance(current, exp.Literal) and current.is_int:
            return statement.sql(dialect="duckdb", comments=False)
    return f"SELECT * FROM ({statement.sql(dialect='duckdb', comments=False)}) AS q LIMIT {int(max_rows)}"

