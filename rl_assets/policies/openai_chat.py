"""Any OpenAI-compatible chat-completions endpoint as a policy (vLLM, hosted APIs), with tool calls,
through the official `openai` client.

    OpenAIPolicy("Qwen/Qwen3-4B-Instruct-2507", base_url="http://localhost:8000/v1", api_key="EMPTY")

Base URL and key default to `OPENAI_BASE_URL` / `OPENAI_API_KEY` (a key is optional when a base URL is
given: local servers accept any). Each episode is one conversation: the messages of
`rl_assets.prompts.initial_messages`, the environment's tools (schemas from their docstrings), then up to
`max_turns` model turns; every tool call runs in a real `FinQAEnv`. Episodes run concurrently
(`batch_size` requests in flight). Nothing about an endpoint ends an evaluation: an unreachable server,
an HTTP error, garbage text, a model that never calls a tool or never answers are episodes with a
`stop_reason` (`policy_error` + `error`, `no_tool_call`, `max_turns`, `context_full`).

Cost: `price_in_per_mtok` / `price_out_per_mtok` (USD per million prompt / completion tokens) give
`Episode.cost_usd`; without prices it is None.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

from rl_assets.env import FinQAEnv
from rl_assets.episodes import Episode
from rl_assets.policies.base import GenerationSettings, Policy, PolicyError, Progress
from rl_assets.prompts import SYSTEM_PROMPT, initial_messages
from rl_assets.policies.tools import call_tool, tool_schemas


class OpenAIPolicy(Policy):
    def __init__(
        self,
        model: str,
        *,
        name: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 2,
        price_in_per_mtok: float | None = None,
        price_out_per_mtok: float | None = None,
        system_prompt: str = SYSTEM_PROMPT,
        env_kwargs: dict[str, Any] | None = None,
    ):
        import openai

        if not model:
            raise PolicyError("openai policy needs a model name: openai:<model>")
        self.model = model
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        api_key = api_key or os.environ.get("OPENAI_API_KEY")
        if not api_key:
            if self.base_url is None:
                raise PolicyError("openai policy: set OPENAI_API_KEY (or --api-key), or a base URL of a local server")
            api_key = "EMPTY"  # local OpenAI-compatible servers (vLLM) accept any key
        self.name = name or f"openai:{model}"
        self.spec = f"openai:{model}"
        self.price_in_per_mtok = price_in_per_mtok
        self.price_out_per_mtok = price_out_per_mtok
        self.system_prompt = system_prompt
        self.env_kwargs = dict(env_kwargs or {})
        self._client = openai.OpenAI(base_url=self.base_url, api_key=api_key, timeout=timeout_s, max_retries=max_retries)

    @property
    def version(self) -> str:
        # an endpoint's weights cannot be hashed: the model id (hosted APIs version it) at its endpoint;
        # the model name the server reports is in each episode's extra["served_model"]
        return f"openai:{self.model}@{self.base_url or 'https://api.openai.com/v1'}"

    def cost(self, tokens_in: int, tokens_out: int) -> float | None:
        if self.price_in_per_mtok is None and self.price_out_per_mtok is None:
            return None
        return (tokens_in * (self.price_in_per_mtok or 0.0) + tokens_out * (self.price_out_per_mtok or 0.0)) / 1e6

    def run_episodes(
        self,
        tasks: Sequence[dict[str, Any]],
        snapshot: str | os.PathLike,
        settings: GenerationSettings = GenerationSettings(),
        progress: Progress | None = None,
    ) -> list[Episode]:
        done = 0
        lock = threading.Lock()

        def one(task: dict[str, Any]) -> Episode:
            nonlocal done
            episode = self._episode(task, snapshot, settings)
            if progress is not None:
                with lock:
                    done += 1
                    progress(done)
            return episode

        with ThreadPoolExecutor(max_workers=max(1, settings.batch_size)) as pool:
            return list(pool.map(one, tasks))

    def _episode(self, task: dict[str, Any], snapshot: str | os.PathLike, settings: GenerationSettings) -> Episode:
        started = time.perf_counter()
        env = FinQAEnv(snapshot=snapshot, **self.env_kwargs)
        messages: list[dict[str, Any]] = initial_messages(env.reset(**task), self.system_prompt)
        tokens_in = tokens_out = turns = well_formed = 0
        model_seconds = env_seconds = 0.0
        outcomes: list[bool] = []  # every tool call the model attempted, in order: did it succeed
        stop_reason, error, served_model, final_text = "max_turns", None, None, None
        for _ in range(settings.max_turns):
            t0 = time.perf_counter()
            try:
                response = self._client.chat.completions.create(
                    model=self.model,
                    messages=messages,
                    tools=list(tool_schemas()),
                    tool_choice="auto",
                    temperature=0.0 if settings.greedy else settings.temperature,
                    max_tokens=settings.max_new_tokens,
                    seed=settings.seed,
                )
            except Exception as e:  # unreachable, HTTP error, timeout, a reply that is not chat-completions
                model_seconds += time.perf_counter() - t0
                stop_reason, error = "policy_error", f"{type(e).__name__}: {e}"[:2000]
                break
            model_seconds += time.perf_counter() - t0
            choices = getattr(response, "choices", None)
            if not choices:  # e.g. an HTML page or an empty completion
                stop_reason = "policy_error"
                error = f"the endpoint's reply is not a chat completion with choices: {str(response)[:300]!r}"
                break
            turns += 1
            served_model = getattr(response, "model", None) or served_model
            usage = getattr(response, "usage", None)
            if usage is not None:
                tokens_in += usage.prompt_tokens or 0
                tokens_out += usage.completion_tokens or 0
            choice = choices[0]
            message = choice.message
            calls = list(message.tool_calls or [])
            messages.append(_assistant_message(message.content, calls))
            if not calls:
                final_text = message.content
                stop_reason = "context_full" if choice.finish_reason == "length" else "no_tool_call"
                break
            all_ok_form = True
            for call in calls:
                t1 = time.perf_counter()
                name = getattr(getattr(call, "function", None), "name", None) or ""
                arguments = getattr(getattr(call, "function", None), "arguments", None)
                output, reached = call_tool(env, name, arguments)
                env_seconds += time.perf_counter() - t1
                all_ok_form &= reached
                outcomes.append(reached and env.tool_calls[-1].ok)
                messages.append({"role": "tool", "tool_call_id": call.id, "content": output})
            well_formed += all_ok_form
            if any(c.tool == "submit_answer" and c.ok for c in env.tool_calls):
                stop_reason = "submitted"
                break
        report = env.report
        return Episode(
            task_id=task["task_id"],
            policy=self.name,
            answer=report["rubric"]["submitted_answer"],
            correct=report["reward"] == 1.0,
            reward=report["reward"],
            rubric=report["rubric"],
            tool_calls=report["tool_calls"],
            stop_reason=stop_reason,
            turns=turns,
            well_formed_turns=well_formed,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            model_seconds=model_seconds,
            env_seconds=env_seconds,
            latency_s=time.perf_counter() - started,
            cost_usd=self.cost(tokens_in, tokens_out),
            error=error,
            messages=messages,
            extra={"call_outcomes": outcomes, "served_model": served_model, "final_text": final_text},
        )


def _assistant_message(content: str | None, calls: list[Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content or ""}
    if calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function",
             "function": {"name": c.function.name, "arguments": c.function.arguments}}
            for c in calls
        ]
    return message
