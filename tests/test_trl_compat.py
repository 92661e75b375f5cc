"""FinQAEnv plugs into TRL 1.16 `GRPOTrainer(environment_factory=...)`.

A tiny Qwen3 model and a byte-level BPE tokenizer trained here (no downloads) with TRL's Qwen3 chat
template: the trainer discovers the tools, resets one environment per rollout with the dataset row,
and takes its reward from `get_reward()`. TRL's own parser turns a tool-call completion into a call
that the environment executes.

An untrained model never answers, so its reward is always 0 and proves nothing. The GRPO test scripts
only the sampling (tests/scripted.py: each turn is the oracle's next turn, one rollout of the two submits a
wrong answer); TRL parses the calls, the environments run them and grade the answers, so the reward that
reaches the trainer must be exactly 0.5.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from rl_assets.env import FinQAEnv

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>",
           "<tool_response>", "</tool_response>", "<think>", "</think>"]


@pytest.fixture(scope="module")
def tiny_tokenizer(tasks):
    import trl
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([t["question"] for t in tasks[:2000]], trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        additional_special_tokens=SPECIAL[3:])
    tokenizer.chat_template = (Path(trl.__file__).parent / "chat_templates" / "qwen3_instruct_2507.jinja").read_text()
    return tokenizer


def test_grpo_trainer_runs_with_the_environment_factory(tiny_tokenizer, snapshot_dir, tasks, tmp_path, monkeypatch):
    import trl
    from datasets import Dataset
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from rl_assets.prompts import SYSTEM_PROMPT
    from rl_assets.training.environment import TrainingEnv
    from rl_assets.training.trajectories import oracle_conversation
    from scripted import OracleScript

    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    model = Qwen3ForCausalLM(Qwen3Config(
        vocab_size=len(tiny_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=16384,
        tie_word_embeddings=True, eos_token_id=tiny_tokenizer.eos_token_id, pad_token_id=tiny_tokenizer.pad_token_id))
    picked = [t for t in tasks if t["world_id"] == "gm" and t["gold_program_kind"] == "template"][:1]
    rows = [{"prompt": [{"role": "user", "content": "Answer with the tools."}], "task_id": t["task_id"],
             "world_id": t["world_id"], "question": t["question"], "gold_value": float(t["gold_value"]),
             "gold_unit": t["gold_unit"], "gold_scale": t["gold_scale"] or ""} for t in picked]
    oracle_env = TrainingEnv(snapshot_dir, description_chars=0)  # no aliases: the same outputs as FinQAEnv's
    script = OracleScript(tiny_tokenizer, [oracle_conversation(oracle_env, t, SYSTEM_PROMPT) for t in picked])
    created: list[FinQAEnv] = []

    def factory() -> FinQAEnv:
        env = FinQAEnv(snapshot=snapshot_dir, description_chars=0)
        created.append(env)
        return env

    class ScriptedSampling(trl.GRPOTrainer):
        def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
            return [script.next_turn(list(p), wrong=i % 2 == 1) for i, p in enumerate(prompt_ids)], None

    config = trl.GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=2, num_generations=2,
                            max_completion_length=4096, max_tool_calling_iterations=8, max_steps=1, report_to=[],
                            use_cpu=True, save_strategy="no", bf16=False, logging_steps=1)
    trainer = ScriptedSampling(model=model, processing_class=tiny_tokenizer, args=config,
                               train_dataset=Dataset.from_list(rows), environment_factory=factory)
    assert sorted(t.__name__ for t in trainer.tools) == [
        "calculator", "get_descriptions", "get_table_info", "sql_query", "submit_answer"]
    assert "FinQAEnv" in trainer.reward_func_names

    trainer.train()
    logged = [h for h in trainer.state.log_history if "rewards/FinQAEnv/mean" in h]
    assert logged and logged[0]["rewards/FinQAEnv/mean"] == 0.5  # one rollout solved it, one answered wrong
    assert logged[0]["tools/call_frequency"] >= 5 and logged[0]["tools/failure_frequency"] == 0
    reports = [e.report for e in created if e.report["task_id"]]
    assert sorted(r["reward"] for r in reports) == [0.0, 1.0]
    assert {r["task_id"] for r in reports} == {t["task_id"] for t in picked}  # reset(**row) got the dataset row
    assert all(r["rubric"]["inspected_schema_before_query"] for r in reports)


def test_trl_parses_a_tool_call_into_a_call_the_environment_runs(tiny_tokenizer, snapshot_dir, tasks):
    from trl.chat_template_utils import add_response_schema, parse_response

    tokenizer = add_response_schema(tiny_tokenizer)
    task = next(t for t in tasks if t["source"] == "sec10k")
    call = {"name": "get_descriptions", "arguments": {"company_name": task["world_id"]}}
    completion = f"<tool_call>\n{json.dumps(call)}\n</tool_call><|im_end|>"
    prefix = tokenizer.apply_chat_template([{"role": "user", "content": "Answer with the tools."}],
                                           add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    message = parse_response(tokenizer, tokenizer(completion)["input_ids"], prefix=list(prefix))
    tool_call = message["tool_calls"][0]["function"]
    env = FinQAEnv(snapshot=snapshot_dir)
    env.reset(**task)
    arguments = tool_call["arguments"]
    output = getattr(env, tool_call["name"])(**(json.loads(arguments) if isinstance(arguments, str) else arguments))
    gold_table = json.loads(task["gold_operands"])[0]["table"]
    assert gold_table in {t["table_name"] for t in json.loads(output)}
    assert env.report["rubric"]["calls_by_tool"] == {"get_descriptions": 1}
