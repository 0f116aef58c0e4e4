"""The SGLang engine dies under a running server (kill -9 of its scheduler): the server answers 503
with the reason, restarts the engine, restores the store and says what was lost."""

import threading
import time

import numpy as np
import pytest
import requests
import torch

from specrl_sglang.server.client import ServerError

MAX_LEN = 16


@pytest.fixture(scope="module")
def srv(tiny_model_path, tmp_path_factory, launcher):
    server = launcher.start(tiny_model_path, tmp_path_factory.mktemp("death"), "--lenience", "inf", "--engine-listen", "any")
    yield server
    assert launcher.stop(server) == 0, server.log_tail()


def test_engine_listen_any_keeps_sglang_defaults(srv):
    """The negative control of test_engine_listeners: with --engine-listen any, SGLang's torch
    TCPStore listens on every interface (which is why the default moves it off the network)."""
    import psutil

    found = [(c.laddr.ip, c.laddr.port) for p in srv.engine_procs() for c in p.net_connections(kind="inet")
             if c.status == psutil.CONN_LISTEN]
    assert [f for f in found if f[0] not in ("127.0.0.1", "::1")], found


def kill_scheduler(server):
    (scheduler,) = [p for p in server.engine_procs() if p.name() == "sglang::scheduler"]
    scheduler.kill()
    return scheduler.pid


def wait_back(server, num_restarts, timeout=600):
    """Health once the server has recovered from its `num_restarts`-th engine death."""
    deadline, seen = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        r = requests.get(f"{server.url}/health", timeout=10)
        body = r.json()
        seen.append((r.status_code, body["status"]))
        if r.status_code == 200 and len(body["engine_restarts"]) == num_restarts:
            return body, seen
        time.sleep(0.2)
    raise TimeoutError(server.log_tail())


def test_death_mid_step_answers_503_restarts_and_keeps_the_store(srv, base_weights):
    client = srv.client()
    kept = [{"prompt_id": f"kept-{i}", "prompt_ids": np.arange(5 + i, 14 + i), "n": 2} for i in range(2)]
    first = client.rollout(kept, MAX_LEN)
    digest = client.store_digest()["content_sha256"]
    outcomes = {}

    def run(name, call):
        try:
            outcomes[name] = call()
        except ServerError as exc:
            outcomes[name] = exc

    slow = [{"prompt_id": "slow", "prompt_ids": np.arange(20, 40), "n": 8}]
    threads = [threading.Thread(target=run, args=("step", lambda: srv.client().rollout(slow, 400, sampling={"ignore_eos": True})))]
    threads[0].start()
    while not client.health()["busy"]:
        time.sleep(0.02)
    threads.append(threading.Thread(target=run, args=("update", lambda: srv.client().update_weights(base_weights))))
    threads[1].start()
    while not client.health()["updates_in_flight"]:
        time.sleep(0.02)
    pid = kill_scheduler(srv)
    for t in threads:
        t.join(120)
    for name in ("step", "update"):  # both waited on the dead engine: 503 with the reason
        err = outcomes[name]
        assert isinstance(err, ServerError) and err.status == 503, (name, err)
        assert f"pid {pid}" in err.message and "died" in err.message and "nothing of it was recorded" in err.message
    with pytest.raises(ServerError) as refused:  # while it restarts, new requests are refused with the reason
        client.rollout(kept, MAX_LEN)
    assert refused.value.status == 503 and "restart" in refused.value.message
    health, seen = wait_back(srv, 1)
    assert (503, "restarting") in seen
    (report,) = health["engine_restarts"]
    assert f"pid {pid}" in report["reason"] and "sglang::scheduler" in report["reason"]
    assert report["failed_requests"] == 2 and report["store"]["kept"] == "snapshot of the live store"
    assert report["store"]["num_prompts_lost"] == 0 and report["weights"].startswith("reloaded from")
    assert health["status"] == "ok" and health["policy_version"] == first["policy_version"]
    assert client.store_digest()["content_sha256"] == digest  # the killed step recorded nothing; nothing was lost
    again = client.rollout(kept, MAX_LEN)  # drafts survived the engine
    assert again["stats"]["full_reuse_ratio"] == 1.0
    assert sorted(tuple(s["token_ids"]) for s in again["samples"]) == sorted(tuple(s["token_ids"]) for s in first["samples"])
    assert "specrl_engine_restarts_total 1.0" in client.metrics()


def test_death_after_pushed_weights_refuses_rollouts_until_a_complete_update(srv, base_weights):
    client = srv.client()
    noisy = {k: v + 0.05 for k, v in base_weights.items()}
    version = client.update_weights(noisy)["policy_version"]
    pid = kill_scheduler(srv)
    health, _ = wait_back(srv, 2)
    report = health["engine_restarts"][-1]
    assert f"pid {pid}" in report["reason"] and "1 weight update(s) pushed from memory are lost" in report["weights"]
    assert health["status"] == "poisoned" and health["policy_version"] == version
    reqs = [{"prompt_id": "after", "prompt_ids": [5, 6, 7], "n": 1}]
    with pytest.raises(ServerError) as refused:
        client.rollout(reqs, MAX_LEN)
    assert refused.value.status == 503 and "send a complete weight update" in refused.value.message
    partial = {"model.norm.weight": noisy["model.norm.weight"]}
    with pytest.raises(ServerError) as refused:
        client.update_weights(partial)
    assert refused.value.status == 400 and "must carry every parameter" in refused.value.message
    assert client.health()["policy_version"] == version
    update = client.update_weights(noisy)
    assert update["policy_version"] == version + 1  # versions never repeat across the restart
    reply = client.rollout(reqs, MAX_LEN)
    assert reply["policy_version"] == version + 1 and client.health()["status"] == "ok"
    assert torch.isfinite(torch.tensor(reply["samples"][0]["logprobs"])).all()
