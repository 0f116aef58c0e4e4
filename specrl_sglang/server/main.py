"""`specrl-sglang serve`: start the SGLang runtime and the rollout service in one process.

    specrl-sglang serve --tiny --snapshot-dir runs/serve --snapshot store.snap --report runs/serve/steps.jsonl
    specrl-sglang serve --sglang-url http://127.0.0.1:30000 --sglang-url http://127.0.0.1:30001

Runtime choice, default: the offline `sglang.Engine` in this process (RolloutRuntime over
InProcessEngine), not SGLang's HTTP server, so verify and continuation reuse the same radix cache
with no extra network hop, and one object owns weights, KV and drafts (see app.py).
With --sglang-url (repeatable; optionally --sglang-router): the same service in front of SGLang
HTTP servers that are already running (RolloutRuntime over HttpEngine: prompt-affinity routing,
connect-time checks, see docs/sglang_servers.md); the model's facts come from the servers (and
--model, if the path they were launched with is not readable here); the engine flags do not apply.
A dead worker is then a 503 naming it; nothing is restarted (`workers_host`).

Start: every flag, the model's checkpoint, the snapshot (validated against the model; a corrupt
one stops the start) and the report are checked before the engine starts (`preflight`). The
engine's own distributed-init rendezvous stays off the network (`engine_listeners`).
Lifecycle: SIGTERM / SIGINT: uvicorn stops accepting, lets requests in flight finish, then the
store is saved to --snapshot and the engine shut down; exit status 0. After SIGKILL, a restart
with the same flags resumes from the last snapshot (on demand, every --snapshot-every steps, or
at the last clean shutdown). If the SGLang engine dies, the server keeps running: it answers 503
with the reason, restarts the engine and restores the store (`engine_host`).
Security: binds 127.0.0.1 by default; snapshots only inside --snapshot-dir, weights only from
--weights-dir; with --auth-token (or SPECRL_AUTH_TOKEN) every mutating endpoint needs the token.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace

from specrl_sglang.server.config import DEFAULT_PORT, ENGINE_LISTEN, ServeConfig
from specrl_sglang.spec_config import DEFAULT_LENIENCE, MODES

_DEFAULTS = SimpleNamespace(**{f.name: f.default for f in fields(ServeConfig)})  # defaults from their owner
ENGINE_FLAGS = {"engine_listen": "--engine-listen", "max_total_tokens": "--max-total-tokens", "profile": "--profile",
                "dtype": "--dtype"}


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("serve", help="serve speculative rollouts over HTTP (msgpack/JSON)",
                              description=__doc__.splitlines()[0])
    configure_parser(p)
    p.set_defaults(func=run)
    return p


def configure_parser(p: argparse.ArgumentParser) -> None:
    model = p.add_mutually_exclusive_group()
    model.add_argument("--model", help="Hugging Face checkpoint directory to serve (with --sglang-url: the checkpoint "
                                       "the servers serve, if the path they were launched with is not readable here)")
    model.add_argument("--tiny", action="store_true", help="build (once) and serve a tiny local model")
    p.add_argument("--sglang-url", action="append", default=[], metavar="URL",
                   help="serve through this running SGLang HTTP server instead of an embedded engine (repeatable: one "
                        "per worker; started with SGLANG_RETURN_ORIGINAL_LOGPROB=1, see docs/sglang_servers.md)")
    p.add_argument("--sglang-router", metavar="URL",
                   help="with --sglang-url: send rollout requests through this sglang-router (--policy manual)")
    p.add_argument("--tiny-dir", default=".cache/specrl/serve-tiny", help="where --tiny builds its checkpoint")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--mode", choices=MODES, default="spec-rl", help="rollout rule (a request may override it)")
    p.add_argument("--lenience", type=float, default=DEFAULT_LENIENCE, help="spec-rl: l >= 1 (default e^0.5; 'inf' reuses all)")
    p.add_argument("--no-spec", action="store_true", help=argparse.SUPPRESS)  # replaced by --mode vanilla
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--snapshot-dir", help="the dedicated directory of snapshots (created if missing)")
    p.add_argument("--snapshot", help="default snapshot NAME.snap (or DIR/NAME.snap): restored on start, saved on shutdown")
    p.add_argument("--snapshot-every", type=int, default=0, help="also snapshot every N finished steps (0: off)")
    p.add_argument("--report", help="append one JSON line of statistics per step to this file")
    p.add_argument("--store-max-tokens", type=int, default=None, help="token budget of the draft store (wins over a snapshot's)")
    p.add_argument("--weights-dir", action="append", default=[], metavar="DIR",
                   help="allow update_weights_from_disk from checkpoints inside DIR (repeatable; none: disabled)")
    p.add_argument("--auth-token", help="bearer token for mutating endpoints (prefer the env SPECRL_AUTH_TOKEN: "
                                        "a flag is visible in the process list)")
    p.add_argument("--read-timeout", type=float, default=30.0, help="seconds a client may take per header/body chunk")
    p.add_argument("--max-connections", type=int, default=256, help="concurrent connections (beyond: 503)")
    engine = p.add_argument_group("embedded engine (not with --sglang-url: the servers run with their own settings)")
    engine.add_argument("--engine-listen", choices=ENGINE_LISTEN, default=None,
                        help="SGLang's distributed-init listener: loopback (default: none on the network) or any")
    engine.add_argument("--max-total-tokens", type=int, default=None, help=f"SGLang KV pool size (tokens; default {_DEFAULTS.max_total_tokens})")
    engine.add_argument("--profile", choices=("cpu", "gpu"), default=None, help="SGLang engine recipe (default cpu)")
    engine.add_argument("--dtype", default=None, help=f"default {_DEFAULTS.dtype}")
    p.add_argument("--max-body-mb", type=float, default=16, help="request size limit (MiB), weights excluded")
    p.add_argument("--max-weights-mb", type=float, default=None,
                   help="size limit of POST /update_weights (MiB; default: 8 bytes per model parameter)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))


def config_from_args(args: argparse.Namespace, model_path: str | None) -> ServeConfig:
    """A validated ServeConfig (ValueError naming the flag)."""
    from specrl_sglang.server.auth import token_from_env
    from specrl_sglang.server.schema import MiB

    if args.no_spec:
        raise ValueError("--no-spec was replaced by --mode vanilla")
    given = {flag for key, flag in ENGINE_FLAGS.items() if getattr(args, key) is not None}
    if args.sglang_url and (args.tiny or given):
        flags = ", ".join(sorted(given | ({"--tiny"} if args.tiny else set())))
        raise ValueError(f"{flags}: embedded-engine flags do not apply with --sglang-url (the SGLang servers run with "
                         "their own settings: drop the flag, or set it where the servers are started)")
    engine = {key: getattr(_DEFAULTS, key) if getattr(args, key) is None else getattr(args, key) for key in ENGINE_FLAGS}
    snapshot_dir, snapshot_name = args.snapshot_dir, args.snapshot
    if snapshot_name is not None and (os.sep in snapshot_name or "/" in snapshot_name):
        parent, snapshot_name = str(Path(snapshot_name).parent), Path(snapshot_name).name
        if snapshot_dir is None:
            snapshot_dir = parent
        elif Path(parent).resolve() != Path(snapshot_dir).resolve():
            raise ValueError(f"--snapshot {args.snapshot} is not inside --snapshot-dir {snapshot_dir}")
    if snapshot_name is not None:
        from specrl_sglang.server.sandbox import check_snapshot_name

        check_snapshot_name(snapshot_name, "--snapshot")
    mb = lambda value, flag: None if value is None else _mib(value, flag, MiB)  # noqa: E731
    return ServeConfig(
        model_path=model_path, mode=args.mode, lenience=args.lenience, seed=args.seed,
        store_max_tokens=args.store_max_tokens, snapshot_dir=snapshot_dir, snapshot_name=snapshot_name,
        snapshot_every=args.snapshot_every, report_path=args.report, weights_dirs=tuple(args.weights_dir),
        auth_token=args.auth_token or token_from_env(), host=args.host, port=args.port,
        read_timeout_s=args.read_timeout, max_connections=args.max_connections,
        max_body_bytes=mb(args.max_body_mb, "--max-body-mb"), max_weights_bytes=mb(args.max_weights_mb, "--max-weights-mb"),
        log_level=args.log_level, sglang_urls=tuple(args.sglang_url), sglang_router=args.sglang_router, **engine,
    )


def _mib(value: float, flag: str, mib: int) -> int:
    if not 0 < value < 1 << 20:
        raise ValueError(f"{flag} must be a positive number of MiB, got {value}")
    return max(1, int(value * mib))


def tiny_model(out_dir: str) -> Path:
    """A tiny Qwen2 (random weights, a tokenizer trained on the default corpus), built once."""
    from specrl_sglang.tiny_model import TinyModelSpec, build_tiny_model, default_corpus

    return build_tiny_model(Path(out_dir).resolve(), default_corpus(), TinyModelSpec())


SERVE_MODULES = ("starlette", "uvicorn", "requests", "prometheus_client", "psutil", "safetensors", "transformers", "torch")


def check_serve_deps(external: bool = False) -> None:
    """SystemExit naming the missing packages (pyproject's `serve` extra) instead of an ImportError later."""
    import importlib.util

    needed = SERVE_MODULES + (("aiohttp", "orjson") if external else ("sglang",))
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        raise SystemExit(f"serve: missing packages {', '.join(missing)}; install them with "
                         "pip install 'specrl-sglang[serve]' (and SGLang: 'specrl-sglang[gpu]', or the CPU stack of "
                         "scripts/bootstrap.sh)")


def run(args: argparse.Namespace) -> int:
    """Validate everything, start the engine (or connect to the SGLang servers), serve until
    SIGTERM/SIGINT; returns the exit status."""
    check_serve_deps(external=bool(args.sglang_url))
    from specrl_sglang.engine_api import EngineError
    from specrl_sglang.server.preflight import checkpoint_facts, prepare
    from specrl_sglang.server.serve_loop import check_port, serve

    host = None
    try:
        model_path = str(Path(args.tiny_dir).resolve()) if args.tiny else args.model
        config = config_from_args(args, model_path)
        check_port(config.host, config.port)
        if args.tiny:
            tiny_model(args.tiny_dir)
        if config.external:
            from specrl_sglang.server.workers_host import WorkersHost

            host = WorkersHost.connect(config)
            prepared = prepare(config, host.model_facts())
        else:
            prepared = prepare(config, checkpoint_facts(config.model_path))
    except (ValueError, OSError, EngineError) as exc:
        if host is not None:
            host.close()
        what = "cannot use the SGLang servers: " if isinstance(exc, EngineError) else ""
        raise SystemExit(f"serve: {what}{exc}") from None
    if not config.loopback_only and config.auth_token is None:
        print(f"warning: binding {config.host} without --auth-token: any client that reaches it can load "
              "checkpoints, write snapshots and change the store", file=sys.stderr)
    return serve(prepared, host)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m specrl_sglang.server.main", description=__doc__.splitlines()[0])
    configure_parser(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
