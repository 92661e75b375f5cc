"""Run inside a client virtualenv (openenv 0.10.0 or openenv-core 0.3.0): OpenEnv's own, unmodified
MCPToolClient (the reference FinQA client is `class FinQAEnv(MCPToolClient): pass`) against the server.

stdin: {"url": ..., "episodes": [{"task_id": ..., "calls": [[tool, arguments], ...], "url"?, "headers"?}],
        "capacity_url"?: ..., "capacity"?: n, "unauthorized_url"?: ...}
stdout: {"episodes": [...], "refused": "...", "unauthorized": "..."}

"episodes": every episode replayed at once, one client (session) each: reset(task_id=...), list_tools(),
call_tool(...) for every call but the last, step(CallToolAction(...)) for the last (submit_answer), then one
more call_tool after the episode ended, then state(). "refused": with n clients holding sessions on the
server at capacity_url, how a further client is refused. An episode's own "url" (e.g. http://x:TOKEN@host:port,
which the clients turn into Basic credentials) and "headers" (`headers=`, which only openenv 0.10.0's clients
take) reach a server that needs a token. "unauthorized": how a client without credentials is refused by the
server at unauthorized_url. (One process does all: importing the client takes seconds.)
"""

import asyncio
import json
import sys

from openenv.core.env_server.mcp_types import CallToolAction
from openenv.core.mcp_client import MCPToolClient


async def episode(url, job):
    env = MCPToolClient(base_url=job.get("url", url), **({"headers": job["headers"]} if job.get("headers") else {}))
    await env.connect()
    try:
        reset = await env.reset(task_id=job["task_id"])
        tools = [tool.name for tool in await env.list_tools()]
        *middle, (last_tool, last_arguments) = job["calls"]
        outputs = [await env.call_tool(tool, **arguments) for tool, arguments in middle]
        final = await env.step(CallToolAction(tool_name=last_tool, arguments=last_arguments))
        outputs.append(final.observation.result["data"])
        try:
            await env.call_tool("calculator", expression="1 + 1")
            after_done = None
        except RuntimeError as error:
            after_done = str(error)
        state = await env.state()
        return {
            "task_id": job["task_id"],
            "reset_observation_metadata": reset.observation.metadata,
            "tools": tools,
            "outputs": outputs,
            "done": final.done,
            "reward": final.reward,
            "observation_metadata": final.observation.metadata,
            "top_metadata": getattr(final, "metadata", None),  # StepResult.metadata exists from openenv 0.10 on
            "after_done": after_done,
            "step_count": state.step_count,
        }
    finally:
        await env.close()


async def capacity(url, n):
    held = []
    try:
        for _ in range(n):
            env = MCPToolClient(base_url=url)
            await env.connect()
            await env.list_tools()
            held.append(env)
        extra = MCPToolClient(base_url=url)
        try:
            await extra.connect()
            await extra.reset()
            return None
        except Exception as error:
            return f"{type(error).__name__}: {error}"
        finally:
            try:
                await extra.close()
            except Exception:
                pass
    finally:
        for env in held:
            await env.close()


async def unauthorized(url):
    env = MCPToolClient(base_url=url)
    try:
        await env.connect()
        await env.reset()
        return None
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    finally:
        try:
            await env.close()
        except Exception:
            pass


async def main():
    job = json.load(sys.stdin)
    episodes = await asyncio.gather(*(episode(job["url"], e) for e in job["episodes"]))
    refused = await capacity(job["capacity_url"], job["capacity"]) if job.get("capacity_url") else None
    denied = await unauthorized(job["unauthorized_url"]) if job.get("unauthorized_url") else None
    json.dump({"episodes": episodes, "refused": refused, "unauthorized": denied}, sys.stdout)


asyncio.run(main())
