"""Policies that play FinQA episodes, behind one small interface (`Policy.run_episodes`), and
`load_policy(spec)`, the one place a policy name or spec becomes a policy.

Specs:
    oracle                    the gold spec through the real tools (rl_assets.oracle)
    tiny-untrained            the untrained tiny model (rl_assets.policies.tiny): the newest tiny-local run's
                              starting point, or one built for the snapshot
    tiny-local                the newest training run of config tiny-local under $FINQA_RL_RUNS_DIR
                              (default data/runs/), or the artifact given
    hf:<path>                 a Hugging Face model directory or a training run directory
    openai:<model>            an OpenAI-compatible chat-completions endpoint (OPENAI_BASE_URL, OPENAI_API_KEY)
    router:<small>,<large>    <small> answers, <large> takes over episodes that show failure signals
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from rl_assets.policies.base import GenerationSettings, Policy, PolicyError, Progress, failed_episode
from rl_assets.versioning import REPO_ROOT

NAMED_POLICIES = ("oracle", "tiny-untrained", "tiny-local")
SPEC_PREFIXES = ("hf:", "openai:", "router:")

__all__ = ["GenerationSettings", "Policy", "PolicyError", "Progress", "failed_episode", "load_policy",
           "NAMED_POLICIES", "models_root", "runs_root", "latest_run"]


def models_root() -> Path:
    """Where built base models go: $FINQA_RL_MODELS_DIR (default data/models/)."""
    value = os.environ.get("FINQA_RL_MODELS_DIR")
    return Path(value).expanduser().resolve() if value else REPO_ROOT / "data" / "models"


def runs_root() -> Path:
    """Where training runs are: $FINQA_RL_RUNS_DIR (default data/runs/)."""
    value = os.environ.get("FINQA_RL_RUNS_DIR")
    return Path(value).expanduser().resolve() if value else REPO_ROOT / "data" / "runs"


def latest_run(config_name: str, runs_dir: str | os.PathLike | None = None) -> Path:
    """The newest training run of `config_name` that has a model (by lineage.json time)."""
    root = Path(runs_dir) if runs_dir is not None else runs_root()
    runs = []
    for lineage in root.glob("*/lineage.json") if root.is_dir() else []:
        try:
            if json.loads(lineage.read_text()).get("config_name") == config_name and (lineage.parent / "model").is_dir():
                runs.append(lineage)
        except (OSError, json.JSONDecodeError):
            continue
    if not runs:
        raise PolicyError(f"no training run of config {config_name!r} with a model under {root}: "
                          f"train one first (materialise the policy asset, or python -m rl_assets.train --config {config_name} ...)")
    return max(runs, key=lambda p: (p.stat().st_mtime, str(p))).parent


def load_policy(
    spec: str,
    *,
    snapshot: str | os.PathLike | None = None,
    artifact: str | os.PathLike | None = None,
    openai_options: dict[str, Any] | None = None,
    hf_rollouts: Callable[..., Any] | None = None,
) -> Policy:
    """A policy from its name or spec (see the module docstring).

    `snapshot`: needed by tiny-untrained (its tokenizer is trained on the snapshot's training questions).
    `artifact`: the model directory of a named model policy (tiny-local: the `policy` asset's artifact).
    `openai_options`: keyword arguments of OpenAIPolicy (base_url, api_key, prices, timeout_s, ...).
    `hf_rollouts`: the local-model rollout function (default rl_assets.rollouts.run_hf_episodes).
    """
    spec = (spec or "").strip()
    if spec == "oracle":
        from rl_assets.policies.oracle import OraclePolicy

        return OraclePolicy()
    if spec in ("tiny-untrained", "tiny-local"):
        from rl_assets.policies.hf import HFPolicy

        if artifact is None and spec == "tiny-untrained":
            if snapshot is None:
                raise PolicyError("tiny-untrained is built for a snapshot: give the snapshot")
            from rl_assets.policies.tiny import untrained_tiny_model

            try:  # the newest tiny-local run's own starting point, where there is one
                run = latest_run("tiny-local")
            except PolicyError:
                run = None
            artifact = untrained_tiny_model(snapshot, models_root(), run)
        elif artifact is None:
            artifact = latest_run("tiny-local")
        return HFPolicy(artifact, name=spec, rollouts=hf_rollouts)
    if spec.startswith("hf:"):
        from rl_assets.policies.hf import HFPolicy

        path = spec[len("hf:"):]
        if not path:
            raise PolicyError("hf policy needs a path: hf:<model-or-run-dir>")
        return HFPolicy(path, name=spec, rollouts=hf_rollouts)
    if spec.startswith("openai:"):
        from rl_assets.policies.openai_chat import OpenAIPolicy

        return OpenAIPolicy(spec[len("openai:"):], name=spec, **(openai_options or {}))
    if spec.startswith("router:"):
        from rl_assets.policies.router import RouterPolicy

        parts = spec[len("router:"):].split(",", 1)
        if len(parts) != 2 or not all(p.strip() for p in parts):
            raise PolicyError(f"router policy needs two policies: router:<small>,<large> (got {spec!r})")
        options = dict(snapshot=snapshot, openai_options=openai_options, hf_rollouts=hf_rollouts)
        small, large = (load_policy(p.strip(), **options) for p in parts)
        return RouterPolicy(small, large, name=spec)
    raise PolicyError(f"unknown policy {spec!r}: expected one of {', '.join(NAMED_POLICIES)}, "
                      "hf:<model-or-run-dir>, openai:<model>, router:<small>,<large>")
