"""The GRPO stage through TRL's real machinery: tool calls parsed by TRL, run by the training environment,
rewarded by the rubric terms and the environment, turned into a loss and an update.

Only sampling is scripted (tests/scripted.py): each rollout's next turn is the oracle's, and every second
rollout submits a wrong answer, so a group holds one correct and one wrong episode and the environment's
reward reaching the trainer must be exactly 0.5.
"""

from __future__ import annotations

import io
import json

import pytest

from rl_assets.prompts import SYSTEM_PROMPT
from rl_assets.training import rewards
from rl_assets.training.environment import TrainingEnv
from rl_assets.training.trajectories import oracle_conversation
from scripted import OracleScript


def scripted_trainer(script: OracleScript):
    from rl_assets.training.grpo import FinQAGRPOTrainer

    class ScriptedGRPOTrainer(FinQAGRPOTrainer):
        def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
            return [script.next_turn(list(p), wrong=i % 2 == 1) for i, p in enumerate(prompt_ids)], None

    return ScriptedGRPOTrainer


def run_scripted_grpo(snapshot_dir, tokenizer, tmp_path, overrides, stream=None):
    from unittest.mock import MagicMock

    from rl_assets.snapshot import read_tasks
    from rl_assets.training.config import load_config
    from rl_assets.training.grpo import dataset_rows, run_grpo
    from rl_assets.training.reporting import Reporter
    from rl_assets.training.tiny import build_model

    config = load_config("tiny-test", ["grpo.max_steps=1", "grpo.prompts_per_step=2", "grpo.num_generations=2",
                                       "grpo.save_steps=100", "grpo.max_tool_calling_iterations=8", "data.table_alias_prob=1.0",
                                       *overrides])
    tasks = read_tasks(snapshot_dir, splits=["train"], question_types=["single_table"])[:50]
    env = TrainingEnv(snapshot_dir, table_alias_prob=1.0, description_chars=0)
    conversations = [oracle_conversation(env, row, SYSTEM_PROMPT) for row in dataset_rows(config, tasks, SYSTEM_PROMPT)]
    model = build_model(tokenizer, hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=64,
                        max_position_embeddings=8192, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    reporter = Reporter(tmp_path, MagicMock(), stream=stream or io.StringIO())
    trainer = run_grpo(config, model, tokenizer, tasks, snapshot_dir, tmp_path / "grpo", reporter, SYSTEM_PROMPT,
                       trainer_cls=scripted_trainer(OracleScript(tokenizer, conversations)))
    return trainer, before, reporter


def test_a_grpo_step_with_real_tool_calls_passes_a_positive_reward_to_the_trainer(snapshot_dir, tiny_tokenizer, tmp_path):
    from rl_assets.training.reporting import read_metrics

    trainer, before, _ = run_scripted_grpo(snapshot_dir, tiny_tokenizer, tmp_path, ["grpo.max_completion_length=4096"])
    logged = next(h for h in trainer.state.log_history if "rewards/TrainingEnv/mean" in h)
    assert logged["rewards/TrainingEnv/mean"] == 0.5  # the environment graded 2 of 4 rollouts correct
    assert logged["reward"] > 0
    assert logged["tools/call_frequency"] >= 5  # listed, inspected, queried, calculated, submitted
    assert logged["tools/failure_frequency"] == 0
    record = read_metrics(tmp_path)[-1]
    assert record["stage"] == "grpo" and record["pass_rate"] == 0.5
    for term in ("well_formed", "company_used", "schema_before_query", "no_hallucination", "recovered", "submitted"):
        assert record[f"reward/{term}"] == 1.0, term
    assert record["tool_error_rate"] == 0.0 and record["tools/dropped_results"] == 0.0
    assert all(record[f"timing/{k}_s"] >= 0 for k in ("generation", "environment", "scoring", "backward"))
    changed = [k for k, v in trainer.model.state_dict().items() if not (v == before[k]).all()]
    assert changed  # one correct and one wrong rollout per group: non-zero advantages, a real update
    samples = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert samples and any(m["role"] == "tool" for m in samples[0]["messages"])


def test_tool_results_that_overflow_the_completion_budget_are_counted_and_reported(snapshot_dir, tiny_tokenizer, tmp_path):
    stream = io.StringIO()
    trainer, _, _ = run_scripted_grpo(snapshot_dir, tiny_tokenizer, tmp_path, ["grpo.max_completion_length=100"], stream)
    logged = next(h for h in trainer.state.log_history if "tools/dropped_results" in h)
    assert logged["tools/dropped_results"] > 0
    assert "would overflow max_completion_length=100" in stream.getvalue()


def test_reward_terms_read_the_environment(snapshot_dir, tasks):
    task = next(t for t in tasks if t["split"] == "train" and t["question_type"] == "single_table")
    gold = json.loads(task["gold_operands"])[0]
    company, table = task["world_id"], gold["table"]
    good, sloppy = TrainingEnv(snapshot_dir), TrainingEnv(snapshot_dir)
    for env in (good, sloppy):
        env.reset(**task)
    good.get_descriptions(company)
    good.get_table_info(company, table)
    good.sql_query(company, table, f'SELECT "{gold["column"]}" FROM {table} WHERE "{gold["row_label_column"]}" = \'x\'')
    good.submit_answer("1")
    sloppy.get_descriptions("not_a_company")
    sloppy.sql_query(company, table, "SELECT * FROM nowhere")
    sloppy.sql_query(company, table, "SELECT * FROM nowhere")  # the same failing call again
    sloppy.sql_query(company, table, "SELECT * FROM nowhere")
    call = lambda name, args: {"type": "function", "function": {"name": name, "arguments": args}}
    completions = [
        [{"role": "assistant", "content": "", "tool_calls": [call("get_descriptions", {"company_name": company})]}],
        [{"role": "assistant", "content": "", "tool_calls": [call("get_descriptions", {"company": company})]},
         {"role": "assistant", "content": "I think 42"}],
    ]
    kwargs = {"completions": completions, "environments": [good, sloppy], "world_id": [company, company]}
    scores = {name: fn(**kwargs) for name, fn in rewards.TERMS.items()}
    assert scores["well_formed"] == [1.0, 0.0]
    assert scores["company_used"] == [1.0, 0.0]
    assert scores["schema_before_query"] == [1.0, 0.0]
    assert scores["no_hallucination"] == [1.0, 0.0]
    assert scores["recovered"] == [1.0, 0.0]
    assert scores["submitted"] == [1.0, 0.0]
    assert scores["no_repeats"] == [1.0, 0.5]  # 2 of the sloppy episode's 4 calls repeat an earlier one


@pytest.mark.parametrize("weights, expected", [({}, []), ({"reward.submitted": 0.3}, [("submitted", 0.3)])])
def test_only_weighted_terms_are_rewards(weights, expected):
    from rl_assets.training.config import load_config
    from rl_assets.training.grpo import reward_functions

    config = load_config("qwen3-4b-lora", weights)
    funcs, values = reward_functions(config)
    assert [(f.__name__, w) for f, w in zip(funcs, values)] == expected


def test_grpo_sampling_keeps_the_kv_cache_under_gradient_checkpointing(snapshot_dir, tiny_tokenizer, tmp_path):
    """Gradient checkpointing (TRL's default) turns the KV cache off in training mode; sampling must pause it, or
    every token after the first is predicted from the last token alone."""
    from datasets import Dataset

    from rl_assets.snapshot import read_tasks
    from rl_assets.training.config import load_config
    from rl_assets.training.decoding import decode
    from rl_assets.training.grpo import FinQAGRPOTrainer, dataset_rows, grpo_args
    from rl_assets.training.tiny import build_model

    config = load_config("tiny-test", ["model.gradient_checkpointing=true", "grpo.temperature=0.000001",
                                       "grpo.max_completion_length=24"])
    tasks = read_tasks(snapshot_dir, splits=["train"], question_types=["single_table"])[:4]
    model = build_model(tiny_tokenizer, hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=64,
                        max_position_embeddings=1024, seed=3)
    trainer = FinQAGRPOTrainer(model=model, processing_class=tiny_tokenizer, args=grpo_args(config, tmp_path, True, []),
                               train_dataset=Dataset.from_list(dataset_rows(config, tasks, SYSTEM_PROMPT)),
                               environment_factory=lambda: TrainingEnv(snapshot_dir))
    assert trainer.args.gradient_checkpointing
    prompt = tiny_tokenizer("Company: vortakel\nQuestion: what was it?")["input_ids"]
    trainer.model.gradient_checkpointing_enable()  # as Trainer.train() does
    trainer.model.train()
    sampled, _ = trainer._generate_single_turn([prompt], None, {}, 1)  # temperature ~0: the greedy tokens
    greedy = decode(model.eval(), [prompt], 24, tiny_tokenizer.eos_token_id, tiny_tokenizer.pad_token_id)
    assert sampled == greedy
