"""The rollout actor over external SGLang servers (--spec.sglang_urls), on real CPU workers.

Two `python -m sglang.launch_server` workers (the tiny model) for the module and one
SpecRolloutActor in this process over both (no Ray needed: OpenRLHF's real executor, a reward
file, the trainer's gloo broadcast from a thread). Covers: the launcher's pre-Ray check, OpenRLHF's
rollout calls spread over the servers by prompt, OpenRLHF's weight sync reaching every server
(staged tensors -> /update_weights_from_disk, KV flushed, weight version set), draft reuse after it
with the verify pass's KV found on each prompt's server, and an actor whose initial checkpoint the
servers were not launched with loading it into every server first.
"""

import asyncio
import json
import math
import shutil
import urllib.request

import numpy as np
import pytest

vllm = pytest.importorskip("vllm")
from safetensors.torch import save_file  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from integrations.openrlhf.actor_runtime import check_servers  # noqa: E402
from integrations.openrlhf.engine_actor import SpecRolloutActor  # noqa: E402
from integrations.openrlhf.spec_args import SpecArgError, SpecSettings  # noqa: E402
from specrl_sglang.engine_config import EngineConfig  # noqa: E402
from specrl_sglang.sglang_workers import free_port, start_router, start_workers  # noqa: E402
from specrl_sglang.worker_routing import WorkerRouter  # noqa: E402

MAX_NEW = 12
PROMPTS = [(f"rev: {' '.join('abcdefgh'[(i + j) % 8] for j in range(i % 4 + 2))} =", f"l{i}") for i in range(8)]
REWARD = '''import torch
def reward_func(queries, prompts, labels):
    r = torch.tensor([float(len(q) % 3) / 2 for q in queries])
    return {"rewards": r, "scores": r, "extra_logs": {}}
'''


def params(**kw):  # what OpenRLHF's SamplesGenerator builds
    return vllm.SamplingParams(**{"temperature": 1.0, "top_p": 1.0, "top_k": -1, "max_tokens": MAX_NEW,
                                  "min_tokens": 1, "skip_special_tokens": False, "logprobs": 1, **kw})


@pytest.fixture(scope="module")
def workers(tiny_model_path, tmp_path_factory):
    started = start_workers(EngineConfig(model_path=tiny_model_path, max_total_tokens=16384), 2,
                            log_dir=tmp_path_factory.mktemp("sglang-logs"))
    yield started
    started.stop()


@pytest.fixture(scope="module")
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def reward(tmp_path_factory):
    path = tmp_path_factory.mktemp("reward") / "reward.py"
    path.write_text(REWARD)
    return str(path)


def make_actor(model_path, workers, reward, **settings):
    return SpecRolloutActor(model_path, settings=SpecSettings(group_window_s=0.01, sglang_urls=tuple(workers.urls),
                                                              **settings),
                            max_model_len=64, logprobs_mode="processed_logprobs", remote_rm_url=[reward])


@pytest.fixture(scope="module")
def actor(tiny_model_path, workers, reward):
    act = make_actor(tiny_model_path, workers, reward, lenience=1.0)
    yield act
    act.shutdown()


@pytest.fixture(scope="module")
def tokenizer(tiny_model_path):
    return AutoTokenizer.from_pretrained(tiny_model_path)


def one_pass(loop, actor, tokenizer, n=4):
    async def go():
        return await asyncio.gather(*(actor.generate_responses(p, label, params(), 64, tokenizer, num_samples=n)
                                      for p, label in PROMPTS))

    return loop.run_until_complete(go())


def worker_get(url, path):
    with urllib.request.urlopen(url + path, timeout=60) as resp:
        return json.loads(resp.read())


def worker_generate(url, ids):
    body = json.dumps({"input_ids": list(map(int, ids)), "sampling_params": {"max_new_tokens": 1}}).encode()
    req = urllib.request.Request(url + "/generate", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read())["meta_info"]


def test_the_launcher_check_connects_to_every_server_or_names_the_bad_one(workers, tiny_model_path):
    assert check_servers(SpecSettings(sglang_urls=tuple(workers.urls)), tiny_model_path).startswith(
        f"SGLang HTTP workers {', '.join(workers.urls)}")
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(SpecArgError, match=f"cannot use the SGLang servers: .*{dead}"):
        check_servers(SpecSettings(sglang_urls=(workers.urls[0], dead)), tiny_model_path)


def test_servers_launched_with_the_initial_checkpoint_are_used_as_they_are(actor, workers):
    assert actor.runtime.policy_version == 0 and "SGLang HTTP workers" in actor.runtime.health()["engine"]
    assert {worker_get(u, "/model_info")["weight_version"] for u in workers.urls} == {"default"}


def test_rollouts_spread_over_the_servers_and_weight_syncs_reach_every_one(loop, actor, workers, tokenizer,
                                                                            base_weights, hf_reference, gloo_trainer):
    engine = actor.runtime.engine
    before = dict(engine.num_requests)
    first = one_pass(loop, actor, tokenizer)
    sent = {u: engine.num_requests[u] - before.get(u, 0) for u in workers.urls}
    keys = [r["prompt_id"] for r in list(actor.log.records)[-len(PROMPTS):]]
    expected = {u: 4 * sum(WorkerRouter(workers.urls).worker(k) == u for k in keys) for u in workers.urls}
    assert sent == expected and min(sent.values()) > 0  # each prompt's 4 samples on its own server
    assert all(len(samples) == 4 and all(s["reward"] is not None for s in samples) for samples in first)

    probe = np.arange(40, 80)
    for url in workers.urls:
        worker_generate(url, probe)
        assert worker_generate(url, probe)["cached_tokens"] > 0
    new = hf_reference.perturbed(base_weights, 0.2, seed=5)
    gloo_trainer(loop, actor).sync(new)  # OpenRLHF's per-parameter broadcast, staged for the servers
    version = actor.runtime.policy_version
    assert version == 1 and not actor.runtime.poisoned and actor.weights.num_rounds == 1
    for url in workers.urls:
        meta = worker_generate(url, probe)
        assert meta["cached_tokens"] == 0, url  # every server flushed its old KV
        assert meta["weight_version"] == worker_get(url, "/model_info")["weight_version"] == f"{version}@{engine.engine_id}"

    second = one_pass(loop, actor, tokenizer)
    steps = list(actor.log.records)[-len(PROMPTS):]
    assert all(r["draft_hit_ratio"] == 1.0 for r in steps)  # every group re-drafted from pass one
    assert sum(r["num_fully_reused"] for r in steps) < sum(r["num_samples"] for r in steps)  # drafts were cut
    assert sum(r["num_tokens_reused"] for r in steps) > 0
    expected = sum(r["kv_expected_tokens"] for r in steps)  # continuations found their verify's KV on its server
    assert expected > 0 and sum(r["kv_cached_tokens"] for r in steps) / expected >= 0.95
    ref = hf_reference(new)  # the rollout log-probs are the new policy's, on every server
    for (prompt, _), samples in zip(PROMPTS, second):
        p_len = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        for s in samples:
            ids = np.asarray(s["observation_tokens"])
            np.testing.assert_allclose(s["rollout_log_probs"][p_len:], ref.logprobs(ids[:p_len], ids[p_len:]), atol=2e-4)


def test_an_actor_whose_checkpoint_the_servers_do_not_serve_loads_it_into_every_one(
        workers, reward, tiny_model_path, base_weights, hf_reference, tmp_path):
    ckpt = tmp_path / "initial-policy"
    shutil.copytree(tiny_model_path, ckpt)
    changed = hf_reference.perturbed(base_weights, 0.1, seed=6)
    save_file({k: v.contiguous() for k, v in changed}, str(ckpt / "model.safetensors"))
    other = make_actor(str(ckpt), workers, reward, lenience=math.inf)
    try:
        assert other.runtime.policy_version == 1  # loaded from disk before any rollout
        versions = {worker_get(u, "/model_info")["weight_version"] for u in workers.urls}
        assert versions == {f"1@{other.runtime.engine.engine_id}"}
        prompt, draft = np.array([5, 9, 13, 17], np.int32), np.array([21, 25, 29], np.int32)
        for url in workers.urls:  # route keys that land on each server
            key = next(f"k{i}" for i in range(100) if WorkerRouter(workers.urls).worker(f"k{i}") == url)
            got = other.runtime.run(other.runtime.engine.verify(key, prompt, draft)).logprobs
            np.testing.assert_allclose(got, hf_reference(changed).logprobs(prompt, draft), atol=2e-4)
    finally:
        other.shutdown()


def test_rollouts_through_an_sglang_router_carry_each_prompts_routing_key(
        workers, reward, tiny_model_path, loop, tokenizer, tmp_path):
    router = start_router(workers.urls, policy="manual", log_dir=tmp_path)
    try:
        settings = SpecSettings(sglang_urls=tuple(workers.urls), sglang_router=router.url)
        assert check_servers(settings, tiny_model_path).startswith(
            f"SGLang HTTP workers {', '.join(workers.urls)} via router {router.url}")
        via = make_actor(tiny_model_path, workers, reward, sglang_router=router.url)
        try:
            engine = via.runtime.engine
            before = dict(engine.num_requests)  # the connect-time probes went to each server
            one_pass(loop, via, tokenizer, n=2)
            second = one_pass(loop, via, tokenizer, n=2)  # same weights: a repeat, drafts verified (exact)
            sent = {u: n - before.get(u, 0) for u, n in engine.num_requests.items() if n - before.get(u, 0)}
            assert set(sent) == {router.url}  # every rollout request went through the router
            steps = list(via.log.records)[-len(PROMPTS):]
            assert all(r["draft_hit_ratio"] == 1.0 for r in steps)
            expected = sum(r["kv_expected_tokens"] for r in steps)  # the router kept each prompt on one server:
            assert expected > 0 and sum(r["kv_cached_tokens"] for r in steps) / expected >= 0.95  # verify KV found
            assert all(len(samples) == 2 for samples in second)
        finally:
            via.shutdown()
    finally:
        router.stop()
