"""Concurrent steps and weight updates through the server: steps batch together, and no step ever
mixes two policies, reuses stale KV or loses a recorded draft - whether an update waits, times
out, or interrupts the steps in flight."""

import threading
import time

import numpy as np
import pytest

from specrl_sglang.server.client import ServerError


@pytest.fixture(scope="module")
def up(server, base_weights):
    server.assert_up()
    yield server
    server.client().update_weights(base_weights)


def batch(tag, num_prompts=2, n=4, length=8):
    rng = np.random.default_rng(abs(hash(tag)) % 2**32)
    return [{"prompt_id": f"{tag}-{i}", "prompt_ids": rng.integers(3, 60, size=length + i), "n": n} for i in range(num_prompts)]


def run_all(server, jobs):
    """Run callables concurrently on their own clients; returns results or exceptions, in order."""
    out = [None] * len(jobs)

    def go(i, job):
        with server.client() as c:
            try:
                out[i] = job(c)
            except Exception as exc:
                out[i] = exc

    threads = [threading.Thread(target=go, args=(i, job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    return threads, out


def wait_busy(server, timeout=60):
    deadline = time.monotonic() + timeout
    while not server.client().health()["active_steps"]:
        assert time.monotonic() < deadline, "no step started"
        time.sleep(0.01)


def check_one_policy(server, tags_replies):
    """Each reply's stored drafts carry exactly its own policy version (never two in one step)."""
    contents = server.contents()
    for reqs, reply in tags_replies:
        for r in reqs:
            stored = contents[r["prompt_id"]]
            assert len(stored) == r["n"]
            assert {v for _, _, versions in stored for v in versions} == {reply["policy_version"]}
        row = reply["stats"]
        assert row["policy_version"] == reply["policy_version"]


def test_concurrent_steps_share_the_engine(up):
    jobs = [batch(f"conc{k}") for k in range(4)]
    threads, out = run_all(up, [lambda c, r=r: c.rollout(r, 24, sampling={"ignore_eos": True}, mode="vanilla") for r in jobs])
    peak = 0
    while any(t.is_alive() for t in threads):
        peak = max(peak, up.client().health()["active_steps"])
        time.sleep(0.01)
    assert all(isinstance(o, dict) for o in out), out
    assert peak >= 2, "steps of concurrent clients ran one after another"
    steps = sorted(o["step"] for o in out)
    assert len(set(steps)) == 4
    check_one_policy(up, list(zip(jobs, out)))


def test_update_with_wait_0_is_409_while_steps_run_and_changes_nothing(up, base_weights):
    version = up.client().health()["policy_version"]
    up.client().snapshot("conc.snap")
    digest = up.digest()
    jobs = [batch("w0-a", n=8), batch("w0-b", n=8)]
    threads, out = run_all(up, [lambda c, r=r: c.rollout(r, 400, sampling={"ignore_eos": True}) for r in jobs])
    wait_busy(up)
    with pytest.raises(ServerError) as refused:
        up.client().update_weights(base_weights, wait_s=0)
    assert refused.value.status == 409 and refused.value.field == "wait_s" and "still in flight" in refused.value.message
    with pytest.raises(ServerError) as refused:
        up.client().flush(wait_s=0)
    assert refused.value.status == 409
    with pytest.raises(ServerError) as refused:
        up.client().restore("conc.snap", wait_s=0)
    assert refused.value.status == 409 and "the store is unchanged" in refused.value.message
    with pytest.raises(ServerError) as refused:
        up.client().flush(store=True, wait_s=0)
    assert refused.value.status == 409
    assert up.digest() == digest  # the steps in flight have recorded nothing yet, and the refusals nothing at all
    for t in threads:
        t.join(300)
    assert all(o["policy_version"] == version for o in out), out
    assert up.client().health()["policy_version"] == version
    check_one_policy(up, list(zip(jobs, out)))


def test_update_waits_for_the_steps_in_flight(up, base_weights):
    version = up.client().health()["policy_version"]
    jobs = [batch(f"wait{k}", n=4) for k in range(3)]
    threads, out = run_all(up, [lambda c, r=r: c.rollout(r, 48, sampling={"ignore_eos": True}) for r in jobs])
    wait_busy(up)
    noisy = {k: v + 0.01 for k, v in base_weights.items()}
    update = up.client().update_weights(noisy)
    for t in threads:
        t.join(300)
    assert update["policy_version"] == version + 1
    assert all(o["policy_version"] == version for o in out)  # every step ended before the update began
    check_one_policy(up, list(zip(jobs, out)))
    after = up.client().rollout(jobs[0], 48)  # re-scored under the new weights (lenience inf: same tokens)
    assert after["policy_version"] == version + 1 and after["stats"]["kv_hit_ratio"] in (None, 1.0)


def test_interrupting_update_parks_steps_and_they_resume_under_the_new_policy(up, base_weights):
    version = up.client().health()["policy_version"]
    jobs = [batch(f"intr{k}", n=4) for k in range(3)]
    threads, out = run_all(up, [lambda c, r=r: c.rollout(r, 200, sampling={"ignore_eos": True}) for r in jobs])
    wait_busy(up)
    time.sleep(0.5)
    update = up.client().update_weights({k: v + 0.02 for k, v in base_weights.items()}, interrupt=True)
    for t in threads:
        t.join(300)
    assert update["policy_version"] == version + 1
    assert all(isinstance(o, dict) for o in out), out
    resumed = [o for o in out if o["stats"]["num_rounds"] > 1]
    assert resumed, "no step was interrupted"
    for o in resumed:
        assert o["policy_version"] == version + 1 and o["stats"]["parked_s"] > 0
    for o in out:
        assert all(len(s["token_ids"]) == 200 for s in o["samples"])
    check_one_policy(up, list(zip(jobs, out)))


def test_snapshot_during_steps_is_consistent(up):
    from radix_cache.snapshot import load_snapshot

    jobs = [batch(f"snap{k}", n=4) for k in range(3)]
    threads, out = run_all(up, [lambda c, r=r: c.rollout(r, 32, sampling={"ignore_eos": True}) for r in jobs])
    wait_busy(up)
    saved = [up.client().snapshot("during.snap") for _ in range(3)]
    for t in threads:
        t.join(300)
    store = load_snapshot(saved[-1]["path"])  # every prompt in it is whole: all of a step's samples, or none
    for reqs in jobs:
        for r in reqs:
            if r["prompt_id"] in store:
                assert len(store.samples(r["prompt_id"])) == r["n"]
    check_one_policy(up, list(zip(jobs, out)))


def test_prompt_id_collision_under_concurrency_leaves_the_store_exactly_unchanged(up):
    client = up.client()
    base = [{"prompt_id": "collide", "prompt_ids": [9, 8, 7, 6], "n": 2}]
    first = client.rollout(base, 8)
    before = up.contents()
    with pytest.raises(ServerError) as err:
        client.rollout([{"prompt_id": "fresh-c", "prompt_ids": [4, 5], "n": 1}, {**base[0], "prompt_ids": [1, 2, 3]}], 8)
    assert err.value.status == 409 and err.value.field == "requests[1].prompt_ids" and "nothing was recorded" in err.value.message
    assert up.contents() == before
    again = client.rollout(base, 8)
    assert again["stats"]["full_reuse_ratio"] == 1.0
    assert [tuple(s["token_ids"]) for s in again["samples"]] == [tuple(s["token_ids"]) for s in first["samples"]]


def test_concurrent_snapshots_of_one_file_never_go_back_in_time(up):
    from radix_cache.snapshot import content_digest, load_snapshot

    jobs = [batch(f"many{k}", n=2) for k in range(2)]
    steps, step_out = run_all(up, [lambda c, r=r: c.rollout(r, 32, sampling={"ignore_eos": True}) for r in jobs])
    snaps, snap_out = run_all(up, [lambda c: c.snapshot("shared.snap") for _ in range(8)])
    for t in steps + snaps:
        t.join(300)
    assert all(isinstance(o, dict) for o in step_out + snap_out), step_out + snap_out
    final = up.client().snapshot("shared.snap")  # asked after every step ended: must hold all of them
    assert content_digest(load_snapshot(final["path"])) == up.digest()
