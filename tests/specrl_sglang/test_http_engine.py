"""HttpEngine on real `python -m sglang.launch_server` workers (CPU, 127.0.0.1, the tiny model).

One module-wide set of processes, started together with an in-process engine for comparison:
two workers started with SGLANG_RETURN_ORIGINAL_LOGPROB=1 (one-worker runtimes use the first) and
one started without it (refused at connect, then stopped). Tests run in file order: the
single-worker ones first, then the two-worker ones, the killed worker last.
"""

import datetime
import json
import re
import threading
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import pytest
import torch

from radix_cache.responses import Response
from radix_cache.trajectory_store import TrajectoryStore
from specrl_sglang.engine_api import EngineError, WorkerUnavailable
from specrl_sglang.engine_config import EngineConfig
from specrl_sglang.first_token_ban import TokenBan
from specrl_sglang.http_engine import HttpEngine
from specrl_sglang.rollout_types import RolloutRequest
from specrl_sglang.runtime import RolloutRuntime
from specrl_sglang.sampling import SamplingConfig
from specrl_sglang.sglang_workers import LocalWorkers, free_port, start_router, start_workers
from specrl_sglang.spec_config import SpecConfig

PROMPT = np.array([5, 9, 13, 17, 21, 25, 29, 33, 37, 41], dtype=np.int32)
SAMPLING = SamplingConfig()
MAX_LEN = 24


class Cluster(NamedTuple):
    good: LocalWorkers  # two workers with the project's environment
    bad: LocalWorkers  # one worker without SGLANG_RETURN_ORIGINAL_LOGPROB
    local: RolloutRuntime  # the in-process engine, for comparison


@pytest.fixture(scope="module")
def cluster(tiny_model_path, tmp_path_factory):
    config = EngineConfig(model_path=tiny_model_path, max_total_tokens=16384)
    logs = tmp_path_factory.mktemp("sglang-logs")
    pool = ThreadPoolExecutor(2)
    good = pool.submit(start_workers, config, 2, log_dir=logs)
    bad = pool.submit(start_workers, config, 1, log_dir=logs, return_original_logprob=False)
    started, local = [], None
    try:
        local = RolloutRuntime.in_process(config)  # boots while the servers do
        started = [good.result(), bad.result()]
        yield Cluster(started[0], started[1], local)
    finally:
        pool.shutdown(wait=True)
        for future in (good, bad):
            if future.done() and future.exception() is None:
                future.result().stop()
        if local is not None:
            local.close()


def http_runtime(urls, router_url=None):
    return RolloutRuntime(lambda: HttpEngine(urls, router_url=router_url), TrajectoryStore(max_tokens=None))


@pytest.fixture(scope="module")
def rt1(cluster):
    with http_runtime(cluster.good.urls[:1]) as runtime:
        yield runtime


@pytest.fixture(scope="module")
def rt2(cluster, rt1):
    for url in cluster.good.urls:  # rt1 moved worker 0 on: a fleet must agree on its version to connect
        post(url, "/update_weight_version", {"new_version": "default", "abort_all_requests": False})
    with http_runtime(cluster.good.urls) as runtime:
        yield runtime


@pytest.fixture(scope="module")
def manual_router(cluster, tmp_path_factory):
    router = start_router(cluster.good.urls, policy="manual", log_dir=tmp_path_factory.mktemp("router-logs"))
    yield router
    router.stop()


def gen(rt, prefix, n, sampling=SamplingConfig(), ban=None, key="k"):
    return rt.run(rt.engine.generate(key, np.asarray(prefix, np.int32), n, sampling, ban))


def verify(rt, prompt, draft, key="k"):
    return rt.run(rt.engine.verify(key, np.asarray(prompt, np.int32), np.asarray(draft, np.int32)))


def post(url, path, payload):
    req = urllib.request.Request(url + path, json.dumps(payload).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return resp.status


def stored(rt):
    return rt.store_call(lambda s: {p: [(d.token_ids.tolist(), d.logprobs.tolist()) for d in s.samples(p)]
                                    for p in s.prompt_ids()})


def requests(num_prompts, n, salt):
    rng = np.random.default_rng(salt)
    return [RolloutRequest(f"h{salt}-{i}", rng.integers(3, 200, size=8 + i).astype(np.int32), n) for i in range(num_prompts)]


def key_per_worker(engine):
    keys = {}
    for i in range(1000):
        keys.setdefault(engine.router.pick(f"probe-{i}"), f"probe-{i}")
    return [keys[w] for w in range(len(engine.urls))]


# ---------------------------------------------------------------------------------------- connect
def test_only_loopback_workers_count_as_sharing_this_filesystem():
    def shares(urls):
        engine = HttpEngine.__new__(HttpEngine)
        engine._setup(urls, None, None, None)  # no connection: URL rules only
        return engine.shares_filesystem

    assert shares(["http://127.0.0.1:1", "http://localhost:2/"])
    assert not shares(["http://127.0.0.1:1", "http://10.0.0.5:3"])


def test_a_server_without_original_log_probs_is_refused_at_connect(cluster):
    url = cluster.bad.urls[0]
    for urls in ([url], [cluster.good.urls[0], url]):
        with pytest.raises(EngineError, match="SGLANG_RETURN_ORIGINAL_LOGPROB=1") as info:
            http_runtime(urls)
        assert url in str(info.value) and cluster.good.urls[0] not in str(info.value)
    cluster.bad.stop()  # its CPU is better spent on the other tests


def test_connect_refuses_unreachable_and_mismatched_workers(cluster):
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(WorkerUnavailable, match=re.escape(dead)):
        http_runtime([cluster.good.urls[0], dead])
    with pytest.raises(ValueError, match="http://"):
        http_runtime(["127.0.0.1:30000"])
    with pytest.raises(ValueError, match="distinct"):
        http_runtime([cluster.good.urls[0]] * 2)
    other = cluster.good.urls[1]
    post(other, "/update_weight_version", {"new_version": "elsewhere", "abort_all_requests": False})
    try:
        with pytest.raises(EngineError, match="differ in weight_version.*elsewhere"):
            http_runtime(cluster.good.urls)
    finally:
        post(other, "/update_weight_version", {"new_version": "default", "abort_all_requests": False})


# ---------------------------------------------------------------------------------------- one worker
def test_log_probs_and_greedy_tokens_equal_the_in_process_engine(rt1, cluster, base_weights, hf_reference):
    local = cluster.local
    draft = gen(local, PROMPT, 16, SamplingConfig(ignore_eos=True)).token_ids
    over_http = verify(rt1, PROMPT, draft)
    np.testing.assert_allclose(over_http.logprobs, verify(local, PROMPT, draft).logprobs, atol=1e-4)
    np.testing.assert_allclose(over_http.logprobs, hf_reference(base_weights).logprobs(PROMPT, draft), atol=1e-4)
    greedy = SamplingConfig(temperature=0.0, ignore_eos=True)
    np.testing.assert_array_equal(gen(rt1, PROMPT, 12, greedy).token_ids, gen(local, PROMPT, 12, greedy).token_ids)
    hot = gen(rt1, PROMPT, 12, SamplingConfig(temperature=0.5, ignore_eos=True))  # raw log-probs at any temperature
    np.testing.assert_allclose(hot.logprobs, verify(rt1, PROMPT, hot.token_ids).logprobs, atol=1e-4)


def test_continuations_reuse_the_verify_pass_kv(rt1):
    rt1.flush_cache()
    draft = gen(rt1, PROMPT, 20, SamplingConfig(ignore_eos=True)).token_ids
    rt1.flush_cache()
    assert verify(rt1, PROMPT, draft).cached_tokens == 0
    for k in (0, 3, 11, 19):
        assert gen(rt1, np.concatenate([PROMPT, draft[:k]]), 4).cached_tokens == len(PROMPT) + k - 1


def test_first_token_ban_over_http(rt1, base_weights, hf_reference):
    probs = hf_reference(base_weights).next_token_probs(PROMPT)
    top = int(np.argmax(probs))
    ban = TokenBan(top, float(np.log(probs[top])))
    outs = [gen(rt1, PROMPT, 3, ban=ban) for _ in range(30)]
    assert all(int(o.token_ids[0]) != top for o in outs)
    for o in outs[:10]:  # the policy's marginal log p(z), not the renormalised residual's
        assert abs(float(o.logprobs[0]) - float(np.log(probs[int(o.token_ids[0])]))) < 1e-4


def test_same_acceptance_decisions_as_the_in_process_engine(rt1, cluster, base_weights, hf_reference):
    local = cluster.local
    reqs = requests(4, 4, salt=1)
    drafts = {r.prompt_id: [gen(local, r.prompt_ids, MAX_LEN, SamplingConfig(ignore_eos=True)) for _ in range(4)]
              for r in reqs}  # under the base weights
    new = hf_reference.perturbed(base_weights, 0.2, seed=1)
    results = []
    for rt in (rt1, local):
        rt.update_weights(new)
        rt.replace_store(TrajectoryStore(max_tokens=None))
        for r in reqs:
            rt.store_call(lambda s, r=r: s.put(r.prompt_id, r.prompt_ids, [Response(d.token_ids, d.logprobs) for d in drafts[r.prompt_id]]))
        rt.config, rt.num_steps = SpecConfig(lenience=1.0, seed=7), 100  # the same acceptance randomness
        results.append(rt.step(reqs, SAMPLING, MAX_LEN).samples)
    over_http, in_process = results
    accepted = [s.accepted_len for s in over_http]
    assert accepted == [s.accepted_len for s in in_process]
    assert [s.fully_reused for s in over_http] == [s.fully_reused for s in in_process]
    assert 0 < sum(accepted) < len(accepted) * MAX_LEN  # some rejections, some reuse: a real comparison
    ref = hf_reference(new)
    for a, b in zip(over_http, in_process):
        np.testing.assert_allclose(a.logprobs[: a.accepted_len], b.logprobs[: b.accepted_len], atol=1e-4)
        np.testing.assert_allclose(a.logprobs, ref.logprobs(reqs[a.prompt_index].prompt_ids, a.token_ids), atol=2e-4)
    for rt in (rt1, local):
        rt.update_weights(base_weights)


# ---------------------------------------------------------------------------------------- two workers
def _two_epochs_after_an_update(rt, reqs, base_weights, hf_reference):
    rt.config = SpecConfig(lenience=1.0, seed=3)
    rt.update_weights(base_weights)
    rt.step(reqs, SAMPLING, MAX_LEN)
    rt.update_weights(hf_reference.perturbed(base_weights, 0.2, seed=4))
    return rt.step(reqs, SAMPLING, MAX_LEN)


def test_two_workers_keep_each_prompt_on_one_worker(rt2, base_weights, hf_reference):
    engine = rt2.engine
    rt2.config = SpecConfig(lenience=1.0, seed=3)
    by_worker = {0: [], 1: []}  # worker URLs (ports) differ per run: take 4 prompts each worker owns
    for r in requests(40, 4, salt=2):
        by_worker[engine.router.pick(r.prompt_id)].append(r)
    reqs = by_worker[0][:4] + by_worker[1][:4]
    assert len(reqs) == 8
    rt2.update_weights(base_weights)
    rt2.step(reqs, SAMPLING, MAX_LEN)
    rt2.update_weights(hf_reference.perturbed(base_weights, 0.2, seed=2))
    before = dict(engine.num_requests)
    second = rt2.step(reqs, SAMPLING, MAX_LEN)
    assert [s for s in second.samples if not s.fully_reused], "a 0.2-scale change should reject some drafts"
    assert second.stats.kv_hit_ratio >= 0.95  # continuations found their verify's KV
    served = {u: engine.num_requests[u] - before.get(u, 0) for u in engine.urls}
    assert min(served.values()) > 0.25 * sum(served.values()), served  # each did about its prompts' share

    class Scatter:  # control: the same step with every request sent to the next worker in turn
        turn = 0

        def pick(self, key):
            self.turn += 1
            return self.turn % 2

    router, engine.router = engine.router, Scatter()
    try:  # one sample per prompt: a continuation sent away from its verify finds none of its prompt's KV
        assert _two_epochs_after_an_update(rt2, requests(16, 1, salt=12), base_weights, hf_reference).stats.kv_hit_ratio < 0.9
    finally:
        engine.router = router


def test_an_engine_refuses_answers_from_weights_it_did_not_load(rt1, rt2, base_weights):
    rt2.update_weights(base_weights)  # worker 0 moves to a version rt1 never set
    with pytest.raises(EngineError, match="weight version"):
        verify(rt1, PROMPT, [7, 8, 9])
    req = RolloutRequest("stale", PROMPT, 2)
    with pytest.raises(EngineError, match="weight version"):
        rt1.step([req], SAMPLING, 8)
    assert "stale" not in stored(rt1)


def _disk_update(rt, weights, tmp_path):
    from safetensors.torch import save_file

    save_file({k: v.clone().contiguous() for k, v in weights}, str(tmp_path / "model.safetensors"))
    return rt.update_weights_from_disk(str(tmp_path))


def _in_thread(fn):
    out = []
    thread = threading.Thread(target=lambda: out.append(_outcome(fn)))
    thread.start()
    return thread, out


def _outcome(fn):
    try:
        return fn()
    except Exception as exc:  # re-raised by the caller
        return exc


def _broadcast_update(rt, weights):
    """The test process is the trainer: rank 0 of a gloo group with the two workers (ranks 1, 2)."""
    from sglang.srt.utils import init_custom_process_group

    port, group = free_port(), f"specrl_test_{uuid.uuid4().hex[:8]}"
    joining, trainer = _in_thread(lambda: init_custom_process_group(
        backend="gloo", init_method=f"tcp://127.0.0.1:{port}", world_size=3, rank=0, group_name=group,
        timeout=datetime.timedelta(seconds=120)))
    rt.init_weights_update_group("127.0.0.1", port, 1, 3, group, "gloo")
    joining.join()
    (pg,) = trainer
    receiving, version = _in_thread(lambda: rt.update_weights_from_distributed(
        [k for k, _ in weights], [str(v.dtype) for _, v in weights], [list(v.shape) for _, v in weights], group))
    try:
        for _, tensor in weights:  # the trainer's side of SGLang's broadcast, in the order of the names
            torch.distributed.broadcast(tensor.contiguous(), src=0, group=pg)
    finally:
        receiving.join()
        torch.distributed.destroy_process_group(pg)
    if isinstance(version[0], Exception):
        raise version[0]
    return version[0]


@pytest.mark.parametrize("path", ["tensors", "disk", "broadcast"])
def test_every_weight_update_path_flushes_every_worker(rt2, base_weights, hf_reference, tmp_path, path):
    engine = rt2.engine
    keys = key_per_worker(engine)
    new = hf_reference.perturbed(base_weights, 0.1, seed={"tensors": 11, "disk": 12, "broadcast": 13}[path])
    drafts = [gen(rt2, PROMPT, 12, SamplingConfig(ignore_eos=True), key=k).token_ids for k in keys]
    for key, draft in zip(keys, drafts):
        assert verify(rt2, PROMPT, draft, key=key).cached_tokens > 0  # old KV is cached on each worker
    if path == "tensors":
        version = rt2.update_weights(new)
    elif path == "disk":
        version = _disk_update(rt2, new, tmp_path)
    else:
        version = _broadcast_update(rt2, new)
    assert version == rt2.policy_version and not rt2.poisoned
    ref = hf_reference(new)
    for key, draft in zip(keys, drafts):
        stale = gen(rt2, np.concatenate([PROMPT, draft]), 1, key=key)
        assert stale.cached_tokens == 0 and stale.weight_version == f"{version}@{engine.engine_id}"
        np.testing.assert_allclose(verify(rt2, PROMPT, draft, key=key).logprobs, ref.logprobs(PROMPT, draft), atol=1e-4)


def test_through_sglang_router_with_a_routing_key(cluster, manual_router, base_weights, hf_reference):
    with http_runtime(cluster.good.urls, router_url=manual_router.url) as rt:
        second = _two_epochs_after_an_update(rt, requests(16, 1, salt=6), base_weights, hf_reference)
    assert [s for s in second.samples if not s.fully_reused]
    assert second.stats.kv_hit_ratio >= 0.95  # the manual policy keeps each routing key on one worker


def test_a_router_without_key_affinity_loses_the_verify_kv(cluster, base_weights, hf_reference, tmp_path):
    router = start_router(cluster.good.urls, policy="round_robin", log_dir=tmp_path)  # the control
    try:
        with http_runtime(cluster.good.urls, router_url=router.url) as rt:
            second = _two_epochs_after_an_update(rt, requests(16, 1, salt=6), base_weights, hf_reference)
        assert second.stats.kv_hit_ratio < 0.9  # one sample per prompt: see the Scatter control above
    finally:
        router.stop()


def test_measure_step_overhead_against_the_in_process_engine(cluster, rt2, manual_router, base_weights, hf_reference,
                                                            capsys):
    """Printed, not asserted: the machine is shared, so timings vary with other people's load."""
    reqs = requests(8, 4, salt=5)
    with http_runtime(cluster.good.urls[:1]) as rt1_fresh, \
            http_runtime(cluster.good.urls, router_url=manual_router.url) as via_router:
        rows = []
        for name, rt in (("in-process", cluster.local), ("http x1", rt1_fresh), ("http x2", rt2),
                         ("router x2", via_router)):
            rt.replace_store(TrajectoryStore(max_tokens=None))
            rt.config = SpecConfig(lenience=1.0, seed=9)
            times, hits = [], []
            for epoch in range(3):
                rt.update_weights(hf_reference.perturbed(base_weights, 0.2, seed=50 + epoch))
                stats = rt.step(reqs, SAMPLING, MAX_LEN).stats
                times.append(stats.total_s)
                hits.append(stats.kv_hit_ratio)
            rows.append((name, times, hits))
    with capsys.disabled():
        print("\n[http overhead, 8 prompts x 4 samples, 24 tokens, shared 2-core machine]")
        base = float(np.mean(rows[0][1][1:]))
        for name, times, hits in rows:
            mean = float(np.mean(times[1:]))
            print(f"  {name:10s} step_s {[round(t, 3) for t in times]}  kv_hit {[round(h, 3) for h in hits[1:]]}"
                  f"  overhead_vs_in_process_s {mean - base:+.3f}")


def test_a_killed_worker_is_named_and_the_step_records_nothing(cluster, rt2, base_weights):
    rt2.update_weights(base_weights)
    rt2.replace_store(TrajectoryStore(max_tokens=None))
    victim = cluster.good.workers[1]
    reqs = requests(6, 2, salt=4)
    assert any(rt2.engine.router.worker(r.prompt_id) == victim.url for r in reqs)
    rt2.step(reqs, SAMPLING, MAX_LEN)
    before = stored(rt2)
    victim.kill()
    with pytest.raises(WorkerUnavailable, match=re.escape(victim.url)):
        rt2.step(reqs, SAMPLING, MAX_LEN)
    assert stored(rt2) == before
    assert not any(rt2.store_call(lambda s: s.is_locked(r.prompt_id)) for r in reqs)
    health = rt2.run(rt2.engine.health())["workers"]
    assert health[cluster.good.urls[0]] == "ok" and health[victim.url].startswith("unavailable")
    with pytest.raises(WorkerUnavailable, match=re.escape(victim.url)):  # a fleet with a dead worker: no update
        rt2.update_weights(base_weights)
    assert rt2.poisoned
    with pytest.raises(EngineError, match="complete weight update"):
        rt2.step(reqs[:1], SAMPLING, MAX_LEN)
