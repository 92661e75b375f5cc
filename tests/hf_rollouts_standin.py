"""A stand-in for `rl_assets.rollouts.run_hf_episodes` (same signature), used only by these tests until the
local-model rollouts are installed: batched greedy or sampled generation with a real Hugging Face model
across episodes, tool calls parsed from `<tool_call>{json}</tool_call>` and run in a real FinQAEnv."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from rl_assets.env import FinQAEnv
from rl_assets.episodes import Episode
from rl_assets.policies.prompting import initial_messages
from rl_assets.policies.tools import call_tool, tool_schemas

TOOL_CALL = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.S)
CALLS = []  # every call's keyword arguments, for assertions


def run_hf_episodes(model, tasks, snapshot, *, greedy=True, temperature=1.0, batch_size=16, max_turns=4,
                    max_new_tokens=32, seed=0, env_kwargs=None, progress=None):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    CALLS.append({"model": model, "tasks": len(tasks), "greedy": greedy, "batch_size": batch_size,
                  "max_turns": max_turns, "max_new_tokens": max_new_tokens, "seed": seed})
    prompt = json.loads((Path(model) / "prompt.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(model, padding_side="left")
    lm = AutoModelForCausalLM.from_pretrained(model).eval()
    torch.manual_seed(seed)
    episodes: list[Episode] = []
    for start in range(0, len(tasks), batch_size):
        batch = tasks[start:start + batch_size]
        envs = [FinQAEnv(snapshot=snapshot, **{**prompt.get("env", {}), **(env_kwargs or {})}) for _ in batch]
        chats = [initial_messages(env.reset(**task), prompt["system_prompt"]) for env, task in zip(envs, batch)]
        state = [{"stop": None, "turns": 0, "well_formed": 0, "tin": 0, "tout": 0, "model_s": 0.0, "env_s": 0.0,
                  "t0": time.perf_counter()} for _ in batch]
        for _ in range(max_turns):
            active = [i for i, s in enumerate(state) if s["stop"] is None]
            if not active:
                break
            texts = [tokenizer.apply_chat_template(chats[i], tools=list(tool_schemas()), add_generation_prompt=True,
                                                   tokenize=False) for i in active]
            enc = tokenizer(texts, return_tensors="pt", padding=True)
            t0 = time.perf_counter()
            with torch.no_grad():
                out = lm.generate(**enc, max_new_tokens=max_new_tokens, do_sample=not greedy,
                                  temperature=temperature if not greedy else None, pad_token_id=tokenizer.pad_token_id)
            elapsed = (time.perf_counter() - t0) / len(active)
            for row, i in enumerate(active):
                s = state[i]
                generated = out[row, enc["input_ids"].shape[1]:]
                text = tokenizer.decode(generated, skip_special_tokens=False)
                s["turns"] += 1
                s["tin"] += int(enc["attention_mask"][row].sum())
                s["tout"] += int((generated != tokenizer.pad_token_id).sum())
                s["model_s"] += elapsed
                match = TOOL_CALL.search(text)
                call = None
                if match:
                    try:
                        call = json.loads(match.group(1))
                    except json.JSONDecodeError:
                        call = None
                if not isinstance(call, dict) or "name" not in call:
                    s["stop"] = "no_tool_call"
                    continue
                s["well_formed"] += 1
                t1 = time.perf_counter()
                output, _ = call_tool(envs[i], str(call["name"]), call.get("arguments", {}))
                s["env_s"] += time.perf_counter() - t1
                chats[i] += [{"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": call}]},
                             {"role": "tool", "name": call["name"], "content": output}]
                if envs[i].report["rubric"]["answered"]:
                    s["stop"] = "submitted"
        for env, task, s, chat in zip(envs, batch, state, chats):
            report = env.report
            episodes.append(Episode(
                task_id=task["task_id"], policy=f"hf:{model}", answer=report["rubric"]["submitted_answer"],
                correct=report["reward"] == 1.0, reward=report["reward"], rubric=report["rubric"],
                tool_calls=report["tool_calls"], stop_reason=s["stop"] or "max_turns", turns=s["turns"],
                well_formed_turns=s["well_formed"], tokens_in=s["tin"], tokens_out=s["tout"],
                model_seconds=s["model_s"], env_seconds=s["env_s"], latency_s=time.perf_counter() - s["t0"],
                messages=chat))
        if progress is not None:
            progress(len(episodes))
    return episodes
