"""The shared secret, against a real server process on loopback that needs one (`guarded_server`): without the
token or with a wrong one, every HTTP route but /health is 401 and every WebSocket is closed with 1008 (policy
violation), holding no session slot; with it, episodes, RemoteFinQAEnv (TRL's environment) and fetch_tasks
work. A network address without a token, or a token on the command line, is refused at start."""

from __future__ import annotations

import base64
import json
import os
import socket
import sys

import pytest
from websockets.exceptions import ConnectionClosed

from rl_assets import oracle
from rl_assets.serve.auth import presented_secret
from rl_assets.serve.config import TOKEN_ENV, ServerConfig, is_loopback
from rl_assets.serve.process import free_port
from rl_assets.serve.remote import RemoteFinQAEnv, close, fetch_tasks

from child_processes import run_process
from serve_helpers import TOKEN, WsClient, active_sessions, get, post, wait_until


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


ACCEPTED = {
    "bearer": bearer(TOKEN),
    "bearer, scheme in lower case": {"Authorization": f"bearer {TOKEN}"},
    "basic, any user": basic("trainer", TOKEN),
    "basic, no user": basic("", TOKEN),
}
REFUSED = {
    "none": {},
    "empty bearer": {"Authorization": "Bearer "},
    "a prefix of the token": bearer(TOKEN[:-1]),
    "the token and one more character": bearer(TOKEN + "x"),
    "same length, last character differs": bearer(TOKEN[:-1] + ("A" if TOKEN[-1] != "A" else "B")),
    "other case": bearer(TOKEN.swapcase()),
    "not latin": {"Authorization": "Bearer " + "\u00e9" * len(TOKEN)},
    "token without a scheme": {"Authorization": TOKEN},
    "another scheme": {"Authorization": f"Token {TOKEN}"},
    "basic, wrong password": basic(TOKEN, "wrong"),
    "basic, not base64": {"Authorization": "Basic %%%"},
    "basic without a colon": {"Authorization": "Basic " + base64.b64encode(TOKEN.encode()).decode()},
}
ROUTES = [  # (method, path, body) of every HTTP route but /health
    ("GET", "/metadata", None), ("GET", "/schema", None), ("GET", "/openapi.json", None), ("GET", "/state", None),
    ("GET", "/tasks?split=train", None), ("POST", "/reset", {}), ("POST", "/step", {"action": {"type": "list_tools"}}),
    ("POST", "/mcp", {"jsonrpc": "2.0", "method": "tools/list", "params": {}, "id": 1}),
]


def call(url: str, method: str, path: str, body, headers: dict[str, str]) -> tuple[int, dict]:
    if method == "GET":
        return get(url + path, headers)
    return post(url + path, body, headers=headers)


def sessions(server) -> int:
    return active_sessions(server.url, token=TOKEN)


@pytest.mark.parametrize("how", list(REFUSED))
def test_every_http_route_but_health_refuses_a_missing_or_wrong_token(guarded_server, how):
    for method, path, body in ROUTES:
        status, reply = call(guarded_server.url, method, path, body, REFUSED[how])
        assert status == 401 and reply["code"] == "UNAUTHORIZED", (method, path, status, reply)
        assert "Authorization: Bearer" in reply["detail"]
    # liveness answers anyone, but tells nothing more without the token
    assert get(f"{guarded_server.url}/health", REFUSED[how]) == (200, {"status": "healthy"})
    assert guarded_server.process.poll() is None


def test_a_refusal_says_how_to_authenticate(guarded_server):
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{guarded_server.url}/tasks", timeout=60)
    assert refused.value.code == 401 and refused.value.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("how", list(ACCEPTED))
def test_the_right_token_opens_every_route(guarded_server, how):
    for method, path, body in ROUTES:
        status, reply = call(guarded_server.url, method, path, body, ACCEPTED[how])
        assert status == 200, (method, path, status, reply)
    status, health = get(f"{guarded_server.url}/health", ACCEPTED[how])
    assert status == 200 and health["max_sessions"] == 4 and "snapshot_hash" in health


@pytest.mark.parametrize("path", ["/ws", "/mcp"])
def test_a_websocket_without_the_right_token_is_closed_and_holds_no_slot(guarded_server, path, trajectories):
    wait_until(lambda: sessions(guarded_server) == 0, what="earlier tests' sessions to end")
    for how in ("none", "same length, last character differs", "basic, wrong password", "another scheme") * 2:
        client = WsClient(guarded_server.url, path=path, headers=REFUSED[how])
        reply = json.loads(client.ws.recv(timeout=60))  # why, as for any refused connection, then the close
        code = reply["data"]["code"] if path == "/ws" else reply["error"]["data"]["code"]
        assert code == "UNAUTHORIZED", reply
        with pytest.raises(ConnectionClosed) as closed:
            client.ws.recv(timeout=60)
        assert closed.value.rcvd.code == 1008, closed.value  # policy violation
        client.ws.close()
        assert sessions(guarded_server) == 0
    # every slot is still free: as many authorised sessions as the server allows all open and play
    clients = [WsClient(guarded_server.url, token=TOKEN) for _ in range(4)]
    try:
        assert sessions(guarded_server) == 4
        for client in clients:
            assert client.reset(task_id=trajectories[0].task_id)["type"] == "observation"
    finally:
        for client in clients:
            client.close()
    wait_until(lambda: sessions(guarded_server) == 0, what="the sessions to end")


def test_episodes_run_with_the_token(guarded_server, trajectories):
    trajectory = trajectories[11]
    with WsClient(guarded_server.url, token=TOKEN) as client:
        assert client.reset(task_id=trajectory.task_id)["type"] == "observation"
        steps = [client.call(tool, **arguments) for tool, arguments in trajectory.calls]
    assert [s["data"]["observation"]["result"]["data"] for s in steps] == trajectory.outputs
    assert steps[-1]["data"]["reward"] == 1.0
    # a client that can only be given a URL: the user info becomes Basic credentials on the handshake
    from websockets.sync.client import connect

    with connect(guarded_server.url.replace("http://", f"ws://trainer:{TOKEN}@") + "/ws", open_timeout=30) as ws:
        ws.send(json.dumps({"type": "reset", "data": {"task_id": trajectory.task_id}}))
        assert json.loads(ws.recv(timeout=60))["type"] == "observation"


def test_the_remote_environment_sends_the_token(guarded_server, trajectories, monkeypatch):
    task = trajectories[12].task
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with RemoteFinQAEnv(guarded_server.url, token=TOKEN) as env:
        assert oracle.solve(env, task).correct and env.get_reward() == 1.0
    served = fetch_tasks(guarded_server.url, split=task["split"], token=TOKEN)
    assert task["task_id"] in {t["task_id"] for t in served}

    for refused in (RemoteFinQAEnv(guarded_server.url), RemoteFinQAEnv(guarded_server.url, token=TOKEN[::-1])):
        with pytest.raises(ConnectionError, match="UNAUTHORIZED|1008"):
            refused.reset(task_id=task["task_id"])
        close(refused)
    with pytest.raises(ConnectionError, match="401"):
        fetch_tasks(guarded_server.url)

    # TRL builds environments with no arguments (environment_factory=lambda: RemoteFinQAEnv(url)): the
    # trainer's $FINQA_RL_SERVE_TOKEN is used
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    env = RemoteFinQAEnv(guarded_server.url)
    assert oracle.solve(env, task).correct
    close(env)
    assert fetch_tasks(guarded_server.url, split=task["split"]) == served
    wait_until(lambda: sessions(guarded_server) == 0, what="the sessions to end")


# ------------------------------------------------------------------------------------------ refused at start
def serve_command(*flags: str) -> list[str]:
    return [sys.executable, "-m", "rl_assets.cli", "serve", "--port", str(free_port()), *flags]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    return {**env, **extra}


def test_a_network_address_without_a_token_is_refused_at_start(snapshot_dir):
    port = free_port()
    done = run_process([sys.executable, "-m", "rl_assets.cli", "serve", "--snapshot", str(snapshot_dir),
                        "--host", "0.0.0.0", "--port", str(port)], timeout_s=300, env=clean_env())
    assert done.returncode != 0
    assert "refusing to serve '0.0.0.0' without a token" in done.stderr
    assert TOKEN_ENV in done.stderr and "--token-file" in done.stderr
    with socket.socket() as s:  # nothing listens
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_the_token_comes_from_the_environment_or_a_file_never_the_command_line(tmp_path):
    not_a_snapshot = str(tmp_path)
    # with a token the address is accepted: the start goes on to the snapshot, which this is not
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    for flags, env in (((f"--token-file={token_file}",), clean_env()), ((), clean_env(**{TOKEN_ENV: TOKEN}))):
        done = run_process(serve_command("--snapshot", not_a_snapshot, "--host", "0.0.0.0", *flags), timeout_s=300,
                           env=env)
        assert done.returncode != 0 and "not a snapshot directory" in done.stderr, done.stderr
        assert TOKEN not in done.stderr + done.stdout
    # on the command line: refused, and the value is not repeated
    done = run_process(serve_command("--snapshot", not_a_snapshot, "--token", TOKEN), timeout_s=300, env=clean_env())
    assert done.returncode == 2 and "visible to every user" in done.stderr and TOKEN not in done.stderr
    # a token that cannot protect anything, a token file that is missing or empty: clear errors
    short, empty = tmp_path / "short", tmp_path / "empty"
    short.write_text("hunter2")
    empty.write_text("\n")
    for path, message in ((short, "use at least 16"), (empty, "is empty"), (tmp_path / "missing", "cannot read")):
        done = run_process(serve_command("--snapshot", not_a_snapshot, f"--token-file={path}"), timeout_s=300,
                           env=clean_env())
        assert done.returncode != 0 and message in done.stderr, done.stderr
        assert "hunter2" not in done.stderr


@pytest.mark.parametrize("host,loopback", [
    ("127.0.0.1", True), ("localhost", True), ("::1", True), ("127.0.0.2", True), ("[::1]", True),
    ("0.0.0.0", False), ("::", False), ("", False), ("10.1.2.3", False), ("env-host", False),
])
def test_only_loopback_hosts_may_go_without_a_token(host, loopback, tmp_path):
    assert is_loopback(host) is loopback
    if loopback:
        assert ServerConfig(snapshot=tmp_path, host=host).token is None
    else:
        with pytest.raises(ValueError, match=f"without a token.*{TOKEN_ENV}.*--token-file"):
            ServerConfig(snapshot=tmp_path, host=host)
        assert ServerConfig(snapshot=tmp_path, host=host, token=TOKEN).host == host
    assert TOKEN not in repr(ServerConfig(snapshot=tmp_path, host=host, token=TOKEN))


def test_the_secret_is_read_from_bearer_or_basic_credentials():
    header = [(b"authorization", f"Bearer {TOKEN}".encode())]
    assert presented_secret(header) == TOKEN.encode()
    assert presented_secret([(b"Authorization", basic("u", TOKEN)["Authorization"].encode())]) == TOKEN.encode()
    assert presented_secret([(b"x-other", b"Bearer x")]) is None
    assert presented_secret([(b"authorization", b"Basic %%%")]) is None
