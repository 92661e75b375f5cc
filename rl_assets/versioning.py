"""Code versions derived from the code itself, for lineage.

`code_version(*modules)` hashes the source files of the given modules or packages (a package: every
`.py` file under it), so an asset's code version changes exactly when the code that computes it
changes. `git_commit()` names the checkout a run came from (None outside a git checkout).
"""

from __future__ import annotations

import hashlib
import importlib
import subprocess
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[1]


def _source_files(module: ModuleType | str) -> list[Path]:
    mod = importlib.import_module(module) if isinstance(module, str) else module
    path = Path(mod.__file__).resolve()
    if path.name == "__init__.py":
        return sorted(path.parent.rglob("*.py"))
    return [path]


def code_version(*modules: ModuleType | str, extra_files: tuple[str | Path, ...] = ()) -> str:
    """First 16 hex characters of the SHA-256 of the modules' source files (and any extra files)."""
    files = sorted({p for m in modules for p in _source_files(m)} | {Path(f).resolve() for f in extra_files})
    digest = hashlib.sha256()
    for path in files:
        try:
            rel = path.relative_to(REPO_ROOT).as_posix()
        except ValueError:
            rel = path.name
        digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def git_commit(cwd: str | Path = REPO_ROOT) -> str | None:
    """The checkout's HEAD commit, with '-dirty' when tracked files differ from it; None without git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True, timeout=10
        )
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None
