"""Throughput of the FinQA environment service: full oracle episodes per second and tool-call latency with
1, 8 and 32 concurrent clients, side by side with the in-process environment and with the reference
OpenEnv FinQA server's one-session behaviour, all in one run.

    .venv/bin/python benchmarks/serve_throughput.py          # prints the table, writes benchmarks/results/serve_throughput.json
    .venv/bin/python benchmarks/serve_throughput.py --snapshot data/snapshots/<hash> --episodes 640 --clients 1 8 32

Episodes: oracle trajectories recorded in-process on distinct tasks of every source (`rl_assets.oracle`), each
replayed as reset + every tool call + submit_answer; a phase runs `--episodes` of them (fewer if
`--phase-seconds` runs out first: the slow one-session modes), spread over the clients (threads of this
process, each with its own environment or connection), and every episode must end with reward 1.0. Modes:

- in-process: one `FinQAEnv` per client thread, sharing one World (the way a trainer runs it locally).
- server: `finqa-rl serve --max-sessions 64` in its own process; one `RemoteFinQAEnv` (one session on one
  WebSocket, kept across episodes, as TRL pools environments) per client.
- one session (reference limit): the same server with `--max-sessions 1`, as the reference OpenEnv FinQA
  server runs (`max_concurrent_envs` defaults to 1). A client opens a session per episode; a refused one
  (CAPACITY_REACHED) closes, waits 5-15 ms and retries. Refusals are counted.
- OpenEnv library, 1 session (reference config) / 64 sessions: the same tools behind OpenEnv's own server
  library (`openenv` 0.10.0: create_app, MCPEnvironment, FastMCP), configured like the reference FinQA
  server (benchmarks/openenv_reference_server.py), driven by the same clients as the two modes above. Runs
  when a python with openenv 0.10.0 is given (`--openenv-python`, default `.venv-openenv/bin/python` if it
  exists; benchmarks/README.md says how to make it).

Timing: time.perf_counter() around each call on the client side (for the server modes: the round trip over
loopback, JSON and the WebSocket included); "start" is the reset (plus, in the one-session mode, opening the
session and every refused attempt). Episodes/s = episodes / wall time of the phase. Before timing, every
episode is replayed once in each mode so that both sides answer from a warm per-process SQL result cache (a
GRPO group repeats the same queries anyway). Client threads and the server share this machine's cores, so
`uptime` load is recorded before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as a plain script from anywhere
    sys.path.insert(0, str(REPO_ROOT))

from rl_assets import oracle  # noqa: E402
from rl_assets.env import FinQAEnv  # noqa: E402
from rl_assets.serve.process import free_port, launch, start_server  # noqa: E402
from rl_assets.serve.remote import RemoteFinQAEnv, close  # noqa: E402
from rl_assets.snapshot import latest_snapshot, read_manifest, read_tasks  # noqa: E402

MODES = ("in-process", "server", "one session (reference limit)",
         "OpenEnv library, 64 sessions", "OpenEnv library, 1 session (reference config)")
RETRY_WAIT_S = (0.005, 0.015)


@dataclass(frozen=True)
class Episode:
    task: dict[str, Any]
    calls: tuple[tuple[str, dict[str, Any]], ...]


@dataclass
class ClientStats:
    tool_ms: list[float] = field(default_factory=list)
    start_ms: list[float] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    refusals: int = 0


def record_episodes(snapshot: Path, n: int, seed: int) -> list[Episode]:
    """n oracle trajectories on distinct tasks, every source and task type in proportion, solved in-process."""
    tasks = read_tasks(snapshot)
    random.Random(seed).shuffle(tasks)
    env = FinQAEnv(snapshot=snapshot)
    episodes = []
    for task in tasks:
        if oracle.solve(env, task).correct:
            episodes.append(Episode(task, tuple((c.tool, dict(c.arguments)) for c in env.tool_calls)))
            if len(episodes) == n:
                return episodes
    raise SystemExit(f"only {len(episodes)} tasks the oracle solves; asked for {n}")


def replay(env: Any, episode: Episode, stats: ClientStats) -> None:
    started = time.perf_counter()
    env.reset(**episode.task)
    stats.start_ms.append((time.perf_counter() - started) * 1e3)
    for tool, arguments in episode.calls:
        started = time.perf_counter()
        getattr(env, tool)(**arguments)
        stats.tool_ms.append((time.perf_counter() - started) * 1e3)
    stats.rewards.append(env.get_reward())


class InProcessClient:
    def __init__(self, snapshot: Path):
        self.env = FinQAEnv(snapshot=snapshot)

    def run(self, episode: Episode, stats: ClientStats) -> None:
        replay(self.env, episode, stats)

    def close(self) -> None:
        pass


class ServerClient:
    def __init__(self, url: str):
        self.env = RemoteFinQAEnv(url)

    def run(self, episode: Episode, stats: ClientStats) -> None:
        replay(self.env, episode, stats)

    def close(self) -> None:
        close(self.env)


class OneSessionClient:
    """A session per episode, retried while the server's only session is taken (the reference's limit)."""

    def __init__(self, url: str, rng: random.Random):
        self.url = url
        self.rng = rng

    def run(self, episode: Episode, stats: ClientStats) -> None:
        started = time.perf_counter()
        while True:
            env = RemoteFinQAEnv(self.url)
            try:
                env.reset(**episode.task)
                break
            except ConnectionError:
                stats.refusals += 1
                close(env)
                time.sleep(self.rng.uniform(*RETRY_WAIT_S))
        stats.start_ms.append((time.perf_counter() - started) * 1e3)
        try:
            for tool, arguments in episode.calls:
                t = time.perf_counter()
                getattr(env, tool)(**arguments)
                stats.tool_ms.append((time.perf_counter() - t) * 1e3)
            stats.rewards.append(env.get_reward())
        finally:
            close(env)

    def close(self) -> None:
        pass


def run_phase(make_client: Callable[[int], Any], clients: int, episodes: list[Episode],
              max_seconds: float) -> dict[str, Any]:
    """Every episode once (or as many as start within max_seconds), spread round-robin over `clients` threads
    started together; the merged stats."""
    per_client = [episodes[i::clients] for i in range(clients)]
    workers = [make_client(i) for i in range(clients)]
    stats = [ClientStats() for _ in range(clients)]
    barrier = threading.Barrier(clients + 1)
    errors: list[BaseException] = []
    deadline: list[float] = []

    def work(i: int) -> None:
        barrier.wait()
        try:
            for episode in per_client[i]:
                if time.perf_counter() > deadline[0]:
                    break
                workers[i].run(episode, stats[i])
        except BaseException as e:  # reported after the phase
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    deadline.append(time.perf_counter() + max_seconds)
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    for worker in workers:
        worker.close()
    if errors:
        raise errors[0]
    tool_ms = sorted(x for s in stats for x in s.tool_ms)
    start_ms = sorted(x for s in stats for x in s.start_ms)
    rewards = [r for s in stats for r in s.rewards]
    return {
        "clients": clients, "episodes": len(rewards), "seconds": seconds, "episodes_per_s": len(rewards) / seconds,
        "tool_calls": len(tool_ms), "tool_p50_ms": percentile(tool_ms, 50), "tool_p99_ms": percentile(tool_ms, 99),
        "start_p50_ms": percentile(start_ms, 50), "start_p99_ms": percentile(start_ms, 99),
        "refusals": sum(s.refusals for s in stats), "correct": sum(r == 1.0 for r in rewards),
    }


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values) + 0.5) - 1))]


def load() -> dict[str, Any]:
    try:
        uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        uptime = None
    return {"loadavg": list(os.getloadavg()), "uptime": uptime}


def machine_info() -> dict[str, Any]:
    import starlette
    import uvicorn
    import websockets

    return {"python": sys.version.split()[0], "platform": platform.platform(), "cpu_count": os.cpu_count(),
            "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "uvicorn": uvicorn.__version__, "starlette": starlette.__version__, "websockets": websockets.__version__}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--snapshot", type=Path, default=None, help="default: newest under $FINQA_RL_SNAPSHOTS_DIR or data/snapshots")
    ap.add_argument("--episodes", type=int, default=640, help="episodes per phase (distinct tasks; default 640)")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32], help="concurrent clients (default 1 8 32)")
    ap.add_argument("--phase-seconds", type=float, default=15.0,
                    help="no episode starts after this many seconds of a phase (default 15; bounds the slow modes)")
    ap.add_argument("--seed", type=int, default=0, help="task sample (default 0)")
    ap.add_argument("--openenv-python", type=Path, default=REPO_ROOT / ".venv-openenv" / "bin" / "python",
                    help="a python with openenv==0.10.0, duckdb and sqlglot, for the OpenEnv library modes "
                         "(default .venv-openenv/bin/python; skipped if missing)")
    ap.add_argument("--json-out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "serve_throughput.json")
    args = ap.parse_args()
    snapshot = (args.snapshot or latest_snapshot(os.environ.get("FINQA_RL_SNAPSHOTS_DIR",
                                                                REPO_ROOT / "data" / "snapshots"))).resolve()
    load_before = load()
    print(f"snapshot {snapshot.name}; load before: {load_before['uptime']}")
    episodes = record_episodes(snapshot, args.episodes, args.seed)
    calls = sum(len(e.calls) for e in episodes)
    print(f"{len(episodes)} oracle episodes, {calls} tool calls ({calls / len(episodes):.1f} per episode)")
    rng = random.Random(args.seed)
    results: list[dict[str, Any]] = []

    def measure(mode: str, make_client: Callable[[int], Any]) -> None:
        run_phase(make_client, 1, episodes, args.phase_seconds)  # warm-up: this mode's process answers every query once
        for clients in args.clients:
            row = {"mode": mode, **run_phase(make_client, clients, episodes, args.phase_seconds)}
            results.append(row)
            print(f"  {mode:32s} {clients:3d} clients: {row['episodes_per_s']:8.1f} episodes/s, tool p50 "
                  f"{row['tool_p50_ms']:.3f} ms, p99 {row['tool_p99_ms']:.3f} ms, refusals {row['refusals']}")
            if row["correct"] != row["episodes"]:
                raise SystemExit(f"{mode}, {clients} clients: {row['episodes'] - row['correct']} episodes not solved")

    measure(MODES[0], lambda i: InProcessClient(snapshot))
    with start_server(snapshot, max_sessions=64) as server:
        measure(MODES[1], lambda i: ServerClient(server.url))
    with start_server(snapshot, max_sessions=1) as server:
        measure(MODES[2], lambda i: OneSessionClient(server.url, random.Random(rng.random())))
    if args.openenv_python.exists():
        for mode, sessions in ((MODES[3], 64), (MODES[4], 1)):
            with library_server(args.openenv_python, snapshot, sessions) as server:
                if sessions > 1:
                    measure(mode, lambda i: ServerClient(server.url))
                else:
                    measure(mode, lambda i: OneSessionClient(server.url, random.Random(rng.random())))
    else:
        print(f"OpenEnv library modes skipped: {args.openenv_python} does not exist")
    load_after = load()

    print_table(results, args.clients)
    print(f"load before: {load_before['uptime']}\nload after:  {load_after['uptime']}")
    payload = {
        "command": " ".join([_shown(Path(sys.executable)), *sys.argv]),
        "snapshot_hash": read_manifest(snapshot).get("snapshot_hash", snapshot.name),
        "episodes_recorded": len(episodes), "tool_calls_recorded": calls, "phase_seconds": args.phase_seconds,
        "seed": args.seed,
        "machine": machine_info(), "load_before": load_before, "load_after": load_after,
        "results": results, "speedup_of_server_over": speedups(results, args.clients),
    }
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.json_out}")
    return 0


def _shown(path: Path) -> str:
    """A path relative to the repository when it is inside it (.venv/bin/python)."""
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def library_server(python: Path, snapshot: Path, sessions: int):
    port = free_port()
    command = [str(python), str(REPO_ROOT / "benchmarks" / "openenv_reference_server.py"), "--snapshot", str(snapshot),
               "--port", str(port), "--max-sessions", str(sessions)]
    return launch(command, f"http://127.0.0.1:{port}", env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})


def speedups(results: list[dict[str, Any]], clients: list[int]) -> dict[str, dict[str, float]]:
    """Episodes/s of the server divided by each one-session mode's, per number of clients."""
    by = {(r["mode"], r["clients"]): r["episodes_per_s"] for r in results}
    return {baseline: {str(n): by[(MODES[1], n)] / by[(baseline, n)] for n in clients}
            for baseline in (MODES[2], MODES[4]) if (baseline, clients[0]) in by}


def print_table(results: list[dict[str, Any]], clients: list[int]) -> None:
    print("\n| mode | clients | episodes | episodes/s | tool p50 ms | tool p99 ms | start p50 ms | start p99 ms | refusals |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['mode']} | {r['clients']} | {r['episodes']} | {r['episodes_per_s']:,.1f} | {r['tool_p50_ms']:.3f} | "
              f"{r['tool_p99_ms']:.3f} | {r['start_p50_ms']:.3f} | {r['start_p99_ms']:.3f} | {r['refusals']:,} |")
    for baseline, by_clients in speedups(results, clients).items():
        print(f"server vs {baseline}: " + ", ".join(f"{x:.1f}x with {n}" for n, x in by_clients.items()))


if __name__ == "__main__":
    sys.exit(main())
