"""``specrl-sglang bench store``: the trajectory store at the paper's scale, on the host CPU.

One rollout step of the SPEC-RL paper's GRPO runs: 1024 prompts x 8 samples, responses of
1k-4k tokens (uniform), vocabulary 151,936 (Qwen3). Samples of a prompt share prefixes as
low-entropy reasoning does: sample j follows an earlier sample of its prompt up to a branching
point (geometric, mean ``mean_shared`` of the response) and then diverges. Each measured step
looks up the 8 drafts of every prompt (locked), then records 8 new responses per prompt, as a
rollout step does; the store is bounded by the epoch's tokens, so steps after the first replace
every prompt's samples. Reported: seconds per step for lookup and put (median of ``num_steps``
steps after a warm-up step), peak RSS, bytes per stored token (radix_cache.footprint: token ids,
log-probs, tree nodes and records, policy versions included as run-length segments per sample),
and the share of a GPU rollout step that the store's host time is (the paper's steps take
minutes; see ``gpu_step_s``).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from typing import Any

import numpy as np

from specrl_sglang.plain_json import dumps

VOCAB = 151_936
GPU_STEP_S = 300.0  # order of a 1024 x 8 x 4k rollout step on 8 H100s in the paper (minutes)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("store", help="trajectory-store put/lookup cost at the paper's scale")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--num-prompts", type=int, default=1024)
    p.add_argument("--num-samples", type=int, default=8)
    p.add_argument("--min-len", type=int, default=1024)
    p.add_argument("--max-len", type=int, default=4096)
    p.add_argument("--mean-shared", type=float, default=0.5, help="mean shared share of a sample with an earlier one")
    p.add_argument("--num-steps", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_run_cli)


def _run_cli(args: argparse.Namespace) -> int:
    for name in ("num_prompts", "num_samples", "min_len", "num_steps"):
        if getattr(args, name) < 1:
            raise SystemExit(f"bench store: --{name.replace('_', '-')} must be >= 1")
    if args.max_len < args.min_len or not 0 <= args.mean_shared < 1:
        raise SystemExit("bench store: need --max-len >= --min-len and 0 <= --mean-shared < 1")
    result = run_store_bench(args.num_prompts, args.num_samples, args.min_len, args.max_len, args.mean_shared,
                             args.num_steps, args.seed)
    if args.json:
        print(dumps(result), flush=True)
    else:
        for key, value in result.items():
            if key != "config":
                print(f"{key:>26}: {value}")
    return 0


def _epoch(rng: np.random.Generator, num_prompts: int, num_samples: int, min_len: int, max_len: int,
           mean_shared: float) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    epoch = []
    for _ in range(num_prompts):
        samples: list[tuple[np.ndarray, np.ndarray]] = []
        for j in range(num_samples):
            n = int(rng.integers(min_len, max_len + 1))
            ids = rng.integers(0, VOCAB, size=n, dtype=np.int32)
            lps = -rng.exponential(0.3, size=n).astype(np.float32)
            if j and mean_shared > 0:
                parent_ids, parent_lps = samples[int(rng.integers(0, j))]
                shared = min(n, len(parent_ids), int(rng.geometric(1.0 / (mean_shared * n + 1))))
                ids[:shared], lps[:shared] = parent_ids[:shared], parent_lps[:shared]
            samples.append((ids, lps))
        epoch.append(samples)
    return epoch


def run_store_bench(num_prompts: int = 1024, num_samples: int = 8, min_len: int = 1024, max_len: int = 4096,
                    mean_shared: float = 0.5, num_steps: int = 3, seed: int = 0) -> dict[str, Any]:
    """Run the benchmark; returns the figures (see the module docstring)."""
    from radix_cache.footprint import store_footprint
    from radix_cache.responses import Response
    from radix_cache.trajectory_store import TrajectoryStore

    rng = np.random.default_rng(seed)
    prompts = [(f"prompt-{i:05d}", rng.integers(0, VOCAB, size=int(rng.integers(64, 512)), dtype=np.int32))
               for i in range(num_prompts)]
    epochs = [_epoch(rng, num_prompts, num_samples, min_len, max_len, mean_shared) for _ in range(2)]
    store = TrajectoryStore(max_tokens=None)
    put_s, lookup_s = [], []
    for step in range(num_steps + 1):  # step 0 fills the store (nothing to look up) and is not timed
        epoch = epochs[step % 2]
        t0 = time.perf_counter()
        for prompt_id, prompt_ids in prompts:
            store.lookup(prompt_id, prompt_ids, num_samples, lock=True)
        t1 = time.perf_counter()
        for (prompt_id, prompt_ids), samples in zip(prompts, epoch):
            versions = np.full(1, step, dtype=np.int32)
            store.put(prompt_id, prompt_ids, [Response(ids, lps, np.broadcast_to(versions, ids.shape)) for ids, lps in samples])
        t2 = time.perf_counter()
        if step:
            lookup_s.append(t1 - t0)
            put_s.append(t2 - t1)
    footprint = store_footprint(store)
    stored = sum(len(ids) for ids, _ in (s for samples in epochs[num_steps % 2] for s in samples))
    step_s = statistics.median(put_s) + statistics.median(lookup_s)
    return {
        "put_s_per_step": statistics.median(put_s),
        "lookup_s_per_step": statistics.median(lookup_s),
        "store_s_per_step": step_s,
        "share_of_gpu_step": step_s / GPU_STEP_S,
        "gpu_step_s": GPU_STEP_S,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "bytes_per_token": footprint.bytes_per_token,
        "store_mb": footprint.total_bytes / 2**20,
        "stored_tokens": footprint.total_tokens,
        "response_tokens": stored,
        "sharing_ratio": stored / footprint.total_tokens if footprint.total_tokens else 0.0,
        "num_nodes": footprint.num_nodes,
        "config": {"num_prompts": num_prompts, "num_samples": num_samples, "min_len": min_len, "max_len": max_len,
                   "mean_shared": mean_shared, "num_steps": num_steps, "seed": seed, "vocab": VOCAB},
    }
