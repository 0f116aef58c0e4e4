"""`specrl-sglang serve`: start the SGLang runtime and the rollout service in one process.

    specrl-sglang serve --tiny --snapshot runs/serve/store.snap --report runs/serve/steps.jsonl

Runtime choice: the offline `sglang.Engine` in this process (via RolloutEngine), not SGLang's HTTP
server, so verify and continuation reuse the same radix cache with no extra network hop, and one
process owns weights, KV and drafts (see app.py). The engine is started in the main thread (SGLang
installs signal handlers there); uvicorn then serves on the same thread's event loop.

Lifecycle: on start the store is restored from --snapshot if that file exists (a corrupt file
stops the start). SIGTERM / SIGINT: uvicorn stops accepting, lets requests in flight finish, then
the store is saved to --snapshot and the engine shut down; exit status 0. After SIGKILL, a restart
with the same --snapshot resumes from the last snapshot (on demand, every --snapshot-every steps,
or at the last clean shutdown). Binds 127.0.0.1 by default: the API can load checkpoints and write
snapshots on this machine, so expose it only on trusted networks.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
from pathlib import Path

DEFAULT_PORT = 8377


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("serve", help="serve speculative rollouts over HTTP (msgpack/JSON)")
    configure_parser(p)
    p.set_defaults(func=run)
    return p


def configure_parser(p: argparse.ArgumentParser) -> None:
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--model", help="Hugging Face checkpoint directory to serve")
    model.add_argument("--tiny", action="store_true", help="build (once) and serve the demo's tiny local model")
    p.add_argument("--tiny-dir", default=".cache/specrl/serve-tiny", help="where --tiny builds its checkpoint")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--snapshot", help="trajectory-store snapshot: restored on start if present, saved on shutdown")
    p.add_argument("--snapshot-every", type=int, default=0, help="also snapshot every N rollout steps (0: off)")
    p.add_argument("--report", help="append one JSON line of statistics per step to this file")
    p.add_argument("--lenience", type=float, default=math.exp(0.5), help="l >= 1 (default e^0.5; 'inf' reuses all)")
    p.add_argument("--no-spec", action="store_true", help="vanilla rollouts (no drafts), for comparison")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--store-max-tokens", type=int, default=None, help="token budget of the trajectory store")
    p.add_argument("--max-total-tokens", type=int, default=65536, help="SGLang KV pool size (tokens)")
    p.add_argument("--profile", choices=("cpu", "gpu"), default="cpu", help="SGLang engine recipe")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--max-body-mb", type=float, default=16, help="request size limit (MiB), weights excluded")
    p.add_argument("--max-weights-mb", type=float, default=4096, help="size limit of POST /update_weights (MiB)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))


def tiny_model(out_dir: str) -> Path:
    """The demo's tiny Qwen2 (random weights, task tokenizer), built once under `out_dir`."""
    from specrl_sglang.demo.config import DemoConfig
    from specrl_sglang.demo.task import TaskConfig, corpus
    from specrl_sglang.tiny_model import build_tiny_model

    return build_tiny_model(Path(out_dir).resolve(), corpus(TaskConfig()), DemoConfig().model_spec)


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT; returns the exit status."""
    import uvicorn

    from specrl_sglang.engine import RolloutEngine
    from specrl_sglang.engine_config import EngineConfig
    from specrl_sglang.server.app import build_app
    from specrl_sglang.server.schema import MiB, ServerLimits
    from specrl_sglang.server.service import RolloutService, ServiceConfig

    try:  # validate everything before the 10+ s engine start
        config = ServiceConfig(
            lenience=args.lenience,
            spec_enabled=not args.no_spec,
            seed=args.seed,
            store_max_tokens=args.store_max_tokens,
            snapshot_path=args.snapshot,
            snapshot_every=args.snapshot_every,
            report_path=args.report,
        )
        limits = ServerLimits(max_body_bytes=int(args.max_body_mb * MiB), max_weights_bytes=int(args.max_weights_mb * MiB))
    except ValueError as exc:
        raise SystemExit(f"serve: {exc}") from None
    for path in (args.snapshot, args.report):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: binding {args.host}: any client that reaches it can load checkpoints and write snapshots", file=sys.stderr)
    stop = {"requested": False}

    def request_stop(signum, frame) -> None:  # before/after uvicorn runs; uvicorn has its own while serving
        stop["requested"] = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, request_stop)
    model_path = str(tiny_model(args.tiny_dir)) if args.tiny else args.model
    engine_config = EngineConfig(
        model_path=model_path, profile=args.profile, dtype=args.dtype, random_seed=args.seed, max_total_tokens=args.max_total_tokens
    )
    print(f"specrl-sglang serve: starting SGLang on {model_path} ...", flush=True)
    engine = RolloutEngine(engine_config)
    service = None
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, request_stop)
        service = RolloutService(engine, config)
        if service.restored_from:
            print(f"restored {service.restored_from['num_prompts']} prompts from {args.snapshot}", flush=True)
        server = uvicorn.Server(
            uvicorn.Config(build_app(service, limits), host=args.host, port=args.port, log_level=args.log_level,
                           access_log=False, lifespan="off")
        )
        if not stop["requested"]:
            print(f"specrl-sglang serve: http://{args.host}:{args.port} (policy_version {engine.policy_version})", flush=True)
            server.run()
    finally:
        if service is not None:
            saved = service.close()
            if saved:
                print(f"saved {saved['store']['num_prompts']} prompts to {saved['path']}", flush=True)
        engine.shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m specrl_sglang.server.main", description=__doc__.splitlines()[0])
    configure_parser(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
