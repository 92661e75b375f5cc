"""Experiments as data: arms (a training config + overrides), experiment files (`experiments/<name>.yaml`: arms,
task sets, samples, baseline, seeds) and the comparison of their evaluations (arms x task sets with paired
intervals, behaviour rates, cost and lineage). Plain Python; orchestration/defs/experiments.py makes them
Dagster assets and jobs, `finqa-rl experiment` runs one (docs/experiments.md)."""

from rl_assets.experiments.arms import Arm, ExperimentError, experiments_dir, resolve_arm, untrained_arm
from rl_assets.experiments.spec import Experiment, available_experiments, load_experiment

__all__ = ["Arm", "Experiment", "ExperimentError", "available_experiments", "experiments_dir", "load_experiment",
           "resolve_arm", "untrained_arm"]
