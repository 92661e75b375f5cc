"""The FinQA tools behind OpenEnv's own server library, set up the way the reference OpenEnv FinQA server is,
for benchmarks/serve_throughput.py.

    PYTHONPATH=. .venv-openenv/bin/python benchmarks/openenv_reference_server.py --snapshot S --port P [--max-sessions 1]

Needs a python with `openenv==0.10.0` (the server library: `create_app`, `MCPEnvironment`, FastMCP), duckdb
and sqlglot; `openenv` cannot be installed beside this project's pins, so it runs from a virtualenv of its own
(see benchmarks/README.md). As in the reference server: the tools are FastMCP tools of an `MCPEnvironment`,
`create_app(factory, CallToolAction, CallToolObservation)` with the library's default of one session
(`--max-sessions` above 1 sets SUPPORTS_CONCURRENT_SESSIONS, as the library demands), the reward is computed
when `submit_answer` is called, and an episode ends there or after 50 steps. What differs, so that the benchmark
replays the very same episodes through the very same client: the tools are rl_assets.env.FinQAEnv's (DuckDB
over the snapshot, not pandas over JSON files), `reset` takes a `task_id` (the reference draws the next
question itself), and the final observation keeps the tool result.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import uvicorn  # noqa: E402
from fastmcp import FastMCP  # noqa: E402
from openenv.core.env_server.http_server import create_app  # noqa: E402
from openenv.core.env_server.mcp_environment import MCPEnvironment  # noqa: E402
from openenv.core.env_server.mcp_types import CallToolAction, CallToolObservation  # noqa: E402
from openenv.core.env_server.types import Observation, State  # noqa: E402

from rl_assets.env import FinQAEnv  # noqa: E402
from rl_assets.snapshot import read_tasks  # noqa: E402

MAX_STEPS = 50


def build_app(snapshot: Path, max_sessions: int):
    tasks = {t["task_id"]: t for t in read_tasks(snapshot)}

    class LibraryFinQAEnvironment(MCPEnvironment):
        SUPPORTS_CONCURRENT_SESSIONS = max_sessions > 1

        def __init__(self):
            self.finqa = env = FinQAEnv(snapshot=snapshot)
            mcp = FastMCP("finqa_env")

            @mcp.tool
            def get_descriptions(company_name: str) -> str:
                """List the tables of a company's filing."""
                return env.get_descriptions(company_name)

            @mcp.tool
            def get_table_info(company_name: str, table_name: str) -> str:
                """Describe one table."""
                return env.get_table_info(company_name, table_name)

            @mcp.tool
            def sql_query(company_name: str, table_name: str, query: str) -> str:
                """Run one filtered SQL query on one table."""
                return env.sql_query(company_name, table_name, query)

            @mcp.tool
            def calculator(expression: str) -> str:
                """Evaluate an arithmetic expression."""
                return env.calculator(expression)

            @mcp.tool
            def submit_answer(answer: str) -> str:
                """Submit the final answer."""
                return env.submit_answer(answer)

            super().__init__(mcp)
            self._state = State(episode_id=None, step_count=0)

        def reset(self, seed=None, episode_id=None, task_id=None, **kwargs):
            prompt = self.finqa.reset(**tasks[task_id])
            self._state = State(episode_id=episode_id or task_id, step_count=0)
            return Observation(done=False, reward=0.0, metadata={"prompt": prompt, "task_id": task_id})

        def _step_impl(self, action, timeout_s=None, **kwargs):
            return Observation(done=False, reward=0.0, metadata={"error": f"unknown action {type(action).__name__}"})

        async def step_async(self, action, timeout_s=None, **kwargs):
            self._state.step_count += 1
            observation = await super().step_async(action, timeout_s=timeout_s, **kwargs)
            if isinstance(action, CallToolAction) and isinstance(observation, CallToolObservation):
                if action.tool_name == "submit_answer" or self._state.step_count >= MAX_STEPS:
                    return CallToolObservation(tool_name=observation.tool_name, result=observation.result,
                                               error=observation.error, done=True, reward=self.finqa.get_reward())
            return observation

        @property
        def state(self):
            return self._state

    return create_app(LibraryFinQAEnvironment, CallToolAction, CallToolObservation, env_name="finqa_env",
                      max_concurrent_envs=max_sessions)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--snapshot", type=Path, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--max-sessions", type=int, default=1, help="default 1, the library's and the reference's")
    args = ap.parse_args()
    uvicorn.run(build_app(args.snapshot.resolve(), args.max_sessions), host=args.host, port=args.port,
                log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
