"""kill -9 of the whole server at several points; each restart resumes from the last snapshot.

The tests share one work directory and run in order: each kills the server it inherits and
leaves a restarted one for the next (one engine start per test). Kill points: idle after a
snapshot, in the middle of a step with a weight update queued behind it, and while snapshots
are being written back to back.
"""

import json
import signal
import threading
import time
import zlib
from types import SimpleNamespace

import numpy as np
import psutil
import pytest

from radix_cache.responses import Response
from radix_cache.snapshot import content_digest, load_snapshot, save_snapshot
from radix_cache.trajectory_store import TrajectoryStore

MAX_LEN = 16


def reqs(tag, num_prompts=3):
    rng = np.random.default_rng(zlib.crc32(tag.encode()))
    return [{"prompt_id": f"{tag}-{i}", "prompt_ids": rng.integers(3, 250, size=6 + i), "n": 2} for i in range(num_prompts)]


def tokens(reply):
    return sorted(tuple(s["token_ids"]) for s in reply["samples"])


@pytest.fixture(scope="module")
def lives(tiny_model_path, tmp_path_factory, launcher):
    state = SimpleNamespace(dir=tmp_path_factory.mktemp("crash"), model=tiny_model_path, launcher=launcher, current=None)
    state.start = lambda: launcher.start(tiny_model_path, state.dir, "--lenience", "inf")
    yield state
    if state.current is not None and state.current.proc.poll() is None:
        launcher.stop(state.current, signal.SIGKILL)


def kill9(server):
    children = psutil.Process(server.proc.pid).children(recursive=True)  # SGLang's scheduler etc.
    server.proc.send_signal(signal.SIGKILL)
    assert server.proc.wait(60) == -signal.SIGKILL
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, f"SGLang processes outlived a SIGKILLed server: {alive}"


def test_kill9_idle_after_a_snapshot(lives):
    first = lives.current = lives.start()
    client = first.client()
    kept, lost = reqs("kept"), reqs("lost")
    kept_reply = client.rollout(kept, MAX_LEN)
    saved = client.snapshot()
    assert saved["path"] == str(first.snapshot) and saved["store"]["num_prompts"] == 3
    client.rollout(lost, MAX_LEN)  # after the snapshot: lost in the crash, by design
    kill9(first)
    assert not list(first.snapdir.glob(".store.snap.*.tmp")), "no half-written snapshot left behind"

    second = lives.current = lives.start()
    client = second.client()
    health = client.health()
    assert health["restored_from"]["num_prompts"] == 3 and health["restored_from"]["path"] == str(second.snapshot)
    assert health["num_steps"] == 2  # step numbers (and acceptance RNG streams) continue from the report
    again = client.rollout(kept, MAX_LEN)
    assert again["stats"]["full_reuse_ratio"] == 1.0 and again["stats"]["num_tokens_decoded"] == 0
    assert tokens(again) == tokens(kept_reply)
    fresh = client.rollout(lost, MAX_LEN)
    assert fresh["stats"]["num_with_draft"] == 0
    steps = [json.loads(line) for line in second.report.read_text().splitlines()]
    assert [r["step"] for r in steps] == [0, 1, 2, 3]  # the report outlives the crash: 2 steps before it, 2 after


def test_kill9_mid_step_with_a_weight_update_queued(lives, base_weights):
    server = lives.current
    client = server.client()
    client.snapshot()
    before = client.store_digest()["content_sha256"]
    assert content_digest(load_snapshot(server.snapshot)) == before
    steps_before = len(server.report.read_text().splitlines())
    slow = [{"prompt_id": f"slow-{i}", "prompt_ids": np.arange(10 + i, 30 + i), "n": 8} for i in range(2)]
    errors = []

    def run(call):
        try:
            call()
        except Exception as exc:  # the connection dies with the server
            errors.append(exc)

    step = threading.Thread(target=run, args=(lambda: server.client().rollout(slow, 400, sampling={"ignore_eos": True}),))
    step.start()
    deadline = time.monotonic() + 60
    while not client.health()["busy"]:
        assert time.monotonic() < deadline, "the slow step never started"
        time.sleep(0.02)
    update = threading.Thread(target=run, args=(lambda: server.client().update_weights(base_weights),))
    update.start()
    deadline = time.monotonic() + 30
    while not client.health()["updates_in_flight"]:  # the update waits behind the step
        assert time.monotonic() < deadline, "the update never queued"
        time.sleep(0.02)
    kill9(server)
    step.join(30)
    update.join(30)
    assert len(errors) == 2
    restarted = lives.current = lives.start()
    assert restarted.client().store_digest()["content_sha256"] == before  # the step in flight recorded nothing
    assert len(restarted.report.read_text().splitlines()) == steps_before  # and wrote no report row
    health = restarted.client().health()
    assert health["policy_version"] == 0 and health["status"] == "ok"  # weights: the checkpoint again


def _big_store(vocab_size, num_prompts=48, n=8, length=600):
    rng = np.random.default_rng(7)
    store = TrajectoryStore(None)
    for p in range(num_prompts):
        responses = [Response(rng.integers(3, vocab_size, length).astype(np.int32),
                              -rng.random(length).astype(np.float32), np.zeros(length, np.int32)) for _ in range(n)]
        store.put(f"big-{p}", rng.integers(3, vocab_size, 8), responses)
    return store


def test_kill9_while_snapshots_are_written(lives):
    server = lives.current
    client = server.client()
    vocab = client.health()["vocab_size"]
    save_snapshot(_big_store(vocab), server.snapdir / "big.snap")  # an operator's file: read, never written
    restored = client.restore("big.snap")
    assert restored["num_prompts"] == 48 and restored["num_dropped"] == 0
    expected = client.store_digest()["content_sha256"]
    stop, written = threading.Event(), []

    def hammer():
        with server.client(timeout=30) as c:
            while not stop.is_set():
                try:
                    written.append(c.snapshot()["bytes"])
                except Exception:
                    return

    worker = threading.Thread(target=hammer)
    worker.start()
    while len(written) < 3:
        time.sleep(0.01)
    time.sleep(0.137)
    kill9(server)
    stop.set()
    worker.join(30)
    left = sorted(p.name for p in server.snapdir.glob(".store.snap.*.tmp"))
    print(f"\n{len(written)} snapshots written before the kill; temp files left by the killed write: {left}")
    assert content_digest(load_snapshot(server.snapshot)) == expected  # the file is one whole snapshot
    (server.snapdir / ".store.snap.planted.tmp").write_bytes(b"half a snapshot")  # as a killed writer leaves it
    restarted = lives.current = lives.start()
    assert not list(restarted.snapdir.glob(".*.tmp")), "stale temp files are removed at start"
    assert "removed .store.snap.planted.tmp" in restarted.log_tail(20000)
    assert restarted.client().store_digest()["content_sha256"] == expected
    assert (server.snapdir / "big.snap").exists()


def test_clean_stop_saves_everything(lives, launcher):
    server = lives.current
    client = server.client()
    client.rollout(reqs("last"), MAX_LEN)
    expected = client.store_digest()["content_sha256"]
    assert launcher.stop(server) == 0
    lives.current = None
    assert content_digest(load_snapshot(server.snapshot)) == expected
