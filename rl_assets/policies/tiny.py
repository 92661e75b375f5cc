"""The untrained tiny model: the evaluation's floor.

Where a training run exists, the untrained model is that run's own starting point: its
`checkpoints/base/` (the randomly initialised model and the tokenizer it was trained from) with its
`model/prompt.json`, so trained and untrained differ only by training (`untrained_from_run`). Without a
run, one is built here without downloads (`build_untrained_tiny_model`): a byte-level BPE tokenizer trained with `tokenizers` on the snapshot's training questions and table names,
TRL's Qwen3 chat template (tool calls), and a small randomly initialised `Qwen3ForCausalLM` (seeded), saved
in Hugging Face format with `prompt.json` like a training artifact's `model/`. The directory is named by a
hash of everything that goes into it (architecture, vocabulary size, seed, corpus), so it is built once per
corpus and reused; `rl_assets.policies.hf.model_version` hashes its files for lineage.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

from rl_assets.policies.prompting import SYSTEM_PROMPT
from rl_assets.snapshot import read_tasks

FORMAT_VERSION = 1
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>",
                  "<tool_response>", "</tool_response>", "<think>", "</think>"]
VOCAB_SIZE = 4096
ARCHITECTURE = dict(hidden_size=128, intermediate_size=384, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, head_dim=32, max_position_embeddings=16384, tie_word_embeddings=True)
# environment options the model is played with (prompt.json), as a training artifact records them
ENV_OPTIONS = {"description_chars": 0}


def _corpus(snapshot: Path) -> list[str]:
    import duckdb

    texts = sorted(t["question"] for t in read_tasks(snapshot, splits=["train"]))
    with duckdb.connect() as con:
        texts += [r[0] for r in con.execute(
            f"SELECT DISTINCT table_name FROM read_parquet('{snapshot / 'world_tables.parquet'}') ORDER BY 1").fetchall()]
    return texts


def build_untrained_tiny_model(snapshot: str | os.PathLike, models_root: str | os.PathLike, seed: int = 0) -> Path:
    """The untrained tiny model's directory under `models_root` (built if missing)."""
    snapshot = Path(snapshot)
    corpus = _corpus(snapshot)
    recipe = {"format": FORMAT_VERSION, "architecture": ARCHITECTURE, "vocab_size": VOCAB_SIZE, "seed": seed,
              "env": ENV_OPTIONS, "system_prompt": SYSTEM_PROMPT,
              "corpus": hashlib.sha256("\n".join(corpus).encode()).hexdigest()}
    build_hash = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    out = Path(models_root) / f"tiny-untrained-{build_hash}"
    if (out / "config.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".tmp-{uuid.uuid4().hex}"
    try:
        _build(tmp, corpus, seed)
        (tmp / "recipe.json").write_text(json.dumps(recipe, indent=2, sort_keys=True) + "\n")
        try:
            tmp.rename(out)
        except OSError:  # built concurrently by another process
            if not (out / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def untrained_from_run(run_dir: str | os.PathLike, models_root: str | os.PathLike) -> Path | None:
    """The starting point of a training run as a model directory (`checkpoints/base/` + the run's
    `model/prompt.json`), copied under `models_root` once; None when the run does not keep its base."""
    run_dir = Path(run_dir)
    base, prompt = run_dir / "checkpoints" / "base", run_dir / "model" / "prompt.json"
    if not (base / "config.json").is_file() or not prompt.is_file():
        return None
    files = sorted(p for p in base.iterdir() if p.is_file())
    digest = hashlib.sha256()
    for path in [*files, prompt]:
        digest.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    out = Path(models_root) / f"tiny-untrained-run-{digest.hexdigest()[:16]}"
    if (out / "config.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".tmp-{uuid.uuid4().hex}"
    try:
        tmp.mkdir()
        for path in files:
            shutil.copy2(path, tmp / path.name)
        shutil.copy2(prompt, tmp / "prompt.json")
        (tmp / "source.json").write_text(json.dumps({"run": str(run_dir), "base": str(base)}, indent=2) + "\n")
        try:
            tmp.rename(out)
        except OSError:
            if not (out / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def untrained_tiny_model(snapshot: str | os.PathLike, models_root: str | os.PathLike,
                         run_dir: str | os.PathLike | None = None) -> Path:
    """The untrained counterpart of `run_dir` when it keeps its base, else the one built for the snapshot."""
    from_run = untrained_from_run(run_dir, models_root) if run_dir is not None else None
    return from_run or build_untrained_tiny_model(snapshot, models_root)


def _build(out: Path, corpus: list[str], seed: int) -> None:
    import torch
    import trl
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        additional_special_tokens=SPECIAL_TOKENS[3:])
    tokenizer.chat_template = (Path(trl.__file__).parent / "chat_templates" / "qwen3_instruct_2507.jinja").read_text()
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(Qwen3Config(
        vocab_size=len(tokenizer), eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        **ARCHITECTURE))
    out.mkdir(parents=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "prompt.json").write_text(json.dumps({"system_prompt": SYSTEM_PROMPT, "env": ENV_OPTIONS}, indent=2) + "\n")
