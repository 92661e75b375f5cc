"""The timing harness of benchmarks/env_throughput.py: measurements, percentiles, and phases of tool calls
run by one or more threads, each with its own environment."""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as a plain script from anywhere
    sys.path.insert(0, str(REPO_ROOT))

from env_workload import Workload  # noqa: E402

EPISODE_CALLS = 50  # untimed env.reset() every this many calls (keeps the per-episode call log realistic)

# ----------------------------------------------------------------------------- harness
@dataclass
class Measurement:
    name: str
    threads: int
    calls: int
    wall_s: float
    latencies_ns: list[int]
    errors: int = 0

    @property
    def calls_per_s(self) -> float:
        return self.calls / self.wall_s if self.wall_s > 0 else float("inf")

    def pct_ms(self, p: float) -> float:
        return percentile(self.latencies_ns, p) / 1e6

    def asdict(self) -> dict[str, Any]:
        lat = self.latencies_ns
        return {
            "threads": self.threads,
            "calls": self.calls,
            "wall_s": round(self.wall_s, 6),
            "calls_per_s": round(self.calls_per_s, 2),
            "p50_ms": round(self.pct_ms(50), 4),
            "p90_ms": round(self.pct_ms(90), 4),
            "p99_ms": round(self.pct_ms(99), 4),
            "mean_ms": round(sum(lat) / len(lat) / 1e6, 4) if lat else None,
            "max_ms": round(max(lat) / 1e6, 4) if lat else None,
            "errors": self.errors,
        }


def percentile(values: list[int], p: float) -> float:
    """Linear-interpolated percentile (like numpy's default)."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


# An op is (call, before): `call(ctx)` is timed and returns the tool's text; `before(ctx, j, op)` (may be None)
# runs untimed before it. ctx is the thread's FinQAEnv (or None for the baseline).
Op = Callable[[Any], Any]


@dataclass(frozen=True)
class CompanyOp:
    """A tool call about one company: the environment answers only in an episode of that company."""
    company: str
    call: Callable[[Any], Any]

    def __call__(self, env: Any) -> Any:
        return self.call(env)


def run_phase(name: str, threads: int, make_ctx: Callable[[int], Any], ops: list[Op],
              before: Callable[[Any, int, Any], None] | None, warmup: int,
              is_error: Callable[[Any], bool]) -> Measurement:
    """Run `ops` split over `threads` threads (thread i: ops[i::threads]), each with its own context."""
    shares = [ops[i::threads] for i in range(threads)]
    results: list[tuple[list[int], int, int, int] | None] = [None] * threads
    failures: list[BaseException] = []
    barrier = threading.Barrier(threads)

    def worker(i: int) -> None:
        try:
            ctx = make_ctx(i)
            share = shares[i]
            for j, op in enumerate(share[:warmup] if warmup > 0 else []):  # warm-up on the thread's own ops
                if before is not None:
                    before(ctx, j, op)
                op(ctx)
            lat: list[int] = []
            errors = 0
            clock = time.perf_counter_ns
            barrier.wait()
            start = clock()
            for j, op in enumerate(share):
                if before is not None:
                    before(ctx, j, op)
                t0 = clock()
                out = op(ctx)
                lat.append(clock() - t0)
                if is_error(out):
                    errors += 1
            end = clock()
            results[i] = (lat, errors, start, end)
        except BaseException as e:  # noqa: BLE001 - reported below
            failures.append(e)
            barrier.abort()

    if threads == 1:
        worker(0)
    else:
        ts = [threading.Thread(target=worker, args=(i,), name=f"bench-{i}") for i in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    if failures:
        raise RuntimeError(f"{name}: worker failed: {failures[0]!r}") from failures[0]
    done = [r for r in results if r is not None]
    lat = [x for r in done for x in r[0]]
    wall_ns = max(r[3] for r in done) - min(r[2] for r in done)
    return Measurement(name, threads, len(lat), wall_ns / 1e9, lat, sum(r[1] for r in done))


def env_ops(workload: Workload, tool: str) -> list[Op]:
    if tool == "get_descriptions":
        return [CompanyOp(c, lambda env, c=c: env.get_descriptions(c)) for c in workload.descriptions]
    if tool == "get_table_info":
        return [CompanyOp(c, lambda env, c=c, t=t: env.get_table_info(c, t)) for c, t in workload.table_infos]
    if tool == "sql_query":
        return [CompanyOp(it.world_id, lambda env, it=it: env.sql_query(it.world_id, it.table, it.query))
                for it in workload.sql]
    if tool == "sql_query_cached":
        return [CompanyOp(it.world_id, lambda env, it=it: env.sql_query(it.world_id, it.table, it.query))
                for it in workload.sql_grpo]
    if tool == "calculator":
        return [lambda env, e=e: env.calculator(e) for e in workload.expressions]
    if tool == "submit_answer":
        return [lambda env, a=a: env.submit_answer(a) for a in workload.answers]
    raise ValueError(tool)


def env_before(workload: Workload, tool: str) -> Callable[[Any, int, Any], None]:
    """Untimed env.reset(): a new episode every EPISODE_CALLS calls, and whenever a call is about another
    company than the episode's (the tools answer only for the episode's company)."""
    tasks = workload.tasks
    if tool == "submit_answer":  # only the first submission of an episode counts: a new episode per call
        return lambda env, j, _op: env.reset(**tasks[j % len(tasks)])
    task_of: dict[str, dict[str, Any]] = {}
    for t in tasks:
        task_of.setdefault(t["world_id"], t)
    episode_company: dict[int, str] = {}  # id(env) -> company of its current episode

    def before(env: Any, j: int, op: Any) -> None:
        company = getattr(op, "company", None)
        if company is not None and episode_company.get(id(env)) != company:
            env.reset(**task_of[company])
            episode_company[id(env)] = company
        elif j % EPISODE_CALLS == 0:
            task = task_of[company] if company is not None else tasks[j % len(tasks)]
            env.reset(**task)
            episode_company[id(env)] = task["world_id"]
    return before


def is_env_error(text: Any) -> bool:
    return isinstance(text, str) and text.startswith("Error")
