"""Environment snapshot asset (filled in with the environment issue)."""

snapshot_assets: list = []
snapshot_checks: list = []
