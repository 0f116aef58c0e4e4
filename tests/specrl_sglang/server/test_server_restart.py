"""Crash safety: a server killed with SIGKILL restarts from its last snapshot and keeps reusing drafts."""

import json
import signal
import zlib

import numpy as np
import psutil

from radix_cache.snapshot import load_snapshot
from specrl_sglang.server.client import RolloutClient

MAX_LEN = 16


def reqs(tag, num_prompts=3):
    rng = np.random.default_rng(zlib.crc32(tag.encode()))
    return [{"prompt_id": f"{tag}-{i}", "prompt_ids": rng.integers(3, 250, size=6 + i), "n": 2} for i in range(num_prompts)]


def tokens(reply):
    return sorted(tuple(s["token_ids"]) for s in reply["samples"])


def test_sigkill_then_restart_restores_every_snapshotted_draft(tiny_model_path, tmp_path, launcher):
    start_server, stop_server = launcher.start, launcher.stop
    first = start_server(tiny_model_path, tmp_path, "--lenience", "inf")
    try:
        client = RolloutClient(first.url)
        kept, lost = reqs("kept"), reqs("lost")
        kept_reply = client.rollout(kept, MAX_LEN)
        saved = client.snapshot()
        assert saved["path"] == str(first.snapshot) and saved["store"]["num_prompts"] == 3
        client.rollout(lost, MAX_LEN)  # after the snapshot: lost in the crash, by design
        children = psutil.Process(first.proc.pid).children(recursive=True)  # SGLang's scheduler etc.
    finally:
        rc = stop_server(first, signal.SIGKILL)
    assert rc == -signal.SIGKILL
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, f"SGLang processes outlived a SIGKILLed server: {alive}"
    assert not list(tmp_path.glob(".store.snap.*.tmp")), "no half-written snapshot left behind"

    second = start_server(tiny_model_path, tmp_path, "--lenience", "inf")
    try:
        client = RolloutClient(second.url)
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
    finally:
        assert stop_server(second) == 0
    # A clean stop saved everything, including the prompts rolled out after the restart.
    assert load_snapshot(second.snapshot).stats().num_prompts == 6
