"""Snapshots: identical round trips, clear errors on bad files, atomic writes."""

from __future__ import annotations

import hashlib
import os

import msgpack
import numpy as np
import pytest

import radix_cache.snapshot as snapshot
from radix_cache.responses import Response
from radix_cache.snapshot import SnapshotError, load_snapshot, save_snapshot
from radix_cache.trajectory_store import TrajectoryStore


def resp(tokens: list[int], versions: list[int] | None = None) -> Response:
    token_ids = np.array(tokens, dtype=np.int32)
    logprobs = -np.linspace(0.01, 3.0, len(tokens), dtype=np.float32) - len(tokens) / 7
    return Response(token_ids, logprobs, None if versions is None else np.array(versions, dtype=np.int32))


def make_store(page_size: int = 1) -> TrajectoryStore:
    store = TrajectoryStore(max_tokens=60, samples_per_prompt=4, page_size=page_size)
    store.put("a", [1, 2], [resp([1, 2, 3, 4, 5]), resp([1, 2, 3]), resp([1, 2, 3, 9, 9, 9]), resp([])])
    store.put("b", [3], [resp([7, 8, 9], [1, 1, 2]), resp([7, 8], [1, 1])])
    store.put("c", [4], [resp(list(range(30)))])
    store.lookup("a", [1, 2], 3)  # LRU order is now b, c, a
    store.lookup("zz", [0], 2)
    return store


@pytest.mark.parametrize("page_size", [1, 4])
def test_roundtrip_is_identical(tmp_path, page_size, dump_store, check):
    store = make_store(page_size)
    path = tmp_path / "store.snap"
    save_snapshot(store, path)
    loaded = load_snapshot(path)
    assert dump_store(loaded)[:-1] == dump_store(store)[:-1]  # all but tree access ticks
    check(loaded.tree)
    assert loaded.tree.total_size() == store.tree.total_size()
    # Same LRU order and budget: the same next put evicts the same prompt in both.
    for each in (store, loaded):
        each.put("d", [5], [resp(list(range(100, 125)))])
    assert list(loaded.prompt_ids()) == list(store.prompt_ids()) == ["a", "d"]


def test_empty_store_roundtrip(tmp_path):
    path = tmp_path / "empty.snap"
    save_snapshot(TrajectoryStore(max_tokens=None), path)
    loaded = load_snapshot(path)
    assert len(loaded) == 0 and loaded.max_tokens is None and loaded.samples_per_prompt is None


def test_shared_prefixes_are_written_once(tmp_path):
    store = TrajectoryStore(max_tokens=None)
    prefix = list(range(1000))
    store.put("p", [1], [resp(prefix + [2000 + i]) for i in range(8)])
    path = tmp_path / "shared.snap"
    save_snapshot(store, path)
    assert os.path.getsize(path) < 2 * 8 * 1000  # about 8 bytes per distinct token, not 8 copies


def _saved(tmp_path) -> bytes:
    path = tmp_path / "good.snap"
    save_snapshot(make_store(), path)
    return path.read_bytes()


def _load_bytes(tmp_path, data: bytes) -> TrajectoryStore:
    path = tmp_path / "bad.snap"
    path.write_bytes(data)
    return load_snapshot(path)


def _rewrap(data: bytes, **changes) -> bytes:
    header = msgpack.unpackb(data, raw=False)
    header.update(changes)
    return msgpack.packb(header, use_bin_type=True)


@pytest.mark.parametrize("cut", [0, 1, 10, -100, -1])
def test_truncated_file_is_rejected(tmp_path, cut):
    data = _saved(tmp_path)
    with pytest.raises(SnapshotError):
        _load_bytes(tmp_path, data[:cut])


def test_corrupt_body_fails_checksum(tmp_path):
    data = bytearray(_saved(tmp_path))
    data[-50] ^= 0xFF
    with pytest.raises(SnapshotError, match="checksum|msgpack"):
        _load_bytes(tmp_path, bytes(data))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"magic": "something-else"}, "magic"),
        ({"format_version": 99}, "version"),
        ({"kind": "tree"}, "kind"),
        ({"body_sha256": "0" * 64}, "checksum"),
    ],
)
def test_wrong_header_is_rejected(tmp_path, changes, message):
    with pytest.raises(SnapshotError, match=message):
        _load_bytes(tmp_path, _rewrap(_saved(tmp_path), **changes))


@pytest.mark.parametrize("data", [b"", b"garbage", msgpack.packb([1, 2, 3]), msgpack.packb("text")])
def test_not_a_snapshot_is_rejected(tmp_path, data):
    with pytest.raises(SnapshotError):
        _load_bytes(tmp_path, data)


def test_malformed_body_with_valid_checksum_is_rejected(tmp_path):
    body = msgpack.packb({"dtypes": snapshot.DTYPES, "config": {}}, use_bin_type=True)
    data = _rewrap(_saved(tmp_path), body=body, body_sha256=hashlib.sha256(body).hexdigest())
    with pytest.raises(SnapshotError, match="malformed"):
        _load_bytes(tmp_path, data)


@pytest.mark.parametrize("failing", ["fsync", "packb"])
def test_failed_save_leaves_previous_file_untouched(tmp_path, monkeypatch, failing):
    path = tmp_path / "store.snap"
    save_snapshot(make_store(), path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk on fire")

    if failing == "fsync":
        monkeypatch.setattr(snapshot.os, "fsync", boom)
    else:
        monkeypatch.setattr(snapshot.msgpack, "packb", boom)
    bigger = make_store()
    bigger.put("e", [9], [resp(list(range(10)))])
    with pytest.raises(OSError, match="disk on fire"):
        save_snapshot(bigger, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store.snap"]  # no temp file left


# ---- checked loads (read_snapshot), split writes, content digests -------------------------------


def test_configured_budget_replaces_the_saved_one(tmp_path):
    path = tmp_path / "store.snap"
    save_snapshot(make_store(), path)  # saved with max_tokens=60
    loaded = snapshot.read_snapshot(path, max_tokens=1000)
    assert loaded.store.max_tokens == 1000 and loaded.saved_max_tokens == 60
    assert loaded.num_prompts_saved == 3 and loaded.dropped == [] and loaded.num_evicted == 0
    tight = snapshot.read_snapshot(path, max_tokens=10)  # only the most recent prompt that fits stays
    assert tight.store.max_tokens == 10 and tight.store.total_tokens() <= 10
    assert tight.num_evicted == 3 - len(tight.store) and tight.num_evicted >= 2
    assert snapshot.read_snapshot(path).store.max_tokens == 60  # SAVED: the file's budget
    assert snapshot.read_snapshot(path, max_tokens=None).store.max_tokens is None


def test_prompts_outside_the_vocabulary_are_dropped_and_listed(tmp_path):
    path = tmp_path / "store.snap"
    save_snapshot(make_store(), path)  # "c" holds token ids up to 29, "a" up to 9, "b" up to 9
    loaded = snapshot.read_snapshot(path, vocab_size=20)
    assert [pid for pid, _ in loaded.dropped] == ["c"]
    assert "token id 29 outside the vocabulary [0, 20)" in loaded.dropped[0][1]
    assert sorted(loaded.store.prompt_ids()) == ["a", "b"]
    assert loaded.store.samples("b")[0].token_ids.tolist() == [7, 8, 9]


def test_plain_load_refuses_what_read_snapshot_would_drop(tmp_path):
    store = make_store()
    body = msgpack.unpackb(msgpack.unpackb(snapshot.encode_snapshot(store), raw=False)["body"], raw=False)
    node = body["prompts"][0]["nodes"][0]  # [parent, tokens, logprobs]
    node[2] = np.full(len(node[1]) // 4, 0.5, "<f4").tobytes()  # log-probs > 0
    raw = msgpack.packb(body, use_bin_type=True)
    data = _rewrap(snapshot.encode_snapshot(store), body=raw, body_sha256=hashlib.sha256(raw).hexdigest())
    path = tmp_path / "bad.snap"
    path.write_bytes(data)
    first = body["prompts"][0]["id"]
    loaded = snapshot.read_snapshot(path)
    assert [pid for pid, _ in loaded.dropped] == [first] and "log-prob" in loaded.dropped[0][1]
    with pytest.raises(SnapshotError, match=f"prompt '{first}' is invalid"):
        load_snapshot(path)


def test_prompt_id_rule_drops_prompts(tmp_path):
    path = tmp_path / "store.snap"
    save_snapshot(make_store(), path)

    def no_b(prompt_id):
        if prompt_id == "b":
            raise ValueError("prompt_id 'b' is reserved")

    loaded = snapshot.read_snapshot(path, check_prompt_id=no_b)
    assert loaded.dropped == [("b", "prompt_id 'b' is reserved")] and sorted(loaded.store.prompt_ids()) == ["a", "c"]


def test_encode_then_write_equals_save(tmp_path):
    store = make_store()
    save_snapshot(store, tmp_path / "one.snap")
    snapshot.write_snapshot(snapshot.encode_snapshot(store), tmp_path / "two.snap")
    assert (tmp_path / "one.snap").read_bytes() == (tmp_path / "two.snap").read_bytes()
    assert snapshot.tmp_name_pattern(tmp_path / "one.snap") == ".one.snap.*.tmp"


def test_content_digest_tracks_contents_not_statistics(tmp_path):
    store = make_store()
    digest = snapshot.content_digest(store)
    store.lookup("a", [1, 2], 2, lock=True)  # counters, LRU order and locks: not contents
    store.reset_stats()
    assert snapshot.content_digest(store) == digest
    path = tmp_path / "store.snap"
    save_snapshot(store, path)
    assert snapshot.content_digest(load_snapshot(path)) == digest  # a round trip keeps it
    changed = []
    for mutate in (
        lambda s: s.put("b", [3], [resp([7, 8, 9], [1, 1, 2])]),  # one sample fewer
        lambda s: s.put("b", [3], [resp([7, 8, 9], [1, 1, 3]), resp([7, 8], [1, 1])]),  # a version
        lambda s: s.put("c", [4], [resp(list(range(29)) + [30])]),  # a token
        lambda s: s.put("z", [0], [resp([1])]),  # a new prompt
    ):
        other = load_snapshot(path)
        mutate(other)
        changed.append(snapshot.content_digest(other) != digest)
    other = load_snapshot(path)
    other.put("c", [4], [Response(np.arange(30, dtype=np.int32), resp(list(range(30))).logprobs - 0.5)])  # log-probs only
    changed.append(snapshot.content_digest(other) != digest)
    assert changed == [True] * 5
