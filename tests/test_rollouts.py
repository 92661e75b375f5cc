"""rl_assets.rollouts.run_hf_episodes: batched episodes through real environments.

The model is replaced by a scripted one (tests/scripted.py) that answers with the oracle's next turn, so
every other part is real: prompt rendering, TRL's response parser, the tools, telemetry, grading.
"""

from __future__ import annotations

from rl_assets.episodes import STOP_REASONS
from rl_assets.prompts import SYSTEM_PROMPT
from rl_assets.rollouts import run_hf_episodes
from rl_assets.training.environment import TrainingEnv
from rl_assets.training.trajectories import oracle_conversation
from scripted import OracleScript, ScriptedModel


def unaliased_conversations(snapshot_dir, tasks, n):
    env = TrainingEnv(snapshot_dir, description_chars=0)
    picked = [t for t in tasks if t["split"] == "train" and t["gold_program_kind"] == "template"][:n]
    return picked, [oracle_conversation(env, t, SYSTEM_PROMPT) for t in picked]


def test_episodes_run_through_real_tools_batched_across_episodes(snapshot_dir, tasks, tiny_tokenizer):
    picked, conversations = unaliased_conversations(snapshot_dir, tasks, 5)
    script = OracleScript(tiny_tokenizer, conversations)
    episodes = run_hf_episodes((ScriptedModel(script, tiny_tokenizer), tiny_tokenizer), picked, snapshot_dir,
                               batch_size=3, env_kwargs={"description_chars": 0}, policy_name="scripted")
    assert [e.task_id for e in episodes] == [t["task_id"] for t in picked]
    for episode, conversation in zip(episodes, conversations):
        assert episode.stop_reason == "submitted" and episode.correct and episode.reward == 1.0
        assert episode.policy == "scripted"
        assert episode.turns == episode.well_formed_turns == sum(1 for m in conversation if m.get("tool_calls"))
        assert episode.messages[:2] == conversation[:2]  # rl_assets.prompts.initial_messages, as in training
        tool_outputs = [m["content"] for m in episode.messages if m["role"] == "tool"]
        assert tool_outputs == [m["content"] for m in conversation if m["role"] == "tool"]
        assert episode.rubric["inspected_schema_before_query"] is True
        assert episode.tokens_in > episode.tokens_out > 0 and episode.env_seconds > 0


def test_episodes_end_without_a_tool_call_or_after_max_turns(snapshot_dir, tasks, tiny_tokenizer):
    picked, conversations = unaliased_conversations(snapshot_dir, tasks, 2)
    script = OracleScript(tiny_tokenizer, conversations)
    episodes = run_hf_episodes((ScriptedModel(script, tiny_tokenizer), tiny_tokenizer), picked, snapshot_dir,
                               max_turns=2, env_kwargs={"description_chars": 0})
    assert [e.stop_reason for e in episodes] == ["max_turns", "max_turns"]
    assert all(e.turns == 2 and not e.rubric["answered"] for e in episodes)

    class TextOnly(ScriptedModel):
        def turn_tokens(self, prompt):
            return self.tokenizer("42" + self.tokenizer.eos_token, add_special_tokens=False)["input_ids"]

    episodes = run_hf_episodes((TextOnly(script, tiny_tokenizer), tiny_tokenizer), picked, snapshot_dir)
    assert [e.stop_reason for e in episodes] == ["no_tool_call", "no_tool_call"]
    assert all(e.turns == 1 and e.well_formed_turns == 0 and e.messages[-1]["content"] == "42" for e in episodes)
    assert {e.stop_reason for e in episodes} <= set(STOP_REASONS)


def test_cached_decoding_matches_transformers_generate(tiny_tokenizer):
    import torch

    from rl_assets.training.decoding import decode
    from rl_assets.training.tiny import build_model

    model = build_model(tiny_tokenizer, hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1,
                        intermediate_size=64, max_position_embeddings=512, seed=1).eval()
    eos = tiny_tokenizer.eos_token_id
    prompts = [tiny_tokenizer("Company: apple\nQuestion: what?")["input_ids"], tiny_tokenizer("hi")["input_ids"],
               tiny_tokenizer("a longer prompt about tables and columns")["input_ids"]]
    ours = decode(model, prompts, 12, eos, tiny_tokenizer.pad_token_id)
    for prompt, completion in zip(prompts, ours):  # one at a time: no padding involved
        with torch.inference_mode():
            out = model.generate(input_ids=torch.tensor([prompt]), max_new_tokens=12, do_sample=False,
                                 eos_token_id=eos, pad_token_id=tiny_tokenizer.pad_token_id)
        reference = out[0, len(prompt):].tolist()
        if eos in reference:
            reference = reference[: reference.index(eos) + 1]
        assert completion == reference
