"""rl_assets.training.decoding: KV caches kept across turns give the same greedy tokens as re-encoding every turn.

A real (randomly initialised) Qwen3 model plays multi-turn "episodes" of ragged lengths: after each turn every row
appends its completion and a different number of new tokens (the tool result and the next header); rows drop
out as their episodes end. With a `PrefixCache` each turn encodes only the new tokens; without it, the whole
sequence. The completions must be identical token for token, and the cache must encode strictly fewer tokens.
The rollout-level test plays real FinQA episodes through the environment both ways and compares the transcripts.
"""

from __future__ import annotations

import random

import pytest

from rl_assets.training.decoding import PrefixCache, generate


@pytest.fixture(scope="module", params=["sdpa", "finqa_cpu"])
def small_model(request):
    """A small random Qwen3 with transformers' sdpa attention, and with the CPU decoding attention the project
    plays models with (rl_assets.training.attention)."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from rl_assets.training.attention import use_cpu_attention

    torch.manual_seed(3)
    config = Qwen3Config(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=4096)
    model = Qwen3ForCausalLM(config).eval()
    return use_cpu_attention(model) if request.param == "finqa_cpu" else model


@pytest.mark.parametrize("queries", [1, 3])
def test_the_cpu_decoding_attention_is_sdpa_attention(queries):
    """Grouped-query attention of a few query tokens over a padded batch, against transformers' sdpa."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from rl_assets.training.attention import cpu_attention

    torch.manual_seed(0)
    module = type("Attention", (), {"num_key_value_groups": 3, "is_causal": True})()
    query = torch.randn(2, 6, queries, 16)
    key, value = torch.randn(2, 2, 40, 16), torch.randn(2, 2, 40, 16)
    mask = torch.ones(2, 1, queries, 40, dtype=torch.bool)
    mask[0, :, :, :5] = False  # row 0 is left-padded
    mask[1, :, :, 20:24] = False  # row 1 has a gap (a kept cache with padding in the middle)
    for q in range(queries):  # causal among the query tokens
        mask[:, :, q, 40 - queries + q + 1:] = False
    ours, _ = cpu_attention(module, query, key, value, mask, scaling=0.25)
    reference, _ = sdpa_attention_forward(module, query, key, value, mask, scaling=0.25)
    assert ours.shape == reference.shape and torch.allclose(ours, reference, atol=1e-5)
    # no mask: transformers passes none only where the queries are all there is (a prefill from scratch)
    key, value = key[:, :, -queries:] if queries > 1 else key, value[:, :, -queries:] if queries > 1 else value
    ours, _ = cpu_attention(module, query, key, value, None, scaling=0.25)
    reference, _ = sdpa_attention_forward(module, query, key, value, None, scaling=0.25)
    assert torch.allclose(ours, reference, atol=1e-5)


def _play(model, prompts, turns, cache, seed):
    """Greedy turns; after each, every row appends its completion + fresh tokens, and every other turn one row ends."""
    rng = random.Random(seed)
    sequences = [list(p) for p in prompts]
    transcript, encoded = [], 0
    for turn in range(turns):
        result = generate(model, sequences, 12, eos_token_id=[7, 9], pad_token_id=0, temperature=None, cache=cache)
        transcript.append(result.completions)
        encoded += sum(result.encoded)
        keep = range(len(sequences) - (turn % 2)) if len(sequences) > 1 else range(len(sequences))
        sequences = [sequences[i] + result.completions[i] + [rng.randrange(10, 300) for _ in range(rng.randrange(1, 40))]
                     for i in keep]
    return transcript, encoded


def test_kept_caches_give_the_same_greedy_tokens_as_re_encoding(small_model):
    rng = random.Random(0)
    prompts = [[rng.randrange(10, 300) for _ in range(rng.randrange(3, 90))] for _ in range(6)]
    cache = PrefixCache()
    with_reuse, encoded_with = _play(small_model, prompts, 5, cache, seed=1)
    without, encoded_without = _play(small_model, prompts, 5, None, seed=1)
    assert with_reuse == without
    assert sum(len(c) for turn in with_reuse for c in turn) > 40  # the turns really generated
    assert encoded_with < encoded_without / 2
    assert cache.tokens_reused > 0 and cache.tokens_encoded == encoded_with
    assert len(cache) <= len(prompts)  # only the rows of the last call are kept


def test_a_prompt_equal_to_a_kept_sequence_still_encodes_one_token(small_model):
    cache = PrefixCache()
    first = generate(small_model, [[11, 12, 13, 14]], 3, eos_token_id=7, pad_token_id=0, cache=cache)
    kept = cache.kept[0].tokens
    again = generate(small_model, [kept], 3, eos_token_id=7, pad_token_id=0, cache=cache)
    fresh = generate(small_model, [kept], 3, eos_token_id=7, pad_token_id=0, cache=None)
    assert again.completions == fresh.completions
    assert again.encoded[0] == 1 + len(again.completions[0]) - 1
    assert first.completions[0][:-1] == kept[4:]


def test_episodes_are_the_same_with_and_without_kept_caches(snapshot_dir, tasks, tiny_tokenizer):
    """Real FinQA episodes through rl_assets.rollouts with the scripted oracle model, whose view of the conversation
    is read back from the KV cache: a wrong kept cache would show it the wrong conversation."""
    from rl_assets.rollouts import run_hf_episodes
    from scripted import OracleScript, ScriptedModel
    from test_rollouts import unaliased_conversations

    picked, conversations = unaliased_conversations(snapshot_dir, tasks, 4)
    runs = {}
    for reuse in (True, False):
        script = OracleScript(tiny_tokenizer, conversations)
        runs[reuse] = run_hf_episodes((ScriptedModel(script, tiny_tokenizer), tiny_tokenizer), picked, snapshot_dir,
                                      batch_size=3, env_kwargs={"description_chars": 0}, reuse_cache=reuse,
                                      keep_token_ids=True)
    for a, b in zip(runs[True], runs[False]):
        assert a.extra["completion_ids"] == b.extra["completion_ids"] and a.extra["prompt_ids"] == b.extra["prompt_ids"]
        assert a.messages == b.messages and a.correct and b.correct
        assert a.tokens_in == b.tokens_in and a.tokens_out == b.tokens_out
        assert b.tokens_encoded == b.tokens_in + b.tokens_out - b.turns  # every turn re-encodes its whole prompt
        assert a.tokens_encoded < b.tokens_encoded / 2


@pytest.mark.parametrize("queries", [1, 3])
def test_the_cpu_attention_reads_a_growing_cache_whole_without_changing_the_result(queries):
    """A GrowingKVLayer's keys and values are views of longer buffers; the attention reads the whole zeroed buffer
    (no copy) with the spare positions masked out, and gets what sdpa gets on the plain tensors."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from rl_assets.training.attention import cpu_attention, growing_layer_class, whole_buffers

    torch.manual_seed(1)
    module = type("Attention", (), {"num_key_value_groups": 3, "is_causal": True})()
    layer = growing_layer_class()()
    for length in (30, 1, 9):  # grows in place, then past a first buffer's capacity is not needed here
        keys, values = layer.update(torch.randn(2, 2, length, 16), torch.randn(2, 2, length, 16))
    assert keys.shape[-2] == 40 and not keys.is_contiguous()
    whole_keys, whole_values = whole_buffers(keys, values)
    assert whole_keys.shape[-2] > 40 and whole_keys.is_contiguous() and whole_values.is_contiguous()
    assert torch.equal(whole_keys[:, :, :40], keys) and not whole_values[:, :, 40:].any()  # spare room is zeros
    query = torch.randn(2, 6, queries, 16)
    mask = torch.ones(2, 1, queries, 40, dtype=torch.bool)
    mask[0, :, :, :5] = False
    for q in range(queries):
        mask[:, :, q, 40 - queries + q + 1:] = False
    ours, _ = cpu_attention(module, query, keys, values, mask, scaling=0.25)
    reference, _ = sdpa_attention_forward(module, query, keys.contiguous(), values.contiguous(), mask, scaling=0.25)
    assert torch.allclose(ours, reference, atol=1e-5)
    if queries == 1:  # no mask: the spare positions are still left out
        ours, _ = cpu_attention(module, query, keys, values, None, scaling=0.25)
        reference, _ = sdpa_attention_forward(module, query, keys.contiguous(), values.contiguous(), None, scaling=0.25)
        assert torch.allclose(ours, reference, atol=1e-5)
    # a strided view of memory this module did not zero is used as it is
    foreign = torch.full((2, 2, 64, 16), float("nan"))[:, :, :40]
    assert whole_buffers(foreign, foreign)[0] is foreign


def test_prefill_groups_bound_the_padding_and_cover_every_row_once():
    from rl_assets.training.decoding import prefill_groups

    rng = random.Random(5)
    for _ in range(50):
        lengths = [rng.choice([rng.randrange(1, 60), rng.randrange(200, 1500)]) for _ in range(rng.randrange(1, 20))]
        groups = prefill_groups(lengths, slack=1.25)
        assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
        for g in groups:
            padded = len(g) * max(lengths[i] for i in g)
            assert len(g) == 1 or padded <= 1.25 * sum(lengths[i] for i in g) or max(lengths[i] for i in g) <= 64
    assert prefill_groups([1200, 30, 1180, 25, 40]) == [[0, 2], [4, 1, 3]]
    assert prefill_groups([1200, 300, 1180, 250, 400]) == [[0, 2], [4, 1], [3]]
    assert len(prefill_groups([7] * 16)) == 1


def test_grouped_prefill_gives_the_tokens_of_one_padded_batch(small_model, monkeypatch):
    """Rows whose new tokens differ a lot are encoded in groups and decoded in one batch assembled from them: the
    same greedy tokens as one left-padded prefill of every row, turn after turn with kept caches."""
    import rl_assets.training.decoding as decoding

    rng = random.Random(2)
    prompts = [[rng.randrange(10, 300) for _ in range(rng.choice([rng.randrange(3, 12), rng.randrange(150, 260)]))]
               for _ in range(7)]
    assert len(decoding.prefill_groups([len(p) for p in prompts])) > 1
    grouped, encoded_grouped = _play(small_model, prompts, 4, PrefixCache(), seed=4)
    monkeypatch.setattr(decoding, "PREFILL_SLACK", float("inf"))  # every row in one padded prefill
    assert len(decoding.prefill_groups([len(p) for p in prompts])) == 1
    single, encoded_single = _play(small_model, prompts, 4, PrefixCache(), seed=4)
    assert grouped == single and encoded_grouped == encoded_single
    assert sum(len(c) for turn in grouped for c in turn) > 30


def test_taking_rows_out_of_a_batch_cache_copies_each_row_and_releases_each_layer():
    from types import SimpleNamespace

    import torch

    from rl_assets.training.decoding import _row_layers, _take_rows

    torch.manual_seed(0)
    layers = [SimpleNamespace(keys=torch.randn(3, 2, 6, 4), values=torch.randn(3, 2, 6, 4)) for _ in range(4)]
    kv = SimpleNamespace(layers=list(layers))
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1], [0, 1, 0, 0, 1, 1]])  # padding, gaps, a full row
    expected = [_row_layers(kv, mask, b) for b in (0, 2)]
    taken = _take_rows(kv, mask, [0, 2])
    assert kv.layers == [None] * 4  # the batch cache is gone once its rows are out
    for row, want, b in zip(taken, expected, (0, 2)):
        assert [k.shape[1] for k, _ in row] == [int(mask[b].sum())] * 4
        for (k, v), (wk, wv) in zip(row, want):
            assert torch.equal(k, wk) and torch.equal(v, wv)
    assert torch.equal(taken[1][0][0], layers[0].keys[2][:, [1, 4, 5], :])  # the kept positions, in order
    for layer, (k, v) in zip(layers, taken[0]):  # each row owns its tensors: not views of the batch
        assert k.untyped_storage().data_ptr() != layer.keys.untyped_storage().data_ptr()
