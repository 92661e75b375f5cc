"""Will a training config fit in this machine's memory? An estimate of the peak resident memory of a CPU run,
checked before anything is loaded: a process that exceeds memory is killed by the kernel without a Python
traceback (measured: GRPO on SmolLM2-135M with 8 completions of 1,536 tokens, no gradient checkpointing, one
micro-batch, was killed at 24 GB on its second step), so a config that cannot fit is refused with the figures.

    estimate = estimate_peak(config, model_config)   # MemoryEstimate: total and its parts, in bytes
    check_fits(config, model_config)                 # raises ConfigError naming the keys to lower

The parts (bytes; b = 2 for bfloat16 weights, 4 for float32):
- the process: Python, torch, transformers, TRL, datasets and the environment's world (PROCESS_BYTES, measured);
- the weights: parameters x b (LoRA adapters and their optimizer state are small and included in the margin);
- a forward + backward pass over `tokens` = micro-batch x sequence length: with gradient checkpointing, every layer
  keeps its input (hidden x 4 bytes per token) and one layer at a time holds its working set; without it, every
  layer holds its working set at once. The working set per token and layer is ~(14 x hidden + 6 x intermediate)
  floats plus the attention scores (heads x length floats, when the attention is not fused);
- the LM head: TRL's fused head scores the labelled positions in tiles of 4,096 tokens x 32,768 vocabulary floats;
- GRPO generation: every completion's KV cache (prompt + max_completion_length tokens x layers x 2 x kv heads x
  head dim x b), twice (kept between turns and the batch being decoded).
The coefficients are fitted to measured peaks on 2 cores (docs/training.md, "Memory"); the estimate is meant to
be an upper bound within ~25%.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rl_assets.training.config import ConfigError, TrainConfig

GB = 1e9
PROCESS_BYTES = 1.6 * GB  # python + torch + transformers + trl + datasets + the environment world, measured
WORKING_FLOATS_PER_HIDDEN = 14  # per token and layer, in units of hidden_size
WORKING_FLOATS_PER_INTERMEDIATE = 6  # per token and layer, in units of intermediate_size
LM_HEAD_TILE = 4096 * 32768 * 4 * 3  # TRL's fused head: a token chunk x vocabulary chunk, ~3 float copies
MEMORY_LIMIT_ENV = "FINQA_RL_MEMORY_LIMIT_GB"


@dataclass
class MemoryEstimate:
    parts: dict[str, float] = field(default_factory=dict)  # name -> bytes

    @property
    def total(self) -> float:
        return sum(self.parts.values())

    def describe(self) -> str:
        return ", ".join(f"{name} {value / GB:.1f} GB" for name, value in self.parts.items() if value >= 0.05 * GB)


def _model_shape(model_config: Any) -> dict[str, int]:
    get = (lambda k, d=None: model_config.get(k, d)) if isinstance(model_config, dict) else \
        (lambda k, d=None: getattr(model_config, k, d))
    hidden = int(get("hidden_size"))
    heads = int(get("num_attention_heads"))
    return {"hidden": hidden, "layers": int(get("num_hidden_layers")), "heads": heads,
            "kv_heads": int(get("num_key_value_heads", heads) or heads), "head_dim": int(get("head_dim", 0) or hidden // heads),
            "intermediate": int(get("intermediate_size", 4 * hidden)), "vocab": int(get("vocab_size"))}


def _parameters(shape: dict[str, int], tied: bool = True) -> int:
    h, i, layers = shape["hidden"], shape["intermediate"], shape["layers"]
    kv = shape["kv_heads"] * shape["head_dim"]
    per_layer = h * h * 2 + h * kv * 2 + 3 * h * i + 2 * h
    return layers * per_layer + shape["vocab"] * h * (1 if tied else 2)


def _pass_bytes(shape: dict[str, int], tokens: int, length: int, checkpointing: bool) -> float:
    """A forward + backward pass over `tokens` tokens in sequences of `length`."""
    working = (WORKING_FLOATS_PER_HIDDEN * shape["hidden"] + WORKING_FLOATS_PER_INTERMEDIATE * shape["intermediate"]
               + shape["heads"] * length) * 4 * tokens
    if checkpointing:
        return shape["layers"] * shape["hidden"] * 4 * tokens + 2 * working  # inputs kept + one layer (and its grads)
    return shape["layers"] * working


def estimate_peak(config: TrainConfig, model_config: Any) -> MemoryEstimate:
    """The peak resident memory of a CPU run of `config` on a model of `model_config` (a transformers config or
    its config.json as a dict)."""
    shape = _model_shape(model_config)
    weight_bytes = 2 if config.model.dtype == "bfloat16" else 4
    checkpointing = config.model.gradient_checkpointing
    estimate = MemoryEstimate({"process": PROCESS_BYTES,
                               "weights": _parameters(shape) * weight_bytes * (1 if config.model.lora else 4)})
    # full fine-tuning keeps gradients and two Adam moments per weight (x4 above); LoRA's are small
    passes = []
    if config.sft.enabled:
        sft = config.sft
        passes.append(("sft pass", _pass_bytes(shape, sft.batch_size * sft.max_length, sft.max_length, checkpointing)))
    if config.grpo.enabled:
        g = config.grpo
        length = g.max_completion_length + 1024  # the prompt (system, tools, question) is well under 1,024 tokens
        micro = g.micro_batch_size or g.prompts_per_step * g.num_generations
        completions = g.prompts_per_step * g.num_generations
        kv = completions * length * shape["layers"] * 2 * shape["kv_heads"] * shape["head_dim"] * weight_bytes * 2
        passes.append(("grpo pass", _pass_bytes(shape, micro * length, length, checkpointing)))
        passes.append(("grpo generation KV cache", kv))
    if passes:
        name, value = max(passes, key=lambda p: p[1])
        estimate.parts[name] = value
    estimate.parts["LM head tiles"] = LM_HEAD_TILE
    return estimate


def available_bytes() -> tuple[float, str]:
    """The memory a run may use: $FINQA_RL_MEMORY_LIMIT_GB, else the machine's MemAvailable (or its cgroup limit)."""
    if os.environ.get(MEMORY_LIMIT_ENV):
        return float(os.environ[MEMORY_LIMIT_ENV]) * GB, f"${MEMORY_LIMIT_ENV}"
    limits = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                limits.append((float(line.split()[1]) * 1024, "this machine's available memory"))
    except OSError:
        pass
    try:
        text = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if text.isdigit():
            limits.append((float(text), "the container's memory limit"))
    except OSError:
        pass
    return min(limits) if limits else (float("inf"), "unknown")


def check_fits(config: TrainConfig, model_config: Any) -> MemoryEstimate:
    """Raise ConfigError when `config`'s estimated peak exceeds the memory a run may use (CPU runs)."""
    estimate = estimate_peak(config, model_config)
    limit, source = available_bytes()
    if estimate.total > limit:
        raise ConfigError(
            f"config {config.name} does not fit in memory: its CPU run needs about {estimate.total / GB:.1f} GB "
            f"({estimate.describe()}) and {source} is {limit / GB:.1f} GB. Lower sft.batch_size or sft.max_length, "
            "set grpo.micro_batch_size (gradient accumulation: the same step in smaller passes), lower "
            "grpo.max_completion_length, or set model.gradient_checkpointing: true (rl_assets/training/memory.py).")
    return estimate
