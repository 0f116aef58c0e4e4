"""Concurrent clients from several processes on loopback: every response is complete and correct."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

NUM_WORKERS, NUM_ROUNDS = 4, 2


def test_concurrent_clients_from_several_processes(server):
    client = server.client()
    steps_before = client.health()["num_steps"]
    worker = Path(__file__).with_name("load_worker.py")
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen([sys.executable, str(worker), server.url, str(w), str(NUM_ROUNDS)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "SPECRL_AUTH_TOKEN": server.token})
        for w in range(NUM_WORKERS)
    ]
    outputs = [p.communicate(timeout=240) for p in procs]
    wall = time.perf_counter() - t0
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    summaries = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    num_requests = sum(s["requests"] for s in summaries)
    assert num_requests == NUM_WORKERS * NUM_ROUNDS * 2
    assert client.health()["num_steps"] == steps_before + num_requests  # one step per request, none lost
    latencies = sorted(x for s in summaries for x in s["latencies"])
    print(f"\nload: {num_requests} rollouts from {NUM_WORKERS} processes in {wall:.2f}s; "
          f"latency p50 {latencies[len(latencies) // 2]:.3f}s max {latencies[-1]:.3f}s")
    families = client.metrics()
    assert 'specrl_http_requests_total{endpoint="rollout",status="500"}' not in families
