"""The model and tokenizer a run starts from: the self-built tiny model, a registered base model
(rl_assets.base_models), or a Hugging Face model (id or local path) with its tokenizer, optionally trained
through a PEFT LoRA adapter."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rl_assets.training.config import TrainConfig
from rl_assets.training.chat_template import attach_compact_template
from rl_assets.training.tiny import build_model, train_tokenizer


def tokenizer_corpus(conversations: list[list[dict[str, Any]]], tools: list[dict[str, Any]]) -> list[str]:
    """The text a tiny tokenizer is trained on: oracle conversations of train tasks (questions, tool calls,
    table / column names, row labels, cells as the tools print them) and the tool schemas."""
    texts = [json.dumps(t) for t in tools]
    for conversation in conversations:
        for message in conversation:
            texts.append(message.get("content") or "")
            for call in message.get("tool_calls") or []:
                texts.append(json.dumps(call["function"], ensure_ascii=False))
    return texts


def build_tiny(config: TrainConfig, corpus: list[str], forbidden_words: list[str]):
    tiny = config.model.tiny
    tokenizer = train_tokenizer(corpus, tiny.vocab_size, tiny.max_token_length, forbidden_words=forbidden_words)
    model = build_model(
        tokenizer, hidden_size=tiny.hidden_size, num_layers=tiny.num_layers, num_heads=tiny.num_heads,
        num_kv_heads=tiny.num_kv_heads, intermediate_size=tiny.intermediate_size,
        max_position_embeddings=tiny.max_position_embeddings, seed=config.seed,
    )
    return model, tokenizer


def base_weights(config: TrainConfig, base_dir: Path) -> str:
    """Where the base model's weights are read from: the tiny model saved in the run, a registered base model's
    checked directory (rl_assets.base_models: fetched and converted on first use), or the HF id / path."""
    from rl_assets.base_models import resolve_base

    return str(base_dir) if config.is_tiny else resolve_base(config.model.base)


def load_causal_lm(config: TrainConfig, source: str):
    import torch
    from transformers import AutoModelForCausalLM

    from rl_assets.training.attention import use_cpu_attention

    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[config.model.dtype]
    return use_cpu_attention(AutoModelForCausalLM.from_pretrained(source, dtype=dtype))


def pretrained_tokenizer(config: TrainConfig):
    """The base model's tokenizer, with the compact template if the config asks for it."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_weights(config, Path()))
    if config.model.chat_template == "compact":
        attach_compact_template(tokenizer)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def lora_config(config: TrainConfig):
    """The PEFT LoraConfig of the run, or None for full fine-tuning."""
    if config.model.lora is None:
        return None
    from peft import LoraConfig

    lora = config.model.lora
    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=lora.target_modules, task_type="CAUSAL_LM")


def load_stage_model(config: TrainConfig, base_dir: Path, stage_dir: Path):
    """The model a stage left in `stage_dir` (full model, or a LoRA adapter over the base weights), trainable,
    with the run's tokenizer."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(stage_dir)
    if (stage_dir / "adapter_config.json").exists():
        from peft import PeftModel

        model = PeftModel.from_pretrained(load_causal_lm(config, base_weights(config, base_dir)), stage_dir,
                                          is_trainable=True)
    else:
        model = load_causal_lm(config, str(stage_dir))
    return model, tokenizer
