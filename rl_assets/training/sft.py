"""The SFT stage: behaviour cloning of oracle conversations with TRL's `SFTTrainer`, loss on the assistant's
tokens only (the chat template's `{% generation %}` markers), checkpointed under `<output>/checkpoints/sft/`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rl_assets.training.cpu import score_labelled_positions_only
from rl_assets.training.callbacks import ReportingCallback, report_through
from rl_assets.training.config import TrainConfig
from rl_assets.training.data import sft_row
from rl_assets.training.reporting import Reporter


def sft_args(config: TrainConfig, output_dir: Path, use_cpu: bool):
    import trl

    sft = config.sft
    return trl.SFTConfig(
        output_dir=str(output_dir), max_steps=sft.max_steps, per_device_train_batch_size=sft.batch_size,
        gradient_accumulation_steps=sft.gradient_accumulation_steps, learning_rate=sft.learning_rate,
        warmup_steps=sft.warmup_steps, lr_scheduler_type=sft.lr_scheduler, max_length=sft.max_length,
        assistant_only_loss=True, logging_steps=sft.logging_steps, save_strategy="steps", save_steps=sft.save_steps,
        save_total_limit=2, report_to=[], disable_tqdm=True, use_cpu=use_cpu, bf16=config.model.dtype == "bfloat16",
        seed=config.seed, data_seed=config.seed, include_num_input_tokens_seen=True, dataset_num_proc=None,
        save_only_model=False, gradient_checkpointing=config.model.gradient_checkpointing,
    )


def run_sft(config: TrainConfig, model, tokenizer, conversations: list[list[dict[str, Any]]], tools: list[dict],
            output_dir: Path, reporter: Reporter, peft_config=None, resume_from: str | None = None, use_cpu: bool = True):
    """Train on the conversations; returns the trainer (its model is the SFT result)."""
    import trl
    from datasets import Dataset

    tools_json = json.dumps(tools)
    if use_cpu:
        score_labelled_positions_only()
    dataset = Dataset.from_list([sft_row(c, tools_json) for c in conversations])
    trainer = trl.SFTTrainer(model=model, args=sft_args(config, output_dir, use_cpu), train_dataset=dataset,
                             processing_class=tokenizer, peft_config=peft_config)
    report_through(trainer, ReportingCallback("sft", reporter))
    trainer.train(resume_from_checkpoint=resume_from)
    return trainer
