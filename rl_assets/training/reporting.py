"""Progress of a training run: `metrics.jsonl`, `samples.jsonl`, one printed line per logging step, and
the same through Dagster Pipes when a Dagster launcher started the run.

Every logging step of every stage becomes one JSON line in `<output>/metrics.jsonl`:

    {"stage": "grpo", "step": 12, "wall_s": 431.2, "loss": ..., "reward": ..., "reward/<term>": ...,
     "pass_rate": ..., "tool_error_rate": ..., "completion_tokens": ..., "completion_tokens_per_s": ...,
     "tokens_per_s": ..., "step_s": ..., "timing/generation_s": ..., ...}

`STANDARD_KEYS` maps TRL's log keys onto these names; every other numeric key TRL logs is kept under its
own name. Under Pipes each step is also a log line in the Dagster run's event log (live) and a custom
message carrying the same dict; without Dagster, `open_pipes()` returns a no-op context and only
the printed line and the files remain.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"
SAMPLES_FILE = "samples.jsonl"

# TRL log key -> metrics.jsonl key
STANDARD_KEYS = {
    "loss": "loss",
    "grad_norm": "grad_norm",
    "learning_rate": "learning_rate",
    "reward": "reward",
    "reward_std": "reward_std",
    "mean_token_accuracy": "token_accuracy",
    "completions/mean_length": "completion_tokens",
    "tools/failure_frequency": "trl_tool_failure_rate",
    "tools/call_frequency": "tool_calls_per_rollout",
}


def step_metrics(stage: str, step: int, logs: dict[str, Any], wall_s: float, env_reward_name: str | None) -> dict[str, Any]:
    """One metrics.jsonl record from a TRL `on_log` dict."""
    record: dict[str, Any] = {"stage": stage, "step": step, "wall_s": round(wall_s, 2)}
    for key, value in logs.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or (isinstance(value, float) and not math.isfinite(value)):
            continue
        if key in STANDARD_KEYS:
            record[STANDARD_KEYS[key]] = value
        elif key.startswith("rewards/") and key.endswith("/mean"):
            name = key[len("rewards/"):-len("/mean")]
            record["pass_rate" if name == env_reward_name else f"reward/{name}"] = value
        elif key.startswith("rewards/"):
            continue
        else:
            record[key] = value
    if "tools/env_error_rate" in record:
        record["tool_error_rate"] = record.pop("tools/env_error_rate")
    return record


class Reporter:
    """Writes metrics and samples under the output directory and mirrors progress to stdout and Pipes."""

    def __init__(self, output: Path, pipes, started: float | None = None, stream=None):
        self.output = Path(output)
        self.pipes = pipes
        self.started = started if started is not None else time.time()
        self.stream = stream or sys.stdout  # the output directory is made by the first record: a run refused before
        # it starts (a config that cannot fit, a foreign output directory) leaves nothing behind

    @property
    def wall_s(self) -> float:
        return time.time() - self.started

    def info(self, message: str) -> None:
        print(message, file=self.stream, flush=True)
        self.pipes.log.info(message)

    def warning(self, message: str) -> None:
        print(f"WARNING: {message}", file=self.stream, flush=True)
        self.pipes.log.warning(message)

    def step(self, record: dict[str, Any]) -> None:
        self.output.mkdir(parents=True, exist_ok=True)
        with open(self.output / METRICS_FILE, "a") as f:
            f.write(json.dumps(record) + "\n")
        self.info(format_step(record))
        self.pipes.report_custom_message({"kind": "training_step", **record})

    def samples(self, stage: str, step: int, episodes: list[dict[str, Any]]) -> None:
        self.output.mkdir(parents=True, exist_ok=True)
        with open(self.output / SAMPLES_FILE, "a") as f:
            for episode in episodes:
                f.write(json.dumps({"stage": stage, "step": step, **episode}, default=str) + "\n")

    def forget_after(self, stage: str, step: int) -> None:
        """Drop the records of `stage` logged after `step` (a run resumed from the checkpoint at `step`)."""
        for name in (METRICS_FILE, SAMPLES_FILE):
            path = self.output / name
            if not path.exists():
                continue
            kept = [line for line in path.read_text().splitlines()
                    if line.strip() and not _later(json.loads(line), stage, step)]
            path.write_text("".join(line + "\n" for line in kept))


def _later(record: dict[str, Any], stage: str, step: int) -> bool:
    return record.get("stage") == stage and record.get("step", 0) > step


def read_metrics(output: str | Path) -> list[dict[str, Any]]:
    path = Path(output) / METRICS_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def format_step(record: dict[str, Any]) -> str:
    """The one printed line per logging step."""
    parts = [f"[{record['stage']} {record['step']}]"]
    for key in ("loss", "token_accuracy", "reward", "pass_rate", "reward/well_formed", "reward/company_used",
                "reward/schema_before_query", "reward/submitted", "tool_error_rate", "completion_tokens",
                "completion_tokens_per_s", "tokens_per_s", "step_s"):
        if key in record:
            value = record[key]
            parts.append(f"{key.split('/')[-1]}={value:.4g}" if isinstance(value, float) else f"{key.split('/')[-1]}={value}")
    parts.append(f"wall={record['wall_s']:.0f}s")
    return " ".join(parts)
