"""Attention and KV cache for decoding on a CPU: what makes a generated token cost what its matrix products cost.

Measured on 2 cores, SmolLM2-135M in bfloat16, 14 rows decoding at a 2,000-token context: 424 ms per token, of which
~12 ms per layer went to `scaled_dot_product_attention` with one query token (its CPU kernel is built for long
queries) and most of the rest to `torch.cat` growing the KV cache by one position per layer per token. Two fixes:

- `cpu_attention` (registered as the attention implementation `"finqa_cpu"`): for a handful of query tokens
  (decoding) on a CPU it computes grouped-query attention with two matrix products and a float32 softmax, without
  repeating the keys and values per head (1.6 ms instead of 12 ms for the shape above); for anything else (prefill,
  training) it is transformers' `sdpa` unchanged, mask and all.
- `GrowingKVLayer`: a cache layer whose keys and values live in buffers that grow by a quarter (at least 256
  positions) when full; a new position is written in place and the layer returns views, instead of copying the
  whole cache every token. (Doubling would hold twice the prompt's cache for a turn of a few hundred tokens.)

A matrix product over such a view copies it first (its batch and head dimensions cannot be folded into one), which
at 12 rows x 3,000 positions was 8 of a layer's 12 ms per token — most of a decoding step. So the buffers are
zeroed when allocated and `cpu_attention` reads the whole buffer of a `GrowingKVLayer` (a contiguous tensor, no
copy), with the spare positions masked out: their probabilities are exactly 0 and their values 0.
"""

from __future__ import annotations

ATTENTION = "finqa_cpu"
SHORT_QUERY = 8  # query tokens up to which the grouped matrix-product path is used (decoding)


def cpu_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling: float | None = None,
                  is_causal: bool | None = None, **kwargs):
    """`sdpa` attention, except for a few query tokens on a CPU (see the module docstring)."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    batch, heads, q_len, dim = query.shape
    if (q_len > SHORT_QUERY or query.device.type != "cpu" or dropout or kwargs.get("position_bias") is not None
            or kwargs.get("output_attentions")):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    kv_heads, keys = key.shape[1], key.shape[-2]
    group = heads // kv_heads  # query head i reads key/value head i // group
    scale = scaling if scaling is not None else dim ** -0.5
    key, value = whole_buffers(key, value)  # [batch, kv heads, capacity >= keys, dim]; positions >= keys are spare
    grouped = query.reshape(batch, kv_heads, group * q_len, dim)
    scores = torch.matmul(grouped, key.transpose(-1, -2)).float() * scale  # [batch, kv heads, group x q, capacity]
    if attention_mask is not None:
        mask = attention_mask[..., -keys:]  # [batch, 1, q, keys]
        if q_len > 1:
            mask = mask.unsqueeze(2).expand(batch, mask.shape[1], group, q_len, mask.shape[-1]).reshape(
                batch, mask.shape[1], group * q_len, mask.shape[-1])
        if mask.dtype != torch.bool:
            mask = mask.float()
        if key.shape[-2] > keys:  # the spare positions of a whole buffer: masked out
            spare = key.shape[-2] - keys
            fill = False if mask.dtype == torch.bool else float("-inf")
            mask = torch.nn.functional.pad(mask, (0, spare), value=fill)
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    else:
        allowed = torch.ones(q_len, key.shape[-2], dtype=torch.bool, device=query.device)
        allowed[:, keys:] = False
        if q_len > 1:  # causal among the query tokens themselves
            allowed[:, :keys] = allowed[:, :keys].tril(keys - q_len)
        if not allowed.all():
            scores = scores.masked_fill(~allowed.repeat(group, 1), float("-inf"))
    probabilities = torch.softmax(scores, dim=-1)
    if q_len > 1:  # a left-padded query position with nothing before it sees no key: its output is 0, not NaN (a NaN
        probabilities = torch.nan_to_num(probabilities, nan=0.0)  # would reach the cache, and 0 x NaN is NaN)
    probabilities = probabilities.to(value.dtype)
    out = torch.matmul(probabilities, value)  # [batch, kv heads, group x q, dim]
    out = out.reshape(batch, heads, q_len, dim).transpose(1, 2).contiguous()
    return out, None


def whole_buffers(key, value):
    """The whole buffers behind a `GrowingKVLayer`'s key and value views (same strides, contiguous, zeroed spare
    room) — or `key`, `value` unchanged when they are not such views. See the module docstring."""
    if key.is_contiguous():
        return key, value
    batch, heads, _, dim = key.shape
    stride = key.stride()
    capacity = stride[1] // dim if dim and stride[1] % dim == 0 else 0
    whole = (batch, heads, capacity, dim)
    for tensor in (key, value):
        if (tensor.stride() != stride or stride != (heads * capacity * dim, capacity * dim, dim, 1)
                or tensor.storage_offset() != 0 or tensor.untyped_storage().data_ptr() not in _ZEROED_BUFFERS
                or tensor.untyped_storage().nbytes() < batch * heads * capacity * dim * tensor.element_size()):
            return key, value
    return key.as_strided(whole, stride), value.as_strided(whole, stride)


# data pointers of the buffers GrowingKVLayer allocated (zeroed), so `whole_buffers` never reads memory it did not
# zero; an entry leaves when its layer replaces the buffer
_ZEROED_BUFFERS: set[int] = set()


def register() -> str:
    """Register `"finqa_cpu"` with transformers (attention and its mask, which is sdpa's); returns the name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    if ATTENTION not in AttentionInterface._global_mapping:
        AttentionInterface.register(ATTENTION, cpu_attention)
        ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION, sdpa_mask)
    return ATTENTION


def use_cpu_attention(model):
    """Switch a loaded model to `"finqa_cpu"` attention when it runs on a CPU (returns the model)."""
    if next(model.parameters()).device.type == "cpu":
        register()
        model.set_attn_implementation(ATTENTION)
    return model


def growing_layer_class():
    """The KV cache layer class (defined on first use, so importing this module does not import transformers)."""
    global _GrowingKVLayer
    if _GrowingKVLayer is not None:
        return _GrowingKVLayer
    import torch
    from transformers.cache_utils import DynamicLayer

    class GrowingKVLayer(DynamicLayer):
        """A DynamicLayer whose keys and values are views of buffers that grow geometrically when full."""

        def lazy_initialization(self, key_states, value_states) -> None:
            self.dtype, self.device = key_states.dtype, key_states.device
            shape = key_states.shape[:2] + (_capacity(key_states.shape[-2]),) + key_states.shape[3:]
            self._set_buffers(torch.zeros(shape, dtype=key_states.dtype, device=key_states.device),
                              torch.zeros(shape, dtype=value_states.dtype, device=value_states.device))
            self._length = 0
            self.keys, self.values = self._keys[:, :, :0], self._values[:, :, :0]
            self.is_initialized = True

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            new = key_states.shape[-2]
            if self._length + new > self._keys.shape[-2]:
                capacity = _capacity(self._length + new)
                grown = []
                for old in (self._keys, self._values):
                    buffer = torch.zeros(old.shape[:2] + (capacity,) + old.shape[3:], dtype=old.dtype, device=old.device)
                    buffer[:, :, :self._length] = old[:, :, :self._length]
                    grown.append(buffer)
                self._set_buffers(*grown)
            self._keys[:, :, self._length:self._length + new] = key_states
            self._values[:, :, self._length:self._length + new] = value_states
            self._length += new
            self.keys, self.values = self._keys[:, :, :self._length], self._values[:, :, :self._length]
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self._length if self.is_initialized else 0

        def batch_select_indices(self, indices) -> None:
            if self.is_initialized:
                self._set_buffers(self._keys[indices, ...], self._values[indices, ...])
                self.keys, self.values = self._keys[:, :, :self._length], self._values[:, :, :self._length]

        def _set_buffers(self, keys, values) -> None:
            for old in (getattr(self, "_keys", None), getattr(self, "_values", None)):
                if old is not None:
                    _ZEROED_BUFFERS.discard(old.untyped_storage().data_ptr())
            self._keys, self._values = keys, values  # zeroed beyond what was written (indexing copies spare zeros)
            _ZEROED_BUFFERS.update((keys.untyped_storage().data_ptr(), values.untyped_storage().data_ptr()))

        def __del__(self) -> None:
            for old in (getattr(self, "_keys", None), getattr(self, "_values", None)):
                if old is not None:
                    _ZEROED_BUFFERS.discard(old.untyped_storage().data_ptr())

    _GrowingKVLayer = GrowingKVLayer
    return GrowingKVLayer


_GrowingKVLayer = None
GROWTH_MIN = 256  # positions a full buffer grows by at least (a turn's generation fits in one growth)


def _capacity(needed: int) -> int:
    """Buffer positions for `needed`: a quarter more (at least GROWTH_MIN), so growth stays amortised O(1) per
    position while the spare room stays small next to the cache."""
    return needed + max(GROWTH_MIN, needed // 4)
