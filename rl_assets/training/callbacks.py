"""The TrainerCallback that turns each TRL logging step into a metrics record (rl_assets.training.reporting)."""

from __future__ import annotations

import time

from transformers import PrinterCallback, TrainerCallback

from rl_assets.training.reporting import Reporter, step_metrics


def report_through(trainer, callback: "ReportingCallback") -> None:
    """Replace the trainer's own printing of raw log dicts with `callback`."""
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(callback)


class ReportingCallback(TrainerCallback):
    """On every TRL log: one metrics.jsonl record (with tokens/s since the previous log) and, for GRPO, samples."""

    def __init__(self, stage: str, reporter: Reporter, env_reward_name: str | None = None, trainer=None,
                 samples_per_log: int = 0):
        self.stage = stage
        self.reporter = reporter
        self.env_reward_name = env_reward_name
        self.trainer = trainer  # GRPO: the trainer whose last batch of episodes is sampled
        self.samples_per_log = samples_per_log
        self._last = None  # (time, tokens seen) at the previous log
        self._step_started = None
        self._step_times: list[float] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self._last = (time.perf_counter(), state.num_input_tokens_seen)

    def on_step_begin(self, args, state, control, **kwargs):
        self._step_started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self._step_started is not None:
            self._step_times.append(time.perf_counter() - self._step_started)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = dict(logs or {})
        if "train_loss" in logs:  # the trainer's closing summary, not a step
            return
        for key in ("train_runtime", "train_tokens_per_second", "num_input_tokens_seen"):
            logs.pop(key, None)
        record = step_metrics(self.stage, state.global_step, logs, self.reporter.wall_s, self.env_reward_name)
        now, tokens = time.perf_counter(), state.num_input_tokens_seen
        if self._last is not None and tokens and now > self._last[0]:
            record["tokens_per_s"] = round((tokens - self._last[1]) / (now - self._last[0]), 1)
        self._last = (now, tokens)
        if self._step_times:
            record["step_s"] = round(sum(self._step_times) / len(self._step_times), 4)
            self._step_times = []
            if "completion_tokens" in record:  # GRPO: tokens the model generated per second of step time
                rollouts = args.per_device_train_batch_size * args.gradient_accumulation_steps
                record["completion_tokens_per_s"] = round(record["completion_tokens"] * rollouts / record["step_s"], 1)
        self.reporter.step(record)
        if self.trainer is not None and self.samples_per_log:
            self.reporter.samples(self.stage, state.global_step, self.trainer.last_episodes[: self.samples_per_log])
