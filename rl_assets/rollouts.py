"""Episodes of a local Hugging Face model through real environments, batched across episodes.

    episodes = run_hf_episodes("data/runs/<id>", tasks, snapshot, greedy=True, batch_size=16)

`model` is a model directory (a training run's `<output>/model/`, or the run directory itself) or a
`(model, tokenizer)` pair. From a directory, `prompt.json` gives the system prompt and the environment
options the model was trained with, so episodes are rendered exactly as in training. Each episode runs in
its own `FinQAEnv`; every round generates one turn for all unfinished episodes of a batch at once
(left-padded, KV-cached: rl_assets.training.decoding), parses each turn with TRL's response parser, runs the
tool calls and appends the results.

An episode ends when `submit_answer` succeeds (`submitted`), when a turn contains no tool call
(`no_tool_call`), after `max_turns` turns (`max_turns`), or when the conversation no longer fits the
model's context (`context_full`). A turn is *well-formed* when it parsed into at least one tool call and
every call names a tool with exactly that tool's arguments.
"""

from __future__ import annotations

import inspect
import json
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from rl_assets.env import FinQAEnv
from rl_assets.episodes import Episode
from rl_assets.prompts import SYSTEM_PROMPT, initial_messages
from rl_assets.training.attention import use_cpu_attention
from rl_assets.training.chat_template import tool_suffix_ids
from rl_assets.training.decoding import PrefixCache, generate

PROMPT_FILE = "prompt.json"
TOOL_NAMES = ("get_descriptions", "get_table_info", "sql_query", "calculator", "submit_answer")


def model_dir(path: str | Path) -> Path:
    """A run directory's `model/`, or the directory itself when it holds a model."""
    path = Path(path)
    return path / "model" if (path / "model" / "config.json").exists() or (path / "model" / "adapter_config.json").exists() else path


def read_prompt_config(path: str | Path) -> dict[str, Any]:
    """`prompt.json` of a model directory: {"system_prompt": ..., "env": {FinQAEnv kwargs}} (defaults if absent)."""
    file = model_dir(path) / PROMPT_FILE
    config = json.loads(file.read_text()) if file.exists() else {}
    return {"system_prompt": config.get("system_prompt", SYSTEM_PROMPT), "env": dict(config.get("env", {})),
            "base_model": config.get("base_model"), "dtype": config.get("dtype", "float32")}


def load_model(path: str | Path, dtype: str | None = None):
    """(model, tokenizer) from a model directory: a full model, or a PEFT adapter merged into its base model (one
    model to run, as fast as the base), in `dtype` (default: the one its `prompt.json` records, float32 without).
    An adapter's base is the path it was trained on, or, where that path is not on this machine, the registered
    base model named in `prompt.json` (rl_assets.base_models)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a "Loading weights" bar per model would interleave with our progress lines
    directory = model_dir(path)
    if not directory.exists():
        raise FileNotFoundError(f"no model at {directory}")
    tokenizer = AutoTokenizer.from_pretrained(directory)
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype or read_prompt_config(directory)["dtype"]]
    if (directory / "adapter_config.json").exists():
        from peft import PeftConfig, PeftModel

        base = adapter_base(directory, PeftConfig.from_pretrained(directory).base_model_name_or_path)
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch_dtype)
        model = PeftModel.from_pretrained(model, directory).merge_and_unload()
    else:
        model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch_dtype)
    model.eval()
    return use_cpu_attention(model), tokenizer


def adapter_base(directory: Path, recorded: str | None) -> str:
    """Where an adapter's base weights are: the recorded path if it exists here, else the registered base."""
    if recorded and Path(recorded).exists():
        return recorded
    name = read_prompt_config(directory).get("base_model")
    if name:
        from rl_assets.base_models import resolve_base

        return resolve_base(name)
    if recorded:
        return recorded  # a Hugging Face id
    raise FileNotFoundError(f"{directory}: an adapter without a base model (adapter_config.json names none)")


def ensure_response_parser(tokenizer):
    """TRL's response parser for the tokenizer's chat template (already set for models this project saved)."""
    if getattr(tokenizer, "response_template", None) is None and getattr(tokenizer, "response_schema", None) is None:
        from trl.chat_template_utils import add_response_schema

        add_response_schema(tokenizer)
    return tokenizer


def env_tools(env: FinQAEnv) -> list[Callable]:
    """The environment's tools as bound methods (what TRL renders into the prompt)."""
    return [getattr(env, name) for name in TOOL_NAMES]


def well_formed_call(call: dict[str, Any]) -> bool:
    function = call.get("function") or {}
    name, arguments = function.get("name"), function.get("arguments")
    if name not in TOOL_NAMES or not isinstance(arguments, dict):
        return False
    expected = set(inspect.signature(getattr(FinQAEnv, name)).parameters) - {"self"}
    return set(arguments) == expected


def run_hf_episodes(
    model,
    tasks: Iterable[dict[str, Any]],
    snapshot: str | Path,
    *,
    greedy: bool = True,
    temperature: float = 1.0,
    batch_size: int = 16,
    max_turns: int = 8,
    max_new_tokens: int = 192,
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
    policy_name: str | None = None,
    reuse_cache: bool = True,
    keep_token_ids: bool = False,
    prompt_config: dict[str, Any] | None = None,
) -> list[Episode]:
    """Play every task with the model (see the module docstring); one `Episode` per task, in task order.

    `reuse_cache=False` encodes every turn's whole conversation again (the same greedy episodes, more work: for
    measuring what reuse saves); `keep_token_ids` puts each episode's last prompt ids and per-turn completion ids
    into `Episode.extra`; `prompt_config` ({"system_prompt", "env"}) replaces the model directory's `prompt.json`
    (an untrained base model played with the prompt its trained adapters get)."""
    import torch

    if isinstance(model, (str, Path)):
        prompt_config = {**read_prompt_config(model), **(prompt_config or {})}
        policy = policy_name or f"hf:{model}"
        model, tokenizer = load_model(model, prompt_config.get("dtype"))
    else:
        model, tokenizer = model
        prompt_config = {"system_prompt": SYSTEM_PROMPT, "env": {}, **(prompt_config or {})}
        policy = policy_name or f"hf:{getattr(model, 'name_or_path', 'model')}"
    ensure_response_parser(tokenizer)
    options = {**prompt_config["env"], **(env_kwargs or {})}
    tasks = list(tasks)
    torch.manual_seed(seed)
    context = getattr(model.config, "max_position_embeddings", None) or 1 << 30
    envs = [FinQAEnv(snapshot=snapshot, **options) for _ in range(min(batch_size, len(tasks)) or 1)]
    tools = env_tools(envs[0])
    episodes: list[Episode] = []
    for start in range(0, len(tasks), batch_size):
        chunk = tasks[start:start + batch_size]
        episodes.extend(_play_batch(model, tokenizer, chunk, envs, tools, prompt_config["system_prompt"], policy,
                                    greedy, temperature, max_turns, max_new_tokens, context, reuse_cache,
                                    keep_token_ids))
        if progress is not None:
            done = len(episodes)
            solved = sum(e.correct for e in episodes)
            progress(f"episodes {done}/{len(tasks)}, correct {solved}")
    return episodes


def _play_batch(model, tokenizer, tasks, envs, tools, system_prompt, policy, greedy, temperature, max_turns,
                max_new_tokens, context, reuse_cache, keep_token_ids) -> list[Episode]:
    from trl.chat_template_utils import parse_response

    started = time.perf_counter()
    cache = PrefixCache() if reuse_cache else None
    states = []
    for task, env in zip(tasks, envs):
        observation = env.reset(**task)
        messages = initial_messages(observation, system_prompt)
        ids = tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True, tokenize=True,
                                            return_dict=True)["input_ids"]
        states.append({"messages": messages, "ids": list(ids), "stop": None, "turns": 0, "well_formed": 0,
                       "tokens_in": 0, "tokens_out": 0, "tokens_encoded": 0, "model_s": 0.0, "env_s": 0.0,
                       "latency_s": None, "completions": []})
    while True:
        now = time.perf_counter() - started
        for state in states:  # an episode's latency: from the batch's start until its own last turn ended
            if state["stop"] is not None and state["latency_s"] is None:
                state["latency_s"] = now
        active = []
        for i, state in enumerate(states):
            if state["stop"] is None and len(state["ids"]) + max_new_tokens > context:
                state["stop"] = "context_full"
            if state["stop"] is None:
                active.append(i)
        if not active:
            break
        prompts = [states[i]["ids"] for i in active]
        t0 = time.perf_counter()
        generated = generate(model, prompts, max_new_tokens, tokenizer.eos_token_id, tokenizer.pad_token_id,
                             temperature=None if greedy else temperature, cache=cache)
        generation_s = (time.perf_counter() - t0) / len(active)
        for row, i in enumerate(active):
            state, env = states[i], envs[i]
            completion = generated.completions[row]
            state["turns"] += 1
            state["tokens_in"] += len(prompts[row])
            state["tokens_out"] += len(completion)
            state["tokens_encoded"] += generated.encoded[row]
            state["model_s"] += generation_s
            state["completions"].append(completion)
            message = parse_response(tokenizer, completion, prefix=prompts[row], tools=tools)
            calls = message.get("tool_calls") or []
            state["messages"].append({"role": "assistant", "content": message.get("content") or "",
                                      **({"tool_calls": calls} if calls else {})})
            if not calls:
                state["stop"] = "no_tool_call"
                continue
            state["well_formed"] += all(well_formed_call(c) for c in calls)
            t1 = time.perf_counter()
            results = []
            for call in calls:
                function = call.get("function") or {}
                name = function.get("name")
                try:
                    if name not in TOOL_NAMES:
                        raise ValueError(f"Tool {name} not found.")
                    result = getattr(env, name)(**(function.get("arguments") or {}))
                except Exception as e:  # as TRL does: the error goes back to the model
                    result = str({"error": str(e)})
                results.append({"role": "tool", "name": str(name), "content": str(result)})
            state["messages"].extend(results)
            state["env_s"] += time.perf_counter() - t1
            # as TRL builds the next turn: the prompt, the generated ids as generated, the tool results' tokens
            state["ids"] = prompts[row] + completion + tool_suffix_ids(tokenizer, results)
            if env.report["rubric"]["answered"]:
                state["stop"] = "submitted"
            elif state["turns"] >= max_turns:
                state["stop"] = "max_turns"
    ended = time.perf_counter() - started
    for state in states:
        if state["latency_s"] is None:
            state["latency_s"] = ended
    episodes = []
    for task, env, state in zip(tasks, envs, states):
        report = env.report
        rubric = report["rubric"]
        episodes.append(Episode(
            task_id=task["task_id"], policy=policy, answer=rubric["submitted_answer"], correct=bool(rubric["correct"]),
            reward=float(report["reward"]), rubric=rubric, tool_calls=report["tool_calls"], stop_reason=state["stop"],
            turns=state["turns"], well_formed_turns=state["well_formed"], tokens_in=state["tokens_in"],
            tokens_out=state["tokens_out"], tokens_encoded=state["tokens_encoded"], model_seconds=state["model_s"],
            env_seconds=state["env_s"], latency_s=state["latency_s"], messages=state["messages"],
            extra={"prompt_ids": state["ids"], "completion_ids": state["completions"]} if keep_token_ids else {},
        ))
    return episodes
