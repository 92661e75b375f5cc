"""Arms: a named training config plus overrides, the unit an experiment compares.

    arm = resolve_arm("smollm2-cpu-mixed")      # defined in an experiment file, or a training config's own name
    arm.train_config()                          # the TrainConfig it trains with (overrides applied, validated)
    arm.untrained                               # the evaluation policy of its untrained counterpart

Every training config is an arm of its own name (no overrides). Experiment files (`experiments/<name>.yaml`)
define more arms, each a config and overrides; an arm name means one thing everywhere: the same name defined
differently in two files is an error. An arm's untrained counterpart is named after its base model
(`smollm2-135m`: shared by every arm on that base, played with the default training prompt); a self-built tiny
model has no shared base, so a tiny arm's counterpart is `<arm>-untrained` (its run's own starting point).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rl_assets.training.config import TrainConfig, available_configs, load_config
from rl_assets.versioning import REPO_ROOT

UNTRAINED_SUFFIX = "-untrained"
ARM_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_.")


class ExperimentError(ValueError):
    """A bad experiment file or arm: the message names the file, the arm or key, and the reason."""


def experiments_dir() -> Path:
    """Where experiment files are: $FINQA_RL_EXPERIMENTS_DIR, default <repo>/experiments/."""
    value = os.environ.get("FINQA_RL_EXPERIMENTS_DIR")
    return Path(value).expanduser().resolve() if value else REPO_ROOT / "experiments"


@dataclass(frozen=True)
class Arm:
    name: str
    config: str  # a training config name (rl_assets/configs/) or a YAML path
    overrides: tuple[str, ...] = ()
    description: str = ""
    defined_in: str = "config"  # the experiment file that defines it, or "config" (a config's own arm)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def train_config(self) -> TrainConfig:
        return load_config(self.config, list(self.overrides))

    @property
    def base(self) -> str:
        return self.train_config().model.base

    @property
    def untrained(self) -> str:
        """The evaluation policy partition of this arm's untrained counterpart."""
        config = self.train_config()
        return f"{self.name}{UNTRAINED_SUFFIX}" if config.is_tiny else config.model.base

    def asdict(self) -> dict[str, Any]:
        return {"name": self.name, "config": self.config, "overrides": list(self.overrides),
                "description": self.description, "defined_in": self.defined_in}


def check_arm_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not name or set(name) - ARM_NAME_CHARS or name.endswith(UNTRAINED_SUFFIX):
        raise ExperimentError(f"{where}: arm name {name!r} must be lower-case letters, digits, '-', '_' or '.' "
                              f"(and not end in {UNTRAINED_SUFFIX!r}, the untrained counterparts' names)")
    return name


def arm_from_mapping(raw: Any, where: str) -> Arm:
    """An arm of an experiment file: {name, config, overrides: [key=value, ...], description}; validated by
    loading its config with the overrides (unknown config, unknown key and wrong type are errors here)."""
    from rl_assets.training.config import ConfigError

    if not isinstance(raw, dict):
        raise ExperimentError(f"{where}: an arm is a mapping with name, config and optional overrides, got {raw!r}")
    unknown = sorted(set(raw) - {"name", "config", "overrides", "description"})
    if unknown:
        raise ExperimentError(f"{where}: unknown key(s) {', '.join(unknown)} (known: name, config, overrides, description)")
    name = check_arm_name(raw.get("name"), where)
    config = raw.get("config")
    if not isinstance(config, str) or not config:
        raise ExperimentError(f"{where}: arm {name}: config is required (one of {', '.join(available_configs())} "
                              "or a YAML path)")
    overrides = raw.get("overrides") or []
    if isinstance(overrides, dict):
        overrides = [f"{k}={_yaml_value(v)}" for k, v in overrides.items()]
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise ExperimentError(f"{where}: arm {name}: overrides is a list of 'key=value' (or a mapping)")
    arm = Arm(name, config, tuple(overrides), str(raw.get("description") or ""), where)
    try:
        arm.train_config()
    except ConfigError as e:
        raise ExperimentError(f"{where}: arm {name}: {e}") from None
    return arm


def _yaml_value(value: Any) -> str:
    import yaml

    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def defined_arms(directory: str | os.PathLike | None = None) -> dict[str, Arm]:
    """Every arm every experiment file defines, by name (an arm defined differently in two files is an error)."""
    from rl_assets.experiments.spec import load_experiment

    directory = Path(directory) if directory is not None else experiments_dir()
    arms: dict[str, Arm] = {}
    for path in sorted(directory.glob("*.yaml")) if directory.is_dir() else []:
        for arm in load_experiment(path).arms:
            known = arms.get(arm.name)
            if known is not None and (known.config, known.overrides) != (arm.config, arm.overrides):
                raise ExperimentError(f"arm {arm.name} is defined differently in {known.defined_in} and {arm.defined_in}")
            arms.setdefault(arm.name, arm)
    return arms


def resolve_arm(name: str, directory: str | os.PathLike | None = None) -> Arm:
    """The arm called `name`: one an experiment file defines, else a training config's own arm."""
    arms = defined_arms(directory)
    if name in arms:
        return arms[name]
    if name in available_configs():
        return Arm(name, name)
    raise ExperimentError(f"unknown arm {name!r}: not a training config ({', '.join(available_configs())}) and no "
                          f"experiment file under {Path(directory) if directory else experiments_dir()} defines it")


def untrained_arm(policy: str, directory: str | os.PathLike | None = None) -> Arm | None:
    """The tiny arm whose untrained counterpart `policy` names (`<arm>-untrained`), if it is one."""
    if not policy.endswith(UNTRAINED_SUFFIX):
        return None
    try:
        return resolve_arm(policy[: -len(UNTRAINED_SUFFIX)], directory)
    except ExperimentError:
        return None
