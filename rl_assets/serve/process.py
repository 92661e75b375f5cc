"""The service as a child process on a free loopback port, ready when its /health answers; and how to end a
child process whatever state it is in.

    with start_server(snapshot, max_sessions=32) as server:
        env = RemoteFinQAEnv(server.url)

Used by the tests and the benchmark, and by anyone who wants a local server next to a trainer. The child
runs the real command line (`python -m rl_assets.cli serve ...`) in a process group of its own; its output
goes to a log file whose tail is in the error if it fails to start. `stop_process` ends it (and anything it
started in its group) for sure: SIGTERM, a bounded wait, SIGKILL, reaped — it never raises because the
child was slow.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rl_assets.serve.config import TOKEN_ENV

log = logging.getLogger("rl_assets.serve.process")

FLAGS = {  # start_server keyword -> `finqa-rl serve` flag
    "max_sessions": "--max-sessions", "session_timeout_s": "--session-timeout", "max_steps": "--max-steps",
    "splits": "--splits", "description_chars": "--description-chars", "tool_threads": "--tool-threads",
    "max_message_bytes": "--max-message-bytes", "max_argument_chars": "--max-argument-chars",
    "log_level": "--log-level", "token_file": "--token-file",
}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def get_json(url: str, timeout_s: float = 5.0, token: str | None = None) -> dict[str, Any]:
    request = urllib.request.Request(url, headers=auth_headers(token))
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return json.loads(response.read())


# ---------------------------------------------------------------------------------------------- ending a child
def _exited(process: subprocess.Popen, timeout_s: float) -> bool:
    """Wait up to timeout_s for `process` to exit, WITHOUT reaping it: until it is reaped its pid (and so its
    process group id) cannot be reused, so signalling the group afterwards cannot hit a stranger."""
    try:
        fd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):  # no pidfd (old kernel, not Linux): poll waitid(WNOWAIT) to the deadline
        fd = None
    if fd is not None:
        try:
            return bool(select.select([fd], [], [], max(0.0, timeout_s))[0])  # readable once it has exited
        finally:
            os.close(fd)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
        except ChildProcessError:  # reaped by someone else
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


def _signal(pid: int, group: bool, sig: int) -> None:
    try:
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_process(process: subprocess.Popen, grace_s: float = 15.0, kill_wait_s: float = 30.0) -> int | None:
    """End `process` and reap it, whatever state it is in; returns its exit status.

    SIGTERM (to its whole process group when it leads one, e.g. started with `start_new_session=True`), up
    to `grace_s` for it to exit, then SIGKILL; once the leader has exited, SIGKILL to whatever is left of its
    group; then the leader is reaped. Never raises because the child was slow: if even SIGKILL does not end
    it within `kill_wait_s` (a process stuck in the kernel), it logs that and returns None."""
    if process.returncode is not None:
        return process.returncode
    try:
        group = os.getpgid(process.pid) == process.pid  # unreaped, so the pid is still this child's
    except ProcessLookupError:
        group = False
    if not _exited(process, 0):
        _signal(process.pid, group, signal.SIGTERM)
        _signal(process.pid, group, signal.SIGCONT)  # a stopped child acts on SIGTERM only once continued
        if not _exited(process, grace_s):
            _signal(process.pid, group, signal.SIGKILL)
            if not _exited(process, kill_wait_s):
                log.error("process %d did not end within %g s of SIGKILL; left unreaped", process.pid, kill_wait_s)
                return None
    if group:
        _signal(process.pid, True, signal.SIGKILL)  # children it left behind in its group
    try:
        return process.wait(kill_wait_s)
    except subprocess.TimeoutExpired:  # cannot happen for an exited child; never raise from a teardown anyway
        return None


# ---------------------------------------------------------------------------------------------- the server
@dataclass
class ServerProcess:
    url: str
    process: subprocess.Popen
    log_path: Path
    token: str | None = field(default=None, repr=False)  # sent by health(); never printed

    def health(self) -> dict[str, Any]:
        return get_json(f"{self.url}/health", token=self.token)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout_s: float = 15.0) -> int | None:
        """SIGTERM (graceful shutdown), SIGKILL if it does not exit within timeout_s, reaped: the exit status
        (see stop_process). Never raises."""
        return stop_process(self.process, grace_s=timeout_s)

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_server(snapshot: str | os.PathLike, host: str = "127.0.0.1", port: int | None = None,
                 startup_timeout_s: float = 120.0, log_path: str | os.PathLike | None = None,
                 token: str | None = None, **options: Any) -> ServerProcess:
    """Start `finqa-rl serve` for `snapshot` (options: ServerConfig names, e.g. max_sessions=8, or token_file)
    and wait until its /health answers. With port=None a free port is picked (and another one if it was taken
    meanwhile). `token` reaches the child in its environment ($FINQA_RL_SERVE_TOKEN), never on its command
    line; without one the child gets no token from this process's environment either."""
    unknown = set(options) - set(FLAGS)
    if unknown:
        raise TypeError(f"unknown server option(s): {', '.join(sorted(unknown))}; known: {', '.join(FLAGS)}")
    flags: list[str] = []
    for name, value in options.items():
        if value is not None:
            flags += [FLAGS[name], ",".join(value) if isinstance(value, (list, tuple)) else str(value)]
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    if token is not None:
        env[TOKEN_ENV] = token
    attempts = 1 if port is not None else 3
    for attempt in range(attempts):
        chosen = port if port is not None else free_port(host)
        command = [sys.executable, "-m", "rl_assets.cli", "serve", "--snapshot", str(snapshot),
                   "--host", host, "--port", str(chosen), *flags]
        try:
            server = launch(command, f"http://{host}:{chosen}", startup_timeout_s, log_path, env=env)
        except ServerStartError as e:
            if not (e.port_taken and attempt + 1 < attempts):
                raise
        else:
            server.token = token
            return server
    raise AssertionError("unreachable")


class ServerStartError(RuntimeError):
    def __init__(self, message: str, port_taken: bool):
        super().__init__(message)
        self.port_taken = port_taken


def launch(command: list[str], url: str, startup_timeout_s: float = 120.0,
           log_path: str | os.PathLike | None = None, env: dict[str, str] | None = None) -> ServerProcess:
    """Run `command` (any server answering GET {url}/health) in a process group of its own and wait until it
    is healthy; if it is not by the deadline, or anything goes wrong meanwhile, it is ended before raising."""
    log_file = Path(log_path) if log_path else Path(tempfile.mkstemp(prefix="finqa-serve-", suffix=".log")[1])
    with open(log_file, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=env, start_new_session=True)
    server = ServerProcess(url, process, log_file)
    try:
        healthy = _wait_healthy(server, startup_timeout_s)
    except BaseException:  # e.g. KeyboardInterrupt while waiting: the child must not outlive the caller's error
        server.stop()
        raise
    if healthy:
        return server
    status = server.stop()
    raise ServerStartError(f"the server did not become healthy within {startup_timeout_s:g} s (exit status "
                           f"{status}): {' '.join(command)}\n--- {log_file} ---\n{server.log_tail()}",
                           port_taken="address already in use" in server.log_tail().lower())


def _wait_healthy(server: ServerProcess, timeout_s: float) -> bool:
    """Poll GET /health (unauthenticated: the bare liveness answer) until it says healthy, the child exits,
    or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        try:
            if get_json(f"{server.url}/health", timeout_s=max(0.1, min(5.0, deadline - time.monotonic()))
                        ).get("status") == "healthy":
                return True
        except (urllib.error.URLError, ConnectionError, OSError, ValueError):
            pass
        time.sleep(0.05)  # polling interval while the child loads the snapshot (the deadline bounds the wait)
    return False
