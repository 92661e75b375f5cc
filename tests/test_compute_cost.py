"""The compute record of a cloud run: prices, arithmetic, and where it is written."""

import json

import pytest

from orchestration.launchers.compute_cost import (
    Placement,
    catalog_hourly_price,
    compute_record,
    configured_hourly_price,
    write_compute,
)

HEADER = "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,Price,Region,GpuInfo,SpotPrice"


def test_catalog_price_matches_accelerator_count_region_and_instance_and_is_never_downloaded(tmp_path):
    (tmp_path / "lambda").mkdir()
    (tmp_path / "lambda" / "vms.csv").write_text(
        "\n".join(
            [
                HEADER,
                "gpu_1x_h100_pcie,H100,1.0,26.0,200.0,2.49,us-east-1,,",
                "gpu_1x_h100_sxm5,H100,1.0,26.0,225.0,3.29,us-east-1,,",
                "gpu_8x_h100_sxm5,H100,8.0,208.0,1800.0,23.92,us-east-1,,",
                "gpu_1x_h100_pcie,H100,1.0,26.0,200.0,2.29,us-west-1,,",
            ]
        )
    )
    one_h100 = Placement(accelerator="H100", count=1, cloud="Lambda", region="us-east-1")
    assert catalog_hourly_price(one_h100, tmp_path).usd == 2.49  # the cheapest in the region
    exact = Placement(accelerator="H100", count=1, cloud="Lambda", region="us-east-1", instance_type="gpu_1x_h100_sxm5")
    assert catalog_hourly_price(exact, tmp_path).usd == 3.29
    assert catalog_hourly_price(Placement(accelerator="H100", count=8, cloud="lambda"), tmp_path).usd == 23.92
    assert catalog_hourly_price(Placement(accelerator="H100", count=1, cloud="lambda", use_spot=True), tmp_path) is None
    assert catalog_hourly_price(Placement(accelerator="H100", count=1, cloud="aws"), tmp_path) is None  # no aws/ copy


def test_configured_price_is_per_gpu_and_unknown_accelerators_have_no_estimate():
    prices, spot = {"H100": 3.0}, {"H100": 1.25}
    assert configured_hourly_price(Placement("H100", 2), prices, spot).usd == 6.0
    assert configured_hourly_price(Placement("h100", 1, use_spot=True), prices, spot).usd == 1.25
    assert configured_hourly_price(Placement("TPU-v5", 1), prices, spot) is None
    record = compute_record(
        Placement("TPU-v5", 1), mode="cluster", wall_seconds=60, billed_seconds=60, billed_basis="x", price=None
    )
    assert record["gpu_minutes"] == 1.0 and record["estimated_usd"] is None and record["price_source"] is None


def test_compute_goes_into_the_run_lineage_and_needs_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="lineage.json is missing"):
        write_compute(tmp_path, {"accelerator": "H100"})
    (tmp_path / "lineage.json").write_text(json.dumps({"snapshot_hash": "abc"}))
    write_compute(tmp_path, {"accelerator": "H100"})
    assert json.loads((tmp_path / "lineage.json").read_text()) == {
        "snapshot_hash": "abc",
        "compute": {"accelerator": "H100"},
    }
