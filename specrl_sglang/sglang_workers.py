"""Local SGLang HTTP workers: start and stop `python -m sglang.launch_server` with the project's recipe.

The command line is `EngineConfig.engine_kwargs()` spelled as flags (one owner of the CPU/GPU
recipe: torch_native attention, float32, sleep_on_idle, ...), and the environment is
`worker_env(config)`: SGLANG_RETURN_ORIGINAL_LOGPROB=1 (the log-prob convention `HttpEngine`
checks at connect time) plus `EngineConfig.process_env()` (one torch thread per scheduler on CPU).

Each worker runs in its own session / process group, so `stop()` and `kill()` end exactly that
server and the scheduler processes it spawned - never anything else on the machine.

`start_router` puts an sglang-router (`--policy manual`) in front of started workers.
Users: `python -m specrl_sglang.sglang_workers --model-path M --workers 2 --print` prints the
commands (with their environment) to run by hand; without `--print` it starts the workers and keeps
them up until Ctrl-C (see docs/sglang_servers.md).
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from specrl_sglang.engine import RETURN_ORIGINAL_LOGPROB_ENV
from specrl_sglang.engine_config import EngineConfig

START_TIMEOUT_S = 600.0  # a tiny model on a loaded 2-core machine took 92 s


def launch_args(config: EngineConfig, port: int, host: str = "127.0.0.1", python: str = sys.executable) -> list[str]:
    """argv of one SGLang HTTP server serving `config` on host:port."""
    kwargs = {**config.engine_kwargs(), "host": host, "port": int(port)}
    args = [python, "-m", "sglang.launch_server"]
    for key, value in kwargs.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            args.append(flag)
        elif value is not None and value is not False:
            args += [flag, str(value)]
    return args


def worker_env(config: EngineConfig, return_original_logprob: bool = True) -> dict[str, str]:
    """The variables a worker must start with (on top of the caller's environment)."""
    env = dict(config.process_env())
    if return_original_logprob:
        env[RETURN_ORIGINAL_LOGPROB_ENV] = "1"
    return env


EPHEMERAL_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"
LISTEN_PORT_LOW = 20000  # lowest port free_port hands out


def ephemeral_low() -> int:
    """The kernel's lowest ephemeral port (32768 where it cannot be read)."""
    try:
        return int(Path(EPHEMERAL_RANGE_FILE).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1", attempts: int = 64) -> int:
    """A port that a child process can bind later: free now, and below the ephemeral range.

    A port from bind(0) is ephemeral, so between our check and the child's bind any outgoing
    connection on the machine may take it as its source port (seen in CI: a worker failed with
    "address already in use"). Ports below the range are never handed out that way; we pick one at
    random (so concurrent callers rarely agree) and fall back to bind(0) if none is free."""
    high = ephemeral_low() - 1
    if high - LISTEN_PORT_LOW >= attempts:
        for port in random.sample(range(LISTEN_PORT_LOW, high + 1), attempts):
            with socket.socket() as sock:
                try:
                    sock.bind((host, port))
                except OSError:
                    continue
                return port
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalWorker:
    """One running `sglang.launch_server` process (and its process group)."""

    url: str
    process: subprocess.Popen
    log_path: Path

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, num_chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-num_chars:]
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL the server and its children at once (a crash, as tests need it)."""
        self._signal(signal.SIGKILL)
        self.process.wait()

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left after `timeout_s`."""
        if self.alive:
            self._signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                pass
        self._signal(signal.SIGKILL)  # children that outlived their parent
        self.process.wait()

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.process.pid, sig)  # the group this worker leads (start_new_session)
        except ProcessLookupError:
            pass


class LocalWorkers:
    """Started workers; a context manager that stops them all."""

    def __init__(self, workers: Sequence[LocalWorker]) -> None:
        self.workers = list(workers)

    @property
    def urls(self) -> list[str]:
        return [w.url for w in self.workers]

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()

    def __enter__(self) -> "LocalWorkers":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_workers(config: EngineConfig, num_workers: int = 1, host: str = "127.0.0.1",
                  ports: Sequence[int] | None = None, log_dir: str | os.PathLike | None = None,
                  return_original_logprob: bool = True, start_timeout_s: float = START_TIMEOUT_S) -> LocalWorkers:
    """Start `num_workers` servers at once and wait until each answers /health.

    A worker that exits or does not come up in time stops every worker started here and raises
    RuntimeError with the end of its log. `return_original_logprob=False` starts a worker with
    SGLang's default log-prob convention (tests use it to check that HttpEngine refuses it)."""
    if num_workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers}")
    ports = list(ports) if ports is not None else [free_port(host) for _ in range(num_workers)]
    if len(ports) != num_workers:
        raise ValueError(f"{num_workers} workers need {num_workers} ports, got {ports}")
    logs = Path(log_dir) if log_dir is not None else Path(os.environ.get("TMPDIR", "/tmp")) / "specrl-sglang-workers"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **worker_env(config, return_original_logprob)}
    if not return_original_logprob:
        env.pop(RETURN_ORIGINAL_LOGPROB_ENV, None)
    started: list[LocalWorker] = []
    try:
        for i, port in enumerate(ports):
            worker_config = config if config.profile == "cpu" or num_workers == 1 else replace(
                config, extra={"base_gpu_id": i, **config.extra})
            log_path = logs / f"sglang-{host}-{port}.log"
            with open(log_path, "wb") as log:
                proc = subprocess.Popen(launch_args(worker_config, port, host), env=env, stdout=log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
            started.append(LocalWorker(f"http://{host}:{port}", proc, log_path))
        deadline = time.monotonic() + start_timeout_s
        for worker in started:
            wait_healthy(worker, deadline)
    except BaseException:
        for worker in started:
            worker.stop(timeout_s=5)
        raise
    return LocalWorkers(started)


def router_args(worker_urls: Sequence[str], port: int, host: str = "127.0.0.1", policy: str = "manual",
                python: str = sys.executable) -> list[str]:
    """argv of an sglang-router in front of `worker_urls` (`manual`: sticky per x-smg-routing-key)."""
    return [python, "-m", "sglang_router.launch_router", "--worker-urls", *worker_urls, "--policy", policy,
            "--host", host, "--port", str(int(port)), "--prometheus-port", str(free_port(host)), "--log-level", "warn",
            # a loaded CPU worker answers /health slowly: do not count it dead (the backend names dead workers)
            "--health-check-timeout-secs", "30", "--disable-circuit-breaker"]


def start_router(worker_urls: Sequence[str], policy: str = "manual", host: str = "127.0.0.1", port: int | None = None,
                 log_dir: str | os.PathLike | None = None, start_timeout_s: float = 120.0) -> LocalWorker:
    """Start an sglang-router (pip package `sglang-router`) and wait until it is ready (/readiness:
    it has found a healthy worker; /health answers before that)."""
    port = port if port is not None else free_port(host)
    logs = Path(log_dir) if log_dir is not None else Path(os.environ.get("TMPDIR", "/tmp")) / "specrl-sglang-workers"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"sglang-router-{host}-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(router_args(worker_urls, port, host, policy), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    router = LocalWorker(f"http://{host}:{port}", proc, log_path)
    try:
        wait_healthy(router, time.monotonic() + start_timeout_s, "/readiness")
    except BaseException:
        router.stop(timeout_s=5)
        raise
    return router


def wait_healthy(worker: LocalWorker, deadline: float, path: str = "/health") -> None:
    """Poll `worker`'s `path` until it answers 200; RuntimeError if it dies or time runs out."""
    while True:
        if not worker.alive:
            raise RuntimeError(f"SGLang worker {worker.url} exited with {worker.process.returncode} while starting; "
                               f"its log ({worker.log_path}) ends with:\n{worker.log_tail()}")
        try:
            with urllib.request.urlopen(worker.url + path, timeout=5) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"SGLang worker {worker.url} did not become healthy in time; its log ends with:\n"
                               f"{worker.log_tail()}")
        time.sleep(1.0)


def main(argv: Sequence[str] | None = None) -> int:
    import argparse
    import shlex

    parser = argparse.ArgumentParser(prog="python -m specrl_sglang.sglang_workers", description=__doc__.split("\n")[0])
    parser.add_argument("--model-path", required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=30000, help="first worker's port; the others follow")
    parser.add_argument("--profile", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--print", action="store_true", help="print the commands instead of running them")
    args = parser.parse_args(argv)
    config = EngineConfig(model_path=args.model_path, profile=args.profile)
    ports = [args.port + i for i in range(args.workers)]
    if args.print:
        env = " ".join(f"{k}={v}" for k, v in worker_env(config).items())
        for i, port in enumerate(ports):
            cfg = config if args.profile == "cpu" else replace(config, extra={"base_gpu_id": i})
            print(env, shlex.join(launch_args(cfg, port, args.host, python="python")), "&")
        return 0
    with start_workers(config, args.workers, args.host, ports) as workers:
        print(" ".join(f"--sglang-url {url}" for url in workers.urls), flush=True)
        try:
            while all(w.alive for w in workers.workers):
                time.sleep(1.0)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
