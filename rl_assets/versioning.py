"""Code versions derived from the code itself, for lineage.

`code_version(*modules)` hashes the source files of the given modules or packages (a package: every
`.py` file under it), so an asset's code version changes exactly when the code that computes it
changes; `module_closure(*modules)` adds every project module they import. `git_commit()` names the
checkout a run came from (None outside a git checkout).
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import subprocess
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[1]


def _source_files(module: ModuleType | str) -> list[Path]:
    """The module's file, or every .py file of a package; found without importing it (hashing the code must not
    cost importing torch)."""
    if isinstance(module, str):
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            raise ModuleNotFoundError(f"no module {module!r}")
        path = Path(spec.origin).resolve()
    else:
        path = Path(module.__file__).resolve()
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


def module_closure(*modules: str, package: str = "rl_assets") -> list[str]:
    """The given modules and every module of `package` they import, directly or not, sorted.

    Read from the source (`ast`), without importing: `code_version(*module_closure("rl_assets.oracle"))`
    changes when the oracle or anything of the package it uses changes, and not otherwise. The root
    package itself is never in the list (its code version would be every file of it).
    """
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            continue
        seen.add(name)
        is_package = spec.submodule_search_locations is not None
        tree = ast.parse(Path(spec.origin).read_text(), filename=spec.origin)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                todo.extend(a.name for a in node.names if a.name.split(".")[0] == package)
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: from .x import y / from . import y
                    base = name if is_package else name.rsplit(".", 1)[0]
                    for _ in range(node.level - 1):
                        base = base.rsplit(".", 1)[0]
                    target = f"{base}.{node.module}" if node.module else base
                else:
                    target = node.module or ""
                if target.split(".")[0] != package:
                    continue
                if target != package:  # the root package: only the modules named (hashing it is everything)
                    todo.append(target)
                # 'from rl_assets import grading' names a module, but only a package has modules: probing
                # 'module.name' would import the module itself (and all it imports) just to find the spec
                target_spec = importlib.util.find_spec(target)
                if target_spec is not None and target_spec.submodule_search_locations is not None:
                    for alias in node.names:
                        if _is_module(f"{target}.{alias.name}"):
                            todo.append(f"{target}.{alias.name}")
    return sorted(seen)


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def sha256_file(path: str | Path) -> str:
    """The SHA-256 of a file's bytes (hex), read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def directory_hash(directory: str | Path, exclude: frozenset[str] = frozenset()) -> str:
    """First 16 hex digits of the SHA-256 over a directory's files (names and contents, not sub-directories),
    except the names in `exclude`: the version of a model directory (weights, config, tokenizer, templates)."""
    directory = Path(directory)
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.iterdir() if p.is_file() and p.name not in exclude):
        digest.update(f"{path.name}:{sha256_file(path)}\n".encode())
    return digest.hexdigest()[:16]
