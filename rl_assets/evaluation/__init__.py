"""Evaluation: policies × task sets × snapshots → episodes and summaries in an append-only DuckDB store,
and reports (markdown + plots). Plain Python: the Dagster assets (orchestration/defs/evaluation.py) and the
`finqa-rl eval` / `finqa-rl report` commands call the same functions (`runner`, `report`)."""
