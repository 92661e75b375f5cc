"""Scripted completions for tests: the oracle's next turn for whichever episode a prompt belongs to.

A model cannot be trained to solve tasks inside a unit test, so tests that need a *correct* episode through
TRL's or the rollout's real machinery (tool-call parsing, real tools, rewards, losses) replace only the
sampling step: given the token ids of the conversation so far, `OracleScript` returns the token ids of the
oracle's next assistant turn (from rl_assets.training.trajectories), optionally with a wrong answer.
"""

from __future__ import annotations

import json
from typing import Any

WRONG_ANSWER = "-987654321"


class OracleScript:
    def __init__(self, tokenizer, conversations: list[list[dict[str, Any]]]):
        self.tokenizer = tokenizer
        self.by_observation = {conv[1]["content"].split("\n\n", 1)[1]: conv for conv in conversations}
        self.calls = 0

    def conversation_for(self, prompt_text: str) -> list[dict[str, Any]]:
        for observation, conversation in self.by_observation.items():
            if observation in prompt_text:
                return conversation
        raise KeyError(f"no scripted conversation for prompt ending {prompt_text[-200:]!r}")

    def next_turn(self, prompt_ids: list[int], wrong: bool = False) -> list[int]:
        """Token ids of the oracle's next assistant turn (ending with <|im_end|>)."""
        text = self.tokenizer.decode(prompt_ids)
        conversation = self.conversation_for(text)
        turns = [m for m in conversation if m["role"] == "assistant"]
        turn = turns[min(text.count("<tool_response>"), len(turns) - 1)]
        self.calls += 1
        if turn.get("tool_calls"):
            call = turn["tool_calls"][0]["function"]
            arguments = dict(call["arguments"])
            if wrong and call["name"] == "submit_answer":
                arguments["answer"] = WRONG_ANSWER
            body = f'<tool_call>\n{{"name": "{call["name"]}", "arguments": {json.dumps(arguments, ensure_ascii=False)}}}\n</tool_call>'
        else:
            body = turn["content"]
        return self.tokenizer(body + self.tokenizer.eos_token, add_special_tokens=False)["input_ids"]


class ScriptedModel:
    """Stands in for a causal LM in rl_assets.training.decoding: the logits put all mass on the oracle's next
    turn, token by token, for each row of the batch. It keeps its "keys" in the KV cache it is given, as a real
    model does: the token ids themselves, and it reads every row's conversation back from that cache (under the
    attention mask) at every call: a prefill (several new tokens; of all rows, or of a group of them) scripts the
    turn for the prompt it sees; a decoding step finds the scripted prompt its sequence continues and gives the
    next token of that turn. So a call that encodes only a turn's new tokens on a kept cache, or a decoding batch
    assembled from several prefills, works only if the cache really holds the whole conversation."""

    def __init__(self, script: OracleScript, tokenizer, max_position_embeddings: int = 1 << 20):
        import torch
        from transformers import Qwen3Config

        self.script = script
        self.tokenizer = tokenizer
        self.config = Qwen3Config(vocab_size=len(tokenizer), max_position_embeddings=max_position_embeddings,
                                  num_hidden_layers=1, num_key_value_heads=1)
        self._parameter = torch.nn.Parameter(torch.zeros(1))
        self._turns: dict[tuple[int, ...], list[int]] = {}  # scripted turn of each prompt prefilled

    def parameters(self):
        yield self._parameter

    def turn_tokens(self, prompt: list[int]) -> list[int]:
        return self.script.next_turn(prompt)

    def __call__(self, input_ids, attention_mask, past_key_values=None, **kwargs):
        import torch

        tokens = input_ids.to(torch.float64)[:, None, :, None]  # [batch, heads=1, new, dim=1]
        if past_key_values is not None:  # what the cache holds now: earlier tokens (kept or not) and these
            tokens, _ = past_key_values.update(tokens, tokens, 0)
        seen = [[t for t, m in zip(ids, mask) if m]
                for ids, mask in zip(tokens[:, 0, :, 0].long().tolist(), attention_mask.tolist())]
        vocabulary = len(self.tokenizer)
        logits = torch.full((len(seen), input_ids.shape[1], vocabulary), -1e9)
        for row, sequence in enumerate(seen):
            if input_ids.shape[1] > 1:  # prefill: the sequence is a prompt
                turn = self._turns[tuple(sequence)] = self.turn_tokens(sequence)
                emitted = 0
            else:  # decoding: the prompt this sequence continues, and how many of its turn's tokens it holds
                emitted = next((e for e in range(1, len(sequence)) if tuple(sequence[:-e]) in self._turns), None)
                if emitted is None:
                    raise AssertionError(f"row {row}: the cache holds no scripted prompt ({sequence[-20:]})")
                turn = self._turns[tuple(sequence[:-emitted])]
            logits[row, -1, turn[min(emitted, len(turn) - 1)]] = 0.0
        return type("Output", (), {"logits": logits})()
