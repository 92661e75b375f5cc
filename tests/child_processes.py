"""Processes the tests start, ended for sure: each in a process group of its own, ended whatever happened
(SIGTERM to the group, a bounded wait, SIGKILL, reaped — `rl_assets.serve.process.stop_process`), never
raising from a teardown because the child was slow; readiness read from the child's own output line or a
URL polled to a deadline, never a fixed sleep.

    with child_process([sys.executable, "server.py"]) as child:       # stdout is captured line by line
        port = int(child.wait_for_line("PORT ").split()[1])
    done = run_process([python, "script.py"], timeout_s=300, input=...)  # subprocess.run, but the group is
                                                                         # killed on timeout

`surviving_children()` lists what is still running among this process's descendants; the suite's autouse
fixture (tests/conftest.py) fails, after ending them, if any of the suite's children outlive it.
"""

from __future__ import annotations

import contextlib
import queue
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from typing import Iterator

import psutil

from rl_assets.serve.process import stop_process

GRACE_S = 10.0  # after SIGTERM, before SIGKILL
# long-lived helpers of libraries the tests use, ended by themselves when this process exits
LIBRARY_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


def default_signals() -> None:
    """In the child, before exec: no blocked signals and SIGTERM / SIGINT at their default actions. A blocked signal
    mask and ignored dispositions survive exec, and the test process may carry either (a library that blocks
    SIGTERM in a thread while it spawns a helper, a handler set to SIG_IGN): its children would then not end on
    SIGTERM, which is not what a child started from a shell or a service manager does."""
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, signal.SIG_DFL)


class Child:
    """A child process in its own process group; its stdout (if captured) is read line by line by a thread
    that keeps draining it, so the child never blocks on a full pipe."""

    def __init__(self, args: list[str], capture_stdout: bool = True, grace_s: float = GRACE_S, **popen):
        self.args, self.grace_s = args, grace_s
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.tail: deque[str] = deque(maxlen=200)
        if capture_stdout:
            popen.setdefault("stdout", subprocess.PIPE)
            popen.setdefault("text", True)
        popen.setdefault("preexec_fn", default_signals)
        self.process = subprocess.Popen(args, start_new_session=True, **popen)
        self._reader = None
        if capture_stdout and popen["stdout"] == subprocess.PIPE:
            self._reader = threading.Thread(target=self._read, name=f"child-{self.process.pid}-stdout", daemon=True)
            self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        try:
            for line in self.process.stdout:
                self.tail.append(line)
                self.lines.put(line)
        except (OSError, ValueError):  # closed under us at teardown
            pass
        finally:
            self.lines.put(None)  # end of output

    def wait_for_line(self, prefix: str, timeout_s: float = 60.0) -> str:
        """The first line of stdout starting with `prefix`; AssertionError naming what the child printed if it
        exits (or the deadline passes) first."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line starting with {prefix!r} from {self.args} within {timeout_s:g} s; "
                                     f"it printed:\n{''.join(self.tail)}") from None
            if line is None:
                try:
                    status = self.process.wait(self.grace_s)
                except subprocess.TimeoutExpired:
                    status = "still running, its output closed"
                raise AssertionError(f"{self.args} ended ({status}) before printing a line starting with "
                                     f"{prefix!r}; it printed:\n{''.join(self.tail)}")
            if line.startswith(prefix):
                return line.rstrip("\n")

    def wait_for_url(self, url: str, timeout_s: float = 60.0) -> None:
        """Poll `url` until it answers (any HTTP status below 500), failing early if the child exits."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.args} exited ({self.process.returncode}) before {url} answered")
            try:
                with urllib.request.urlopen(url, timeout=max(0.1, min(5.0, deadline - time.monotonic()))):
                    return
            except urllib.error.HTTPError as e:
                if e.code < 500:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} did not answer within {timeout_s:g} s")
            time.sleep(0.05)  # polling interval; the deadline bounds the wait

    def stop(self) -> int | None:
        """End the child and its group, reap it, close its pipes; the exit status. Never raises."""
        status = stop_process(self.process, grace_s=self.grace_s)
        if self._reader is not None:
            self._reader.join(timeout=self.grace_s)  # EOF once the group is gone
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                with contextlib.suppress(Exception):
                    stream.close()
        return status


@contextlib.contextmanager
def child_process(args: list[str], **options) -> Iterator[Child]:
    """A Child (see there) for the `with` block, ended when it is left, whatever happened inside."""
    child = Child(args, **options)
    try:
        yield child
    finally:
        child.stop()


def run_process(args: list[str], timeout_s: float, input: str | None = None, grace_s: float = GRACE_S,
                **popen) -> subprocess.CompletedProcess:
    """subprocess.run(args, capture_output=True, text=True, timeout=timeout_s) in a process group of its own:
    on timeout (or any error, KeyboardInterrupt included) the whole group is ended and the child reaped
    before subprocess.TimeoutExpired (or the error) propagates."""
    popen.setdefault("preexec_fn", default_signals)
    process = subprocess.Popen(args, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                               **popen)
    try:
        stdout, stderr = process.communicate(input, timeout=timeout_s)
    except BaseException:
        stop_process(process, grace_s=grace_s)
        with contextlib.suppress(Exception):
            process.communicate(timeout=grace_s)  # whatever the pipes still hold; closes them
        raise
    return subprocess.CompletedProcess(args, process.returncode, stdout, stderr)


def surviving_children(ignore: set[int] = frozenset()) -> list[psutil.Process]:
    """This process's descendants still running (not zombies), except `ignore` and LIBRARY_HELPERS."""
    alive = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.pid in ignore or child.status() == psutil.STATUS_ZOMBIE:
                continue
            if any(helper in " ".join(child.cmdline()) for helper in LIBRARY_HELPERS):
                continue
        except psutil.NoSuchProcess:
            continue
        alive.append(child)
    return alive


def describe(process: psutil.Process) -> str:
    try:
        return f"pid {process.pid}: {' '.join(process.cmdline())[:300]}"
    except psutil.Error:
        return f"pid {process.pid}"


def end_all(processes: list[psutil.Process], grace_s: float = GRACE_S) -> None:
    """SIGTERM, a bounded wait, SIGKILL for whatever is left (psutil also reaps those that are our children)."""
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    _, alive = psutil.wait_procs(processes, timeout=grace_s)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(alive, timeout=grace_s)
