"""Processes the tests (and `start_server`) start always end: a child that ignores SIGTERM is killed and reaped,
so is what it started in its process group, whatever the `with` block did; readiness waits are bounded; and the
suite's own check (tests/conftest.py) sees a child left running. No snapshot needed: these run in seconds."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import psutil
import pytest

from rl_assets.serve.process import free_port, launch, stop_process

from child_processes import child_process, run_process, surviving_children

STUBBORN = """
import signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(600)
"""

# a child that starts a grandchild ignoring SIGTERM, prints both pids, and then exits on SIGTERM itself
PARENT_OF_STUBBORN = f"""
import subprocess, sys, time
grandchild = subprocess.Popen([sys.executable, "-c", {STUBBORN!r}], stdout=subprocess.PIPE, text=True)
grandchild.stdout.readline()
print("pids", grandchild.pid, flush=True)
time.sleep(600)
"""

# answers GET /health like the service, but ignores SIGTERM
STUBBORN_SERVER = """
import signal, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
signal.signal(signal.SIGTERM, signal.SIG_IGN)
class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'{"status": "healthy"}'
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args): pass
HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


def gone(pid: int) -> bool:
    """No such process, or only its exit status left for a reaper other than us (a reparented grandchild)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(pid: int, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_a_child_that_ignores_sigterm_is_killed_and_reaped_even_when_the_block_fails():
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="the test failed"):
        with child_process([sys.executable, "-c", STUBBORN], grace_s=0.5) as child:
            child.wait_for_line("ready", timeout_s=120)
            pid = child.pid
            raise RuntimeError("the test failed")
    assert child.process.returncode == -signal.SIGKILL  # SIGTERM was ignored: escalated, and reaped by us
    assert not psutil.pid_exists(pid)  # not even a zombie
    assert time.monotonic() - started < 120


def test_what_a_child_started_in_its_group_ends_with_it():
    # the parent exits on SIGTERM; the grace is long so that a loaded machine's scheduling delay is not mistaken
    # for a child that ignores SIGTERM (stop_process returns as soon as the parent has exited)
    with child_process([sys.executable, "-c", PARENT_OF_STUBBORN], grace_s=30) as child:
        grandchild = int(child.wait_for_line("pids ", timeout_s=120).split()[1])
        assert not gone(grandchild)
    assert child.process.returncode == -signal.SIGTERM and not psutil.pid_exists(child.pid)
    assert wait_gone(grandchild), f"grandchild {grandchild} still running"


def test_stop_process_never_raises_and_returns_the_status():
    done = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"], start_new_session=True)
    done.wait(60)
    assert stop_process(done) == 3  # already reaped: nothing to do
    graceful = subprocess.Popen([sys.executable, "-c", "import signal, sys, time; signal.signal(signal.SIGTERM, "
                                 "lambda *_: sys.exit(4)); print('ready', flush=True); time.sleep(600)"],
                                stdout=subprocess.PIPE, text=True, start_new_session=True)
    graceful.stdout.readline()
    assert stop_process(graceful, grace_s=60) == 4  # ended by SIGTERM in its own way, within the grace period
    graceful.stdout.close()
    plain = subprocess.Popen([sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE, text=True)  # no group
    plain.stdout.readline()
    assert stop_process(plain, grace_s=0.2) == -signal.SIGKILL and not psutil.pid_exists(plain.pid)
    plain.stdout.close()


def test_waiting_for_readiness_is_bounded_and_names_what_the_child_printed():
    with child_process([sys.executable, "-c", "print('starting', flush=True); import time; time.sleep(600)"],
                       grace_s=0.5) as child:
        child.wait_for_line("starting", timeout_s=120)
        started = time.monotonic()
        with pytest.raises(AssertionError, match=r"(?s)no line starting with 'PORT ' .* within 0.5 s.*starting"):
            child.wait_for_line("PORT ", timeout_s=0.5)
        assert time.monotonic() - started < 30
    with child_process([sys.executable, "-c", "print('oops', flush=True); raise SystemExit(2)"]) as child:
        with pytest.raises(AssertionError, match=r"(?s)ended \(2\) before printing.*oops"):
            child.wait_for_line("PORT ", timeout_s=120)


def test_run_process_ends_the_whole_group_on_timeout():
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired) as timed_out:
        run_process([sys.executable, "-c", PARENT_OF_STUBBORN], timeout_s=10, grace_s=0.5)
    assert time.monotonic() - started < 60
    grandchild = int(timed_out.value.stdout.split()[1])  # what it printed before the deadline: "pids <n>"
    assert wait_gone(grandchild), f"grandchild {grandchild} still running"
    done = run_process([sys.executable, "-c", "import sys; print(sys.stdin.read()[::-1])"], input="abc",
                       timeout_s=120)
    assert (done.returncode, done.stdout) == (0, "cba\n")


def test_a_server_that_ignores_sigterm_is_killed_by_server_process_stop():
    port = free_port()
    server = launch([sys.executable, "-c", STUBBORN_SERVER, str(port)], f"http://127.0.0.1:{port}",
                    startup_timeout_s=120)
    with server:
        assert server.health() == {"status": "healthy"}
        assert stop_process(server.process, grace_s=0.5) == -signal.SIGKILL
    assert not psutil.pid_exists(server.process.pid)
    with server:  # stopping again (the `with` exit) is harmless
        pass


def test_the_suite_check_sees_a_child_left_running():
    before = {p.pid for p in surviving_children()}
    leaked = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    try:
        assert leaked.pid in {p.pid for p in surviving_children(ignore=before)}
    finally:
        stop_process(leaked, grace_s=1)
    assert leaked.pid not in {p.pid for p in surviving_children()}


def test_a_child_ends_on_sigterm_even_when_the_test_process_blocks_it():
    """The test process may carry a blocked SIGTERM (a library that blocks it around spawning a helper): its children
    must still start with SIGTERM deliverable, or every group ending would need SIGKILL."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])
    try:
        with child_process([sys.executable, "-c", PARENT_OF_STUBBORN], grace_s=30) as child:
            grandchild = int(child.wait_for_line("pids ", timeout_s=120).split()[1])
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    assert child.process.returncode == -signal.SIGTERM
    assert wait_gone(grandchild), f"grandchild {grandchild} still running"
