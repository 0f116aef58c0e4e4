"""Policy versions as run-length segments: exact per-token drafts, compact storage, snapshots."""

from __future__ import annotations

import hashlib

import msgpack
import numpy as np
import pytest

import radix_cache.snapshot as snapshot
from radix_cache.footprint import store_footprint
from radix_cache.responses import Response
from radix_cache.trajectory_store import TrajectoryStore
from radix_cache.tree import RadixCache
from radix_cache.version_runs import decode_runs, encode_runs

OLD_PAYLOAD = np.dtype([("logprob", np.float32), ("version", np.int32)])  # the tree payload before runs


def reference_samples(page_size: int, responses: list[Response]) -> list[tuple[list, bytes, list]]:
    """What the store returned when versions were part of the tree payload (the old code path)."""
    tree, kept = RadixCache(page_size), []
    for token_ids, logprobs, versions in responses:
        payload = np.empty(len(token_ids), dtype=OLD_PAYLOAD)
        payload["logprob"], payload["version"] = logprobs, versions
        aligned = len(token_ids) - len(token_ids) % page_size
        node = tree.insert_path(token_ids, payload).last_node if aligned else None
        kept.append((node, token_ids[aligned:], payload[aligned:]))
    out = []
    for node, tail_ids, tail in kept:
        ids = np.concatenate([tree.path_key(node), tail_ids]) if node is not None else tail_ids
        values = np.concatenate([tree.path_value(node), tail]) if node is not None else tail
        out.append((ids.tolist(), values["logprob"].tobytes(), values["version"].tolist()))
    return out


def random_responses(rng: np.random.Generator, kind: str) -> list[Response]:
    responses = []
    for _ in range(int(rng.integers(1, 7))):
        n = int(rng.integers(0, 14))
        token_ids = rng.integers(0, 3, size=n).astype(np.int32)  # 3 symbols: prefixes collide often
        logprobs = -rng.random(n).astype(np.float32)
        if kind == "same":
            versions = np.full(n, 4, dtype=np.int32)
        elif kind == "uniform":
            versions = np.full(n, int(rng.integers(0, 3)), dtype=np.int32)
        else:
            versions = rng.integers(0, 3, size=n).astype(np.int32)
        responses.append(Response(token_ids, logprobs, versions))
    return responses


@pytest.mark.parametrize("page_size", [1, 2, 4])
@pytest.mark.parametrize("kind", ["same", "uniform", "per_token"])
def test_drafts_equal_the_per_token_payload_store(page_size, kind, check):
    rng = np.random.default_rng(page_size * 10 + len(kind))
    store = TrajectoryStore(max_tokens=None, page_size=page_size)
    for step in range(60):
        prompt_id = f"p{step % 5}"
        responses = random_responses(rng, kind)
        store.put(prompt_id, [step % 5], responses)
        got = [(d.token_ids.tolist(), d.logprobs.tobytes(), d.versions.tolist()) for d in store.samples(prompt_id)]
        assert got == reference_samples(page_size, responses), step
        assert all(d.versions.dtype == np.int32 for d in store.samples(prompt_id))
    check(store.tree)


def test_a_shared_prefix_keeps_the_versions_of_the_sample_put_first():
    store = TrajectoryStore(max_tokens=None)
    lps = -np.full(5, 0.1, dtype=np.float32)
    store.put("p", [1], [Response(np.array([1, 2, 3], np.int32), lps[:3], np.full(3, 1, np.int32)),
                         Response(np.array([1, 2, 3, 4, 5], np.int32), lps, np.full(5, 2, np.int32))])
    assert [d.versions.tolist() for d in store.samples("p")] == [[1, 1, 1], [1, 1, 1, 2, 2]]
    assert store.samples("p")[1].versions is not store.samples("p")[1].versions  # fresh arrays


def test_runs_encode_and_decode():
    for versions in ([], [3], [3] * 1000, [0, 0, 1, 1, 1, 0], [5, 4, 3]):
        arr = np.array(versions, dtype=np.int32)
        runs = encode_runs(arr)
        assert runs.dtype == np.int32 and runs.shape[1] == 2
        assert decode_runs(runs, len(arr)).tolist() == versions
    assert encode_runs(np.full(1000, 7, np.int32)).tolist() == [[0, 7]]
    assert encode_runs(np.array([0, 0, 1, 1, 1, 0], np.int32)).tolist() == [[0, 0], [2, 1], [5, 0]]
    for runs, length in (([[1, 0]], 3), ([[0, 0], [0, 1]], 3), ([[0, 0], [3, 1]], 3), ([], 2), ([[0, 1]], 0)):
        with pytest.raises(ValueError):
            decode_runs(np.array(runs, dtype=np.int32).reshape(-1, 2), length)


def test_versions_cost_no_tree_bytes():
    rng = np.random.default_rng(0)
    samples = [(rng.integers(0, 1000, size=2000).astype(np.int32), -rng.random(2000).astype(np.float32)) for _ in range(4)]
    plain, versioned = TrajectoryStore(max_tokens=None), TrajectoryStore(max_tokens=None)
    plain.put("p", [1], samples)
    versioned.put("p", [1], [(ids, lps, np.full(len(ids), 9, np.int32)) for ids, lps in samples])
    a, b = store_footprint(plain), store_footprint(versioned)
    assert a.value_bytes == b.value_bytes == 4 * a.total_tokens  # float32 log-probs only
    assert b.total_bytes - a.total_bytes <= 4 * 160  # per sample: one 1-row run array (~130 bytes)


def _body(store: TrajectoryStore) -> dict:
    return msgpack.unpackb(msgpack.unpackb(snapshot.encode_snapshot(store), raw=False)["body"], raw=False)


def test_snapshot_writes_runs_and_rejects_broken_ones(tmp_path, dump_store):
    store = TrajectoryStore(max_tokens=None)
    store.put("p", [1], [(np.arange(6, dtype=np.int32), -np.full(6, 0.5, np.float32), np.array([1, 1, 1, 2, 2, 2], np.int32))])
    body = _body(store)
    (node_index, _, _, runs), = body["prompts"][0]["samples"]
    assert node_index == 0 and np.frombuffer(runs, "<i4").tolist() == [0, 1, 3, 2]
    assert [len(node) for node in body["prompts"][0]["nodes"]] == [3]  # parent, tokens, log-probs
    path = tmp_path / "s.snap"
    snapshot.save_snapshot(store, path)
    assert dump_store(snapshot.load_snapshot(path))[:-1] == dump_store(store)[:-1]
    body["prompts"][0]["samples"][0][3] = np.array([0, 1, 9, 2], "<i4").tobytes()  # a run past the end
    raw = msgpack.packb(body, use_bin_type=True)
    header = {"magic": snapshot.MAGIC, "format_version": 2, "kind": snapshot.KIND,
              "body_sha256": hashlib.sha256(raw).hexdigest(), "body": raw}
    path.write_bytes(msgpack.packb(header, use_bin_type=True))
    with pytest.raises(snapshot.SnapshotError, match="malformed"):
        snapshot.load_snapshot(path)
