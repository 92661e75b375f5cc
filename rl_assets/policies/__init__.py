"""Policies that play FinQA episodes, behind one small interface (`Policy.run_episodes`), and
`load_policy(spec)`, the one place a policy name or spec becomes a policy.

Specs:
    oracle                    the gold spec through the real tools (rl_assets.oracle)
    <arm>                     the newest training run of that arm (a training config's name, or an arm an experiment
                              file defines: rl_assets.experiments) under $FINQA_RL_RUNS_DIR (default data/runs/), or
                              the artifact given
    <base model>, base:<name> a registered base model (rl_assets.base_models), untrained, played with the default
                              training prompt: the untrained counterpart of every arm on that base
    <arm>-untrained           a tiny arm's untrained counterpart: its newest run's starting point, or one built for
                              the snapshot (rl_assets.policies.tiny)
    hf:<path>                 a Hugging Face model directory or a training run directory
    openai:<model>            an OpenAI-compatible chat-completions endpoint (OPENAI_BASE_URL, OPENAI_API_KEY)
    router:<small>,<large>    <small> answers, <large> takes over episodes that show failure signals
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from rl_assets.base_models.store import models_root  # the one definition (base models and untrained copies)
from rl_assets.policies.base import GenerationSettings, Policy, PolicyError, Progress, failed_episode
from rl_assets.versioning import REPO_ROOT

SPEC_PREFIXES = ("hf:", "openai:", "router:", "base:")
SPEC_FORMS = "oracle, <arm>, <base model>, <arm>-untrained, hf:<model-or-run-dir>, openai:<model>, router:<small>,<large>"

__all__ = ["GenerationSettings", "Policy", "PolicyError", "Progress", "failed_episode", "load_policy",
           "SPEC_FORMS", "models_root", "runs_root", "latest_run", "run_arm"]


def runs_root() -> Path:
    """Where training runs are: $FINQA_RL_RUNS_DIR (default data/runs/)."""
    value = os.environ.get("FINQA_RL_RUNS_DIR")
    return Path(value).expanduser().resolve() if value else REPO_ROOT / "data" / "runs"


def run_arm(lineage: dict[str, Any]) -> str | None:
    """The arm a run trained (its lineage's `arm`, written by the policy asset; else its config's own arm)."""
    arm = lineage.get("arm")
    return arm.get("name") if isinstance(arm, dict) else lineage.get("config_name")


def latest_run(arm: str, runs_dir: str | os.PathLike | None = None) -> Path:
    """The newest training run of `arm` that has a model (by lineage.json time)."""
    root = Path(runs_dir) if runs_dir is not None else runs_root()
    runs = []
    for lineage in root.glob("*/lineage.json") if root.is_dir() else []:
        try:
            if run_arm(json.loads(lineage.read_text())) == arm and (lineage.parent / "model").is_dir():
                runs.append(lineage)
        except (OSError, json.JSONDecodeError):
            continue
    if not runs:
        raise PolicyError(f"no training run of arm {arm!r} with a model under {root}: train one first (materialise "
                          f"policy[{arm}], or python -m rl_assets.train --config <its config> ...)")
    return max(runs, key=lambda p: (p.stat().st_mtime, str(p))).parent


def load_policy(
    spec: str,
    *,
    snapshot: str | os.PathLike | None = None,
    artifact: str | os.PathLike | None = None,
    openai_options: dict[str, Any] | None = None,
    hf_rollouts: Callable[..., Any] | None = None,
    name: str | None = None,
) -> Policy:
    """A policy from its name or spec (see the module docstring), named `name` (default: the spec).

    `snapshot`: needed by a tiny arm's untrained counterpart (its tokenizer is trained on the snapshot).
    `artifact`: the model directory of an arm (the `policy` asset's artifact) instead of its newest run.
    `openai_options`: keyword arguments of OpenAIPolicy (base_url, api_key, prices, timeout_s, ...).
    `hf_rollouts`: the local-model rollout function (default rl_assets.rollouts.run_hf_episodes).
    """
    spec = (spec or "").strip()
    name = name or spec
    if spec == "oracle":
        from rl_assets.policies.oracle import OraclePolicy

        policy = OraclePolicy()
        policy.name = name
        return policy
    if spec.startswith("hf:"):
        from rl_assets.policies.hf import HFPolicy

        path = spec[len("hf:"):]
        if not path:
            raise PolicyError("hf policy needs a path: hf:<model-or-run-dir>")
        return HFPolicy(path, name=name, rollouts=hf_rollouts)
    if spec.startswith("openai:"):
        from rl_assets.policies.openai_chat import OpenAIPolicy

        return OpenAIPolicy(spec[len("openai:"):], name=name, **(openai_options or {}))
    if spec.startswith("router:"):
        from rl_assets.policies.router import RouterPolicy

        parts = spec[len("router:"):].split(",", 1)
        if len(parts) != 2 or not all(p.strip() for p in parts):
            raise PolicyError(f"router policy needs two policies: router:<small>,<large> (got {spec!r})")
        options = dict(snapshot=snapshot, openai_options=openai_options, hf_rollouts=hf_rollouts)
        small, large = (load_policy(p.strip(), **options) for p in parts)
        return RouterPolicy(small, large, name=name)
    from rl_assets.base_models import BaseModelError, ensure_base_model, is_registered
    from rl_assets.policies.hf import HFPolicy

    base = spec[len("base:"):] if spec.startswith("base:") else spec
    if spec.startswith("base:") or is_registered(base):
        try:
            directory = ensure_base_model(base)
        except BaseModelError as e:
            raise PolicyError(str(e)) from None
        return HFPolicy(directory, name=name, rollouts=hf_rollouts, prompt=default_training_prompt(base))
    from rl_assets.experiments import ExperimentError, resolve_arm, untrained_arm

    tiny_arm = untrained_arm(spec)
    if tiny_arm is not None:
        if artifact is None:
            from rl_assets.policies.tiny import untrained_tiny_model

            if snapshot is None:
                raise PolicyError(f"{spec} is built for a snapshot: give the snapshot")
            try:
                run = latest_run(tiny_arm.name)
            except PolicyError:
                run = None
            artifact = untrained_tiny_model(snapshot, models_root(), run, tiny_arm.config)
        return HFPolicy(artifact, name=name, rollouts=hf_rollouts)
    try:
        resolve_arm(spec)
    except ExperimentError:
        raise PolicyError(f"unknown policy {spec!r}: expected one of {SPEC_FORMS}") from None
    return HFPolicy(artifact if artifact is not None else latest_run(spec), name=name, rollouts=hf_rollouts)


def default_training_prompt(base: str | None = None) -> dict[str, Any]:
    """The prompt a model trained with a default config is played with; an untrained registered base model gets
    it too, in the dtype its registry entry plays it in."""
    from rl_assets.base_models import registry_entry
    from rl_assets.prompts import play_prompt

    return play_prompt(dtype=registry_entry(base).dtype if base else "float32")
