"""The serving process's lifecycle: engine start, the HTTP server, signals, shutdown.

Order: signal handlers first (SIGTERM/SIGINT before uvicorn runs only set a flag; SIGQUIT - which
SGLang's subprocesses send when they fail - never kills this process: it wakes the engine
watcher), then the engine (in its runtime's loop thread, so SGLang installs no handlers of its
own), then uvicorn on this thread's event loop with the engine watcher beside it. On exit: the
default snapshot is saved (if the engine is up), then the engine shut down.
With --sglang-url the host (`workers_host.WorkersHost`) is already connected when `serve` is
called (preflight needed the servers' model facts); on exit only its connections are closed.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
import time

from typing import TYPE_CHECKING

from specrl_sglang.server.preflight import Prepared

if TYPE_CHECKING:
    from specrl_sglang.server.runtime_host import RuntimeHost

log = logging.getLogger("specrl_sglang.server")


def check_port(host: str, port: int) -> None:
    """OSError now, not after the engine start, if (host, port) cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise OSError(f"--host {host} --port {port}: {exc.strerror or exc}") from None


def serve(prepared: Prepared, host: "RuntimeHost | None" = None) -> int:
    """Serve until SIGTERM/SIGINT. `host`: a connected WorkersHost (--sglang-url); None: start the
    embedded engine under an EngineHost."""
    import uvicorn

    from specrl_sglang.engine import InProcessEngine
    from specrl_sglang.runtime import RolloutRuntime
    from specrl_sglang.server.app import build_app
    from specrl_sglang.server.auth import BearerAuth
    from specrl_sglang.server.engine_host import EngineHost
    from specrl_sglang.server.engine_listeners import LoopbackListeners
    from specrl_sglang.server.http_protocol import protocol_with_header_timeout
    from specrl_sglang.server.service import RolloutService

    config = prepared.config
    logging.basicConfig(level=config.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    stop = {"requested": False}
    external, host = host is not None, host

    def request_stop(signum, frame) -> None:  # before/after uvicorn runs; uvicorn has its own while serving
        stop["requested"] = True

    def on_sigquit(signum, frame) -> None:
        if host is not None:
            host.check_now()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, request_stop)
    signal.signal(signal.SIGQUIT, on_sigquit)
    listeners: list[LoopbackListeners] = []

    def build(model_path: str, store) -> RolloutRuntime:
        if config.engine_listen == "loopback":
            listeners.append(LoopbackListeners())
        engine_config = config.engine_config_for(model_path)
        return RolloutRuntime(lambda: InProcessEngine(engine_config), store, config.spec_config)

    service: RolloutService | None = None
    if host is None:
        host = EngineHost(build, config.model_path, lambda old: service.recover_store(old))
    for name in prepared.stale_tmp_removed:
        print(f"removed {name}, left by a snapshot write that was killed", flush=True)
    if prepared.restored_from:
        r = prepared.restored_from
        print(f"restored {r['num_prompts']} prompts from {r['path']} (dropped {r['num_dropped']} that do not fit "
              f"the model, evicted {r['num_evicted']} over the budget)", flush=True)
    where = f"SGLang servers {', '.join(config.sglang_urls)}" if external else f"SGLang on {config.model_path}"
    print(f"specrl-sglang serve: {'connected to' if external else 'starting'} {where} ...", flush=True)
    t0 = time.perf_counter()
    try:
        try:
            runtime = host.start(prepared.store)
        except Exception as exc:
            raise SystemExit(f"serve: the SGLang engine did not start: {type(exc).__name__}: {exc}") from None
        runtime.num_steps = prepared.next_step
        service = RolloutService(prepared, host)
        app = build_app(service, BearerAuth(config.auth_token), config.read_timeout_s)
        server = uvicorn.Server(uvicorn.Config(
            app, host=config.host, port=config.port, log_level=config.log_level, access_log=False, lifespan="off",
            http=protocol_with_header_timeout(config.read_timeout_s), limit_concurrency=config.max_connections,
            timeout_keep_alive=5,
        ))
        if not stop["requested"]:
            print(f"specrl-sglang serve: http://{config.host}:{config.port} (engine {'ready' if external else 'started'} in "
                  f"{time.perf_counter() - t0:.1f} s, mode {config.mode}, policy_version {runtime.policy_version})", flush=True)
            asyncio.run(_serve(server, service, host))
        else:
            asyncio.run(_final_snapshot(service))
    finally:
        signal.signal(signal.SIGQUIT, on_sigquit)  # the closed loop reset it to the default (core dump)
        host.close()
        for item in listeners:
            item.close()
    return 0


async def _serve(server, service, host) -> None:
    loop = asyncio.get_running_loop()
    watcher = asyncio.create_task(host.watch())
    loop.add_signal_handler(signal.SIGQUIT, host.check_now)
    try:
        await server.serve()
    finally:
        watcher.cancel()
        await _final_snapshot(service)


async def _final_snapshot(service) -> None:
    try:
        saved = await service.close()
    except Exception:  # the engine may be down; the last snapshot on disk stays as it was
        log.exception("the final snapshot failed")
        return
    if saved:
        print(f"saved {saved['store']['num_prompts']} prompts to {saved['path']}", flush=True)
