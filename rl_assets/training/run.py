"""One training run, start to finish and resumable: base model -> SFT -> GRPO -> `<output>/model/`.

Layout of `<output>/`:

    checkpoints/run.json          the config hash and snapshot hash this directory belongs to
    checkpoints/base/             the tiny model as built (tokenizer + initial weights), or the base tokenizer
    checkpoints/sft/checkpoint-N  TRL checkpoints (model, optimizer, scheduler, RNG, data position)
    checkpoints/sft/final/        the SFT result, with `done.json` once the stage finished (and its prompt.json)
    checkpoints/grpo/...          the same for GRPO
    model/                        the trained policy (save_pretrained format) + tokenizer + prompt.json
    metrics.jsonl samples.jsonl lineage.json README.md training_curve.png

Re-running with the same output directory skips finished stages, resumes an unfinished one from its last
checkpoint (dropping metrics logged after it, so the files read as one run), and ends with the same weights
as an uninterrupted run. Every stage reads its starting weights from disk, in both cases.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from rl_assets.prompts import SYSTEM_PROMPT, play_prompt
from rl_assets.rollouts import PROMPT_FILE, env_tools
from rl_assets.snapshot import read_manifest, read_tasks
from rl_assets.training import lineage as lineage_mod
from rl_assets.training.config import TrainConfig
from rl_assets.training.data import oracle_conversations, sft_examples
from rl_assets.training.environment import training_env
from rl_assets.training.memory import check_fits
from rl_assets.training.models import (base_weights, build_tiny, load_causal_lm, load_stage_model, lora_config,
                                       pretrained_tokenizer, tokenizer_corpus)
from rl_assets.training.plots import CURVE_FILE, training_curve
from rl_assets.training.reporting import Reporter, read_metrics

CHECKPOINTS = "checkpoints"
RUN_FILE = "run.json"
DONE_FILE = "done.json"
MODEL_DIR = "model"


class RunMismatch(ValueError):
    """The output directory holds (part of) a run with another config or snapshot."""


def last_checkpoint(stage_dir: Path) -> Path | None:
    checkpoints = [p for p in stage_dir.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()
                   and (p / "trainer_state.json").exists()]
    return max(checkpoints, key=lambda p: int(p.name.split("-")[-1])) if checkpoints else None


def _claim_output(output: Path, config: TrainConfig, snapshot_hash: str) -> None:
    path = output / CHECKPOINTS / RUN_FILE
    identity = {"config_name": config.name, "config_hash": config.hash, "snapshot_hash": snapshot_hash}
    if path.exists():
        existing = json.loads(path.read_text())
        if {k: existing.get(k) for k in ("config_hash", "snapshot_hash")} != {k: identity[k] for k in ("config_hash", "snapshot_hash")}:
            raise RunMismatch(
                f"{output} holds a run of config {existing.get('config_name')} ({existing.get('config_hash')}) on "
                f"snapshot {existing.get('snapshot_hash')}; this is {config.name} ({config.hash}) on {snapshot_hash}. "
                "Use another --output (or delete that directory to start over)."
            )
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(identity, indent=2) + "\n")


def _task_world_names(tasks: list[dict[str, Any]]) -> list[str]:
    return sorted({t["world_id"] for t in tasks} | {str(t["company"]) for t in tasks if t.get("company")})


def _tiny_base(config: TrainConfig, tasks: list[dict[str, Any]], conversations: list[list[dict[str, Any]]],
               tools: list[dict[str, Any]]):
    """The tiny model a run starts from: tokenizer trained on its first oracle conversations, seeded weights."""
    corpus = tokenizer_corpus(conversations[: config.model.tiny.tokenizer_episodes], tools)
    return build_tiny(config, corpus, forbidden_words=_task_world_names(tasks))


def build_untrained(config: TrainConfig, snapshot: str | Path, out: str | Path) -> Path:
    """Exactly the model a run of the tiny `config` on `snapshot` would start from (its `checkpoints/base/`),
    saved to `out` with the `prompt.json` the run's `model/` would have: the untrained counterpart of a run
    that was not trained (yet)."""
    from transformers.utils import get_json_schema

    if not config.is_tiny:
        raise ValueError(f"config {config.name} starts from {config.model.base}, not from a tiny model")
    snapshot, out = Path(snapshot).absolute(), Path(out)  # not resolved: a hash-named link to a copy is published
    system_prompt = config.system_prompt if config.system_prompt is not None else SYSTEM_PROMPT
    tasks = read_tasks(snapshot, splits=["train"], question_types=config.data.question_types, sources=config.data.sources)
    env = training_env(snapshot, config)
    tools = [get_json_schema(tool) for tool in env_tools(env)]
    conversations, _ = oracle_conversations(env, tasks, config.model.tiny.tokenizer_episodes, config.seed,
                                            config.data.company_aliases, system_prompt)
    model, tokenizer = _tiny_base(config, tasks, conversations, tools)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    _write_prompt(config, out, system_prompt)
    return out


def prompt_config(config: TrainConfig) -> dict[str, Any]:
    """How a model trained with `config` is played (rl_assets.rollouts): its system prompt and environment options
    (`prompt.json` of the trained model; an untrained base is played with a default config's)."""
    return play_prompt(config.system_prompt, config.env.description_chars, config.model.dtype)


def model_shape(config: TrainConfig) -> dict[str, Any] | None:
    """The base model's size (config.json of a registered or local base; the tiny config's sizes), for the memory check."""
    if config.is_tiny:
        tiny = config.model.tiny
        return {"hidden_size": tiny.hidden_size, "num_hidden_layers": tiny.num_layers, "num_attention_heads": tiny.num_heads,
                "num_key_value_heads": tiny.num_kv_heads, "intermediate_size": tiny.intermediate_size,
                "vocab_size": tiny.vocab_size}
    local = Path(base_weights(config, Path())) / "config.json"
    return json.loads(local.read_text()) if local.is_file() else None  # a hub id: its size is not known here


def _write_prompt(config: TrainConfig, model_dir: Path, system_prompt: str) -> None:
    """`prompt.json`: how the model is played, and for an adapter the base model it sits on (a registry name is
    resolved on whatever machine plays it)."""
    (model_dir / PROMPT_FILE).write_text(json.dumps(
        {**prompt_config(config), "system_prompt": system_prompt,
         "base_model": None if config.is_tiny else config.model.base}, indent=2) + "\n")


def train(config: TrainConfig, snapshot: str | Path, output: str | Path, reporter: Reporter) -> dict[str, Any]:
    """Run (or resume, or re-report) the training run; returns the final metrics."""
    import torch
    from transformers.utils import get_json_schema

    snapshot, output = Path(snapshot).absolute(), Path(output).resolve()  # the snapshot path as named (a link on a cloud machine)
    if not (snapshot / "manifest.json").exists():
        raise FileNotFoundError(f"{snapshot} is not an environment snapshot (no manifest.json)")
    snapshot_hash = read_manifest(snapshot).get("snapshot_hash", snapshot.name)
    use_cpu = not torch.cuda.is_available()
    shape = model_shape(config) if use_cpu else None
    if shape is not None:  # a run that cannot fit is refused before anything is written (the kernel kills it silently)
        estimate = check_fits(config, shape)
        reporter.info(f"memory: estimated peak {estimate.total / 1e9:.1f} GB ({estimate.describe()})")
    _claim_output(output, config, snapshot_hash)
    system_prompt = config.system_prompt if config.system_prompt is not None else SYSTEM_PROMPT
    tasks = read_tasks(snapshot, splits=["train"], question_types=config.data.question_types, sources=config.data.sources)
    if not tasks:
        raise ValueError(f"snapshot {snapshot_hash} has no train-split task with question_types="
                         f"{config.data.question_types} sources={config.data.sources}")
    checkpoints = output / CHECKPOINTS
    base_dir = checkpoints / "base"
    reporter.info(f"training {config.name} (config {config.hash}) on snapshot {snapshot_hash}: {len(tasks)} train tasks, "
                  f"output {output}, {'CPU' if use_cpu else 'GPU'}")

    env = training_env(snapshot, config)
    tools = [get_json_schema(tool) for tool in env_tools(env)]
    sft = config.sft
    sft_done = (checkpoints / "sft" / "final" / DONE_FILE).exists()
    needs_base = not (base_dir / "tokenizer_config.json").exists()
    sft_count = sft.max_steps * sft.batch_size * sft.gradient_accumulation_steps if sft.enabled and not sft_done else 0
    count = max(sft_count, config.model.tiny.tokenizer_episodes) if needs_base and config.is_tiny else sft_count
    conversations, not_clonable = (oracle_conversations(env, tasks, count, config.seed, config.data.company_aliases,
                                                        system_prompt, sft.recovery_demos) if count else ([], []))
    if not_clonable:
        reporter.info(f"{len(not_clonable)} train tasks have no clean oracle trajectory and are not cloned")

    if needs_base:
        if config.is_tiny:
            model, tokenizer = _tiny_base(config, tasks, conversations, tools)
            model.save_pretrained(base_dir)
            reporter.info(f"built the tiny model: vocabulary {len(tokenizer)}, "
                          f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters")
        else:
            tokenizer = pretrained_tokenizer(config)
        tokenizer.save_pretrained(base_dir)

    from transformers import AutoTokenizer

    stage_dir: Path | None = None  # where the latest finished stage left its model
    if sft.enabled:
        stage_dir = checkpoints / "sft" / "final"
        if not sft_done:
            from rl_assets.training.sft import run_sft

            model = load_causal_lm(config, base_weights(config, base_dir))
            tokenizer = AutoTokenizer.from_pretrained(base_dir)
            resume = _resume_point("sft", checkpoints / "sft", reporter)
            examples = sft_examples(conversations[:sft_count], sft.prefix_turns)  # the same on a resumed run
            trainer = run_sft(config, model, tokenizer, examples, tools, checkpoints / "sft", reporter,
                              peft_config=lora_config(config), resume_from=resume, use_cpu=use_cpu)
            _finish_stage(trainer, tokenizer, stage_dir, config, system_prompt)
        else:
            reporter.info("sft: finished earlier, reusing checkpoints/sft/final")

    if config.grpo.enabled:
        grpo_final = checkpoints / "grpo" / "final"
        if not (grpo_final / DONE_FILE).exists():
            from rl_assets.training.grpo import run_grpo

            if stage_dir is not None:
                model, tokenizer = load_stage_model(config, base_dir, stage_dir)
                peft = None  # the SFT adapter (if any) keeps training
            else:
                model = load_causal_lm(config, base_weights(config, base_dir))
                tokenizer = AutoTokenizer.from_pretrained(base_dir)
                peft = lora_config(config)
            resume = _resume_point("grpo", checkpoints / "grpo", reporter)
            trainer = run_grpo(config, model, tokenizer, tasks, snapshot, checkpoints / "grpo", reporter, system_prompt,
                               peft_config=peft, resume_from=resume, use_cpu=use_cpu)
            _finish_stage(trainer, tokenizer, grpo_final, config, system_prompt)
        else:
            reporter.info("grpo: finished earlier, reusing checkpoints/grpo/final")
        stage_dir = grpo_final

    if stage_dir is None:
        raise ValueError(f"config {config.name}: both sft and grpo are disabled; nothing to train")
    return _publish(config, snapshot, output, stage_dir, tasks, system_prompt, reporter)


def _resume_point(stage: str, stage_dir: Path, reporter: Reporter) -> str | None:
    checkpoint = last_checkpoint(stage_dir)
    step = int(checkpoint.name.split("-")[-1]) if checkpoint else 0
    reporter.forget_after(stage, step)
    if checkpoint:
        reporter.info(f"{stage}: resuming from {checkpoint.relative_to(stage_dir.parent.parent)} (step {step})")
    return str(checkpoint) if checkpoint else None


def _finish_stage(trainer, tokenizer, final: Path, config: TrainConfig, system_prompt: str) -> None:
    """A finished stage's model, playable on its own: with the `prompt.json` of the run's `model/` (its dtype and
    environment options), so a run that stops in a later stage still has a correctly played earlier one."""
    if final.exists():
        shutil.rmtree(final)
    trainer.save_model(str(final))
    tokenizer.save_pretrained(final)
    _write_prompt(config, final, system_prompt)
    (final / DONE_FILE).write_text(json.dumps({"steps": trainer.state.global_step}) + "\n")


def final_metrics(metrics: list[dict[str, Any]], window: int = 5) -> dict[str, Any]:
    """Summary of a run's metrics: last SFT loss, and GRPO means over the last `window` logging steps."""
    summary: dict[str, Any] = {}
    sft = [m for m in metrics if m["stage"] == "sft"]
    grpo = [m for m in metrics if m["stage"] == "grpo"]
    if sft:
        summary["sft/steps"] = sft[-1]["step"]
        for key in ("loss", "token_accuracy"):
            if key in sft[-1]:
                summary[f"sft/{key}"] = sft[-1][key]
        for key in ("tokens_per_s", "step_s"):  # means over the stage
            values = [m[key] for m in sft if isinstance(m.get(key), (int, float))]
            if values:
                summary[f"sft/{key}"] = sum(values) / len(values)
    if grpo:
        summary["grpo/steps"] = grpo[-1]["step"]
        last = grpo[-window:]
        keys = sorted({k for m in last for k, v in m.items() if isinstance(v, (int, float)) and k not in ("step",)
                       and (k in ("reward", "pass_rate", "tool_error_rate", "completion_tokens", "completion_tokens_per_s",
                                  "tokens_per_s", "step_s")
                            or k.startswith(("reward/", "timing/")) or k == "tools/dropped_results")})
        for key in keys:
            values = [m[key] for m in last if isinstance(m.get(key), (int, float))]
            summary[f"grpo/{key}"] = sum(values) / len(values)
    if metrics:
        summary["wall_s"] = max(m["wall_s"] for m in metrics)
    return summary


def _publish(config: TrainConfig, snapshot: Path, output: Path, stage_dir: Path, tasks: list[dict[str, Any]],
             system_prompt: str, reporter: Reporter) -> dict[str, Any]:
    model_dir = output / MODEL_DIR
    if model_dir.exists():
        shutil.rmtree(model_dir)
    shutil.copytree(stage_dir, model_dir, ignore=shutil.ignore_patterns(DONE_FILE, "training_args.bin"))
    _write_prompt(config, model_dir, system_prompt)
    metrics = read_metrics(output)
    summary = final_metrics(metrics)
    if metrics:
        training_curve(metrics, output / CURVE_FILE)
    task_ids = {"train": sorted(t["task_id"] for t in tasks), "val": [], "test": []}
    lineage = lineage_mod.build_lineage(config, snapshot, task_ids, {"final_metrics": summary,
                                                                     "resources": lineage_mod.resources(summary)})
    lineage_mod.write_lineage(output, lineage)
    lineage_mod.write_model_card(output, lineage, summary)
    reporter.info(f"done: model in {model_dir} ({', '.join(f'{k}={v:.4g}' for k, v in summary.items() if isinstance(v, float))})")
    return {"summary": summary, "lineage": lineage, "model_dir": str(model_dir)}
