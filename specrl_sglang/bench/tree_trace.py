"""A random, realistic radix-tree trace and a runner that replays it on any tree with our API.

The trace mimics SPEC-RL rollouts: ``num_prompts`` prompts x ``num_samples`` samples. Even prompts
live in the default namespace as ``system prompt + prompt + response`` (engine-style prefix
caching: every key shares the system prompt); odd prompts get their own namespace holding only
responses (trajectory-store style). A prompt's samples share a random-length common response
prefix. After each prompt's inserts come matches of stored keys cut at random points (these split
nodes), matches of fresh keys (stored prefix + new tokens), a match into an older prompt, locks on
matched nodes (at most ``max_locks`` held, oldest released first) and one eviction.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

INSERT, MATCH, LOCK, UNLOCK, EVICT = "insert", "match", "lock", "unlock", "evict"
VOCAB_SIZE = 32_000


class TreeOp(NamedTuple):
    kind: str  # one of INSERT, MATCH, LOCK, UNLOCK, EVICT
    index: int  # INSERT: into keys; MATCH: into queries; LOCK/UNLOCK: op index of a MATCH
    extra_key: str | None = None
    num_tokens: int = 0  # EVICT only


class TreeTrace(NamedTuple):
    ops: list[TreeOp]
    keys: list[np.ndarray]  # np.int32 token ids, one per INSERT
    values: list[np.ndarray]  # np.float32 log-prob-like payload, same lengths as keys
    queries: list[np.ndarray]  # np.int32 token ids, one per MATCH


def build_trace(
    num_prompts: int, num_samples: int, min_len: int, max_len: int, seed: int, max_locks: int = 16
) -> TreeTrace:
    """Generate the trace; deterministic in its arguments."""
    if not 1 <= min_len <= max_len:
        raise ValueError(f"need 1 <= min_len <= max_len, got {min_len}, {max_len}")
    rng = np.random.default_rng(seed)

    def tokens(num: int) -> np.ndarray:
        return rng.integers(0, VOCAB_SIZE, int(num), dtype=np.int32)

    system = tokens(rng.integers(32, 257))
    ops: list[TreeOp] = []
    keys: list[np.ndarray] = []
    values: list[np.ndarray] = []
    queries: list[np.ndarray] = []
    locked: list[int] = []
    keys_of_prompt: list[tuple[str | None, list[int]]] = []
    evict_len = num_samples * (min_len + max_len) // 4
    for prompt in range(num_prompts):
        extra_key = None if prompt % 2 == 0 else f"prompt-{prompt}"
        head = np.concatenate([system, tokens(rng.integers(16, 257))]) if extra_key is None else tokens(0)
        shared = tokens(rng.integers(0, min_len))
        mine = []
        for _ in range(num_samples):
            tail = tokens(max(0, int(rng.integers(min_len, max_len + 1)) - len(shared)))
            mine.append(len(keys))
            keys.append(np.concatenate([head, shared, tail]))
            values.append(-rng.exponential(1.0, len(keys[-1])).astype(np.float32))
            ops.append(TreeOp(INSERT, mine[-1], extra_key))
        keys_of_prompt.append((extra_key, mine))
        for _ in range(num_samples):
            stored = keys[mine[int(rng.integers(len(mine)))]]
            cut = int(rng.integers(1, len(stored) + 1))
            queries.append(stored[:cut])
            ops.append(TreeOp(MATCH, len(queries) - 1, extra_key))
            queries.append(np.concatenate([stored[: int(rng.integers(0, len(stored)))], tokens(64)]))
            ops.append(TreeOp(MATCH, len(queries) - 1, extra_key))
            if rng.random() < 0.5:
                locked.append(len(ops) - 1)
                ops.append(TreeOp(LOCK, locked[-1]))
                if len(locked) > max_locks:
                    ops.append(TreeOp(UNLOCK, locked.pop(0)))
        old_key, old_mine = keys_of_prompt[int(rng.integers(len(keys_of_prompt)))]
        queries.append(keys[old_mine[0]])
        ops.append(TreeOp(MATCH, len(queries) - 1, old_key))
        ops.append(TreeOp(EVICT, -1, num_tokens=evict_len))
    ops.extend(TreeOp(UNLOCK, index) for index in locked)
    return TreeTrace(ops, keys, values, queries)


def run_trace(tree: Any, trace: TreeTrace, keys: list[Any], values: list[Any], queries: list[Any]) -> list[tuple]:
    """Replay ``trace`` on ``tree``; return one (answer, evictable, protected) tuple per op.

    ``keys``/``values``/``queries`` are the trace's arrays, pre-converted to what ``tree`` takes
    (so conversion stays out of timings). Answers: prefix_len for INSERT and MATCH, the change of
    evictable size for LOCK and UNLOCK, tokens evicted for EVICT.
    """
    nodes: dict[int, Any] = {}
    answers = []
    for op_index, op in enumerate(trace.ops):
        kind = op.kind
        if kind == INSERT:
            answer = tree.insert(keys[op.index], values[op.index], op.extra_key)
        elif kind == MATCH:
            answer, nodes[op_index] = tree.match_prefix(queries[op.index], op.extra_key)[:2]
        elif kind == LOCK:
            answer = tree.inc_lock_ref(nodes[op.index])
        elif kind == UNLOCK:
            answer = tree.dec_lock_ref(nodes[op.index])
        else:
            answer = tree.evict(op.num_tokens)
        answers.append((answer, tree.evictable_size(), tree.protected_size()))
    return answers
