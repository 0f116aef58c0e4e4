"""``specrl-sglang bench tree``: our RadixCache vs SGLang's on one random trace, same process.

Both trees replay the same ops (see ``tree_trace``) with inputs pre-converted to what each
takes (np.int32 / np.float32 arrays for ours; ``array('q')`` keys and torch tensors for SGLang).
Every answer and size must agree. Timing: best of ``repeats`` runs per tree, each on a fresh
tree, interleaved, with the garbage collector paused (as ``timeit`` does).
"""

from __future__ import annotations

import argparse
import gc
import time
from typing import Any

from radix_cache.footprint import tree_footprint
from radix_cache.tree import RadixCache
from specrl_sglang.bench.tree_trace import TreeTrace, build_trace, run_trace
from specrl_sglang.plain_json import dumps
from specrl_sglang.sglang_radix_peer import SGLangRadixPeer, to_peer_key, to_peer_value


def run_tree_bench(
    num_prompts: int = 64,
    num_samples: int = 8,
    min_len: int = 1024,
    max_len: int = 2048,
    seed: int = 0,
    page_size: int = 1,
    repeats: int = 3,
) -> dict[str, Any]:
    """Run the trace on both trees; return timings, whether they agree, and our footprint.

    Keys: ours_ops_per_s, sglang_ops_per_s, speedup, identical, bytes_per_token, num_ops,
    total_tokens, num_nodes, num_mismatches, first_mismatch (op index or None), and the config.
    """
    trace = build_trace(num_prompts, num_samples, min_len, max_len, seed)
    peer_inputs = (
        [to_peer_key(key) for key in trace.keys],
        [to_peer_value(value) for value in trace.values],
        [to_peer_key(query) for query in trace.queries],
    )
    our_inputs = (trace.keys, trace.values, trace.queries)
    best = {"ours": float("inf"), "sglang": float("inf")}
    answers: dict[str, list[tuple]] = {}
    tree = None
    for _ in range(max(1, repeats)):
        for name in ("ours", "sglang"):
            fresh = RadixCache(page_size) if name == "ours" else SGLangRadixPeer(page_size)
            inputs = our_inputs if name == "ours" else peer_inputs
            seconds, answers[name] = _timed(fresh, trace, inputs)
            best[name] = min(best[name], seconds)
            if name == "ours":
                tree = fresh
    mismatches = [i for i, (a, b) in enumerate(zip(answers["ours"], answers["sglang"])) if a != b]
    footprint = tree_footprint(tree)
    num_ops = len(trace.ops)
    return {
        "ours_ops_per_s": num_ops / best["ours"],
        "sglang_ops_per_s": num_ops / best["sglang"],
        "speedup": best["sglang"] / best["ours"],
        "identical": not mismatches and len(answers["ours"]) == len(answers["sglang"]),
        "num_mismatches": len(mismatches),
        "first_mismatch": mismatches[0] if mismatches else None,
        "bytes_per_token": footprint.bytes_per_token,
        "num_ops": num_ops,
        "total_tokens": footprint.total_tokens,
        "num_nodes": footprint.num_nodes,
        "config": {
            "num_prompts": num_prompts,
            "num_samples": num_samples,
            "min_len": min_len,
            "max_len": max_len,
            "seed": seed,
            "page_size": page_size,
            "repeats": repeats,
        },
    }


def _timed(tree: Any, trace: TreeTrace, inputs: tuple[list, list, list]) -> tuple[float, list[tuple]]:
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        answers = run_trace(tree, trace, *inputs)
        return time.perf_counter() - start, answers
    finally:
        gc.enable()


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``tree`` on the ``bench`` subcommand's subparsers."""
    parser = subparsers.add_parser("tree", help="radix tree ops/s and memory vs SGLang's RadixCache")
    parser.add_argument("--num-prompts", type=int, default=64)
    parser.add_argument("--samples", type=int, default=8, help="samples per prompt")
    parser.add_argument("--min-len", type=int, default=1024, help="min tokens per sample")
    parser.add_argument("--max-len", type=int, default=2048, help="max tokens per sample")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--page-size", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per tree; the best counts")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    result = run_tree_bench(
        args.num_prompts, args.samples, args.min_len, args.max_len, args.seed, args.page_size, args.repeats
    )
    if args.json:
        print(dumps(result))
    else:
        print(f"ops: {result['num_ops']}  tokens kept: {result['total_tokens']}  nodes: {result['num_nodes']}")
        print(f"ours:   {result['ours_ops_per_s']:12,.0f} ops/s")
        print(f"sglang: {result['sglang_ops_per_s']:12,.0f} ops/s")
        print(f"speedup: {result['speedup']:.2f}x  identical answers: {result['identical']}")
        print(f"bytes per stored token (ours): {result['bytes_per_token']:.2f}")
    return 0 if result["identical"] else 1
