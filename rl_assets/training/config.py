"""One training configuration: a YAML file mapped onto `TrainConfig` (model, data, environment, SFT, GRPO,
LoRA, reward), with `key=value` overrides.

    config = load_config("tiny-local", overrides=["grpo.max_steps=5"])
    config.hash     # SHA-256 of the resolved configuration (first 16 hex digits)

A name resolves to `rl_assets/configs/<name>.yaml`; anything else is read as a path. Unknown keys, wrong
types and bad values are errors that name the file and the key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rl_assets.prompts import TRAINING_DESCRIPTION_CHARS

CONFIGS_DIR = Path(__file__).resolve().parents[1] / "configs"
TINY = "tiny"


@dataclass
class TinyModelConfig:
    """The self-built model (model.base = tiny): tokenizer and Qwen3 sizes."""

    vocab_size: int = 2048
    max_token_length: int = 8  # longest token the BPE may learn, in characters
    hidden_size: int = 192
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 512
    max_position_embeddings: int = 4096
    tokenizer_episodes: int = 1500  # oracle episodes whose text (plus the world's) trains the tokenizer


@dataclass
class LoraConfig:
    r: int = 32
    alpha: int = 64
    dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"


@dataclass
class ModelConfig:
    base: str = TINY  # "tiny" or a Hugging Face model id / local path
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    lora: LoraConfig | None = None  # PEFT LoRA on the base model (real models)
    dtype: str = "float32"  # float32 | bfloat16
    chat_template: str = "compact"  # compact (one line per tool) | model (the model's own template)
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, ~30% more compute


@dataclass
class DataConfig:
    question_types: list[str] = field(default_factory=lambda: ["single_table"])
    sources: list[str] | None = None  # None = every source that has train tasks
    company_aliases: bool = True  # per-episode company aliases during training (rl_assets.training.environment)
    table_alias_prob: float = 0.5  # probability that an episode's tables are renamed too
    # probability that an episode's company lists only the task's tables and 0-3 others (the train split's SEC
    # filers list 18-71 tables; FinQA and TAT-QA filings one or two): rl_assets.training.environment
    short_listing_prob: float = 0.0
    # probability that an episode's year columns (`2024`) are renamed in a FinQA / TAT-QA shape
    # (`year_ended_december_31_2024`, `fiscal_2024`, ...): rl_assets.training.environment
    column_alias_prob: float = 0.0

    def __post_init__(self):
        _check_fraction("table_alias_prob", self.table_alias_prob)
        _check_fraction("short_listing_prob", self.short_listing_prob)
        _check_fraction("column_alias_prob", self.column_alias_prob)


@dataclass
class EnvConfig:
    """FinQAEnv options used in training and written to model/prompt.json for evaluation."""

    description_chars: int = TRAINING_DESCRIPTION_CHARS


@dataclass
class SFTConfig:
    enabled: bool = True
    max_steps: int = 100
    batch_size: int = 2
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1.5e-3
    warmup_steps: int = 20
    lr_scheduler: str = "cosine"
    max_length: int = 3072  # tokens per conversation (longer ones are truncated)
    prefix_turns: list[int] = field(default_factory=list)  # also train on conversations cut after these turns
    # fraction of the oracle conversations that are recovery demonstrations: one wrong table name, column or row
    # label, the environment's error (or empty result), then the right call; the wrong call is context, not a target
    recovery_demos: float = 0.0
    logging_steps: int = 10
    save_steps: int = 50

    def __post_init__(self):
        _check_fraction("recovery_demos", self.recovery_demos)


@dataclass
class GRPOConfig:
    enabled: bool = True
    max_steps: int = 10
    prompts_per_step: int = 2
    num_generations: int = 4
    max_completion_length: int = 1536  # tokens after the prompt: the model's turns AND the tool results
    max_tool_calling_iterations: int = 8
    # completions per forward + backward pass of the loss (0 = all of a step's prompts_per_step x num_generations at
    # once); the step's gradient is accumulated over its micro-batches, so a smaller one bounds memory, not the result
    micro_batch_size: int = 0
    reuse_kv_cache: bool = True  # each rollout keeps its KV cache across tool turns (rl_assets.training.decoding)
    # tokens one model turn may generate (0 = up to max_completion_length, as TRL): a turn that rambles on without
    # ending ends there (as evaluation's max_new_tokens), instead of holding the whole batch for 1,000+ tokens
    max_tokens_per_turn: int = 0
    learning_rate: float = 5e-4
    warmup_steps: int = 0
    temperature: float = 1.0
    beta: float = 0.0  # KL coefficient (0: no reference model)
    logging_steps: int = 1
    save_steps: int = 10
    samples_per_log: int = 2  # trajectories written to samples.jsonl at each logging step


@dataclass
class RewardConfig:
    """Weights of the reward terms (rl_assets.training.rewards). correct is the environment's own reward."""

    correct: float = 1.0
    well_formed: float = 0.0
    company_used: float = 0.0
    schema_before_query: float = 0.0
    no_hallucination: float = 0.0
    recovered: float = 0.0
    submitted: float = 0.0
    no_repeats: float = 0.0


@dataclass
class TrainConfig:
    name: str
    description: str = ""
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    system_prompt: str | None = None  # None: rl_assets.prompts.SYSTEM_PROMPT

    def asdict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def hash(self) -> str:
        canonical = json.dumps(self.asdict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @property
    def is_tiny(self) -> bool:
        return self.model.base == TINY


class ConfigError(ValueError):
    pass


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {value}")


def config_path(name_or_path: str | Path) -> Path:
    """`rl_assets/configs/<name>.yaml` for a bare name, else the path itself."""
    text = str(name_or_path)
    if "/" not in text and not text.endswith((".yaml", ".yml")):
        return CONFIGS_DIR / f"{text}.yaml"
    return Path(text)


def available_configs() -> list[str]:
    return sorted(p.stem for p in CONFIGS_DIR.glob("*.yaml"))


def load_config(name_or_path: str | Path, overrides: list[str] | dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML config and apply overrides (`["grpo.max_steps=5", ...]` or `{"grpo.max_steps": 5}`)."""
    path = config_path(name_or_path)
    if not path.exists():
        raise ConfigError(f"no training config {path} (known: {', '.join(available_configs())})")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a training config is a mapping, got {type(raw).__name__}")
    raw.setdefault("name", path.stem)
    for key, value in parse_overrides(overrides, path).items():
        _set_dotted(raw, key, value, path)
    return _build(TrainConfig, raw, path, "")


def parse_overrides(overrides, path: Path) -> dict[str, Any]:
    """`["key=value", ...]` (values are YAML) or a dict -> {dotted key: value}; `path` names the config in errors."""
    if not overrides:
        return {}
    if isinstance(overrides, dict):
        return dict(overrides)
    parsed = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} for {path}: expected key=value (e.g. grpo.max_steps=5)")
        parsed[key.strip()] = yaml.safe_load(value) if value.strip() else None
    return parsed


def _set_dotted(raw: dict, key: str, value: Any, path: Path) -> None:
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override {key}: {part!r} in {path} is not a section")
        node = child
    node[parts[-1]] = value


def _build(cls, raw: Any, path: Path, prefix: str):
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: {prefix.rstrip('.') or 'config'} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(prefix + u for u in unknown)} (known: {', '.join(sorted(names))})")
    values = {}
    for name, value in raw.items():
        values[name] = _coerce(hints[name], value, path, prefix + name)
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{path}: {prefix.rstrip('.') or 'config'}: {e}") from None


def _coerce(hint, value, path: Path, key: str):
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, path, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{path}: {key}: bad value {value!r}")
    if dataclasses.is_dataclass(hint):
        return _build(hint, value if value is not None else {}, path, key + ".")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{path}: {key} must be a list, got {value!r}")
        return [_coerce(args[0], v, path, key) for v in value] if args else list(value)
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint in (int, str, bool) and (type(value) is hint):
        return value
    if hint is typing.Any:
        return value
    raise ConfigError(f"{path}: {key} must be {getattr(hint, '__name__', hint)}, got {value!r}")
