"""Each token encoded once: episodes and GRPO generation with and without KV caches kept across turns, side by side.

    .venv/bin/python benchmarks/kv_reuse.py --run data/runs/<id> [--episodes 16] [--batch-size 16]
        [--grpo-steps 1] [--json-out FILE]

Evaluation: the run's trained model plays the same greedy episodes (test-split single-table tasks, seeded)
through `rl_assets.rollouts.run_hf_episodes`, once with `reuse_cache=True` (each turn encodes only its new
tokens) and once with `reuse_cache=False` (each turn encodes the whole conversation again, as before); prints
episodes/s, tokens encoded per episode, and whether every transcript is the same token for token.

GRPO: from the run's SFT checkpoint, `--grpo-steps` steps of the run's own GRPO config (same seed, same
prompts), once with `grpo.reuse_kv_cache=true` and once false, in fresh output folders; prints the generation
time per step (`timing/generation_s`) and the tokens the rollouts encoded. Sampling is seeded, but the two
modes may sample different tokens in bfloat16 (rounding differs with the batch layout), so compare the time per
generated token as well as per step.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from rl_assets.policies.base import GenerationSettings  # noqa: E402  (the evaluation's defaults)


def evaluation(run: Path, snapshot: str, episodes: int, batch_size: int, max_turns: int, max_new_tokens: int,
               seed: int) -> dict:
    from rl_assets.rollouts import run_hf_episodes
    from rl_assets.training.heldout import heldout_tasks

    tasks = heldout_tasks(snapshot, episodes, seed)
    results = {}
    for reuse in (True, False):
        started = time.perf_counter()
        played = run_hf_episodes(str(run), tasks, snapshot, greedy=True, batch_size=batch_size, max_turns=max_turns,
                                 max_new_tokens=max_new_tokens, seed=seed, reuse_cache=reuse, keep_token_ids=True)
        wall = time.perf_counter() - started
        results["reuse" if reuse else "re-encode"] = {
            "episodes": len(played), "wall_s": round(wall, 1), "episodes_per_s": round(len(played) / wall, 4),
            "tokens_encoded_per_episode": round(sum(e.tokens_encoded for e in played) / len(played), 1),
            "tokens_in_per_episode": round(sum(e.tokens_in for e in played) / len(played), 1),
            "tokens_out_per_episode": round(sum(e.tokens_out for e in played) / len(played), 1),
            "turns_per_episode": round(sum(e.turns for e in played) / len(played), 2),
            "transcripts": [e.extra["completion_ids"] for e in played],
        }
        print(f"  {'reuse' if reuse else 're-encode'}: {len(played)} episodes in {wall:.1f}s", flush=True)
    a, b = results["reuse"].pop("transcripts"), results["re-encode"].pop("transcripts")
    results["identical_transcripts"] = sum(x == y for x, y in zip(a, b))
    results["speedup_episodes_per_s"] = round(results["reuse"]["episodes_per_s"] / results["re-encode"]["episodes_per_s"], 2)
    return results


def grpo(run: Path, snapshot: str, steps: int) -> dict:
    from rl_assets.prompts import SYSTEM_PROMPT
    from rl_assets.snapshot import read_tasks
    from rl_assets.training.config import load_config
    from rl_assets.training.grpo import run_grpo
    from rl_assets.training.models import load_stage_model
    from rl_assets.training.reporting import Reporter, read_metrics

    identity = json.loads((run / "checkpoints" / "run.json").read_text())
    lineage = json.loads((run / "lineage.json").read_text()) if (run / "lineage.json").exists() else {}
    overrides = [o for o in (lineage.get("arm") or {}).get("overrides", [])]
    results = {}
    for reuse in (True, False):
        config = load_config(identity["config_name"], overrides + [f"grpo.max_steps={steps}", "grpo.logging_steps=1",
                                                                   f"grpo.reuse_kv_cache={str(reuse).lower()}",
                                                                   "grpo.save_steps=1000"])
        system_prompt = config.system_prompt if config.system_prompt is not None else SYSTEM_PROMPT
        tasks = read_tasks(snapshot, splits=["train"], question_types=config.data.question_types, sources=config.data.sources)
        model, tokenizer = load_stage_model(config, run / "checkpoints" / "base", run / "checkpoints" / "sft" / "final")
        with tempfile.TemporaryDirectory() as out:
            started = time.perf_counter()
            run_grpo(config, model, tokenizer, tasks, Path(snapshot), Path(out) / "grpo", Reporter(out, _NoPipes()),
                     system_prompt, use_cpu=True)
            wall = time.perf_counter() - started
            metrics = [m for m in read_metrics(out) if m["stage"] == "grpo"]
        generation = sum(m.get("timing/generation_s", 0.0) for m in metrics)
        completion = sum(m.get("completion_tokens", 0.0) * config.grpo.prompts_per_step * config.grpo.num_generations
                         for m in metrics)
        results["reuse" if reuse else "re-encode"] = {
            "steps": len(metrics), "wall_s": round(wall, 1), "generation_s_per_step": round(generation / max(1, len(metrics)), 1),
            "generated_tokens": round(completion), "generation_s_per_1k_generated": round(1000 * generation / max(1, completion), 2),
            "tokens_encoded_per_step": round(sum(m.get("generation/tokens_encoded", 0) for m in metrics) / max(1, len(metrics))),
            "tokens_reused_per_step": round(sum(m.get("generation/tokens_reused", 0) for m in metrics) / max(1, len(metrics))),
        }
        print(f"  grpo {'reuse' if reuse else 're-encode'}: {results['reuse' if reuse else 're-encode']}", flush=True)
    results["generation_time_ratio"] = round(results["reuse"]["generation_s_per_step"]
                                             / max(1e-9, results["re-encode"]["generation_s_per_step"]), 3)
    return results


class _NoPipes:
    """What the training reporter sends to Dagster Pipes, dropped (a benchmark has no Dagster run)."""

    log = logging.getLogger("kv_reuse")

    def report_custom_message(self, payload) -> None:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a training run directory (model/, checkpoints/sft/final)")
    parser.add_argument("--snapshot", help="default: the run's snapshot (lineage.json)")
    parser.add_argument("--episodes", type=int, default=16, help="0: skip the evaluation comparison")
    parser.add_argument("--batch-size", type=int, default=GenerationSettings.batch_size)
    parser.add_argument("--max-turns", type=int, default=GenerationSettings.max_turns)
    parser.add_argument("--max-new-tokens", type=int, default=GenerationSettings.max_new_tokens)
    parser.add_argument("--grpo-steps", type=int, default=1, help="0: skip the GRPO comparison")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json-out")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    run = Path(args.run)
    lineage = json.loads((run / "lineage.json").read_text()) if (run / "lineage.json").exists() else {}
    snapshot = args.snapshot or lineage.get("snapshot_path")
    print(f"run {run}, snapshot {snapshot}, load average {os.getloadavg()}")
    results = {"run": str(run), "snapshot": snapshot, "load_average_start": os.getloadavg()}
    if args.episodes:
        results["evaluation"] = evaluation(run, snapshot, args.episodes, args.batch_size, args.max_turns,
                                           args.max_new_tokens, args.seed)
    if args.grpo_steps:
        results["grpo"] = grpo(run, snapshot, args.grpo_steps)
    results["load_average_end"] = os.getloadavg()
    print(json.dumps(results, indent=2))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
