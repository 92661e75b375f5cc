"""The GRPO stage: TRL's `GRPOTrainer(environment_factory=...)` over `TrainingEnv` (train split, aliases),
rewarded by the environment's correctness plus the config's rubric shaping terms (rl_assets.training.rewards),
checkpointed under `<output>/checkpoints/grpo/`.

`FinQAGRPOTrainer` is TRL's trainer with rollouts decoded by rl_assets.training.decoding (the same
temperature sampling, ~2-3x faster than `generate()` for a small model on CPU; TRL's own path runs whenever
other sampling options are set), plus measurements: per optimisation step it logs where the time went
(`timing/generation_s` in `generate`, `timing/environment_s` in the tools, `timing/scoring_s` for rewards and
log-probabilities, `timing/backward_s` for the loss's forward and backward pass), the environment's
tool-error rate, and how many tool results TRL dropped because they would overflow
`max_completion_length` (with a warning naming the step); it keeps the last batch's episodes for
`samples.jsonl`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import trl
from trl.models import unwrap_model_for_generation

from rl_assets.prompts import dataset_prompt
from rl_assets.training import rewards
from rl_assets.training.cpu import score_labelled_positions_only
from rl_assets.training.callbacks import ReportingCallback, report_through
from rl_assets.training.config import ConfigError, TrainConfig
from rl_assets.training.data import grpo_rows
from rl_assets.training.decoding import PrefixCache, generate
from rl_assets.training.environment import TrainingEnv, training_env
from rl_assets.training.reporting import Reporter

log = logging.getLogger("rl_assets.training")
TRL_TOOL_ERROR_PREFIX = "{'error':"  # TRL's message for a call that failed before reaching the tool


def dropped_tool_results(completion: list[dict[str, Any]], env: TrainingEnv) -> int:
    """Tool results the environment produced that the rollout does not contain: TRL drops a result that would
    push the rollout past max_completion_length and ends the rollout there."""
    shown = sum(1 for m in completion
                if m.get("role") == "tool" and not str(m.get("content", "")).startswith(TRL_TOOL_ERROR_PREFIX))
    return max(0, len(env.outputs) - shown)


class FinQAGRPOTrainer(trl.GRPOTrainer):
    """GRPOTrainer with step-time accounting, rollout health metrics and the last batch's episodes."""

    def __init__(self, *args, reporter: Reporter | None = None, reuse_kv_cache: bool = True,
                 max_tokens_per_turn: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.reporter = reporter
        self.max_tokens_per_turn = max_tokens_per_turn or self.max_completion_length
        self.last_episodes: list[dict[str, Any]] = []
        self.dropped_total = 0
        # each rollout's KV cache, kept from one tool turn to the next (rl_assets.training.decoding)
        self.prefix_cache = PrefixCache() if reuse_kv_cache else None
        self._timing = {"generation": 0.0, "environment": 0.0, "score": 0.0, "total": 0.0}
        self._tokens = {"encoded": 0, "reused": 0}
        self._generation_s = 0.0
        self._reward_s = 0.0
        self._score_s = 0.0

    def _generate(self, prompts):
        """TRL's multi-turn generation of one batch; the kept KV caches are freed when it is done."""
        try:
            return super()._generate(prompts)
        finally:
            if self.prefix_cache is not None:
                self.prefix_cache.clear()

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        started = time.perf_counter()
        try:
            if self._cached_decoding_applies(images, multimodal_fields):
                # as TRL's own path: gradient checkpointing (which turns the KV cache off) is paused while sampling
                with unwrap_model_for_generation(
                    self.model_wrapped, self.accelerator, gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                    gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs,
                ) as model:
                    reused_before = self.prefix_cache.tokens_reused if self.prefix_cache is not None else 0
                    generated = generate(model, prompt_ids, self.max_tokens_per_turn, self.eos_token_ids,
                                         self._tokenizer.pad_token_id, temperature=self.temperature,
                                         cache=self.prefix_cache)
                self._tokens["encoded"] += sum(generated.encoded)
                if self.prefix_cache is not None:
                    self._tokens["reused"] += self.prefix_cache.tokens_reused - reused_before
                return generated.completions, None
            return super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations, has_tool_images)
        finally:
            self._generation_s += time.perf_counter() - started

    def _cached_decoding_applies(self, images, multimodal_fields) -> bool:
        """rl_assets.training.decoding samples exactly as TRL's transformers path does when sampling is plain
        temperature sampling on one process without vLLM (the tiny configs); otherwise TRL's own path runs."""
        return (not self.use_vllm and not self.use_transformers_continuous_batching and images is None
                and not multimodal_fields and self.accelerator.num_processes == 1
                and self.top_p == 1.0 and not self.top_k and self.min_p is None and self.repetition_penalty == 1.0
                and not self.args.generation_kwargs)

    def _generate_and_score_completions(self, inputs):
        started = time.perf_counter()
        output = super()._generate_and_score_completions(inputs)
        self._score_s += time.perf_counter() - started
        return output

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        started = time.perf_counter()
        result = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._reward_s += time.perf_counter() - started
        self._record(prompts, completions)
        return result

    def _record(self, prompts, completions) -> None:
        episodes, dropped, calls, errors = [], 0, 0, 0
        for prompt, completion, env in zip(prompts, completions, self.environments or []):
            report = env.report
            lost = dropped_tool_results(completion, env)
            dropped += lost
            calls += report["rubric"]["tool_calls"]
            errors += report["rubric"]["errors"]
            episodes.append({"task_id": report["task_id"], "reward": report["reward"], "rubric": report["rubric"],
                             "dropped_tool_results": lost, "messages": list(prompt) + list(completion)})
        self.last_episodes = episodes
        self.dropped_total += dropped
        metrics = self._metrics["train"]
        metrics["tools/dropped_results"].append(float(dropped))
        metrics["tools/env_error_rate"].append(errors / calls if calls else 0.0)
        if dropped:
            message = (f"grpo step {self.state.global_step + 1}: {dropped} tool result(s) dropped because they would "
                       f"overflow max_completion_length={self.max_completion_length} (raise it or shorten tool outputs)")
            (self.reporter.warning if self.reporter else log.warning)(message)

    def training_step(self, model, inputs, num_items_in_batch):
        """One micro-batch; its time is split into generation (in TRL's `generate`), the tools, scoring (rewards and
        log-probabilities) and the loss's forward + backward, summed over the optimisation step's micro-batches
        and logged once per optimisation step."""
        self._generation_s = self._reward_s = self._score_s = 0.0
        for env in self._environment_pool.get(None, []):
            env.tool_seconds = 0.0
        started = time.perf_counter()
        loss = super().training_step(model, inputs, num_items_in_batch)
        total = time.perf_counter() - started
        environment_s = sum(getattr(env, "tool_seconds", 0.0) for env in self._environment_pool.get(None, []))
        timing = self._timing
        timing["generation"] += self._generation_s
        timing["environment"] += environment_s
        timing["score"] += self._score_s
        timing["total"] += total
        if self._step % self.current_gradient_accumulation_steps == 0:  # TRL counted this micro-batch already
            metrics = self._metrics["train"]
            metrics["timing/generation_s"].append(timing["generation"])
            metrics["timing/environment_s"].append(timing["environment"])
            metrics["timing/scoring_s"].append(max(0.0, timing["score"] - timing["generation"] - timing["environment"]))
            metrics["timing/backward_s"].append(max(0.0, timing["total"] - timing["score"]))
            metrics["generation/tokens_encoded"].append(float(self._tokens["encoded"]))
            metrics["generation/tokens_reused"].append(float(self._tokens["reused"]))
            self._timing = dict.fromkeys(timing, 0.0)
            self._tokens = {"encoded": 0, "reused": 0}
        return loss


def reward_functions(config: TrainConfig) -> tuple[list, list[float]]:
    """The shaping terms with a non-zero weight, and their weights."""
    weights = config.reward
    funcs = [rewards.TERMS[name] for name in rewards.SHAPING_TERMS if getattr(weights, name)]
    return funcs, [getattr(weights, f.__name__) for f in funcs]


def micro_batches(config: TrainConfig) -> tuple[int, int]:
    """(completions per micro-batch, micro-batches per optimisation step) of the GRPO config."""
    g = config.grpo
    completions = g.prompts_per_step * g.num_generations
    micro = g.micro_batch_size or completions
    if micro < 1 or completions % micro:
        raise ConfigError(f"config {config.name}: grpo.micro_batch_size={g.micro_batch_size} must divide the step's "
                          f"{completions} completions (prompts_per_step {g.prompts_per_step} x num_generations "
                          f"{g.num_generations})")
    return micro, completions // micro


def grpo_args(config: TrainConfig, output_dir: Path, use_cpu: bool, reward_weights: list[float]):
    g = config.grpo
    micro, accumulation = micro_batches(config)
    return trl.GRPOConfig(
        output_dir=str(output_dir), max_steps=g.max_steps, per_device_train_batch_size=micro,
        gradient_accumulation_steps=accumulation, steps_per_generation=accumulation,  # generate the step at once
        num_generations=g.num_generations, max_completion_length=g.max_completion_length,
        max_tool_calling_iterations=g.max_tool_calling_iterations, learning_rate=g.learning_rate,
        warmup_steps=g.warmup_steps, temperature=g.temperature, beta=g.beta, logging_steps=g.logging_steps,
        save_strategy="steps", save_steps=g.save_steps, save_total_limit=2, report_to=[], disable_tqdm=True,
        use_cpu=use_cpu, bf16=config.model.dtype == "bfloat16", seed=config.seed, data_seed=config.seed,
        reward_weights=reward_weights or None, log_completions=False, save_only_model=False,
        gradient_checkpointing=config.model.gradient_checkpointing,
    )


def dataset_rows(config: TrainConfig, tasks: list[dict[str, Any]], system_prompt: str) -> list[dict[str, Any]]:
    """The GRPO dataset: one row per prompt the run will use (max_steps x prompts_per_step)."""
    g = config.grpo
    return grpo_rows(tasks, g.max_steps * g.prompts_per_step, config.seed + 1, config.data.company_aliases,
                     dataset_prompt(system_prompt))


def run_grpo(config: TrainConfig, model, tokenizer, tasks: list[dict[str, Any]], snapshot: Path, output_dir: Path,
             reporter: Reporter, system_prompt: str, peft_config=None, resume_from: str | None = None,
             use_cpu: bool = True, trainer_cls: type[FinQAGRPOTrainer] = FinQAGRPOTrainer) -> FinQAGRPOTrainer:
    """Train with GRPO; returns the trainer (its model is the result)."""
    from datasets import Dataset

    g = config.grpo
    rows = dataset_rows(config, tasks, system_prompt)
    if use_cpu:
        score_labelled_positions_only()

    def environment_factory() -> TrainingEnv:
        return training_env(snapshot, config)

    funcs, weights = reward_functions(config)
    trainer = trainer_cls(
        model=model, processing_class=tokenizer, args=grpo_args(config, output_dir, use_cpu, weights),
        reward_funcs=funcs or None, train_dataset=Dataset.from_list(rows), environment_factory=environment_factory,
        peft_config=peft_config, reporter=reporter, reuse_kv_cache=g.reuse_kv_cache,
        max_tokens_per_turn=g.max_tokens_per_turn,
    )
    # TRL appends the environment's own reward (correctness, named after its class) with weight 1
    trainer.reward_weights[-1] = config.reward.correct
    report_through(trainer, ReportingCallback("grpo", reporter, env_reward_name=TrainingEnv.__name__, trainer=trainer,
                                           samples_per_log=g.samples_per_log))
    trainer.train(resume_from_checkpoint=resume_from)
    return trainer
