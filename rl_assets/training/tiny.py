"""The tiny model the project builds itself where no weights can be downloaded: a byte-level BPE tokenizer
trained on the snapshot's own text, the compact Qwen3 chat template, and a small `Qwen3ForCausalLM`.

Tokenizer design (what a small model needs in order to *copy* identifiers rather than memorise them):
- pre-tokenisation isolates every whitespace run, punctuation character and digit, so merges happen only
  inside runs of letters: a name tokenises the same after `Company: ` as inside a JSON string `"..."`, and
  numbers are spelled digit by digit;
- the corpus is training-split text only, with the training companies' names removed, and tokens are at
  most `max_token_length` characters: company names (training, aliases, held-out) are spelled from
  pieces the model has trained on instead of one opaque token each.
Everything is deterministic given the corpus and the sizes.
"""

from __future__ import annotations

import re
from typing import Iterable

from rl_assets.training.chat_template import attach_compact_template

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>",
                  "<tool_response>", "</tool_response>", "<think>", "</think>"]
PRE_TOKEN_PATTERN = r"\s+|[^A-Za-z0-9\s]|[0-9]"


def train_tokenizer(texts: Iterable[str], vocab_size: int, max_token_length: int, forbidden_words: Iterable[str] = ()):
    """A `PreTrainedTokenizerFast` with the compact chat template and TRL's Qwen3 response parser.

    `forbidden_words` (e.g. the training companies' names) are removed from the corpus before training, so
    no merge is learnt from them."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    words = sorted({w.lower() for w in forbidden_words if w}, key=len, reverse=True)
    scrub = re.compile(r"(?i)(?<![A-Za-z])(" + "|".join(re.escape(w) for w in words) + r")(?![a-z])") if words else None

    def corpus():
        for text in texts:
            yield scrub.sub(" ", text) if scrub else text

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRE_TOKEN_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, max_token_length=max_token_length,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[3:],
    )
    tokenizer.model_max_length = 1 << 20
    return attach_compact_template(tokenizer)


def build_model(tokenizer, *, hidden_size: int, num_layers: int, num_heads: int, num_kv_heads: int,
                intermediate_size: int, max_position_embeddings: int, seed: int):
    """A randomly initialised `Qwen3ForCausalLM` (tied embeddings) sized for `tokenizer`; deterministic in `seed`."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=intermediate_size,
        num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_kv_heads,
        head_dim=hidden_size // num_heads, max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True, bos_token_id=None, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, use_cache=True,
    )
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model
