"""Batched decoding with a KV cache, for many short turns of a small model — and KV caches kept across turns.

`transformers`' `generate()` spends most of a small model's decoding step outside the model (logits
processors, mask and cache bookkeeping): for the 2M-parameter tiny model, a batch of 32 at a 1,000-token
context took ~440 ms per step with `generate()` and ~160 ms with this loop on the same 2 cores. It does
only what rollouts need: left-padded prompts with correct positions, greedy or temperature sampling
(top-k/top-p off), stop at end-of-turn, and rows that finished leave the batch.

Multi-turn episodes call the model once per turn on the whole conversation so far. Without help, every turn
encodes every earlier token again: an episode costs turns x context. A `PrefixCache` keeps each sequence's
keys and values after its turn (the prompt and the tokens it generated); the next call whose prompt starts with
a kept sequence encodes only the tokens added since (the tool result and the next assistant header) on top of
the kept cache. Rows with different kept lengths share one batch: each row's cache is right-aligned in a
left-padded batch cache and its new tokens right-aligned after it; the attention mask hides the gaps and each
row's positions continue from its own length (keys are stored with their rotary positions applied, so moving a
row's cache in the batch changes nothing it attends to). Greedy outputs are the same as re-encoding everything
(tests/test_decoding.py compares them token for token); only the work differs.

Rows' new tokens differ a lot in a turn (a table listing of 1,200 tokens beside a query result of 30): one left-padded
prefill would encode every row at the longest row's width (measured in a held-out batch of 16: 17,700 positions
for 4,700 real tokens). So the prefill runs in groups of similar widths (`prefill_groups`: longest first, padding at
most `PREFILL_SLACK` x the group's real tokens), each row's keys and values are taken out of its group, and the
decoding batch is assembled from them, right-aligned, as from kept caches.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class _Kept:
    tokens: list[int]  # the token ids whose keys/values `layers` hold, in order
    layers: list[tuple]  # per layer: (keys, values), each [kv_heads, len(tokens), head_dim]


@dataclass
class PrefixCache:
    """Per-sequence KV caches kept between calls of `generate`: a sequence whose prompt continues a kept one
    reuses its cache. Each call keeps exactly the sequences it generated for (multi-turn callers pass every
    unfinished episode each turn; one that is not passed has ended), so memory stays bounded by one batch.
    Counts what it saved: `tokens_encoded` (fed to the model) and `tokens_reused` (read from a kept cache)."""

    kept: list[_Kept] = field(default_factory=list)
    tokens_encoded: int = 0
    tokens_reused: int = 0

    def clear(self) -> None:
        self.kept = []

    def match(self, prompt: list[int]) -> _Kept | None:
        """The longest kept sequence that is a prefix of `prompt` (leaving at least one token to encode)."""
        best = None
        for kept in self.kept:
            n = len(kept.tokens)
            if n <= len(prompt) and (best is None or n > len(best.tokens)) and prompt[:n] == kept.tokens:
                best = kept
        return best

    def __len__(self) -> int:
        return len(self.kept)


@dataclass
class Generated:
    completions: list[list[int]]  # per prompt: the generated ids (ending with end-of-turn unless cut)
    encoded: list[int]  # per prompt: tokens this call fed to the model (new prompt tokens + generated - 1)


def decode(model, prompts: list[list[int]], max_new_tokens: int, eos_token_id: int | list[int], pad_token_id: int,
           temperature: float | None = None, cache: PrefixCache | None = None) -> list[list[int]]:
    """Completion token ids for each prompt (see `generate`)."""
    return generate(model, prompts, max_new_tokens, eos_token_id, pad_token_id, temperature, cache).completions


def generate(model, prompts: list[list[int]], max_new_tokens: int, eos_token_id: int | list[int], pad_token_id: int,
             temperature: float | None = None, cache: PrefixCache | None = None) -> Generated:
    """Generate one turn for each prompt, ending with an end-of-turn id unless `max_new_tokens` ran out.

    `temperature=None` is greedy; otherwise tokens are sampled from softmax(logits / temperature) with
    torch's global generator (seed it for reproducibility). With a `cache`, a prompt that continues a kept
    sequence encodes only its new tokens, and every row's cache is kept for the next call."""
    import torch

    with torch.inference_mode():
        return _generate(model, prompts, max_new_tokens, eos_token_id, pad_token_id, temperature, cache)


def _generate(model, prompts, max_new_tokens, eos_token_id, pad_token_id, temperature, cache) -> Generated:
    import torch
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    from rl_assets.training.attention import growing_layer_class

    device = next(model.parameters()).device
    eos = torch.tensor([eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id), device=device)
    n = len(prompts)
    growing = None
    if all(type(layer) is DynamicLayer for layer in DynamicCache(config=model.config).layers):
        growing = growing_layer_class()  # write each new position in place instead of copying the cache
    elif cache is not None:
        cache = None  # sliding-window (or other) layers drop keys: a kept cache would not be the whole prefix
    matches = [cache.match(list(p)) if cache is not None else None for p in prompts]
    # tokens of each row read from a kept cache (at least one prompt token is always encoded: it gives the logits)
    reused = [min(len(m.tokens), len(p) - 1) if m is not None else 0 for m, p in zip(matches, prompts)]
    new = [list(p[r:]) for p, r in zip(prompts, reused)]
    if cache is not None:  # the kept caches move into this call's batch cache (memory: one copy, not two)
        cache.kept = []
    groups = prefill_groups([len(x) for x in new]) if growing is not None else [list(range(n))]
    if len(groups) == 1:
        kv, mask, logits = _prefill(model, matches, reused, new, pad_token_id, growing, release=True)
        next_positions = torch.tensor([[len(p)] for p in prompts], device=device)
    else:  # each group encodes its rows; the decoding batch is assembled from every row's whole sequence
        sequences: list[_Kept | None] = [None] * n
        row_logits: list = [None] * n
        for group in groups:
            kv, mask, logits = _prefill(model, [matches[i] for i in group], [reused[i] for i in group],
                                        [new[i] for i in group], pad_token_id, growing)
            for b, (i, layers) in enumerate(zip(group, _take_rows(kv, mask, range(len(group))))):
                sequences[i] = _Kept(list(prompts[i]), layers)
                row_logits[i] = logits[b]
                matches[i] = None  # its kept cache is now part of `sequences[i]`
            kv = None
        lengths = [len(p) for p in prompts]
        kv, mask = _batch_cache(model, sequences, lengths, max(lengths), growing, release=True)
        sequences = None
        logits = torch.stack(row_logits)
        next_positions = torch.tensor([[length] for length in lengths], device=device)
    matches = None
    completions: list[list[int]] = [[] for _ in prompts]
    encoded = [len(x) for x in new]
    kept: list[_Kept | None] = [None] * n
    active = torch.arange(n, device=device)  # original row of each batch row

    def keep(batch_rows: list[int], last: bool = False) -> None:
        """Keep these batch rows' caches; `last`: the batch is done, each of its layers is released once copied."""
        if cache is None:
            return
        taken = _take_rows(kv, mask, batch_rows) if last else [_row_layers(kv, mask, b) for b in batch_rows]
        for b, layers in zip(batch_rows, taken):
            row = int(active[b])
            kept[row] = _Kept(list(prompts[row]) + completions[row][:-1], layers)

    for _ in range(max_new_tokens):
        if temperature is None:
            tokens = logits.argmax(-1)
        else:
            probabilities = torch.softmax(logits.float() / temperature, dim=-1)
            tokens = torch.multinomial(probabilities, 1).squeeze(-1)
        finished = torch.isin(tokens, eos)
        for row, token in zip(active.tolist(), tokens.tolist()):
            completions[row].append(token)
        if finished.all() or len(completions[active[0].item()]) >= max_new_tokens:
            break
        if finished.any():
            keep(finished.nonzero().squeeze(-1).tolist())
            remaining = (~finished).nonzero().squeeze(-1)
            active, tokens, mask, next_positions = active[remaining], tokens[remaining], mask[remaining], next_positions[remaining]
            kv.batch_select_indices(remaining)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=-1)
        logits = model(input_ids=tokens[:, None], attention_mask=mask, position_ids=next_positions,
                       past_key_values=kv, use_cache=True, logits_to_keep=1).logits[:, -1, :]
        next_positions = next_positions + 1
        for row in active.tolist():
            encoded[row] += 1
    keep(list(range(len(active))), last=True)
    kv = None
    if cache is not None:  # a sequence absent from this call has ended (its episode is over): only these are kept
        cache.kept = [k for k in kept if k is not None]
        cache.tokens_encoded += sum(encoded)
        cache.tokens_reused += sum(reused)
    return Generated(completions, encoded)


PREFILL_SLACK = 1.25  # a prefill group's padded positions are at most this many times its real tokens...
PREFILL_NARROW = 64  # ...unless its longest row is this short (padding a few dozen positions costs less than a call)


def prefill_groups(lengths: list[int], slack: float | None = None) -> list[list[int]]:
    """Rows (indices into `lengths`, the tokens each encodes) grouped for the prefill: longest first, a row joins the
    current group while the group's padded size (rows x its longest row) stays within `slack` (default
    `PREFILL_SLACK`) x its real tokens, or its longest row has at most `PREFILL_NARROW` tokens."""
    slack = PREFILL_SLACK if slack is None else slack
    groups: list[list[int]] = []
    real = 0
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        longest = lengths[groups[-1][0]] if groups else 0
        if groups and ((len(groups[-1]) + 1) * longest <= slack * (real + lengths[i]) or longest <= PREFILL_NARROW):
            groups[-1].append(i)
            real += lengths[i]
        else:
            groups.append([i])
            real = lengths[i]
    return groups


def _prefill(model, matches: list[_Kept | None], reused: list[int], new: list[list[int]], pad_token_id: int, growing,
             release: bool = False):
    """Encode each row's `new` tokens after its kept cache (the first `reused` of its tokens), left-padded in one
    batch: (batch cache, attention mask [rows, positions], logits of each row's last token). `release`: the kept
    caches are used only here (see `_batch_cache`)."""
    import torch

    device = next(model.parameters()).device
    past, width = max(reused), max(len(x) for x in new)
    if past:
        kv, _ = _batch_cache(model, [m if r else None for m, r in zip(matches, reused)], reused, past, growing, release)
    else:
        kv = _empty_cache(model, growing)
    input_ids = torch.tensor([[pad_token_id] * (width - len(x)) + x for x in new], device=device)
    mask = torch.zeros((len(new), past + width), dtype=torch.long, device=device)
    positions = torch.zeros((len(new), width), dtype=torch.long, device=device)
    for row, (r, x) in enumerate(zip(reused, new)):
        mask[row, past - r:past] = 1
        mask[row, past + width - len(x):] = 1
        positions[row, width - len(x):] = torch.arange(r, r + len(x), device=device)
    # logits_to_keep=1: the LM head only for the last position (the prompt's others are never sampled from; all
    # positions would be rows x new tokens x vocabulary floats: gigabytes, and a third of the prefill's work)
    logits = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, past_key_values=kv,
                   use_cache=True, logits_to_keep=1).logits[:, -1, :]
    return kv, mask, logits


def _batch_cache(model, rows: list[_Kept | None], lengths: list[int], width: int, growing, release: bool = False):
    """A batch cache holding the first `lengths[i]` positions of each row's kept keys and values, right-aligned in
    `width` positions, and its attention mask. `release` drops each row's layer once copied (rows used only here)."""
    import torch

    device = next(model.parameters()).device
    kv = _empty_cache(model, growing)
    for layer in range(len(kv.layers)):
        keys, values = _batch_layer(rows, lengths, layer, width)
        kv.update(keys.to(device), values.to(device), layer)
        if release:
            for row in rows:
                if row is not None:
                    row.layers[layer] = None
    mask = torch.zeros((len(rows), width), dtype=torch.long, device=device)
    for row, length in enumerate(lengths):
        if length:
            mask[row, width - length:] = 1
    return kv, mask


def _empty_cache(model, growing):
    """A model's DynamicCache, its layers `growing` ones where given (see attention.growing_layer_class)."""
    from transformers import DynamicCache

    kv = DynamicCache(config=model.config)
    if growing is not None:
        kv.layers = [growing() for _ in kv.layers]
    return kv


def _row_layers(kv, mask, b: int) -> list[tuple]:
    """Batch row `b`'s keys and values, per layer, at the positions its mask keeps: [kv_heads, length, head_dim]
    (indexing by a tensor of positions copies: the row owns its tensors)."""
    columns = mask[b].nonzero().squeeze(-1)
    return [(layer.keys[b][:, columns, :], layer.values[b][:, columns, :]) for layer in kv.layers]


def _take_rows(kv, mask, batch_rows) -> list[list[tuple]]:
    """`_row_layers` of several batch rows, layer by layer, each layer of `kv` released once copied: the batch cache
    and its rows' copies are never both whole in memory (16 rows x 6,000 positions of SmolLM2-135M: 2.2 GB each).
    `kv` is unusable afterwards."""
    batch_rows = list(batch_rows)
    columns = [mask[b].nonzero().squeeze(-1) for b in batch_rows]
    rows: list[list[tuple]] = [[] for _ in batch_rows]
    for index, layer in enumerate(kv.layers):
        for layers, b, positions in zip(rows, batch_rows, columns):
            layers.append((layer.keys[b][:, positions, :], layer.values[b][:, positions, :]))
        kv.layers[index] = None
    return rows


def _batch_layer(matches: list[_Kept | None], reused: list[int], layer: int, past: int):
    """One layer's kept keys and values of every row, right-aligned in a [rows, kv_heads, past, head_dim] batch."""
    import torch

    template = next(m for m in matches if m is not None).layers[layer][0]
    heads, dim = template.shape[0], template.shape[-1]
    keys = torch.zeros((len(matches), heads, past, dim), dtype=template.dtype)
    values = torch.zeros_like(keys)
    for row, (m, r) in enumerate(zip(matches, reused)):
        if m is not None and r:
            k, v = m.layers[layer]
            keys[row, :, past - r:] = k[:, :r]
            values[row, :, past - r:] = v[:, :r]
    return keys, values
