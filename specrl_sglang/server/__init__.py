"""`specrl-sglang serve`: speculative rollouts as an HTTP service next to one or many trainers.

One process owns everything stateful through one RolloutRuntime (engine, draft store, policy
version, weight updates); the HTTP layer is a thin adapter with no lock of its own, so concurrent
clients' steps batch inside SGLang. Every response names the policy version it was served under.

Files, outside in:
- main.py (the `serve` flags) -> config.py (ServeConfig) -> preflight.py (disk checks before the
  engine starts) -> serve_loop.py (signals, engine start, uvicorn, shutdown)
- app.py (routes) over codec.py (bodies, size limits, read timeouts), http_protocol.py (header
  timeouts), auth.py (bearer token), schema.py (request validation -> ApiError, errors.py)
- service.py (the verbs) with weight_updates.py, snapshots.py (consistent snapshot writes,
  checked restores), sandbox.py (snapshot directory, weight-directory allow-list), step_log.py
  (/stats history, JSONL report), store_summary.py, metrics.py (Prometheus)
- runtime_host.py (the contract of the runtime's owner), with two owners: engine_host.py (the
  embedded engine: death -> 503, restart, store_recovery.py) and workers_host.py (--sglang-url:
  SGLang HTTP servers that run on their own; a dead worker -> 503 naming it, nothing restarted);
  engine_listeners.py (the embedded engine's distributed-init rendezvous kept off the network)
- client.py (`RolloutClient`)
"""
