"""Bad requests get a clear 4xx naming the field and change nothing (real server, raw HTTP)."""

import numpy as np
import pytest
import requests

from specrl_sglang.server.client import ServerError

GOOD = {"requests": [{"prompt_id": "e-0", "prompt_ids": [5, 6, 7, 8], "n": 2}], "max_response_len": 8}


def with_request(**changes):
    return {**GOOD, "requests": [{**GOOD["requests"][0], **changes}]}


@pytest.mark.parametrize(
    "body, field",
    [
        ({**GOOD, "max_response_len": "8"}, "max_response_len"),
        ({**GOOD, "max_response_len": 0}, "max_response_len"),
        ({k: v for k, v in GOOD.items() if k != "max_response_len"}, "max_response_len"),
        ({**GOOD, "max_respones_len": 8}, "max_respones_len"),
        ({**GOOD, "requests": []}, "requests"),
        ({**GOOD, "requests": "e-0"}, "requests"),
        (with_request(prompt_ids=[5, 6.5, 7]), "requests[0].prompt_ids"),
        (with_request(prompt_ids=[]), "requests[0].prompt_ids"),
        (with_request(prompt_ids=[5, 100000]), "requests[0].prompt_ids"),
        (with_request(prompt_ids=[5, -1]), "requests[0].prompt_ids"),
        (with_request(prompt_ids=b"\x01\x02\x03"), "requests[0].prompt_ids"),
        (with_request(n=0), "requests[0].n"),
        (with_request(n=True), "requests[0].n"),
        (with_request(prompt_id=7), "requests[0].prompt_id"),
        (with_request(extra=1), "requests[0].extra"),
        ({**GOOD, "requests": GOOD["requests"] * 2}, "requests[1].prompt_id"),
        ({**GOOD, "sampling": {"top_p": 0}}, "sampling.top_p"),
        ({**GOOD, "sampling": {"temperature": "hot"}}, "sampling.temperature"),
        ({**GOOD, "sampling": {"beam": 2}}, "sampling.beam"),
        ([1, 2], None),
    ],
)
def test_malformed_rollout_bodies_are_400_naming_the_field(server, body, field):
    status, reply = server.post("rollout", body)
    assert status == 400, reply
    assert reply["error"]["kind"] == "bad_request" and reply["error"]["field"] == field
    assert reply["error"]["message"]


def test_context_overflow_is_400_and_json_is_accepted(server):
    status, reply = server.post("rollout", with_request(prompt_ids=[5 + i % 200 for i in range(500)]) | {"max_response_len": 64}, "json")
    assert status == 400 and reply["error"]["field"] == "requests[0].prompt_ids"
    assert "context length 512" in reply["error"]["message"]
    status, reply = server.post("rollout", GOOD, "json")  # the same request, well-formed, as JSON
    assert status == 200 and len(reply["samples"]) == 2 and isinstance(reply["samples"][0]["token_ids"], list)


def test_unparseable_bodies_and_content_types(server):
    assert server.post("rollout", b"\xc1\xc1garbage", "application/msgpack")[0] == 400
    status, reply = server.post("rollout", b"{not json", "application/json")
    assert status == 400 and "malformed JSON" in reply["error"]["message"]
    assert server.post("rollout", b"prompt=1", "application/x-www-form-urlencoded")[0] == 415
    assert requests.get(f"{server.url}/nope", timeout=10).status_code == 404
    r = requests.get(f"{server.url}/rollout", timeout=10)
    assert r.status_code == 405 and r.json()["error"]["kind"] == "method_not_allowed"


def test_oversized_body_is_413(server):
    big = with_request(prompt_ids=list(range(5, 200)) * 6000)  # ~1.7 MB of msgpack > the 1 MiB limit
    status, reply = server.post("rollout", big)
    assert status == 413 and reply["error"]["kind"] == "too_large"
    assert server.client().health()["status"] == "ok"


def test_prompt_id_collision_is_409_and_leaves_the_store_unchanged(server):
    client = server.client()
    reqs = [{"prompt_id": "collide", "prompt_ids": np.array([9, 8, 7, 6]), "n": 2}]
    first = client.rollout(reqs, 8)
    store_before = client.stats()["store"]
    with pytest.raises(ServerError) as err:
        client.rollout([{"prompt_id": "fresh", "prompt_ids": [4, 5], "n": 1}, {**reqs[0], "prompt_ids": [1, 2, 3]}], 8)
    assert err.value.status == 409 and err.value.field == "requests[1].prompt_ids" and "collide" in err.value.message
    store_after = client.stats()["store"]
    for key in ("num_prompts", "num_samples", "total_tokens", "num_puts"):
        assert store_after[key] == store_before[key]
    again = client.rollout(reqs, 8)  # the stored drafts are intact and unlocked
    assert again["stats"]["full_reuse_ratio"] == 1.0
    assert [tuple(s["token_ids"]) for s in again["samples"]] == [tuple(s["token_ids"]) for s in first["samples"]]


def test_stored_drafts_longer_than_max_response_len_are_cut_to_it(server):
    client = server.client()
    reqs = [{"prompt_id": "long-drafts", "prompt_ids": [3, 4, 5], "n": 2}]
    first = client.rollout(reqs, 12, sampling={"ignore_eos": True})
    assert all(len(s["token_ids"]) == 12 for s in first["samples"])
    short = client.rollout(reqs, 4)  # a draft's prefix is a valid draft: served whole, cut to the budget
    assert short["stats"]["full_reuse_ratio"] == 1.0 and short["stats"]["num_tokens_decoded"] == 0
    assert sorted(tuple(s["token_ids"]) for s in short["samples"]) == sorted(tuple(s["token_ids"][:4]) for s in first["samples"])
    assert all(s["finish_reason"] == "length" for s in short["samples"])
    stored = server.contents()["long-drafts"]  # the step's samples replaced the longer drafts
    assert sorted(tuple(t) for t, _, _ in stored) == sorted(tuple(s["token_ids"]) for s in short["samples"])


def test_bad_weight_updates_and_paths_change_nothing(server):
    client = server.client()
    version = client.health()["policy_version"]
    tensor = {"dtype": "float32", "shape": [2, 2], "data": b"\x00" * 12}
    assert server.post("update_weights", {"tensors": {"w": tensor}})[1]["error"]["field"] == "tensors.w.data"
    assert server.post("update_weights", {"tensors": {"w": {**tensor, "dtype": "complex"}}})[1]["error"]["field"] == "tensors.w.dtype"
    assert server.post("update_weights", {"tensors": {}})[1]["error"]["field"] == "tensors"
    with pytest.raises(ServerError) as err:  # SGLang would skip an unknown name silently
        client.update_weights({"model.no_such.weight": __import__("torch").zeros(2)})
    assert err.value.status == 400 and "no parameter named 'model.no_such.weight'" in err.value.message
    with pytest.raises(ServerError) as err:
        client.update_weights_from_disk("/no/such/checkpoint")
    assert err.value.status == 400 and err.value.field == "path"
    with pytest.raises(ServerError) as err:
        client.snapshot("../../outside.snap")
    assert err.value.status == 400 and "inside the snapshot directory" in err.value.message
    with pytest.raises(ServerError) as err:
        client.restore("missing.snap")
    assert err.value.status == 404
    assert client.health()["policy_version"] == version and client.health()["status"] == "ok"
