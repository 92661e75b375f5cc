"""The untrained tiny model: the evaluation's floor.

Where a training run exists, the untrained model is that run's own starting point: its
`checkpoints/base/` (the randomly initialised model and the tokenizer it was trained from) with its
`model/prompt.json`, so trained and untrained differ only by training (`untrained_from_run`). Without a
run, the same starting point is built by the training code itself (`rl_assets.training.run.build_untrained`:
tokenizer, chat template and seeded weights exactly as a run of that config on that snapshot would begin)
and saved in Hugging Face format with `prompt.json` like a training artifact's `model/`. The directory is
named by the config hash, the training data (train-split tasks and their companies' tables) and the
training code version, so it is built once and reused, and a change elsewhere in the snapshot keeps it;
`rl_assets.policies.hf.model_version` hashes its files for lineage.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

DEFAULT_CONFIG = "tiny-local"  # the main job's training config: its starting point is the floor


def build_untrained_tiny_model(snapshot: str | os.PathLike, models_root: str | os.PathLike,
                               config: str = DEFAULT_CONFIG) -> Path:
    """The untrained model of the tiny training `config` on `snapshot`, under `models_root` (built if missing)."""
    from rl_assets.training.config import load_config
    from rl_assets.training.lineage import training_code_version
    from rl_assets.training.run import build_untrained

    train_config = load_config(config)
    snapshot = Path(snapshot)
    recipe = {"config": train_config.name, "config_hash": train_config.hash,
              "training_data": training_data_hash(snapshot, train_config),
              "training_code_version": training_code_version()}
    build_hash = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    out = Path(models_root) / f"tiny-untrained-{build_hash}"
    if (out / "config.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".tmp-{uuid.uuid4().hex}"
    try:
        build_untrained(train_config, snapshot, tmp)
        (tmp / "recipe.json").write_text(json.dumps(recipe, indent=2, sort_keys=True) + "\n")
        try:
            tmp.rename(out)
        except OSError:  # built concurrently by another process
            if not (out / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def training_data_hash(snapshot: Path, train_config) -> str:
    """Hash of what a run's starting point is built from: its train-split tasks and its companies' tables (a
    change to val/test tasks or other companies leaves the untrained model, and its version, as it was)."""
    import duckdb

    from rl_assets.snapshot import read_tasks

    data = train_config.data
    tasks = read_tasks(snapshot, splits=["train"], question_types=data.question_types, sources=data.sources)
    digest = hashlib.sha256(json.dumps(tasks, sort_keys=True, default=str).encode())
    companies = sorted({t["world_id"] for t in tasks})
    with duckdb.connect() as con:
        for name in ("world_tables", "world_cells"):
            rows = con.execute(f"SELECT * FROM read_parquet('{snapshot / f'{name}.parquet'}') "
                               f"WHERE world_id IN (SELECT unnest(?)) ORDER BY ALL", [companies]).fetchall()
            digest.update(repr(rows).encode())
    return digest.hexdigest()[:16]


def untrained_from_run(run_dir: str | os.PathLike, models_root: str | os.PathLike) -> Path | None:
    """The starting point of a training run as a model directory (`checkpoints/base/` + the run's
    `model/prompt.json`), copied under `models_root` once; None when the run does not keep its base."""
    run_dir = Path(run_dir)
    base, prompt = run_dir / "checkpoints" / "base", run_dir / "model" / "prompt.json"
    if not (base / "config.json").is_file() or not prompt.is_file():
        return None
    files = sorted(p for p in base.iterdir() if p.is_file())
    digest = hashlib.sha256()
    for path in [*files, prompt]:
        digest.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    out = Path(models_root) / f"tiny-untrained-run-{digest.hexdigest()[:16]}"
    if (out / "config.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".tmp-{uuid.uuid4().hex}"
    try:
        tmp.mkdir()
        for path in files:
            shutil.copy2(path, tmp / path.name)
        shutil.copy2(prompt, tmp / "prompt.json")
        (tmp / "source.json").write_text(json.dumps({"run": str(run_dir), "base": str(base)}, indent=2) + "\n")
        try:
            tmp.rename(out)
        except OSError:
            if not (out / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def untrained_tiny_model(snapshot: str | os.PathLike, models_root: str | os.PathLike,
                         run_dir: str | os.PathLike | None = None, config: str = DEFAULT_CONFIG) -> Path:
    """The untrained counterpart of `run_dir` when it keeps its base, else the one `config` builds for the snapshot."""
    from_run = untrained_from_run(run_dir, models_root) if run_dir is not None else None
    return from_run or build_untrained_tiny_model(snapshot, models_root, config)
