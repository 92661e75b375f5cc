"""A local Hugging Face model as a policy: a base model or a trained artifact (`data/runs/<id>/` or its
`model/` directory), played by the local-model rollouts (`rl_assets.rollouts.run_hf_episodes`: batched
generation across episodes, greedy or sampled, every episode through a real `FinQAEnv`, the system prompt
and environment options from the model's `prompt.json`, exactly as in training).

The artifact version is `hf@<hash>`: SHA-256 over every file of the model directory (weights, config,
tokenizer, chat template, prompt.json; not the model card), so two directories with the same weights and
settings have the same version and any change gives a new one. A run directory's `lineage.json` (snapshot,
config hash, code version, and the `compute` object of a cloud run: accelerator, GPU-minutes, estimated
USD) is the policy's lineage.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Sequence

from rl_assets.episodes import Episode
from rl_assets.policies.base import GenerationSettings, Policy, PolicyError, Progress
from rl_assets.versioning import directory_hash

NOT_HASHED = frozenset({"README.md", "manifest.json"})  # the model card; a base model's record of itself
MODEL_MARKERS = ("config.json", "adapter_config.json")


def resolve_model_dir(path: str | os.PathLike) -> Path:
    """The model directory of `path`: a model directory itself or a training run directory with `model/`."""
    p = Path(path).expanduser()
    if not p.exists():
        raise PolicyError(f"no model at {p}: the path does not exist")
    for candidate in (p, p / "model"):
        if any((candidate / marker).is_file() for marker in MODEL_MARKERS):
            return candidate.resolve()
    raise PolicyError(
        f"no model at {p}: expected a Hugging Face model directory (config.json or adapter_config.json) "
        "or a training run directory containing model/"
    )


def model_version(model_dir: str | os.PathLike) -> str:
    """`hf@<16 hex>`: the hash of every file in the model directory (see the module docstring)."""
    return f"hf@{directory_hash(model_dir, NOT_HASHED)}"


def base_model_of(model_dir: Path) -> dict[str, Any]:
    """The registered base model a model directory is, or sits on (an adapter's `prompt.json` names it): name and
    model hash from its manifest; {} for a model of its own (the tiny model) or an unregistered base."""
    from rl_assets.base_models import MANIFEST_FILE, base_model_record, is_registered

    manifest = model_dir / MANIFEST_FILE
    if manifest.is_file():  # a base model directory itself (the untrained policy)
        data = json.loads(manifest.read_text())
        return {"name": data["name"], "model_hash": data["model_hash"]}
    prompt = model_dir / "prompt.json"
    name = json.loads(prompt.read_text()).get("base_model") if prompt.is_file() else None
    if name and is_registered(name):
        record = base_model_record(name)
        return {"name": name, "model_hash": record["model_hash"]}
    return {"name": name, "model_hash": None} if name else {}


def run_lineage(model_dir: str | os.PathLike) -> dict[str, Any]:
    """The training run's lineage.json next to (or in) the model directory, or {}."""
    model_dir = Path(model_dir)
    for candidate in (model_dir / "lineage.json", model_dir.parent / "lineage.json"):
        if candidate.is_file():
            return json.loads(candidate.read_text())
    return {}


def default_rollouts() -> Callable[..., list[Episode]]:
    try:
        from rl_assets.rollouts import run_hf_episodes
    except ImportError as e:
        raise PolicyError(
            "hf policies are played by rl_assets.rollouts.run_hf_episodes (local-model rollouts), "
            f"which this installation does not have ({e})"
        ) from None
    return run_hf_episodes


def _episodes_done(progress: Progress) -> Callable[[Any], None]:
    """The rollouts report progress as a count or as a line such as "episodes 32/96, correct 3"."""

    def report(update: Any) -> None:
        if isinstance(update, int):
            progress(update)
            return
        match = re.search(r"(\d+)\s*/\s*\d+", str(update))
        if match:
            progress(int(match.group(1)))

    return report


class HFPolicy(Policy):
    def __init__(self, path: str | os.PathLike, *, name: str | None = None,
                 rollouts: Callable[..., list[Episode]] | None = None, prompt: dict[str, Any] | None = None):
        """`rollouts`: a function with the signature of rl_assets.rollouts.run_hf_episodes (default: that one).
        `prompt`: {"system_prompt", "env"} to play the model with instead of its directory's prompt.json (part of
        the version)."""
        self.model_dir = resolve_model_dir(path)
        self.spec = f"hf:{self.model_dir}"
        self.name = name or f"hf:{path}"
        self._base = base_model_of(self.model_dir)
        version = model_version(self.model_dir)
        if (self.model_dir / "adapter_config.json").is_file() and self._base.get("model_hash"):
            # an adapter is played on its base: both decide what the policy does
            combined = f"{version}+{self._base['model_hash']}".encode()
            version = f"hf@{hashlib.sha256(combined).hexdigest()[:16]}"
        if prompt is not None:
            combined = f"{version}+{json.dumps(prompt, sort_keys=True)}".encode()
            version = f"hf@{hashlib.sha256(combined).hexdigest()[:16]}"
        self._version = version
        self._prompt = prompt
        self._rollouts = rollouts

    @property
    def version(self) -> str:
        return self._version

    @property
    def run_dir(self) -> Path | None:
        """The training run directory the model came from (has lineage.json / metrics.jsonl), if any."""
        for candidate in (self.model_dir, self.model_dir.parent):
            if (candidate / "lineage.json").is_file() or (candidate / "metrics.jsonl").is_file():
                return candidate
        return None

    def lineage(self) -> dict[str, Any]:
        return run_lineage(self.model_dir)

    def base_model(self) -> dict[str, Any]:
        return dict(self._base)

    def run_episodes(
        self,
        tasks: Sequence[dict[str, Any]],
        snapshot: str | os.PathLike,
        settings: GenerationSettings = GenerationSettings(),
        progress: Progress | None = None,
    ) -> list[Episode]:
        rollouts = self._rollouts or default_rollouts()
        tasks = list(tasks)
        episodes = rollouts(
            str(self.model_dir), tasks, str(snapshot),
            greedy=settings.greedy, temperature=settings.temperature, batch_size=settings.batch_size,
            max_turns=settings.max_turns, max_new_tokens=settings.max_new_tokens, seed=settings.seed,
            env_kwargs=None,  # the model's prompt.json holds the environment options it was trained with
            progress=_episodes_done(progress) if progress is not None else None,
            **({"prompt_config": self._prompt} if self._prompt is not None else {}),
        )
        if len(episodes) != len(tasks) or any(e.task_id != t["task_id"] for e, t in zip(episodes, tasks)):
            raise RuntimeError(f"{self.name}: the rollouts returned {len(episodes)} episodes for {len(tasks)} tasks, "
                               "or not in the order of the tasks")
        for episode in episodes:
            episode.policy = self.name
        return episodes
