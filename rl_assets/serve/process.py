"""The service as a child process on a free loopback port, ready when its /health answers.

    with start_server(snapshot, max_sessions=32) as server:
        env = RemoteFinQAEnv(server.url)

Used by the tests and the benchmark, and by anyone who wants a local server next to a trainer. The child
runs the real command line (`python -m rl_assets.cli serve ...`); its output goes to a log file whose tail
is in the error if it fails to start.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FLAGS = {  # start_server keyword -> `finqa-rl serve` flag
    "max_sessions": "--max-sessions", "session_timeout_s": "--session-timeout", "max_steps": "--max-steps",
    "splits": "--splits", "description_chars": "--description-chars", "tool_threads": "--tool-threads",
    "max_message_bytes": "--max-message-bytes", "max_argument_chars": "--max-argument-chars",
    "log_level": "--log-level",
}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def get_json(url: str, timeout_s: float = 5.0) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return json.loads(response.read())


@dataclass
class ServerProcess:
    url: str
    process: subprocess.Popen
    log_path: Path

    def health(self) -> dict[str, Any]:
        return get_json(f"{self.url}/health")

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout_s: float = 15.0) -> int:
        """SIGTERM (graceful shutdown), then SIGKILL if it does not exit in time; the exit status."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_server(snapshot: str | os.PathLike, host: str = "127.0.0.1", port: int | None = None,
                 startup_timeout_s: float = 120.0, log_path: str | os.PathLike | None = None,
                 **options: Any) -> ServerProcess:
    """Start `finqa-rl serve` for `snapshot` (options: ServerConfig names, e.g. max_sessions=8) and wait until
    its /health answers. With port=None a free port is picked (and another one if it was taken meanwhile)."""
    unknown = set(options) - set(FLAGS)
    if unknown:
        raise TypeError(f"unknown server option(s): {', '.join(sorted(unknown))}; known: {', '.join(FLAGS)}")
    flags: list[str] = []
    for name, value in options.items():
        if value is not None:
            flags += [FLAGS[name], ",".join(value) if isinstance(value, (list, tuple)) else str(value)]
    attempts = 1 if port is not None else 3
    for attempt in range(attempts):
        chosen = port if port is not None else free_port(host)
        command = [sys.executable, "-m", "rl_assets.cli", "serve", "--snapshot", str(snapshot),
                   "--host", host, "--port", str(chosen), *flags]
        try:
            return launch(command, f"http://{host}:{chosen}", startup_timeout_s, log_path)
        except ServerStartError as e:
            if not (e.port_taken and attempt + 1 < attempts):
                raise
    raise AssertionError("unreachable")


class ServerStartError(RuntimeError):
    def __init__(self, message: str, port_taken: bool):
        super().__init__(message)
        self.port_taken = port_taken


def launch(command: list[str], url: str, startup_timeout_s: float = 120.0,
           log_path: str | os.PathLike | None = None, env: dict[str, str] | None = None) -> ServerProcess:
    """Run `command` (any server answering GET {url}/health) and wait until it is healthy."""
    log = Path(log_path) if log_path else Path(tempfile.mkstemp(prefix="finqa-serve-", suffix=".log")[1])
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    server = ServerProcess(url, process, log)
    if _wait_healthy(server, startup_timeout_s):
        return server
    status = server.stop()
    raise ServerStartError(f"the server did not become healthy (exit status {status}): {' '.join(command)}\n"
                           f"--- {log} ---\n{server.log_tail()}",
                           port_taken="address already in use" in server.log_tail().lower())


def _wait_healthy(server: ServerProcess, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        try:
            if server.health().get("status") == "healthy":
                return True
        except (urllib.error.URLError, ConnectionError, OSError, ValueError):
            pass
        time.sleep(0.05)  # polling interval while the child loads the snapshot
    return False
