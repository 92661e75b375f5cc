"""The shared secret of `finqa-rl serve`: every HTTP request but GET /health, and every WebSocket handshake,
must carry it (ASGI middleware in front of the whole app).

Accepted: `Authorization: Bearer <token>`, or `Authorization: Basic base64(<any user>:<token>)` — what a client
that can only be given a URL sends for `http://x:<token>@host:port` (openenv-core 0.3.0's clients take no
headers; websockets and httpx turn a URL's user info into Basic credentials). The check hashes both sides and
compares them with `hmac.compare_digest`, so its time says nothing about the token, not even its length.

A refused HTTP request is 401 (`{"detail", "code": "UNAUTHORIZED"}`, `WWW-Authenticate: Bearer`); a refused
WebSocket is accepted only to be told why (an error frame as for any refusal: `{"type": "error", ...}` on
/ws, a JSON-RPC error on /mcp) and closed with 1008 (policy violation). Neither reaches the application, so
neither opens a session. GET /health answers without the token, but then only `{"status": "healthy"}`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
from typing import Any

from rl_assets.serve import protocol

log = logging.getLogger("rl_assets.serve")

UNAUTHORIZED = "UNAUTHORIZED"
OPEN_PATHS = frozenset({"/health"})  # liveness, answered to anyone (the details only with the token)
AUTHORIZED_KEY = "finqa.authorized"  # set in the ASGI scope of what passes: False on an open path without the token
WS_CLOSE_POLICY = 1008
CLOSE_REASON = "unauthorized: missing or wrong token"
MESSAGE = "missing or wrong token: send 'Authorization: Bearer <token>' (the server's $FINQA_RL_SERVE_TOKEN)"


def presented_secret(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The secret in the request's (first) Authorization header: Bearer <token>, or the password of Basic."""
    for name, value in headers:
        if name.lower() != b"authorization":
            continue
        scheme, _, rest = value.strip().partition(b" ")
        scheme, rest = scheme.lower(), rest.strip()
        if scheme == b"bearer":
            return rest
        if scheme == b"basic":
            try:
                _user, colon, password = base64.b64decode(rest, validate=True).partition(b":")
            except (binascii.Error, ValueError):
                return None
            return password if colon else None
        return None
    return None


def _digest(secret: bytes) -> bytes:
    return hashlib.sha256(secret).digest()


class TokenAuth:
    """ASGI middleware: pass what carries the token, refuse the rest (see the module docstring)."""

    def __init__(self, app: Any, token: str, open_paths: frozenset[str] = OPEN_PATHS):
        self.app = app
        self._expected = _digest(token.encode())
        self.open_paths = open_paths

    def authorized(self, headers: list[tuple[bytes, bytes]]) -> bool:
        given = presented_secret(headers)
        # the same work whether or not a secret came: hash, then a constant-time comparison of equal lengths
        return hmac.compare_digest(_digest(given or b""), self._expected) and given is not None

    async def __call__(self, scope: dict, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):  # lifespan
            await self.app(scope, receive, send)
            return
        authorized = self.authorized(scope.get("headers", []))
        if authorized or (scope["type"] == "http" and scope["path"] in self.open_paths):
            await self.app({**scope, AUTHORIZED_KEY: authorized}, receive, send)
            return
        client = scope.get("client") or ("?", 0)
        log.warning("refused %s %s from %s:%s: missing or wrong token", scope["type"], scope["path"], *client[:2])
        if scope["type"] == "http":
            await _refuse_http(send)
        else:
            await _refuse_websocket(scope, receive, send)


async def _refuse_http(send) -> None:
    body = json.dumps({"detail": MESSAGE, "code": UNAUTHORIZED}).encode()
    await send({"type": "http.response.start", "status": 401, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"www-authenticate", b'Bearer realm="finqa-rl"')]})
    await send({"type": "http.response.body", "body": body})


async def _refuse_websocket(scope: dict, receive, send) -> None:
    if (await receive())["type"] != "websocket.connect":
        return
    if scope["path"].rstrip("/") == "/mcp":
        frame = json.dumps(protocol.rpc_error(None, protocol.INVALID_REQUEST, MESSAGE, {"code": UNAUTHORIZED}))
    else:
        frame = protocol.ws_error(UNAUTHORIZED, MESSAGE)
    try:
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": frame})
        await send({"type": "websocket.close", "code": WS_CLOSE_POLICY, "reason": CLOSE_REASON})
    except Exception:  # the client left first
        pass
