"""The FinQA environment as an OpenEnv-compatible network service, and a remote environment for TRL.

- `finqa-rl serve --snapshot S --port P --max-sessions N` (rl_assets.serve.cli), or in Python
  `rl_assets.serve.server.serve(ServerConfig(...))`; the ASGI app is `rl_assets.serve.app.create_app`.
- `rl_assets.serve.remote.RemoteFinQAEnv(url)`: FinQAEnv's tools over the network, for
  `GRPOTrainer(environment_factory=...)` on another machine.
- `rl_assets.serve.process.start_server(...)`: the service as a child process on a free loopback port;
  `stop_process(popen)`: end any child (its process group too) for sure and reap it.
- A shared secret ($FINQA_RL_SERVE_TOKEN or --token-file; `rl_assets.serve.auth`) guards every request but
  GET /health; a non-loopback host is refused without one.

See docs/serving.md. Nothing here is imported by `rl_assets.env`; the remote client needs only `websockets`.
"""
