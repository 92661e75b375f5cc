"""Held-out behaviour of a training run, side by side: untrained / SFT only / SFT + GRPO.

    .venv/bin/python benchmarks/training_heldout.py --run data/runs/<id> [--snapshot DIR] [--episodes 200]
        [--batch-size 16] [--max-turns 8] [--max-new-tokens 192] [--json-out FILE]

For each stage of the run that exists (`checkpoints/base` = the model before training, `checkpoints/sft/final`,
`model/`), plays the same greedy episodes on test-split single-table tasks — companies no training episode
saw — through the real `FinQAEnv` with the run's own prompt and environment options (`model/prompt.json`),
via `rl_assets.rollouts.run_hf_episodes`, and prints the behaviour rates of
`rl_assets.evaluation.behaviour` (company used, queried table inspected first, identifiers exist, recovery
after an error, submitted, pass@1 — each with a 95% bootstrap interval over the episodes —, well-formed turns,
tool-error rate) with the generation speed and the machine's load average. For a LoRA run on a registered base
model, "untrained" is the base model itself played with the run's prompt. The tasks are a seeded sample (`--seed`), the same for every stage.
Each stage after the first is also compared with the one before it (`--model` entries come last): the paired
difference of every episode rate over the same tasks, with a 95% bootstrap interval (`differences` in the JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# no OMP_WAIT_POLICY=PASSIVE here (rl_assets/train.py sets it for a shared CPU): alone on 2 cores a decoding step of
# 16 rows x 2,900 positions took 300-360 ms with OpenMP's default spinning and 370-810 ms passive. Run it alone.

from rl_assets.policies.base import GenerationSettings  # noqa: E402  (after the sys.path line)

STAGES = (("untrained", "checkpoints/base"), ("sft", "checkpoints/sft/final"), ("sft+grpo", "model"))
# a run on a registered base model (LoRA) keeps only the tokenizer in checkpoints/base: its untrained stage is the
# base model directory itself, played with the run's prompt (rl_assets.base_models)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a training run's output directory")
    parser.add_argument("--snapshot", help="snapshot (default: the one in the run's lineage.json / run.json)")
    parser.add_argument("--episodes", type=int, default=200)
    # the evaluation's defaults (rl_assets.policies.base.GenerationSettings), so a held-out rate and an evaluation's
    # rate of the same policy are played under the same limits
    parser.add_argument("--batch-size", type=int, default=GenerationSettings.batch_size)
    parser.add_argument("--max-turns", type=int, default=GenerationSettings.max_turns)
    parser.add_argument("--max-new-tokens", type=int, default=GenerationSettings.max_new_tokens)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stages", default=",".join(name for name, _ in STAGES))
    parser.add_argument("--model", action="append", default=[], metavar="LABEL=DIR",
                        help="also evaluate this model directory (e.g. a checkpoint) under LABEL")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"),
                        help="play in this dtype (default: the one the run's model/prompt.json records)")
    parser.add_argument("--json-out")
    args = parser.parse_args()

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    from rl_assets.rollouts import load_model, read_prompt_config, run_hf_episodes
    from rl_assets.training.heldout import RATES, episode_rows, heldout_tasks, paired_differences

    run = Path(args.run)
    lineage = json.loads((run / "lineage.json").read_text()) if (run / "lineage.json").exists() else {}
    snapshot = args.snapshot or lineage.get("snapshot_path")
    if not snapshot:
        parser.error("--snapshot is required (the run has no lineage.json)")
    # how the run's models are played: model/prompt.json, or in a run that stopped before publishing, that of its
    # last finished stage (each finished stage keeps one)
    prompt_dir = next((run / rel for rel in ("model", "checkpoints/grpo/final", "checkpoints/sft/final")
                       if (run / rel / "prompt.json").exists()), run / "model")
    prompt = read_prompt_config(prompt_dir)
    identity = run / "checkpoints" / "run.json"
    if not (prompt_dir / "prompt.json").exists() and identity.exists():  # a run from before stages kept one
        from rl_assets.training.config import load_config

        prompt["env"] = {"description_chars": load_config(json.loads(identity.read_text())["config_name"]).env.description_chars}
    tasks = heldout_tasks(snapshot, args.episodes, args.seed)
    by_id = {t["task_id"]: t for t in tasks}
    sources = {}
    for t in tasks:
        sources[t["source"]] = sources.get(t["source"], 0) + 1
    print(f"run {run} (config {lineage.get('config_name')}), snapshot {Path(snapshot).name}: {len(tasks)} test-split "
          f"single-table tasks {sources}, greedy, batch {args.batch_size}; load average {os.getloadavg()}")

    results, differences, rows = {}, {}, {}
    settings = {"greedy": True, "batch_size": args.batch_size, "max_turns": args.max_turns,
                "max_new_tokens": args.max_new_tokens, "seed": args.seed, "dtype": args.dtype or prompt["dtype"]}
    wanted = set(args.stages.split(","))
    models = [(name, run / rel) for name, rel in STAGES if name in wanted]
    base_name = prompt.get("base_model") or lineage.get("base_model")
    if "untrained" in wanted and base_name and base_name != "tiny":
        from rl_assets.base_models import resolve_base

        models[0] = ("untrained", Path(resolve_base(base_name)))
    models += [(label, Path(directory)) for label, _, directory in (m.partition("=") for m in args.model)]
    for name, directory in models:
        if not (directory / "config.json").exists() and not (directory / "adapter_config.json").exists():
            continue
        started = time.perf_counter()
        model = load_model(directory, args.dtype or prompt["dtype"])
        episodes = []
        for start in range(0, len(tasks), args.batch_size):  # one batch at a time: the JSON follows each batch
            episodes += run_hf_episodes(model, tasks[start:start + args.batch_size], snapshot, greedy=True,
                                        batch_size=args.batch_size, max_turns=args.max_turns,
                                        max_new_tokens=args.max_new_tokens, seed=args.seed, env_kwargs=prompt["env"],
                                        policy_name=f"{name}:{run}",
                                        prompt_config={"system_prompt": prompt["system_prompt"], "env": prompt["env"]})
            results[name] = stage_rates(episodes, by_id, sources, time.perf_counter() - started)
            rows[name] = episode_rows(episodes, by_id)
            if len(rows) > 1:  # against the stage before it, over the tasks both have played so far
                before = list(rows)[-2]
                differences[f"{name} - {before}"] = paired_differences(rows[name], rows[before])
            print(f"  {name}: {len(episodes)}/{len(tasks)} episodes in {results[name]['wall_s']:.0f}s", flush=True)
            if args.json_out:  # after every batch: a long benchmark stopped part-way keeps the episodes it finished
                write_json(args.json_out, run, snapshot, tasks, settings, results, differences)
        del model
        print(f"  {name}: {len(episodes)} episodes in {results[name]['wall_s']:.0f}s "
              f"({results[name]['generated_tokens_per_s']:.0f} generated tokens/s)", flush=True)

    header = f"{'rate':<24}" + "".join(f"{name:>12}" for name in results)
    print("\n" + header + "\n" + "-" * len(header))
    for key in (*RATES, "episodes_with_error", "turns_per_episode", "wall_s"):
        cells = []
        for rates in results.values():
            value = rates.get(key)
            cells.append(f"{'-':>12}" if value is None else f"{value:>12.3f}" if isinstance(value, float) else f"{value:>12}")
        print(f"{key:<24}" + "".join(cells))
    print("\n95% bootstrap intervals (over episodes):")
    for key in RATES:
        intervals = [rates.get(f"{key}_ci") for rates in results.values()]
        if any(intervals):
            print(f"{key:<24}" + "".join(f"{'-':>16}" if not ci else f"{f'[{ci[0]:.2f}, {ci[1]:.2f}]':>16}" for ci in intervals))
    for pair, delta in differences.items():
        print(f"\n{pair}, paired over the same tasks (95% bootstrap interval):")
        for key in (k for k in RATES if k in delta and delta[k] is not None):
            ci = delta[f"{key}_ci"]
            print(f"{key:<24}{delta[key]:>+8.3f}  [{ci[0]:+.2f}, {ci[1]:+.2f}]  ({delta[f'{key}_tasks']} tasks)")
    for source in sorted(sources):
        print(f"\n{source} ({sources[source]} tasks): " + "; ".join(
            f"{name}: company {r['by_source'][source].get('company_used', 0):.2f}, inspected "
            f"{r['by_source'][source].get('table_inspected_first', 0):.2f}, submitted {r['by_source'][source].get('submitted', 0):.2f}, "
            f"pass@1 {r['by_source'][source].get('pass_at_1', 0):.2f}" for name, r in results.items()))
    return 0


def stage_rates(episodes: list, by_id: dict, sources: dict, wall: float) -> dict:
    """A stage's behaviour rates (with intervals), overall and per source, and its generation speed."""
    from rl_assets.training.heldout import behaviour_rates

    rates = behaviour_rates(episodes, by_id)
    tokens = sum(e.tokens_out for e in episodes)
    rates.update({"wall_s": round(wall, 1), "generated_tokens_per_s": round(tokens / wall, 1),
                  "load_average": os.getloadavg()})
    rates["by_source"] = {source: behaviour_rates([e for e in episodes if by_id[e.task_id]["source"] == source], by_id)
                          for source in sorted(sources)}
    return rates


def write_json(path: str, run: Path, snapshot, tasks: list, settings: dict, results: dict, differences: dict) -> None:
    Path(path).write_text(json.dumps({"run": str(run), "snapshot": str(snapshot), "episodes": len(tasks),
                                      "settings": settings, "results": results, "differences": differences},
                                     indent=2, default=str) + "\n")


if __name__ == "__main__":
    sys.exit(main())
