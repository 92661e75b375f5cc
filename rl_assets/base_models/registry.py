"""The registry of base models (`registry.yaml` beside this file): what each entry is and how it is checked.

    entry = registry_entry("smollm2-135m")
    entry.kind            # "package" | "gguf" | "hf_dir"
    entry.recipe_hash     # changes when anything that decides the built directory changes

Entries are data; `rl_assets.base_models.store` builds and checks the model directory an entry describes.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rl_assets.versioning import REPO_ROOT

REGISTRY_FILE = Path(__file__).with_name("registry.yaml")
KINDS = ("package", "gguf", "hf_dir")
CHAT_TEMPLATES = ("compact", "model")
# Version of the conversion itself (rl_assets.base_models.convert): part of every recipe, so a change to how
# a directory is built rebuilds it.
CONVERSION_VERSION = 1


class BaseModelError(RuntimeError):
    """A base model cannot be had or is not what its registry entry says (message says why and what to do)."""


class UnknownBaseModel(BaseModelError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0] if self.args else ""


@dataclass(frozen=True)
class PackageSource:
    name: str  # distribution name on the package index
    version: str
    wheel: str  # the wheel's file name
    sha256: str  # of the wheel
    gguf: str  # path of the GGUF file inside the wheel


@dataclass(frozen=True)
class BaseModelEntry:
    name: str
    kind: str
    description: str
    licence: str
    source: str
    tokens: dict[str, str] = field(default_factory=dict)  # eos (end of turn), pad
    chat_template: str = "compact"
    dtype: str = "float32"  # the dtype it is played in untrained (as the configs that train it on a CPU use)
    package: PackageSource | None = None
    path: str | None = None  # gguf / hf_dir: the file or directory on this machine
    sha256: str | None = None  # gguf: of the file

    @property
    def local_path(self) -> Path | None:
        if self.path is None:
            return None
        p = Path(os.path.expandvars(self.path)).expanduser()
        return p if p.is_absolute() else REPO_ROOT / p

    def recipe(self) -> dict[str, Any]:
        """Everything that decides the built directory (not the description or licence text)."""
        data = asdict(self)
        for key in ("description", "licence", "source", "dtype"):  # dtype: how it is played, not what is built
            data.pop(key)
        return {**data, "conversion_version": CONVERSION_VERSION}

    @property
    def recipe_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.recipe(), sort_keys=True).encode()).hexdigest()[:16]


def _entry(name: str, raw: Any, path: Path) -> BaseModelEntry:
    def fail(reason: str) -> BaseModelError:
        return BaseModelError(f"{path}: base model {name!r}: {reason}")

    if not isinstance(raw, dict):
        raise fail("an entry is a mapping")
    known = {"description", "licence", "source", "tokens", "chat_template", "dtype", "package", "gguf", "hf_dir"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise fail(f"unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    kinds = [k for k in KINDS if k in raw]
    if len(kinds) != 1:
        raise fail(f"exactly one of {', '.join(KINDS)} says where the model comes from (got {kinds or 'none'})")
    kind = kinds[0]
    for key in ("licence", "source"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise fail(f"{key} is required (every base model's licence and origin go into lineage and NOTICE)")
    template = raw.get("chat_template", "compact")
    if template not in CHAT_TEMPLATES:
        raise fail(f"chat_template must be one of {', '.join(CHAT_TEMPLATES)}, got {template!r}")
    tokens = raw.get("tokens") or {}
    if not isinstance(tokens, dict) or set(tokens) - {"eos", "pad"}:
        raise fail("tokens is a mapping with keys eos and/or pad")
    dtype = raw.get("dtype", "float32")
    if dtype not in ("float32", "bfloat16"):
        raise fail(f"dtype must be float32 or bfloat16, got {dtype!r}")
    common = dict(name=name, kind=kind, description=str(raw.get("description", "")), licence=raw["licence"],
                  source=raw["source"], tokens={k: str(v) for k, v in tokens.items()}, chat_template=template,
                  dtype=dtype)
    spec = raw[kind]
    if kind == "package":
        fields_ = ("name", "version", "wheel", "sha256", "gguf")
        if not isinstance(spec, dict) or any(not isinstance(spec.get(f), (str, int, float)) for f in fields_):
            raise fail(f"package needs {', '.join(fields_)}")
        package = PackageSource(**{f: str(spec[f]) for f in fields_})
        if len(package.sha256) != 64:
            raise fail("package.sha256 must be the wheel's 64-hex-digit SHA-256")
        return BaseModelEntry(**common, package=package)
    if kind == "gguf":
        if not isinstance(spec, dict) or not spec.get("path") or len(str(spec.get("sha256", ""))) != 64:
            raise fail("gguf needs path and sha256 (the file's 64-hex-digit SHA-256)")
        return BaseModelEntry(**common, path=str(spec["path"]), sha256=str(spec["sha256"]))
    if not isinstance(spec, (str, dict)) or (isinstance(spec, dict) and not spec.get("path")):
        raise fail("hf_dir is a path, or a mapping with path")
    return BaseModelEntry(**common, path=str(spec if isinstance(spec, str) else spec["path"]))


def load_registry(path: str | os.PathLike | None = None) -> dict[str, BaseModelEntry]:
    """Every entry of the registry file (default: registry.yaml beside this module)."""
    path = Path(path) if path is not None else REGISTRY_FILE
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise BaseModelError(f"cannot read the base-model registry {path}: {e}") from None
    if not isinstance(raw, dict):
        raise BaseModelError(f"{path}: the registry is a mapping of name -> entry")
    return {str(name): _entry(str(name), value, path) for name, value in raw.items()}


def registry_entry(name: str, path: str | os.PathLike | None = None) -> BaseModelEntry:
    entries = load_registry(path)
    if name not in entries:
        raise UnknownBaseModel(
            f"unknown base model {name!r}: the registry ({path or REGISTRY_FILE}) has {', '.join(sorted(entries))}. "
            "Add an entry there (docs/training.md, 'Adding a base model'), or give a Hugging Face model directory path."
        )
    return entries[name]


def is_registered(name: str) -> bool:
    return name in load_registry()
