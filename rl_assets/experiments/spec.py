"""Experiment files: `experiments/<name>.yaml`, the arms, task sets, samples, baseline and seeds of one comparison.

    name: single-vs-mixed              # optional; the file's stem otherwise (and it must match)
    description: ...
    arms:                              # a list: each a name, a training config and overrides
      - name: smollm2-cpu
        config: smollm2-cpu
      - name: smollm2-cpu-mixed
        config: smollm2-cpu
        overrides: ["data.question_types=[single_table, multi_table]"]
    baseline: smollm2-cpu              # deltas are against this arm, paired over the same tasks
    task_sets: [single_table-synth-test, multi_table-synth-test]
    samples: 1                         # episodes per task (pass@k for k <= samples)
    sample_size: 24                    # tasks per task set (seeded; 0 = every task)
    seeds: {training: 0, evaluation: 0}  # every arm's config seed; the task sample and generation seed

Every problem is an ExperimentError naming the file, and the arm or key: unknown keys, an unknown config or
config key (the arm's config is loaded with its overrides), an unknown task set, two arms with the same name, a
baseline that is not an arm.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from rl_assets.experiments.arms import Arm, ExperimentError, arm_from_mapping, experiments_dir

KEYS = {"name", "description", "arms", "baseline", "task_sets", "samples", "sample_size", "seeds"}


@dataclass(frozen=True)
class Experiment:
    name: str
    path: Path
    arms: tuple[Arm, ...]
    baseline: str
    task_sets: tuple[str, ...]
    description: str = ""
    samples: int = 1
    sample_size: int = 24
    seeds: dict[str, int] = field(default_factory=lambda: {"training": 0, "evaluation": 0})

    @property
    def arm_names(self) -> list[str]:
        return [a.name for a in self.arms]

    def arm(self, name: str) -> Arm:
        return next(a for a in self.arms if a.name == name)

    @property
    def policies(self) -> list[str]:
        """Every evaluation policy the experiment reads: its arms and their untrained counterparts."""
        untrained = [a.untrained for a in self.arms]
        return list(dict.fromkeys([*self.arm_names, *untrained]))

    def asdict(self) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.path), "description": self.description,
                "arms": [a.asdict() for a in self.arms], "baseline": self.baseline, "task_sets": list(self.task_sets),
                "samples": self.samples, "sample_size": self.sample_size, "seeds": dict(self.seeds)}


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML whose mappings refuse a repeated key (PyYAML keeps the last one silently)."""


def _construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ExperimentError(f"line {key_node.start_mark.line + 1}: key {key!r} appears twice")
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def experiment_path(name_or_path: str | os.PathLike) -> Path:
    text = str(name_or_path)
    if "/" not in text and not text.endswith((".yaml", ".yml")):
        return experiments_dir() / f"{text}.yaml"
    return Path(text)


def available_experiments() -> list[str]:
    directory = experiments_dir()
    return sorted(p.stem for p in directory.glob("*.yaml")) if directory.is_dir() else []


def load_experiment(name_or_path: str | os.PathLike) -> Experiment:
    path = experiment_path(name_or_path)
    if not path.is_file():
        raise ExperimentError(f"no experiment file {path} (known: {', '.join(available_experiments()) or 'none'})")
    try:
        raw = yaml.load(path.read_text(), Loader=_UniqueKeyLoader) or {}
    except ExperimentError as e:
        raise ExperimentError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        raise ExperimentError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ExperimentError(f"{path}: an experiment file is a mapping")
    unknown = sorted(set(raw) - KEYS)
    if unknown:
        raise ExperimentError(f"{path}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(KEYS))})")
    name = raw.get("name", path.stem)
    if name != path.stem:
        raise ExperimentError(f"{path}: name {name!r} must be the file's name ({path.stem!r})")
    arms_raw = raw.get("arms")
    if not isinstance(arms_raw, list) or not arms_raw:
        raise ExperimentError(f"{path}: arms is a non-empty list of {{name, config, overrides}}")
    arms: list[Arm] = []
    for i, item in enumerate(arms_raw):
        arm = arm_from_mapping(item, f"{path}: arms[{i}]")
        if any(a.name == arm.name for a in arms):
            raise ExperimentError(f"{path}: two arms are named {arm.name!r}; arm names must be unique")
        arms.append(replace(arm, defined_in=str(path)))
    baseline = raw.get("baseline", arms[0].name)
    if baseline not in [a.name for a in arms]:
        raise ExperimentError(f"{path}: baseline {baseline!r} is not one of the arms ({', '.join(a.name for a in arms)})")
    task_sets = raw.get("task_sets")
    if not isinstance(task_sets, list) or not task_sets:
        raise ExperimentError(f"{path}: task_sets is a non-empty list of task set names")
    from rl_assets.evaluation.task_sets import TaskSetError, parse_task_set

    for task_set in task_sets:
        try:
            parse_task_set(task_set)
        except TaskSetError as e:
            raise ExperimentError(f"{path}: task_sets: {e}") from None
    seeds = raw.get("seeds") or {}
    if not isinstance(seeds, dict) or set(seeds) - {"training", "evaluation"} or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in seeds.values()):
        raise ExperimentError(f"{path}: seeds is a mapping of training / evaluation to integers")
    seeds = {"training": 0, "evaluation": 0, **seeds}
    arms = [replace(a, overrides=(*a.overrides, f"seed={seeds['training']}")) if not any(
        o.startswith("seed=") for o in a.overrides) and seeds["training"] != a.train_config().seed else a for a in arms]
    for key in ("samples", "sample_size"):
        value = raw.get(key, 1 if key == "samples" else 24)
        if not isinstance(value, int) or isinstance(value, bool) or value < (1 if key == "samples" else 0):
            raise ExperimentError(f"{path}: {key} must be an integer >= {1 if key == 'samples' else 0}, got {value!r}")
    return Experiment(name=name, path=path, arms=tuple(arms), baseline=baseline, task_sets=tuple(task_sets),
                      description=str(raw.get("description") or ""), samples=raw.get("samples", 1),
                      sample_size=raw.get("sample_size", 24), seeds=seeds)
