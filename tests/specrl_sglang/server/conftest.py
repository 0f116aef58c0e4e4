"""Real `serve` processes (CPU SGLang engine + HTTP app) on loopback, and helpers to probe them.

The package's shared server runs with an auth token, a snapshot directory, a report, two allowed
weight directories, lenience inf (a draft under unchanged weights is reused whole) and a 1 MiB
body limit. Helpers read the store two ways: its content digest (GET /store) and its full
contents (a snapshot written through the API, loaded here).
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import msgpack
import psutil
import pytest
import requests

from specrl_sglang.sglang_workers import free_port

REPO = Path(__file__).resolve().parents[3]
TOKEN = "test-token-0123456789abcdef"


@dataclass
class ServerProc:
    url: str
    proc: subprocess.Popen
    workdir: Path
    snapdir: Path
    snapshot: Path
    report: Path
    log: Path
    token: str | None
    args: list[str] = field(default_factory=list)

    def log_tail(self, num_chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-num_chars:]

    def client(self, **kwargs):
        from specrl_sglang.server.client import RolloutClient

        return RolloutClient(self.url, auth_token=self.token or "", **kwargs)

    def engine_procs(self) -> list[psutil.Process]:
        """SGLang's processes under this server (only ours: children of the process we started)."""
        return [p for p in psutil.Process(self.proc.pid).children(recursive=True) if p.name().startswith("sglang")]

    def post(self, path: str, body, fmt: str = "msgpack", token: str | None = "default", **headers):
        """Raw POST; returns (status, decoded body)."""
        if fmt == "msgpack":
            data, ctype = msgpack.packb(body, use_bin_type=True), "application/msgpack"
        elif fmt == "json":
            data, ctype = json.dumps(body).encode(), "application/json"
        else:
            data, ctype = body, fmt
        token = self.token if token == "default" else token
        auth = {"Authorization": f"Bearer {token}"} if token else {}
        r = requests.post(f"{self.url}/{path}", data=data, headers={"Content-Type": ctype, **auth, **headers}, timeout=120)
        return r.status_code, decode_reply(r)

    def raw(self, method: str, path: str, headers: dict[str, str], body: bytes = b"", timeout: float = 30.0) -> str:
        """Send raw bytes on a fresh connection (headers as given, e.g. a Content-Length that lies);
        returns what the server answered before closing or within `timeout`."""
        host, port = self.url.removeprefix("http://").split(":")
        head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        with socket.create_connection((host, int(port)), timeout=timeout) as s:
            s.sendall(head.encode() + b"\r\n" + body)
            chunks: list[bytes] = []
            try:  # headers and body may arrive in separate segments: read until the server closes
                while chunk := s.recv(65536):
                    chunks.append(chunk)
                    if _complete(b"".join(chunks)):
                        break
            except (TimeoutError, ConnectionResetError):
                pass
            return b"".join(chunks).decode(errors="replace")

    def digest(self) -> str:
        return self.client().store_digest()["content_sha256"]

    def contents(self, name: str = "probe.snap") -> dict:
        """Every stored prompt's samples, via a snapshot written by the server and loaded here."""
        from radix_cache.snapshot import load_snapshot

        saved = self.client().snapshot(name)
        store = load_snapshot(saved["path"])
        return {pid: [(d.token_ids.tolist(), d.logprobs.tolist(), None if d.versions is None else d.versions.tolist())
                      for d in store.samples(pid)] for pid in store.prompt_ids()}

    def assert_up(self) -> dict:
        health = self.client(timeout=30).health()
        assert health["status"] in ("ok", "poisoned"), health
        assert self.proc.poll() is None
        return health


def decode_reply(r: requests.Response):
    if "msgpack" in r.headers.get("content-type", ""):
        return msgpack.unpackb(r.content, raw=False)
    try:
        return r.json()
    except ValueError:
        return {"raw": r.text}


def start_server(model_path: str | None, workdir: Path, *extra: str, token: str | None = TOKEN,
                 timeout: float = 300.0, port: int | None = None) -> ServerProc:
    """Start `python -m specrl_sglang serve` and wait until /health answers with a running engine.
    `model_path` None: no embedded engine (pass --sglang-url in `extra`)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log = workdir / f"server-{port}.log"
    snapdir = workdir / "snaps"
    engine = ["--model", model_path, "--max-total-tokens", "16384"] if model_path is not None else []
    args = [*engine, "--port", str(port), "--snapshot-dir", str(snapdir), "--snapshot", "store.snap",
            "--report", str(workdir / "steps.jsonl"), "--log-level", "warning", *extra]
    if token:
        args += ["--auth-token", token]
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "specrl_sglang", "serve", *args], cwd=REPO, stdout=out,
                                stderr=subprocess.STDOUT)
    server = ServerProc(f"http://127.0.0.1:{port}", proc, workdir, snapdir, snapdir / "store.snap",
                        workdir / "steps.jsonl", log, token, args)
    wait_ready(server, timeout)
    return server


def wait_ready(server: ServerProc, timeout: float = 300.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        if server.proc.poll() is not None:
            raise RuntimeError(f"server exited with {server.proc.returncode}:\n{server.log_tail()}")
        try:
            r = requests.get(f"{server.url}/health", timeout=5)
            if r.status_code == 200:
                return decode_reply(r)
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            stop_server(server, signal.SIGKILL)
            raise TimeoutError(f"server not ready in {timeout}s:\n{server.log_tail()}")
        time.sleep(0.25)


def stop_server(server: ServerProc, sig: int = signal.SIGTERM, timeout: float = 90.0) -> int:
    """Send `sig` to the server (only the process we started) and return its exit status."""
    if server.proc.poll() is None:
        server.proc.send_signal(sig)
    try:
        return server.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        return server.proc.wait(timeout)


@pytest.fixture(scope="session")
def weights_root(tmp_path_factory) -> Path:
    """An allowed --weights-dir where tests build (good and bad) checkpoints."""
    return tmp_path_factory.mktemp("weights")


@pytest.fixture(scope="package")
def server(tiny_model_path, tmp_path_factory, weights_root):
    srv = start_server(tiny_model_path, tmp_path_factory.mktemp("serve"), "--lenience", "inf", "--max-body-mb", "1",
                       "--weights-dir", str(Path(tiny_model_path).parent), "--weights-dir", str(weights_root),
                       "--read-timeout", "3", "--store-max-tokens", "2000000")
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
    """`start`, `stop`, `wait_ready` for tests that manage their own server (test modules cannot
    import conftest under --import-mode=importlib)."""
    return SimpleNamespace(start=start_server, stop=stop_server, wait_ready=wait_ready, token=TOKEN)


def _complete(answer: bytes) -> bool:
    """True once an HTTP answer holds its headers and the Content-Length bytes they announce."""
    head, sep, body = answer.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
    return False
