"""The rollout service end to end: real CPU SGLang engine, real HTTP server on loopback, real client."""

import threading
import time

import numpy as np
import pytest
import torch

from specrl_sglang.server.client import ServerError

MAX_LEN = 24


def prompts(salt, num_prompts=3, n=3):
    rng = np.random.default_rng(salt)
    return [{"prompt_id": f"api{salt}-{i}", "prompt_ids": rng.integers(3, 200, size=6 + i), "n": n} for i in range(num_prompts)]


@pytest.fixture(scope="module")
def client(server):
    with server.client() as c:
        yield c


def check_samples(reply, reqs, max_len=MAX_LEN):
    assert len(reply["samples"]) == sum(r["n"] for r in reqs)
    order = [r["prompt_id"] for r in reqs for _ in range(r["n"])]
    assert [s["prompt_id"] for s in reply["samples"]] == order  # n contiguous samples per prompt, request order
    for s in reply["samples"]:
        assert 1 <= len(s["token_ids"]) <= max_len and len(s["logprobs"]) == len(s["token_ids"])
        assert np.all(s["logprobs"] <= 1e-4) and np.all(np.isfinite(s["logprobs"]))
        assert s["accepted_len"] <= s["draft_len"] and s["finish_reason"] in ("stop", "length")


def test_rollout_steps_reuse_drafts_and_report_stats(client):
    reqs = prompts(1)
    first = client.rollout(reqs, MAX_LEN)
    check_samples(first, reqs)
    assert all(s["draft_len"] == 0 for s in first["samples"]) and first["stats"]["num_tokens_reused"] == 0
    second = client.rollout(reqs, MAX_LEN, sampling={"temperature": 1.0})
    check_samples(second, reqs)
    assert second["stats"]["full_reuse_ratio"] == 1.0 and second["stats"]["num_tokens_decoded"] == 0
    assert sorted(tuple(s["token_ids"]) for s in second["samples"]) == sorted(tuple(s["token_ids"]) for s in first["samples"])
    assert second["step"] == first["step"] + 1
    assert second["policy_version"] == first["policy_version"] == client.health()["policy_version"]
    stats = client.stats(since=first["step"])
    assert [r["step"] for r in stats["steps"]] == [first["step"], second["step"]]
    assert stats["store"]["num_prompts"] >= len(reqs)


def test_weight_updates_bump_the_version_and_change_log_probs(client, base_weights, tiny_model_path):
    reqs = prompts(2)
    client.rollout(reqs, MAX_LEN)
    before = client.rollout(reqs, MAX_LEN)
    gen = torch.Generator().manual_seed(0)
    noisy = {k: v + 0.2 * torch.randn(v.shape, generator=gen) for k, v in base_weights.items()}
    update = client.update_weights(noisy)
    assert update["policy_version"] == before["policy_version"] + 1
    after = client.rollout(reqs, MAX_LEN)  # lenience inf: the same drafts, re-scored by the new policy
    assert after["policy_version"] == update["policy_version"]
    assert [tuple(s["token_ids"]) for s in after["samples"]] == [tuple(s["token_ids"]) for s in before["samples"]]
    diff = max(np.abs(a["logprobs"] - b["logprobs"]).max() for a, b in zip(after["samples"], before["samples"]))
    assert diff > 1e-2
    restored = client.update_weights_from_disk(tiny_model_path)
    assert restored["policy_version"] == update["policy_version"] + 1
    again = client.rollout(reqs, MAX_LEN)
    assert again["policy_version"] == restored["policy_version"]
    for a, b in zip(again["samples"], before["samples"]):
        np.testing.assert_allclose(a["logprobs"], b["logprobs"], atol=1e-4)


def test_weight_update_waits_for_the_step_in_flight(server, client, base_weights):
    slow = [{"prompt_id": f"slow-{i}", "prompt_ids": np.arange(10 + i, 30 + i), "n": 8} for i in range(2)]
    result = {}

    def run():
        with server.client() as c:
            result["reply"] = c.rollout(slow, 200, sampling={"ignore_eos": True})

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 30
    while not client.health()["busy"]:
        assert time.monotonic() < deadline and worker.is_alive(), "the slow rollout never started"
        time.sleep(0.01)
    version = client.health()["policy_version"]
    with pytest.raises(ServerError) as refused:  # wait_s=0: fail clearly, change nothing
        client.update_weights(base_weights, wait_s=0)
    assert refused.value.status == 409 and refused.value.field == "wait_s"
    assert client.health()["policy_version"] == version
    update = client.update_weights(base_weights)  # default: wait for the step in flight
    worker.join(60)
    assert update["seconds"] > 0.1 and update["policy_version"] == version + 1
    reply = result["reply"]
    assert reply["policy_version"] == version  # the step was served entirely under the old policy
    row = next(r for r in client.stats()["steps"] if r["step"] == reply["step"])
    assert row["policy_version"] == version
    assert all(len(s["token_ids"]) == 200 for s in result["reply"]["samples"])


def test_flush_snapshot_restore_and_health(server, client):
    reqs = prompts(3, num_prompts=2)
    client.rollout(reqs, MAX_LEN)
    flushed = client.flush()
    assert flushed["store"]["num_prompts"] > 0  # KV only; drafts stay
    saved = client.snapshot("api-snap.snap")
    assert saved["bytes"] > 0 and (server.snapdir / "api-snap.snap").exists()
    client.rollout(prompts(4, num_prompts=2), MAX_LEN)
    grown = client.stats()["store"]["num_prompts"]
    restored = client.restore("api-snap.snap")
    assert restored["store"]["num_prompts"] == saved["store"]["num_prompts"] == grown - 2
    assert client.rollout(reqs, MAX_LEN)["stats"]["full_reuse_ratio"] == 1.0
    assert client.flush(store=True)["store"]["num_prompts"] == 0
    assert client.rollout(reqs, MAX_LEN)["stats"]["num_with_draft"] == 0
    health = client.health()
    assert health["status"] == "ok" and health["context_len"] == 512 and not health["busy"]


def test_metrics_parse_as_prometheus_text(client):
    from prometheus_client.parser import text_string_to_metric_families

    client.rollout(prompts(5, num_prompts=1), MAX_LEN)
    families = {f.name: f for f in text_string_to_metric_families(client.metrics())}
    assert families["specrl_rollout_steps"].samples[0].value >= 1
    assert families["specrl_policy_version"].samples[0].value == client.health()["policy_version"]
    assert families["specrl_store_total_tokens"].samples[0].value > 0
    requests = {(s.labels["endpoint"], s.labels["status"]) for s in families["specrl_http_requests"].samples}
    assert ("rollout", "200") in requests


def test_stats_cli_reads_the_server_and_draws(server, client, tmp_path, capsys):
    from specrl_sglang.cli import main
    from specrl_sglang.inspect.plot import PANELS, plot_report
    from specrl_sglang.inspect.sources import from_url

    for salt in (6, 7, 8):  # more steps than --last 2 shows, whatever ran before
        client.rollout(prompts(salt, num_prompts=1), MAX_LEN)
    num_steps = len(client.stats()["steps"])  # rows of finished steps (refused steps use an index, write no row)
    png, page = tmp_path / "reuse.png", tmp_path / "reuse.html"
    assert main(["stats", "--url", server.url, "--plot", str(png), "--html", str(page)]) == 0
    out = capsys.readouterr().out
    assert f"server: {num_steps} steps" in out and "trajectory store" in out and "accepted prefix length" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert "data:image/png;base64," in page.read_text()
    info = plot_report(from_url(server.url), tmp_path / "again.png")
    assert list(info.panels) == list(PANELS) and info.panels[PANELS[0]] == ["full reuse", "drafted", "token reuse"]
    assert main(["stats", "--report", str(server.report), "--last", "2"]) == 0  # the JSONL the server appends
    assert f"server: {num_steps} steps" not in capsys.readouterr().out  # --last trims the table
