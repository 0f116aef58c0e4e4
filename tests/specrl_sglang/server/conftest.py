"""A real `serve` process (CPU SGLang engine + HTTP app) on loopback, shared by this package's tests."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from types import SimpleNamespace
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@dataclass
class ServerProc:
    url: str
    proc: subprocess.Popen
    workdir: Path
    snapshot: Path
    report: Path
    log: Path

    def log_tail(self, num_chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-num_chars:]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_path: str, workdir: Path, *extra: str, timeout: float = 180.0) -> ServerProc:
    """Start `python -m specrl_sglang.server.main` and wait until /health answers."""
    from specrl_sglang.server.client import RolloutClient

    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = workdir / f"server-{port}.log"
    cmd = [sys.executable, "-m", "specrl_sglang.server.main", "--model", model_path, "--port", str(port),
           "--snapshot", str(workdir / "store.snap"), "--report", str(workdir / "steps.jsonl"),
           "--max-total-tokens", "16384", "--log-level", "warning", *extra]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    server = ServerProc(f"http://127.0.0.1:{port}", proc, workdir, workdir / "store.snap", workdir / "steps.jsonl", log)
    client, deadline = RolloutClient(server.url, timeout=5), time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{server.log_tail()}")
        try:
            client.health()
            return server
        except Exception:
            if time.monotonic() > deadline:
                stop_server(server, signal.SIGKILL)
                raise TimeoutError(f"server not ready in {timeout}s:\n{server.log_tail()}") from None
            time.sleep(0.25)


def stop_server(server: ServerProc, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
    """Send `sig` to the server (only the process we started) and return its exit status."""
    if server.proc.poll() is None:
        server.proc.send_signal(sig)
    try:
        return server.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        return server.proc.wait(timeout)


@pytest.fixture(scope="package")
def server(tiny_model_path, tmp_path_factory):
    """One server for the package: lenience inf (a draft under unchanged weights is reused whole), 1 MiB body limit."""
    srv = start_server(tiny_model_path, tmp_path_factory.mktemp("serve"), "--lenience", "inf", "--max-body-mb", "1")
    yield srv
    rc = stop_server(srv)
    assert rc == 0, f"server exit status {rc} after SIGTERM:\n{srv.log_tail()}"
    assert srv.snapshot.exists(), "the store must be saved on shutdown"


@pytest.fixture(scope="package")
def base_weights(tiny_model_path):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    return {k: v.detach().clone() for k, v in model.named_parameters()}


@pytest.fixture(scope="session")
def launcher():
    """`start_server` / `stop_server` for tests that manage their own server (test modules cannot
    import conftest under --import-mode=importlib)."""
    return SimpleNamespace(start=start_server, stop=stop_server)
