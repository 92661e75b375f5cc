"""Evaluation throughput: episodes/s per policy through the evaluation code path (`run_evaluation`: task set,
policy, real FinQAEnv, store write), and where an episode's time goes (model vs environment vs the rest).

    .venv/bin/python benchmarks/eval_throughput.py --snapshot data/snapshots/<hash> \\
        --policies oracle,tiny-untrained,openai:solver --episodes 64 --json-out benchmarks/results/eval_throughput.json

`openai:<model>` policies are played against the scripted chat-completions server of the tests
(tests/chat_server.py, a separate process on loopback), so their "model" time is the HTTP round trip and
the client, not a real model. Local-model policies need `rl_assets.rollouts.run_hf_episodes`; another
implementation with the same signature can be given as `--hf-rollouts path/to/file.py:function`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rl_assets.policies.base import GenerationSettings  # noqa: E402  (the evaluation's defaults)


def load_function(spec: str):
    path, name = spec.rsplit(":", 1)
    module_spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return getattr(module, name)


def main() -> int:
    from rl_assets.env import default_snapshot
    from rl_assets.evaluation.runner import EvaluationConfig, run_evaluation
    from rl_assets.evaluation.store import EvaluationStore
    from rl_assets.policies import GenerationSettings, load_policy

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshot", default=None)
    parser.add_argument("--tasks", default="single_table-synth-test")
    parser.add_argument("--policies", default="oracle,tiny-untrained,openai:solver")
    parser.add_argument("--episodes", type=int, default=64, help="tasks sampled from the task set (seeded)")
    parser.add_argument("--batch-size", type=int, default=GenerationSettings.batch_size)
    parser.add_argument("--max-turns", type=int, default=GenerationSettings.max_turns)
    parser.add_argument("--max-new-tokens", type=int, default=GenerationSettings.max_new_tokens)
    parser.add_argument("--hf-rollouts", default=None, help="file.py:function with the run_hf_episodes signature")
    parser.add_argument("--runs-dir", default=None, help="FINQA_RL_RUNS_DIR for tiny-local / tiny-untrained")
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()

    snapshot = Path(args.snapshot) if args.snapshot else default_snapshot()
    if args.runs_dir:
        os.environ["FINQA_RL_RUNS_DIR"] = args.runs_dir
    from rl_assets.env import FinQAEnv
    from rl_assets.policies.tools import tool_schemas

    FinQAEnv(snapshot=snapshot), tool_schemas()  # the world and the tool schemas load once per process: not timed
    rollouts = load_function(args.hf_rollouts) if args.hf_rollouts else None
    config = EvaluationConfig(sample_size=args.episodes, generation=GenerationSettings(
        batch_size=args.batch_size, max_turns=args.max_turns, max_new_tokens=args.max_new_tokens))
    server = None
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        store = EvaluationStore(Path(tmp) / "bench.duckdb")
        os.environ.setdefault("FINQA_RL_MODELS_DIR", str(Path(tmp) / "models"))
        try:
            for spec in args.policies.split(","):
                options = {}
                if spec.startswith("openai:"):
                    if server is None:
                        server = subprocess.Popen([sys.executable, str(REPO / "tests" / "chat_server.py")],
                                                  stdout=subprocess.PIPE, text=True)
                        port = int(server.stdout.readline().split()[1])
                    options = {"base_url": f"http://127.0.0.1:{port}/v1", "max_retries": 0}
                try:
                    policy = load_policy(spec, snapshot=snapshot, openai_options=options, hf_rollouts=rollouts)
                    started = time.perf_counter()
                    result = run_evaluation(policy, args.tasks, snapshot, config, store)
                    wall = time.perf_counter() - started
                except Exception as e:  # e.g. no local-model rollouts installed
                    print(f"{spec}: skipped ({type(e).__name__}: {e})")
                    continue
                rows = result.episodes
                n = len(rows)
                model = sum(r["model_seconds"] for r in rows)
                env = sum(r["env_seconds"] for r in rows)
                entry = {
                    "policy": spec, "episodes": n, "wall_s": round(wall, 3), "episodes_per_s": round(n / wall, 2),
                    "pass_at_1": result.pass_at_1, "mean_turns": round(sum(r["turns"] for r in rows) / n, 2),
                    "model_s": round(model, 3), "env_s": round(env, 3),
                    # of the time episodes spent in the model or the environment, the model's share
                    "model_share": round(model / (model + env), 3) if model + env else None,
                    # of the wall time, what neither model nor environment took (store, task set, hashing),
                    # meaningful for policies that play one batch at a time (not concurrent endpoints)
                    "other_share_of_wall": round(max(0.0, 1 - (model + env) / wall), 3),
                }
                results.append(entry)
                print(json.dumps(entry))
        finally:
            if server is not None:
                server.terminate()
                server.wait(timeout=10)
    if args.json_out:
        out = {"snapshot": snapshot.name, "task_set": args.tasks, "cpus": os.cpu_count(),
               "load_average": os.getloadavg(), "python": platform.python_version(),
               "hf_rollouts": args.hf_rollouts or "rl_assets.rollouts.run_hf_episodes", "results": results}
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
