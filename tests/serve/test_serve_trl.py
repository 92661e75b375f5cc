"""RemoteFinQAEnv: the in-process environment's tools over the network, for TRL's `environment_factory`.

A real `trl.GRPOTrainer` step with a tiny Qwen3 model and tokenizer built here (no downloads), each rollout's
environment a session on the real server process; and the oracle through the remote environment gives the
same answers, rewards and rubrics as in-process.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from rl_assets import oracle
from rl_assets.env import FinQAEnv
from rl_assets.serve.remote import RemoteFinQAEnv, close, fetch_tasks
from rl_assets.snapshot import read_tasks

from serve_helpers import active_sessions, wait_until

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


def test_grpo_trainer_runs_with_remote_environments(tiny_tokenizer, server, snapshot_dir, tmp_path, monkeypatch):
    import trl
    from datasets import Dataset
    from transformers import Qwen3Config, Qwen3ForCausalLM

    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    model = Qwen3ForCausalLM(Qwen3Config(
        vocab_size=len(tiny_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=4096,
        tie_word_embeddings=True, eos_token_id=tiny_tokenizer.eos_token_id, pad_token_id=tiny_tokenizer.pad_token_id))
    served = fetch_tasks(server.url, split="train", source="sec10k")  # the dataset comes from the server too
    assert [t["task_id"] for t in served] == [
        t["task_id"] for t in read_tasks(snapshot_dir, splits=["train"], sources=["sec10k"])]
    picked = served[:4]
    # no gold columns: the server grades with its own snapshot
    rows = [{"prompt": [{"role": "user", "content": "Answer with the tools."}], "task_id": t["task_id"]} for t in picked]
    created: list[RemoteFinQAEnv] = []
    wait_until(lambda: active_sessions(server.url) == 0, what="earlier tests' sessions to end")

    def factory() -> RemoteFinQAEnv:
        env = RemoteFinQAEnv(server.url)
        created.append(env)
        return env

    config = trl.GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=4,
                            max_completion_length=32, max_steps=1, report_to=[], use_cpu=True,
                            save_strategy="no", bf16=False, logging_steps=1)
    trainer = trl.GRPOTrainer(model=model, processing_class=tiny_tokenizer, args=config,
                              train_dataset=Dataset.from_list(rows), environment_factory=factory)
    assert sorted(t.__name__ for t in trainer.tools) == [
        "calculator", "get_descriptions", "get_table_info", "sql_query", "submit_answer"]
    assert "RemoteFinQAEnv" in trainer.reward_func_names

    trainer.train()
    logged = [h for h in trainer.state.log_history if "rewards/RemoteFinQAEnv/mean" in h]
    assert logged and logged[0]["rewards/RemoteFinQAEnv/mean"] == 0.0  # an untrained model answers nothing
    episodes = {e.report["task_id"] for e in created}
    assert episodes and episodes <= {t["task_id"] for t in picked}  # reset(**row) started the row's task remotely
    assert active_sessions(server.url) == len(created)  # one session per pooled environment
    for env in created:
        close(env)
    wait_until(lambda: active_sessions(server.url) == 0, what="closed environments to end their sessions")


@pytest.mark.parametrize("tool", ["calculator", "get_descriptions", "get_table_info", "sql_query", "submit_answer"])
def test_remote_tools_have_the_in_process_signature_and_schema(tool):
    from transformers.utils import get_json_schema

    assert inspect.signature(getattr(RemoteFinQAEnv, tool)) == inspect.signature(getattr(FinQAEnv, tool))
    assert get_json_schema(getattr(RemoteFinQAEnv, tool)) == get_json_schema(getattr(FinQAEnv, tool))


def test_the_oracle_through_a_remote_environment_matches_in_process(server, trajectories, snapshot_dir):
    remote, local = RemoteFinQAEnv(server.url), FinQAEnv(snapshot=snapshot_dir)
    for trajectory in trajectories[:12]:
        assert remote.reset(**trajectory.task) == local.reset(**trajectory.task)
        assert remote.get_reward() == 0.0  # nothing submitted yet
        result = oracle.solve(remote, trajectory.task)
        assert result.correct and remote.get_reward() == 1.0
        assert remote.report["rubric"] == trajectory.rubric
    after = remote.calculator("1 + 1")  # the episode ended with submit_answer
    assert after.startswith("Error: episode") and "is done" in after
    remote.reset(task_id=trajectories[0].task_id)
    remote.submit_answer("-123456789")
    assert remote.get_reward() == 0.0 and remote.report["rubric"]["grade_reason"] != "match"
    with pytest.raises(ValueError, match="task_id"):
        remote.reset(question="no id")
    close(remote)
