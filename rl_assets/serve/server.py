"""Run the service: `serve(ServerConfig(...))` blocks until interrupted (SIGINT / SIGTERM)."""

from __future__ import annotations

import logging

from rl_assets.serve.config import ServerConfig


def serve(config: ServerConfig) -> None:
    """Load the snapshot, then serve HTTP + WebSocket on config.host:config.port with uvicorn."""
    import uvicorn

    from rl_assets.serve.app import create_app

    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(config)
    uvicorn.Server(uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        log_level=config.log_level,
        access_log=False,
        # the websockets implementation pings every 20 s, so a peer that vanished without closing is noticed
        # within ~40 s (uvicorn's sans-io one does not ping); a frame over the limit closes that connection
        # with 1009 (message too big), its session ending when the close handshake times out (10 s)
        ws="websockets",
        ws_max_size=config.max_message_bytes,
        ws_per_message_deflate=False,  # tool outputs are small; compression costs more CPU than it saves on loopback
        lifespan="on",
    )).run()
