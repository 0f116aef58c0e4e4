"""One load-test client process: `python load_worker.py URL WORKER_ID NUM_ROUNDS`; prints a JSON summary.

Each round sends a rollout of this worker's own prompts, then the same prompts again (which the
server must serve whole from the drafts it just stored: it runs at lenience inf), and checks every
sample of every response. Exits 1 with the first problem found.
"""

import json
import sys
import time

import numpy as np

from specrl_sglang.server.client import RolloutClient

MAX_LEN = 16


def check(reply, reqs, expect_full_reuse):
    samples = reply["samples"]
    assert [s["prompt_id"] for s in samples] == [r["prompt_id"] for r in reqs for _ in range(r["n"])], "sample order"
    for s in samples:
        assert 1 <= len(s["token_ids"]) <= MAX_LEN and len(s["logprobs"]) == len(s["token_ids"]), "lengths"
        assert np.all(s["logprobs"] <= 1e-4) and np.all(np.isfinite(s["logprobs"])), "log-probs"
        assert s["finish_reason"] in ("stop", "length"), s["finish_reason"]
        if expect_full_reuse:
            assert s["fully_reused"] and s["accepted_len"] == s["draft_len"] == len(s["token_ids"]), "reuse"
    return samples


def main(url, worker, rounds):
    client = RolloutClient(url)
    latencies = []
    for k in range(rounds):
        rng = np.random.default_rng([worker, k])
        reqs = [{"prompt_id": f"load-w{worker}-r{k}-p{i}", "prompt_ids": rng.integers(3, 250, size=5 + i), "n": 2} for i in range(2)]
        t0 = time.perf_counter()
        first = check(client.rollout(reqs, MAX_LEN), reqs, False)
        t1 = time.perf_counter()
        second = check(client.rollout(reqs, MAX_LEN), reqs, True)
        latencies += [t1 - t0, time.perf_counter() - t1]
        assert sorted(tuple(s["token_ids"]) for s in first) == sorted(tuple(s["token_ids"]) for s in second), "drafts"
    print(json.dumps({"worker": worker, "requests": len(latencies), "latencies": latencies}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
