"""`serve --sglang-url URL --sglang-url URL [--sglang-router URL]` in front of real SGLang HTTP servers.

Two `python -m sglang.launch_server` CPU workers for the module (the tiny model, 127.0.0.1), and
`python -m specrl_sglang serve` processes without --model in front of them. Tests run in file
order: one server through a real sglang-router first (stopped before the next connects: two
services driving one fleet would each refuse the other's weight versions), then the module's
server straight to the workers, the killed worker last (it is restarted by the test, not by the
server: nothing there restarts an external worker).
"""

import json
import urllib.request

import numpy as np
import pytest
import requests
from safetensors.torch import save_file

from specrl_sglang.engine_config import EngineConfig
from specrl_sglang.server.client import ServerError
from specrl_sglang.sglang_workers import start_router, start_workers
from specrl_sglang.worker_routing import WorkerRouter

MAX_LEN = 24


@pytest.fixture(scope="module")
def worker_config(tiny_model_path):
    return EngineConfig(model_path=tiny_model_path, max_total_tokens=16384)


@pytest.fixture(scope="module")
def workers(worker_config, tmp_path_factory):
    started = start_workers(worker_config, 2, log_dir=tmp_path_factory.mktemp("sglang-logs"))
    yield started
    started.stop()


def url_flags(workers):
    return [flag for url in workers.urls for flag in ("--sglang-url", url)]


@pytest.fixture(scope="module")
def srv(workers, launcher, tmp_path_factory, weights_root):
    server = launcher.start(None, tmp_path_factory.mktemp("serve-workers"), *url_flags(workers), "--lenience", "1.0",
                            "--weights-dir", str(weights_root))
    yield server
    assert launcher.stop(server) == 0, server.log_tail()
    assert server.snapshot.exists()  # saved on shutdown, also after a worker died


def prompts(num_prompts, n, salt):
    rng = np.random.default_rng(salt)
    return [{"prompt_id": f"w{salt}-{i}", "prompt_ids": rng.integers(3, 200, size=8 + i), "n": n}
            for i in range(num_prompts)]


def on_each_worker(workers, per_worker, n, salt):
    """`per_worker` prompts that the prompt-affinity routing sends to each worker."""
    router, picked = WorkerRouter(workers.urls), {url: [] for url in workers.urls}
    for req in prompts(60, n, salt):
        picked[router.worker(req["prompt_id"])].append(req)
    return [req for url in workers.urls for req in picked[url][:per_worker]]


def worker_generate(url, input_ids):
    body = json.dumps({"input_ids": list(map(int, input_ids)), "sampling_params": {"max_new_tokens": 1}}).encode()
    req = urllib.request.Request(url + "/generate", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read())["meta_info"]


def worker_version(url):
    with urllib.request.urlopen(url + "/model_info", timeout=60) as resp:
        return json.loads(resp.read())["weight_version"]


def perturbed(base_weights, hf_reference, scale, seed):
    return dict(hf_reference.perturbed(list(base_weights.items()), scale, seed))


def check_logprobs(reply, reqs, weights, hf_reference, atol=2e-4):
    ref = hf_reference(list(weights.items()))
    for s in reply["samples"]:
        prompt = np.asarray(reqs[s["prompt_index"]]["prompt_ids"])
        np.testing.assert_allclose(s["logprobs"], ref.logprobs(prompt, s["token_ids"]), atol=atol)


def two_epochs(client, reqs, weights):
    client.rollout(reqs, MAX_LEN)
    client.update_weights(weights)
    return client.rollout(reqs, MAX_LEN)


# ---------------------------------------------------------------------------------------- through the router
def test_rollouts_through_an_sglang_router_keep_their_kv(workers, launcher, tmp_path, base_weights, hf_reference,
                                                          tiny_model_path):
    router = start_router(workers.urls, policy="manual", log_dir=tmp_path)
    try:
        server = launcher.start(None, tmp_path / "serve", *url_flags(workers), "--sglang-router", router.url,
                                "--lenience", "1.0")
        try:
            health = server.client().health()
            assert health["sglang_router"] == router.url and set(health["workers"]) == set(workers.urls)
            assert health["model_path"] == tiny_model_path  # the servers' model, without --model
            before = health["requests_per_target"]  # the connect-time probes went to each worker (and the router)
            reqs = prompts(16, 1, salt=1)  # one sample per prompt: a continuation away from its verify finds no KV
            second = two_epochs(server.client(), reqs, perturbed(base_weights, hf_reference, 0.2, seed=1))
            assert [s for s in second["samples"] if not s["fully_reused"]], "a 0.2-scale change should cut drafts"
            assert second["stats"]["kv_hit_ratio"] >= 0.95  # the manual policy keeps each prompt on one worker
            after = server.client().health()["requests_per_target"]
            sent = {url: n - before.get(url, 0) for url, n in after.items() if n != before.get(url, 0)}
            assert set(sent) == {router.url} and sent[router.url] >= 32, sent  # every rollout request went through it
        finally:
            assert launcher.stop(server) == 0, server.log_tail()
    finally:
        router.stop()


# ---------------------------------------------------------------------------------------- straight to the workers
def test_serves_without_a_model_flag_from_the_servers_facts(srv, workers, tiny_model_path):
    health = srv.assert_up()
    assert health["status"] == "ok" and health["sglang_urls"] == workers.urls
    assert health["model_path"] == tiny_model_path  # read from the servers, not from a flag
    assert health["workers"] == {url: "ok" for url in workers.urls} and health["engine_restarts"] == []
    assert "SGLang HTTP workers" in health["engine"]
    assert srv.engine_procs() == []  # no SGLang process of its own


def test_two_workers_keep_each_prompt_on_its_worker(srv, workers, base_weights, hf_reference):
    client = srv.client()
    reqs = on_each_worker(workers, 4, n=4, salt=2)
    client.update_weights(base_weights)
    first = client.rollout(reqs, MAX_LEN)
    assert first["stats"]["num_with_draft"] == 0
    before = client.health()["requests_per_target"]
    new = perturbed(base_weights, hf_reference, 0.2, seed=2)
    client.update_weights(new)
    second = client.rollout(reqs, MAX_LEN)
    stats = second["stats"]
    assert stats["draft_hit_ratio"] == 1.0 and stats["num_fully_reused"] < stats["num_samples"]  # continuations ran
    assert stats["mean_accepted_len"] > 0  # ... from accepted prefixes whose KV the verify pass left on the worker
    assert stats["kv_hit_ratio"] >= 0.95  # every continuation found its verify's KV on its worker
    after = client.health()["requests_per_target"]
    served = {url: after[url] - before.get(url, 0) for url in workers.urls}
    assert min(served.values()) > 0.25 * sum(served.values()), served  # each worker did about its prompts' share
    check_logprobs(second, reqs, new, hf_reference)  # reused prefixes re-scored under the new weights


@pytest.mark.parametrize("path", ["tensors", "disk"])
def test_a_weight_update_flushes_every_worker(srv, workers, base_weights, hf_reference, weights_root, path):
    client = srv.client()
    probe = np.arange(40, 80)
    for url in workers.urls:
        worker_generate(url, probe)
        assert worker_generate(url, probe)["cached_tokens"] > 0  # KV under the current weights on each worker
    new = perturbed(base_weights, hf_reference, 0.1, seed={"tensors": 11, "disk": 12}[path])
    if path == "tensors":
        version = client.update_weights(new)["policy_version"]
    else:
        ckpt = weights_root / "from-workers-test"
        ckpt.mkdir(exist_ok=True)
        save_file({k: v.contiguous() for k, v in new.items()}, str(ckpt / "model.safetensors"))
        reply = client.update_weights_from_disk(str(ckpt))
        version = reply["policy_version"]
        assert client.health()["weights_from"] == str(ckpt.resolve())
    health = client.health()
    assert health["policy_version"] == version and health["status"] == "ok"
    for url in workers.urls:
        meta = worker_generate(url, probe)
        assert meta["cached_tokens"] == 0, url  # flushed: old KV never serves the new weights
        assert worker_version(url) == meta["weight_version"] == health["weight_version"]
        assert health["weight_version"].startswith(f"{version}@")
    reqs = on_each_worker(workers, 1, n=2, salt=20 + version)
    check_logprobs(client.rollout(reqs, MAX_LEN), reqs, new, hf_reference)  # every worker serves the new weights


def test_a_killed_worker_is_a_503_naming_it_and_the_store_is_unchanged(srv, workers, worker_config, base_weights,
                                                                      tmp_path):
    client = srv.client()
    victim = workers.workers[1]
    reqs = on_each_worker(workers, 2, n=2, salt=4)
    client.update_weights(base_weights)
    client.rollout(reqs, MAX_LEN)
    digest, contents = client.store_digest()["content_sha256"], srv.contents()
    victim.kill()
    with pytest.raises(ServerError) as failed:
        client.rollout(reqs, MAX_LEN)
    assert failed.value.status == 503 and victim.url in failed.value.message
    assert "nothing of this request was recorded" in failed.value.message
    assert client.store_digest()["content_sha256"] == digest and srv.contents() == contents
    r = requests.get(f"{srv.url}/health", timeout=120)
    body = r.json()
    assert r.status_code == 503 and body["status"] == "unavailable" and victim.url in body["reason"]
    assert body["workers"][workers.urls[0]] == "ok" and body["workers"][victim.url].startswith("unavailable")
    assert body["engine_restarts"] == [] and srv.proc.poll() is None  # nothing restarted, the server is up
    with pytest.raises(ServerError) as failed:  # an update cannot reach every worker: 503, then no rollouts
        client.update_weights(base_weights)
    assert failed.value.status == 503 and victim.url in failed.value.message
    healthy_only = [r for r in reqs if WorkerRouter(workers.urls).worker(r["prompt_id"]) == workers.urls[0]]
    with pytest.raises(ServerError) as failed:
        client.rollout(healthy_only, MAX_LEN)
    assert failed.value.status == 503 and "complete weight update" in failed.value.message
    # The operator restarts the worker (same port); a complete update heals the server.
    port = int(victim.url.rsplit(":", 1)[1])
    restarted = start_workers(worker_config, 1, ports=[port], log_dir=tmp_path)
    try:
        client.update_weights(base_weights)
        assert client.health()["status"] == "ok"
        again = client.rollout(reqs, MAX_LEN)
        assert again["stats"]["draft_hit_ratio"] == 1.0  # the drafts survived the dead worker
        assert again["stats"]["full_reuse_ratio"] == 1.0  # same weights as when they were drawn, lenience 1
    finally:
        restarted.stop()
