"""What a cloud run used and roughly cost: the `compute` object of a run's lineage.json.

    compute = {
      "launcher": "skypilot", "mode": "managed_job" | "cluster",
      "accelerator": "H100", "count": 1, "cloud": "aws", "region": "us-east-1", "zone": null,
      "instance_type": "p5.4xlarge", "use_spot": false,
      "wall_seconds": ...,      # launch request to the end of the run, as the launcher saw it
      "billed_seconds": ...,    # the time the estimate charges for (see billed_basis)
      "billed_basis": "cluster lifetime: launch to teardown" | "managed job duration reported by SkyPilot" | ...,
      "gpu_minutes": ...,       # billed_seconds * count / 60
      "hourly_usd": ...,        # for `count` accelerators; null when no price is known
      "price_source": "skypilot catalog aws/vms.csv (p5.4xlarge, us-east-1, on-demand)"
                      | "configured on-demand price per GPU-hour (3.0 USD)" | null,
      "estimated_usd": ...,     # billed hours * hourly_usd; null when no price is known
      "recovery_count": 0,      # spot preemptions / failures a managed job recovered from
      "job_id": ..., "cluster_name": ...
    }

The hourly price comes from SkyPilot's catalog where a copy is on this machine (SkyPilot downloads it to
~/.sky/catalogs/ on first use; nothing here downloads it), else from the launcher's configured price per
GPU-hour. It is an estimate: list prices, no storage, egress or managed-jobs controller costs.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LINEAGE = "lineage.json"


@dataclass(frozen=True)
class Placement:
    """Where a run ran, as far as SkyPilot reported it."""

    accelerator: str | None
    count: float
    cloud: str | None = None
    region: str | None = None
    zone: str | None = None
    instance_type: str | None = None
    use_spot: bool | None = None


@dataclass(frozen=True)
class HourlyPrice:
    usd: float  # per hour, for all `count` accelerators of the placement
    source: str


def default_catalog_dir() -> Path:
    """SkyPilot's local catalog cache (~/.sky/catalogs/<schema version>/), whether or not it exists."""
    from sky.catalog import common

    return Path(common.get_catalog_path(""))


def catalog_hourly_price(placement: Placement, catalog_dir: str | Path | None = None) -> HourlyPrice | None:
    """The cheapest matching list price in the local copy of SkyPilot's catalog, or None (never downloads).

    Matches the accelerator and count, and the instance type and region when known; spot price for spot.
    """
    if not placement.cloud or not placement.accelerator:
        return None
    cloud = placement.cloud.lower()
    path = Path(catalog_dir if catalog_dir is not None else default_catalog_dir()) / cloud / "vms.csv"
    if not path.is_file():
        return None
    column = "SpotPrice" if placement.use_spot else "Price"
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if _same_accelerator(r, placement) and _price(r.get(column)) is not None]
    if placement.region:
        rows = [r for r in rows if r.get("Region") == placement.region]
    exact = [r for r in rows if placement.instance_type and r.get("InstanceType") == placement.instance_type]
    rows = exact or rows
    if not rows:
        return None
    best = min(rows, key=lambda r: _price(r[column]))
    detail = ", ".join(
        x
        for x in (best.get("InstanceType") or None, placement.region, "spot" if placement.use_spot else "on-demand")
        if x
    )
    return HourlyPrice(_price(best[column]), f"skypilot catalog {cloud}/vms.csv ({detail})")


def _same_accelerator(row: dict[str, str], placement: Placement) -> bool:
    if (row.get("AcceleratorName") or "").lower() != (placement.accelerator or "").lower():
        return False
    try:
        return math.isclose(float(row.get("AcceleratorCount") or "nan"), float(placement.count))
    except ValueError:
        return False


def _price(raw: str | None) -> float | None:
    try:
        value = float(raw) if raw not in (None, "") else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) and value > 0 else None


def configured_hourly_price(
    placement: Placement, gpu_hourly_usd: dict[str, float], spot_gpu_hourly_usd: dict[str, float]
) -> HourlyPrice | None:
    """count x the configured price per GPU-hour of the accelerator (spot table for spot), or None."""
    if not placement.accelerator:
        return None
    table = spot_gpu_hourly_usd if placement.use_spot else gpu_hourly_usd
    by_name = {name.lower(): price for name, price in table.items()}
    per_gpu = by_name.get(placement.accelerator.lower())
    if per_gpu is None:
        return None
    kind = "spot" if placement.use_spot else "on-demand"
    return HourlyPrice(per_gpu * placement.count, f"configured {kind} price per GPU-hour ({per_gpu} USD)")


def compute_record(
    placement: Placement,
    *,
    mode: str,
    wall_seconds: float,
    billed_seconds: float,
    billed_basis: str,
    price: HourlyPrice | None,
    recovery_count: int = 0,
    **ids: Any,
) -> dict[str, Any]:
    """The lineage `compute` object (see the module docstring)."""
    return {
        "launcher": "skypilot",
        "mode": mode,
        "accelerator": placement.accelerator,
        "count": placement.count,
        "cloud": placement.cloud.lower() if placement.cloud else None,
        "region": placement.region,
        "zone": placement.zone,
        "instance_type": placement.instance_type,
        "use_spot": placement.use_spot,
        "wall_seconds": round(wall_seconds, 3),
        "billed_seconds": round(billed_seconds, 3),
        "billed_basis": billed_basis,
        "gpu_minutes": round(billed_seconds * placement.count / 60, 4),
        "hourly_usd": price.usd if price else None,
        "price_source": price.source if price else None,
        "estimated_usd": round(billed_seconds / 3600 * price.usd, 4) if price else None,
        "recovery_count": recovery_count,
        **ids,
    }


def write_compute(run_dir: str | Path, compute: dict[str, Any]) -> Path:
    """Set `compute` in <run_dir>/lineage.json (written by the training entry point); returns its path."""
    path = Path(run_dir) / LINEAGE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the training entry point writes it at the end of a run")
    lineage = json.loads(path.read_text())
    if not isinstance(lineage, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(lineage).__name__}")
    lineage["compute"] = compute
    path.write_text(json.dumps(lineage, indent=2, sort_keys=True) + "\n")
    return path
