"""Hostile snapshot and restore requests: names and paths, files the server does not own, corrupt
files, snapshots that do not fit the model, and the configured budget against a snapshot's."""

import hashlib
import os

import msgpack
import numpy as np
import pytest

import radix_cache.snapshot as snap
from radix_cache.responses import Response
from radix_cache.trajectory_store import TrajectoryStore

BUDGET = 2_000_000  # the package server's --store-max-tokens


@pytest.fixture(scope="module")
def up(server):
    server.assert_up()
    server.client().snapshot("before-hostile-snapshots.snap")
    yield server
    server.client().restore("before-hostile-snapshots.snap")


def store_with(prompts, max_tokens=None):
    store = TrajectoryStore(max_tokens)
    for pid, prompt, samples in prompts:
        store.put(pid, prompt, [Response(np.array(t, np.int32), -np.linspace(0.1, 1, len(t)).astype(np.float32),
                                         np.zeros(len(t), np.int32)) for t in samples])
    return store


def unchanged(server, before_digest):
    server.assert_up()
    assert server.digest() == before_digest


NAMES = [
    ("dotdot", "../x.snap", 400, "plain file name"),
    ("absolute", "/tmp/x.snap", 400, "plain file name"),
    ("subdir", "sub/x.snap", 400, "plain file name"),
    ("missing-subdir", "no/such/dir/x.snap", 400, "plain file name"),
    ("wrong-suffix", "x.bin", 400, "ending in .snap"),
    ("no-suffix", "store", 400, "ending in .snap"),
    ("hidden", ".hidden.snap", 400, "plain file name"),
    ("tmp-name", ".store.snap.abc.tmp", 400, "plain file name"),
    ("manifest", ".specrl-owned-snapshots.json", 400, "plain file name"),
    ("dot", ".", 400, "plain file name"),
    ("dir-itself", "", 400, "non-empty string"),
    ("nul", "x\x00.snap", 400, "NUL"),
    ("long", "x" * 5000 + ".snap", 400, "limit is 4096"),
    ("too-long-name", "x" * 200 + ".snap", 400, "plain file name"),
    ("int", 7, 400, "non-empty string"),
    ("report", "steps.jsonl", 400, "ending in .snap"),
    ("model-config", "config.json", 400, "ending in .snap"),
    ("backslash", "..\\x.snap", 400, "plain file name"),
    ("space", "my snap.snap", 400, "plain file name"),
    ("unicode", "sn\u00e4p.snap", 400, "plain file name"),
]


@pytest.mark.parametrize("name, status, fragment", [c[1:] for c in NAMES], ids=[c[0] for c in NAMES])
@pytest.mark.parametrize("verb", ["snapshot", "restore"])
def test_bad_snapshot_names_touch_nothing(up, verb, name, status, fragment):
    before = up.digest()
    files = sorted(os.listdir(up.snapdir))
    code, reply = up.post(verb, {"path": name})
    assert code == status and reply["error"]["field"] == "path" and fragment in reply["error"]["message"], reply
    unchanged(up, before)
    assert sorted(os.listdir(up.snapdir)) == files


@pytest.fixture
def planted(up):
    foreign = up.snapdir / "foreign.snap"
    foreign.write_bytes(b"an operator's file")
    outside = up.workdir / "outside-target.txt"
    outside.write_text("keep me")
    link = up.snapdir / "link.snap"
    if not link.is_symlink():
        os.symlink(outside, link)
    (up.snapdir / "dir.snap").mkdir(exist_ok=True)
    return foreign, outside


@pytest.mark.parametrize("name, status, fragment", [
    ("foreign.snap", 409, "was not written by this server"),
    ("link.snap", 400, "not a regular file"),
    ("dir.snap", 400, "not a regular file"),
])
def test_snapshot_never_writes_files_it_did_not_create(up, planted, name, status, fragment):
    foreign, outside = planted
    before = up.digest()
    code, reply = up.post("snapshot", {"path": name})
    assert code == status and fragment in reply["error"]["message"], reply
    assert foreign.read_bytes() == b"an operator's file" and outside.read_text() == "keep me"
    unchanged(up, before)


def test_own_snapshots_can_be_rewritten_and_restored(up):
    client = up.client()
    first = client.snapshot("mine.snap")
    again = client.snapshot("mine.snap")  # the server owns it now
    assert first["path"] == again["path"] == str(up.snapdir / "mine.snap")
    before = up.digest()
    restored = client.restore("mine.snap")
    assert restored["num_dropped"] == 0 and up.digest() == before


def _valid_bytes():
    return snap.encode_snapshot(store_with([("v", [1, 2], [[5, 6, 7]])]))


def _rewrap(data, **changes):
    header = msgpack.unpackb(data, raw=False)
    header.update(changes)
    return msgpack.packb(header, use_bin_type=True)


def _with_body(body):
    raw = msgpack.packb(body, use_bin_type=True)
    return _rewrap(_valid_bytes(), body=raw, body_sha256=hashlib.sha256(raw).hexdigest())


def _bad_utf8_id():
    body = msgpack.unpackb(msgpack.unpackb(_valid_bytes(), raw=False)["body"], raw=False)
    raw = msgpack.packb(body, use_bin_type=True).replace(b"\xa1v", b"\xa3\xed\xa0\x80")  # id "v" -> a lone surrogate
    return _rewrap(_valid_bytes(), body=raw, body_sha256=hashlib.sha256(raw).hexdigest())


CORRUPT = [
    ("empty", lambda: b"", "not a msgpack snapshot"),
    ("garbage", lambda: b"garbage" * 10, "not a msgpack snapshot"),
    ("msgpack-list", lambda: msgpack.packb([1, 2, 3]), "wrong magic"),
    ("truncated", lambda: _valid_bytes()[:-20], "not a msgpack snapshot"),
    ("bit-flip", lambda: _valid_bytes()[:-30] + bytes([_valid_bytes()[-30] ^ 0xFF]) + _valid_bytes()[-29:], "checksum"),
    ("wrong-magic", lambda: _rewrap(_valid_bytes(), magic="other"), "wrong magic"),
    ("future-version", lambda: _rewrap(_valid_bytes(), format_version=99), "format version"),
    ("other-kind", lambda: _rewrap(_valid_bytes(), kind="tree"), "kind"),
    ("body-not-map", lambda: _with_body([1, 2, 3]), "unknown layout"),
    ("body-missing-keys", lambda: _with_body({"dtypes": snap.DTYPES}), "malformed body"),
    ("bad-utf8-id", _bad_utf8_id, "malformed body"),
]


@pytest.mark.parametrize("make, fragment", [c[1:] for c in CORRUPT], ids=[c[0] for c in CORRUPT])
def test_corrupt_snapshots_are_refused_and_the_store_kept(up, make, fragment):
    path = up.snapdir / "corrupt.snap"
    path.write_bytes(make())
    before = up.digest()
    code, reply = up.post("restore", {"path": "corrupt.snap"})
    assert code == 400 and "cannot restore" in reply["error"]["message"] and fragment in reply["error"]["message"], reply
    assert "the store is unchanged" in reply["error"]["message"]
    unchanged(up, before)


def test_restore_drops_prompts_outside_the_vocabulary_and_reports_them(up):
    vocab = up.client().health()["vocab_size"]
    good = ("ok-prompt", [5, 6], [[5, 6, 7], [5, 6]])
    bad = ("bad-prompt", [5, 6], [[5, vocab + 3]])
    snap.save_snapshot(store_with([good, bad], max_tokens=10), up.snapdir / "mixed.snap")
    reply = up.client().restore("mixed.snap")
    assert reply["num_prompts_saved"] == 2 and reply["num_prompts"] == 1 and reply["num_dropped"] == 1
    (dropped,) = reply["dropped"]
    assert dropped["prompt_id"] == "bad-prompt" and f"token id {vocab + 3} outside the vocabulary" in dropped["reason"]
    assert reply["saved_max_tokens"] == 10 and reply["max_tokens"] == BUDGET  # the configured budget wins
    assert up.digest() == snap.content_digest(store_with([good], max_tokens=BUDGET))  # exactly the valid prompt
    again = up.client().rollout([{"prompt_id": "ok-prompt", "prompt_ids": [5, 6], "n": 2}], 8)
    assert again["stats"]["num_with_draft"] == 2  # the restored drafts serve


def test_unbounded_snapshot_gets_the_configured_budget(up):
    snap.save_snapshot(store_with([("u", [9], [[9, 9, 9]])], max_tokens=None), up.snapdir / "unbounded.snap")
    reply = up.client().restore("unbounded.snap")
    assert reply["saved_max_tokens"] is None and reply["max_tokens"] == BUDGET
    assert up.client().stats()["store"]["max_tokens"] == BUDGET


@pytest.mark.parametrize("body, fragment", [
    ({"path": "mine.snap", "wait_s": -1}, "wait_s must be in"),
    ({"path": "mine.snap", "wait_s": "now"}, "wait_s must be a number"),
    ({"path": "mine.snap", "interrupt": True}, "unknown field"),
    ({"path": "mine.snap", "extra": 1}, "unknown field"),
], ids=["wait-negative", "wait-string", "interrupt", "extra"])
def test_bad_restore_options(up, body, fragment):
    before = up.digest()
    code, reply = up.post("restore", body)
    assert code == 400 and fragment in reply["error"]["message"], reply
    unchanged(up, before)


def test_snapshot_body_options(up):
    code, reply = up.post("snapshot", {"path": "mine.snap", "wait_s": 1})
    assert code == 400 and "unknown field" in reply["error"]["message"]
    code, reply = up.post("snapshot", {})  # the default snapshot
    assert code == 200 and reply["path"] == str(up.snapshot)
