"""OpenEnv's released clients, each in a virtualenv of its own, built once and reused between test runs.

`openenv` 0.10.0 cannot share an environment with this project's pins (its huggingface_hub needs
click>=8.4.2, skypilot 0.14.1 needs click<8.2), and `openenv` and `openenv-core` ship the same `openenv`
package, so each client gets its own virtualenv under the cache directory ($FINQA_RL_CACHE_DIR, default
~/.cache/finqa-rl). A test that needs one skips, naming the reason, only when the package index cannot be
reached; any other failure to build the virtualenv fails the test.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
import tempfile
from pathlib import Path

from child_processes import run_process

CLIENTS = {"openenv": "0.10.0", "openenv-core": "0.3.0"}  # package -> version
IMPORT_CHECK = "import openenv.core.mcp_client, openenv.core.env_server.mcp_types"


class IndexUnreachable(Exception):
    """The package index could not be reached: the reason to skip."""


def cache_root() -> Path:
    return Path(os.environ.get("FINQA_RL_CACHE_DIR", Path.home() / ".cache" / "finqa-rl"))


def client_python(package: str) -> Path:
    """The python of a virtualenv holding `package`==CLIENTS[package] (built on first use)."""
    version = CLIENTS[package]
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    venv = root / f"openenv-client-venv-{package}-{version}"
    python = venv / "bin" / "python"
    with open(root / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder at a time (parallel test runs)
        if (venv / "READY").exists() and python.exists():  # READY is written after the import check passed
            return python
        with tempfile.TemporaryDirectory() as download:
            probe = run_process([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", download,
                                 f"{package}=={version}"], timeout_s=600)
        if probe.returncode != 0:
            raise IndexUnreachable(f"cannot download {package}=={version} from the package index: "
                                   f"{(probe.stderr.strip().splitlines() or ['?'])[-1]}")
        partial = venv.with_name(venv.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(venv, ignore_errors=True)
        made = run_process([sys.executable, "-m", "venv", str(partial)], timeout_s=600)
        if made.returncode != 0:
            raise RuntimeError(f"python -m venv {partial} failed:\n{made.stderr[-3000:]}")
        install = run_process([str(partial / "bin" / "python"), "-m", "pip", "install", "-q",
                               f"{package}=={version}"], timeout_s=1800)
        if install.returncode != 0:
            raise RuntimeError(f"pip install {package}=={version} failed:\n{install.stdout[-3000:]}\n"
                               f"{install.stderr[-3000:]}")
        partial.rename(venv)
        if not _imports(python):
            raise RuntimeError(f"{venv}: {IMPORT_CHECK!r} fails after installing {package}=={version}")
        freeze = run_process([str(python), "-m", "pip", "freeze"], timeout_s=300).stdout
        (venv / "READY").write_text(freeze)
        return python


def _imports(python: Path) -> bool:
    return python.exists() and run_process([str(python), "-c", IMPORT_CHECK], timeout_s=300).returncode == 0
