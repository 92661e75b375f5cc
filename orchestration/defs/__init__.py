"""Dagster definitions by concern: resources, raw assets, dbt assets, validation checks, snapshot."""
