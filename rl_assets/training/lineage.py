"""What a trained artifact came from: `lineage.json` and the model card (`README.md`) of a run."""

from __future__ import annotations

import importlib.metadata
import json
import os
from pathlib import Path
from typing import Any

import yaml

from rl_assets.snapshot import read_manifest
from rl_assets.training.config import TrainConfig
from rl_assets.versioning import code_version, git_commit, module_closure

LINEAGE_FILE = "lineage.json"
MODEL_CARD = "README.md"
PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "tokenizers", "duckdb", "dagster-pipes")


def training_code_version() -> str:
    """Hash of every source file that decides what a training run does: the entry point, every module of
    rl_assets.training, everything of rl_assets they import (environment, sandbox, grading, rollouts, ...)
    and the config files."""
    training = Path(__file__).parent
    modules = module_closure("rl_assets.train", *(f"rl_assets.training.{p.stem}" for p in sorted(training.glob("*.py"))))
    return code_version(*modules, extra_files=tuple(sorted((training.parent / "configs").glob("*.yaml"))))


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def base_record(config: TrainConfig) -> dict[str, Any]:
    """The base model's registry name, hashes (wheel, GGUF, weights, model directory) and licence."""
    if config.is_tiny:
        return {"name": "tiny", "registered": False, "built_by": "rl_assets.training.tiny (this run's checkpoints/base)"}
    from rl_assets.base_models import base_model_record

    return base_model_record(config.model.base)


def resources(summary: dict[str, Any]) -> dict[str, Any]:
    """What this process used: device, threads, CPU seconds, peak resident memory (the cost of a run on a machine
    without a price; a cloud launcher adds `compute` with GPU-minutes and USD). A resumed run counts its last process."""
    import resource

    import torch

    usage = resource.getrusage(resource.RUSAGE_SELF)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"device": f"cuda ({gpu})" if gpu else f"cpu ({os.cpu_count()} cores)", "threads": torch.get_num_threads(),
            "wall_s": summary.get("wall_s"), "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
            "gpu_seconds": summary.get("wall_s") if gpu else None,
            "peak_rss_gb": round(usage.ru_maxrss / 1e6, 2)}  # ru_maxrss is in KiB on Linux


def build_lineage(config: TrainConfig, snapshot: Path, task_ids: dict[str, list[str]], extra: dict[str, Any]) -> dict[str, Any]:
    manifest = read_manifest(snapshot)
    return {
        "snapshot_hash": manifest.get("snapshot_hash", snapshot.name),
        "snapshot_path": str(snapshot),
        "config_name": config.name,
        "config_hash": config.hash,
        "config": config.asdict(),
        "git_commit": git_commit(),
        "code_version": training_code_version(),
        "base_model": config.model.base,
        "base_model_record": base_record(config),
        "task_ids": task_ids,
        "packages": package_versions(),
        **extra,
    }


def base_model_lines(record: dict[str, Any]) -> list[str]:
    if not record.get("registered"):
        return []
    lines = [f"- base model `{record['name']}`: model hash `{record['model_hash']}`, weights SHA-256 "
             f"`{record['weights_sha256']}`, licence {record['licence']}, from {record['source']}"]
    if record.get("package"):
        p = record["package"]
        lines.append(f"  (package `{p['name']}=={p['version']}`, wheel SHA-256 `{p['sha256']}`"
                     + (f", GGUF SHA-256 `{record['gguf']['sha256']}`)" if record.get("gguf") else ")"))
    return lines


def write_lineage(output: Path, lineage: dict[str, Any]) -> None:
    """Write lineage.json, keeping keys another launcher added (e.g. `compute`)."""
    path = output / LINEAGE_FILE
    existing = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**existing, **lineage}, indent=2, default=str) + "\n")


def write_model_card(output: Path, lineage: dict[str, Any], final: dict[str, Any]) -> None:
    config = lineage["config"]
    lines = [
        f"# finqa-rl policy: {lineage['config_name']}",
        "",
        f"A tool-using agent for the FinQA environment, trained with SFT on oracle trajectories then GRPO "
        f"(TRL) over `FinQAEnv`. Base model: `{lineage['base_model']}`"
        + (" (built by the project: BPE tokenizer trained on the snapshot's training text, Qwen3 architecture)."
           if lineage["base_model"] == "tiny" else "."),
        "",
        "## Data",
        f"- environment snapshot `{lineage['snapshot_hash']}`; training tasks: "
        f"{len(lineage['task_ids'].get('train', []))} train-split tasks "
        f"({', '.join(config['data']['question_types'])}); no validation or test task was used.",
        f"- environment options (also in `model/prompt.json`): `{json.dumps(config['env'])}`",
        "",
        "## Lineage",
        f"- config `{lineage['config_name']}` (hash `{lineage['config_hash']}`), git commit `{lineage['git_commit']}`, "
        f"code version `{lineage['code_version']}`",
        *base_model_lines(lineage.get("base_model_record") or {}),
        f"- packages: {', '.join(f'{k} {v}' for k, v in lineage['packages'].items())}",
        "",
        "## Final training metrics",
        "",
        "| metric | value |",
        "|---|---|",
        *[f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in final.items()],
        "",
        "## Use",
        "```python",
        "from rl_assets.rollouts import run_hf_episodes",
        "episodes = run_hf_episodes('<this directory>', tasks, snapshot)",
        "```",
        "",
        "## Configuration",
        "```yaml",
        yaml.safe_dump(config, sort_keys=False).rstrip(),
        "```",
        "",
    ]
    (output / MODEL_CARD).write_text("\n".join(lines))
