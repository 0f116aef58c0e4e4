"""`specrl-sglang bench serve`: rollout throughput of a real server with 1 and N concurrent clients.

Starts `specrl-sglang serve` on loopback (a subprocess, the tiny model unless --model), then for
each client count c runs c client processes that each send --rounds rollout steps of --prompts
prompts x --samples samples (--max-len tokens, EOS ignored, so every sample decodes the same
number of tokens; fresh prompt ids per step, so no step reuses another's drafts). Each client
sends one untimed warm-up step first; the timed part starts for all clients at once (a barrier)
and ends when the last finishes. Reports samples/s per client count and the ratio of the largest
count to 1: concurrent clients' steps run together inside SGLang's continuous batching, so the
ratio measures how much of that a server gets. For reference, `one_client_batched` is one client
sending the largest count's prompts as ONE step per round (the same batch without concurrency):
concurrent clients close to it means the server adds no serialisation of its own, and the ratio is
SGLang's batching gain on this machine. The machine's load average before and after is reported:
on a shared machine the figures are noisy.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import secrets
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

from specrl_sglang.plain_json import dumps


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("serve", help="samples/s of a real rollout server with 1 and N concurrent clients")
    p.add_argument("--clients", default="1,4", help="comma-separated client counts (default 1,4)")
    p.add_argument("--rounds", type=int, default=4, help="timed steps per client")
    p.add_argument("--prompts", type=int, default=2, help="prompts per step")
    p.add_argument("--samples", type=int, default=4, help="samples per prompt")
    p.add_argument("--max-len", type=int, default=128, help="tokens decoded per sample")
    p.add_argument("--repeats", type=int, default=3, help="measurements per client count (interleaved; medians reported)")
    p.add_argument("--mode", default="vanilla", choices=("spec-rl", "exact", "vanilla"))
    p.add_argument("--model", help="checkpoint to serve (default: the tiny model, built once)")
    p.add_argument("--tiny-dir", default=".cache/specrl/serve-tiny")
    p.add_argument("--start-timeout", type=float, default=600.0, help="seconds to wait for the server")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_run_cli)


def _run_cli(args: argparse.Namespace) -> int:
    clients = _counts(args.clients)
    for name in ("rounds", "prompts", "samples", "max_len", "repeats"):
        if getattr(args, name) < 1:
            raise SystemExit(f"bench serve: --{name.replace('_', '-')} must be >= 1")
    log = (lambda m: print(m, file=sys.stderr, flush=True)) if args.json else print
    result = run_serve_bench(clients, rounds=args.rounds, prompts=args.prompts, samples=args.samples,
                             max_len=args.max_len, mode=args.mode, model=args.model, tiny_dir=args.tiny_dir,
                             start_timeout=args.start_timeout, repeats=args.repeats, log=log)
    if args.json:
        print(dumps(result), flush=True)
    else:
        for c in clients:
            print(f"{c:>3} client(s): {result['samples_per_s'][str(c)]:8.2f} samples/s")
        print(f"one client, the same batch as one step: {result['one_client_batched_samples_per_s']:8.2f} samples/s")
        print(f"ratio {result['ratio_name']}: {result['ratio']:.2f}  (load average {result['load_avg_before']} -> "
              f"{result['load_avg_after']} on {result['cpus']} CPUs)")
    return 0


def _counts(text: str) -> list[int]:
    try:
        counts = sorted({int(c) for c in text.split(",") if c.strip()})
    except ValueError:
        raise SystemExit(f"bench serve: --clients must be comma-separated integers, got {text!r}") from None
    if not counts or counts[0] < 1 or counts[-1] > 64:
        raise SystemExit(f"bench serve: --clients must be integers in [1, 64], got {text!r}")
    return counts


def run_serve_bench(clients: list[int], rounds: int = 4, prompts: int = 2, samples: int = 4, max_len: int = 128,
                    mode: str = "vanilla", model: str | None = None, tiny_dir: str = ".cache/specrl/serve-tiny",
                    start_timeout: float = 600.0, repeats: int = 3, log=print) -> dict[str, Any]:
    """Start a server, measure every client count `repeats` times (interleaved, so a load change on
    a shared machine hits every count alike), stop the server; returns the medians and every run."""
    token = secrets.token_hex(16)
    load_before = os.getloadavg()
    top = max(clients)
    runs: dict[str, list[dict]] = {str(c): [] for c in clients}
    batched: list[dict] = []
    with _Server(model, tiny_dir, mode, token, start_timeout, log) as server:
        for r in range(repeats):
            for c in clients:
                log(f"bench serve [{r + 1}/{repeats}]: {c} client(s) x {rounds} step(s) of {prompts} x {samples} samples, "
                    f"{max_len} tokens")
                runs[str(c)].append(_measure(server.url, token, f"r{r}-c{c}", c, rounds, prompts, samples, max_len))
            log(f"bench serve [{r + 1}/{repeats}]: reference: 1 client, {top * prompts} prompts per step")
            batched.append(_measure(server.url, token, f"r{r}-batched", 1, rounds, top * prompts, samples, max_len))
        health = server.health()
    sps = {k: statistics.median(run["samples_per_s"] for run in v) for k, v in runs.items()}
    low = str(min(clients))
    return {
        "clients": clients,
        "samples_per_s": sps,  # medians over the repeats
        "ratio_name": f"{top}_vs_{low}",
        "ratio": sps[str(top)] / sps[low],
        "ratios_per_repeat": [a["samples_per_s"] / b["samples_per_s"] for a, b in zip(runs[str(top)], runs[low])],
        "one_client_batched_samples_per_s": statistics.median(b["samples_per_s"] for b in batched),
        "runs": runs,
        "mode": mode,
        "config": {"rounds": rounds, "prompts": prompts, "samples": samples, "max_len": max_len, "repeats": repeats,
                   "model": health.get("model_path")},
        "cpus": os.cpu_count(),
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
    }


def _measure(url: str, token: str, label: str, num_clients: int, rounds: int, prompts: int, samples: int,
             max_len: int) -> dict:
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(num_clients + 1), ctx.Queue()
    procs = [ctx.Process(target=_client, args=(url, token, f"{label}-{k}", rounds, prompts, samples, max_len, barrier, results))
             for k in range(num_clients)]
    for p in procs:
        p.start()
    try:
        barrier.wait(timeout=1800)  # every client has warmed up
    except threading.BrokenBarrierError:
        raise RuntimeError(f"bench serve: a client failed: {results.get(timeout=60).get('error')}") from None
    t0 = time.perf_counter()
    outs = [results.get(timeout=3600) for _ in procs]
    wall = time.perf_counter() - t0
    for p in procs:
        p.join(60)
    errors = [o["error"] for o in outs if "error" in o]
    if errors:
        raise RuntimeError(f"bench serve: a client failed: {errors[0]}")
    total = sum(o["samples"] for o in outs)
    return {"samples": total, "wall_s": wall, "samples_per_s": total / wall,
            "step_latency_s": sorted(x for o in outs for x in o["latencies"])}


def _client(url, token, name, rounds, prompts, samples, max_len, barrier, results) -> None:
    """One client process: a warm-up step, the barrier, then `rounds` timed steps."""
    import numpy as np

    from specrl_sglang.server.client import RolloutClient

    try:
        with RolloutClient(url, timeout=3600, auth_token=token) as client:
            vocab = client.health()["vocab_size"]
            rng = np.random.default_rng(list(name.encode()))

            def step(tag: str) -> int:
                reqs = [{"prompt_id": f"bench-{name}-{tag}-{i}", "prompt_ids": rng.integers(3, vocab, 16), "n": samples}
                        for i in range(prompts)]
                reply = client.rollout(reqs, max_len, sampling={"ignore_eos": True})
                return len(reply["samples"])

            step("warmup")
            barrier.wait(timeout=1800)
            latencies, total = [], 0
            for r in range(rounds):
                t0 = time.perf_counter()
                total += step(str(r))
                latencies.append(time.perf_counter() - t0)
        results.put({"samples": total, "latencies": latencies})
    except Exception as exc:  # reported to the parent, which fails the run
        try:
            barrier.abort()
        finally:
            results.put({"error": f"client {name}: {type(exc).__name__}: {exc}"})


class _Server:
    """`specrl-sglang serve` in a subprocess on a free loopback port; stopped with SIGTERM."""

    def __init__(self, model, tiny_dir, mode, token, start_timeout, log) -> None:
        self.args, self.token, self.timeout, self.log = (model, tiny_dir, mode), token, start_timeout, log

    def __enter__(self) -> "_Server":
        model, tiny_dir, mode = self.args
        from specrl_sglang.sglang_workers import free_port

        port = free_port("127.0.0.1")
        self.url = f"http://127.0.0.1:{port}"
        which = ["--model", model] if model else ["--tiny", "--tiny-dir", tiny_dir]
        cmd = [sys.executable, "-m", "specrl_sglang", "serve", *which, "--port", str(port), "--mode", mode,
               "--log-level", "warning", "--max-total-tokens", "32768"]
        self.log(f"bench serve: starting {' '.join(cmd)}")
        self.proc = subprocess.Popen(cmd, stdout=sys.stderr, stderr=sys.stderr, env={**os.environ, "SPECRL_AUTH_TOKEN": self.token})
        deadline = time.monotonic() + self.timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bench serve: the server exited with status {self.proc.returncode}")
            try:
                self.health()
                return self
            except Exception:
                if time.monotonic() > deadline:
                    self.__exit__()
                    raise TimeoutError(f"bench serve: no server at {self.url} after {self.timeout} s") from None
                time.sleep(0.5)

    def health(self) -> dict[str, Any]:
        from specrl_sglang.server.client import RolloutClient

        with RolloutClient(self.url, timeout=10, auth_token=self.token) as client:
            return client.health()

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(60)

