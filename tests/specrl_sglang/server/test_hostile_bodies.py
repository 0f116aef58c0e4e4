"""Hostile /rollout bodies, fields, sampling values and wire formats against the real server.

Every case asserts the status, the error's field and text, that the server is still up, and that
the store is exactly what it was (its content digest). The success cases assert the store changed
by exactly the new step.
"""

import msgpack
import numpy as np
import pytest
import requests

REQ = {"prompt_id": "h-0", "prompt_ids": [5, 6, 7, 8], "n": 2}
GOOD = {"requests": [REQ], "max_response_len": 8}
FAR = 100_000  # outside any tiny vocabulary


def body(**changes):
    return {**GOOD, **changes}


def req(**changes):
    return body(requests=[{**REQ, **changes}])


def sampling(**values):
    return body(sampling=values)


def raw_json(text):
    return ("json-raw", text.encode())


CASES = [
    # (id, body or ("json-raw", bytes), status, field, fragment)
    ("body-list", [1, 2], 400, None, "must be a map"),
    ("body-string", "rollout", 400, None, "must be a map"),
    ("body-int", 7, 400, None, "must be a map"),
    ("body-null-json", raw_json("null"), 400, None, "must be a map"),
    ("no-max-len", {"requests": [REQ]}, 400, "max_response_len", "required"),
    ("max-len-string", body(max_response_len="8"), 400, "max_response_len", "integer"),
    ("max-len-zero", body(max_response_len=0), 400, "max_response_len", "[1, 511]"),
    ("max-len-negative", body(max_response_len=-1), 400, "max_response_len", "[1, 511]"),
    ("max-len-context", body(max_response_len=512), 400, "max_response_len", "[1, 511]"),
    ("max-len-2^63", body(max_response_len=2**63 - 1), 400, "max_response_len", "[1, 511]"),
    ("max-len-huge-json", raw_json('{"requests": [], "max_response_len": 1' + "0" * 40 + "}"), 400, "max_response_len", "huge"),
    ("max-len-bool", body(max_response_len=True), 400, "max_response_len", "integer"),
    ("max-len-float", body(max_response_len=8.0), 400, "max_response_len", "integer"),
    ("unknown-top-field", body(max_respones_len=8), 400, "max_respones_len", "unknown field"),
    ("no-requests", {"max_response_len": 8}, 400, "requests", "non-empty list"),
    ("requests-empty", body(requests=[]), 400, "requests", "non-empty list"),
    ("requests-string", body(requests="h-0"), 400, "requests", "non-empty list"),
    ("request-int", body(requests=[5]), 400, "requests[0]", "must be a map"),
    ("no-prompt-id", body(requests=[{"prompt_ids": [5], "n": 1}]), 400, "requests[0].prompt_id", "required"),
    ("no-prompt-ids", body(requests=[{"prompt_id": "x", "n": 1}]), 400, "requests[0].prompt_ids", "required"),
    ("no-n", body(requests=[{"prompt_id": "x", "prompt_ids": [5]}]), 400, "requests[0].n", "required"),
    ("request-extra-field", req(label="x"), 400, "requests[0].label", "unknown field"),
    ("prompt-id-int", req(prompt_id=7), 400, "requests[0].prompt_id", "non-empty string"),
    ("prompt-id-empty", req(prompt_id=""), 400, "requests[0].prompt_id", "non-empty string"),
    ("prompt-id-null", req(prompt_id=None), 400, "requests[0].prompt_id", "non-empty string"),
    ("prompt-id-513", req(prompt_id="p" * 513), 400, "requests[0].prompt_id", "limit is 512"),
    ("prompt-id-surrogate", raw_json('{"requests": [{"prompt_id": "bad\\ud800", "prompt_ids": [5], "n": 1}], "max_response_len": 8}'),
     400, "requests[0].prompt_id", "not encodable as UTF-8"),
    ("prompt-id-twice", body(requests=[REQ, REQ]), 400, "requests[1].prompt_id", "appears twice"),
    ("ids-empty", req(prompt_ids=[]), 400, "requests[0].prompt_ids", "must not be empty"),
    ("ids-float", req(prompt_ids=[5, 6.5]), 400, "requests[0].prompt_ids", "integer token ids"),
    ("ids-bool", req(prompt_ids=[5, True]), 400, "requests[0].prompt_ids", "integer token ids"),
    ("ids-negative", req(prompt_ids=[5, -1]), 400, "requests[0].prompt_ids", "outside the vocabulary"),
    ("ids-outside-vocab", req(prompt_ids=[5, FAR]), 400, "requests[0].prompt_ids", "outside the vocabulary"),
    ("ids-uint64-max", req(prompt_ids=[5, 2**64 - 1]), 400, "requests[0].prompt_ids", "outside the vocabulary"),
    ("ids-int64-min", req(prompt_ids=[5, -(2**63)]), 400, "requests[0].prompt_ids", "outside the vocabulary"),
    ("ids-beyond-int64-json", raw_json('{"requests": [{"prompt_id": "x", "prompt_ids": [5, 184467440737095516150], "n": 1}], "max_response_len": 8}'),
     400, "requests[0].prompt_ids", "outside the vocabulary"),
    ("ids-1e40-json", raw_json('{"requests": [{"prompt_id": "x", "prompt_ids": [5, 1' + "0" * 40 + '], "n": 1}], "max_response_len": 8}'),
     400, "requests[0].prompt_ids", "outside the vocabulary"),
    ("ids-string", req(prompt_ids="5 6 7"), 400, "requests[0].prompt_ids", "list of integer token ids"),
    ("ids-map", req(prompt_ids={"a": 1}), 400, "requests[0].prompt_ids", "list of integer token ids"),
    ("ids-nested", req(prompt_ids=[[5, 6]]), 400, "requests[0].prompt_ids", "integer token ids"),
    ("ids-null", req(prompt_ids=None), 400, "requests[0].prompt_ids", "list of integer token ids"),
    ("ids-bytes-len3", req(prompt_ids=b"\x01\x02\x03"), 400, "requests[0].prompt_ids", "length % 4"),
    ("ids-bytes-negative", req(prompt_ids=np.array([5, -1], "<i4").tobytes()), 400, "requests[0].prompt_ids", "outside the vocabulary"),
    ("ids-bytes-outside", req(prompt_ids=np.array([5, FAR], "<i4").tobytes()), 400, "requests[0].prompt_ids", "outside the vocabulary"),
    ("context-overflow", body(requests=[{**REQ, "prompt_ids": [5] * 500}], max_response_len=64), 400, "requests[0].prompt_ids",
     "exceed the model's context length 512"),
    ("n-zero", req(n=0), 400, "requests[0].n", "[1, 256]"),
    ("n-negative", req(n=-1), 400, "requests[0].n", "[1, 256]"),
    ("n-257", req(n=257), 400, "requests[0].n", "[1, 256]"),
    ("n-bool", req(n=True), 400, "requests[0].n", "integer"),
    ("n-float", req(n=2.0), 400, "requests[0].n", "integer"),
    ("n-uint64", req(n=2**64 - 1), 400, "requests[0].n", "[1, 256]"),
    ("too-many-prompts", body(requests=[{"prompt_id": f"m{i}", "prompt_ids": [5], "n": 1} for i in range(4097)]), 400, "requests",
     "limit is 4096"),
    ("too-many-samples", body(requests=[{"prompt_id": f"m{i}", "prompt_ids": [5], "n": 256} for i in range(65)]), 400, "requests",
     "limit is 16384"),
    ("sampling-string", body(sampling="hot"), 400, "sampling", "must be a map"),
    ("sampling-unknown", sampling(beam=2), 400, "sampling.beam", "unknown field"),
    ("temperature-string", sampling(temperature="hot"), 400, "sampling.temperature", "number"),
    ("temperature-negative", sampling(temperature=-1), 400, "sampling.temperature", ">= 0"),
    ("temperature-nan", raw_json('{"requests": [{"prompt_id": "x", "prompt_ids": [5], "n": 1}], "max_response_len": 8, "sampling": {"temperature": NaN}}'),
     400, "sampling.temperature", "finite"),
    ("temperature-inf", raw_json('{"requests": [{"prompt_id": "x", "prompt_ids": [5], "n": 1}], "max_response_len": 8, "sampling": {"temperature": Infinity}}'),
     400, "sampling.temperature", "finite"),
    ("temperature-1e400", raw_json('{"requests": [{"prompt_id": "x", "prompt_ids": [5], "n": 1}], "max_response_len": 8, "sampling": {"temperature": 1e400}}'),
     400, "sampling.temperature", "finite"),
    ("temperature-huge-int", raw_json('{"requests": [{"prompt_id": "x", "prompt_ids": [5], "n": 1}], "max_response_len": 8, "sampling": {"temperature": 1' + "0" * 400 + "}}"),
     400, "sampling.temperature", "too large"),
    ("top-p-zero", sampling(top_p=0), 400, "sampling.top_p", "(0, 1]"),
    ("top-p-1.5", sampling(top_p=1.5), 400, "sampling.top_p", "(0, 1]"),
    ("top-p-nan", raw_json('{"requests": [{"prompt_id": "x", "prompt_ids": [5], "n": 1}], "max_response_len": 8, "sampling": {"top_p": NaN}}'),
     400, "sampling.top_p", "finite"),
    ("top-k-zero", sampling(top_k=0), 400, "sampling.top_k", "[1, 1073741824]"),
    ("top-k-minus-2", sampling(top_k=-2), 400, "sampling.top_k", "[1, 1073741824]"),
    ("top-k-2^30+1", sampling(top_k=2**30 + 1), 400, "sampling.top_k", "[1, 1073741824]"),
    ("top-k-int32-overflow", sampling(top_k=2**31), 400, "sampling.top_k", "[1, 1073741824]"),
    ("top-k-int64-max", sampling(top_k=2**63 - 1), 400, "sampling.top_k", "[1, 1073741824]"),
    ("top-k-huge-json", raw_json('{"requests": [{"prompt_id": "x", "prompt_ids": [5], "n": 1}], "max_response_len": 8, "sampling": {"top_k": 1' + "0" * 30 + "}}"),
     400, "sampling.top_k", "huge"),
    ("top-k-float", sampling(top_k=1.5), 400, "sampling.top_k", "integer"),
    ("top-k-bool", sampling(top_k=True), 400, "sampling.top_k", "integer"),
    ("min-p-negative", sampling(min_p=-0.1), 400, "sampling.min_p", "[0, 1]"),
    ("min-p-2", sampling(min_p=2), 400, "sampling.min_p", "[0, 1]"),
    ("stop-ids-string", sampling(stop_token_ids="5"), 400, "sampling.stop_token_ids", "list of at most 256"),
    ("stop-ids-negative", sampling(stop_token_ids=[-1]), 400, "sampling.stop_token_ids", "outside the vocabulary"),
    ("stop-ids-outside", sampling(stop_token_ids=[FAR]), 400, "sampling.stop_token_ids", "outside the vocabulary"),
    ("stop-ids-float", sampling(stop_token_ids=[1.5]), 400, "sampling.stop_token_ids", "integer token ids"),
    ("stop-ids-too-many", sampling(stop_token_ids=[5] * 300), 400, "sampling.stop_token_ids", "at most 256"),
    ("ignore-eos-string", sampling(ignore_eos="yes"), 400, "sampling.ignore_eos", "boolean"),
    ("ignore-eos-int", sampling(ignore_eos=1), 400, "sampling.ignore_eos", "boolean"),
    ("mode-unknown", body(mode="fast"), 400, "mode", "must be one of spec-rl, exact, vanilla"),
    ("mode-int", body(mode=3), 400, "mode", "must be one of"),
    ("exact-temperature", body(mode="exact", sampling={"temperature": 0.7}), 400, "mode", "lossless only for temperature 1"),
    ("exact-top-k", body(mode="exact", sampling={"top_k": 5}), 400, "mode", "top_k=5"),
]


@pytest.fixture(scope="module")
def up(server):
    server.assert_up()
    return server


def send(server, payload):
    if isinstance(payload, tuple) and payload[0] == "json-raw":
        return server.post("rollout", payload[1], fmt="application/json")
    return server.post("rollout", payload)


@pytest.mark.parametrize("payload, status, field, fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_rollout_body_is_refused_and_changes_nothing(up, payload, status, field, fragment):
    before = up.digest()
    code, reply = send(up, payload)
    assert code == status, reply
    err = reply["error"]
    assert err["kind"] == "bad_request" and err["field"] == field and fragment in err["message"], err
    up.assert_up()
    assert up.digest() == before


SUCCESS = [
    ("top-k-2^30", {"sampling": {"top_k": 2**30}}, "spec-rl"),
    ("mode-exact", {"mode": "exact"}, "exact"),
    ("mode-vanilla", {"mode": "vanilla"}, "vanilla"),
    ("greedy", {"sampling": {"temperature": 0.0}}, "spec-rl"),
    ("stop-ids", {"sampling": {"stop_token_ids": [5, 6]}}, "spec-rl"),
    ("mode-null", {"mode": None}, "spec-rl"),
]


@pytest.mark.parametrize("name, changes, mode", SUCCESS, ids=[c[0] for c in SUCCESS])
def test_edge_values_that_are_valid_change_the_store_by_exactly_the_step(up, name, changes, mode):
    before = up.contents()
    prompt_id = f"edge-{name}"
    code, reply = up.post("rollout", {"requests": [{"prompt_id": prompt_id, "prompt_ids": [7, 8, 9], "n": 3}],
                                      "max_response_len": 8, **changes})
    assert code == 200, reply
    assert reply["mode"] == mode and reply["stats"]["mode"] == mode
    after = up.contents()
    assert {k: v for k, v in after.items() if k != prompt_id} == before
    stored = after[prompt_id]
    assert sorted(t for t, _, _ in stored) == sorted(list(s["token_ids"]) for s in reply["samples"])
    assert all(set(v) <= {reply["policy_version"]} for _, _, v in stored)


WIRE = [
    ("msgpack-garbage", b"\xc1\xc1garbage", "application/msgpack", 400, "malformed msgpack"),
    ("json-garbage", b"{not json", "application/json", 400, "malformed JSON"),
    ("json-truncated", b'{"requests": [{"prompt_id": "x"', "application/json", 400, "malformed JSON"),
    ("json-deep", b"[" * 100_000 + b"]" * 100_000, "application/json", 400, "malformed JSON"),
    ("msgpack-deep", b"\x91" * 100_000 + b"\xc0", "application/msgpack", 400, "malformed msgpack"),
    ("msgpack-ext", msgpack.packb(msgpack.ExtType(5, b"xyz")), "application/msgpack", 400, "must be a map"),
    ("msgpack-binary-keys", msgpack.packb({b"requests": 1}), "application/msgpack", 400, "unknown field"),
    ("text-plain", b"hello", "text/plain", 415, "unsupported Content-Type"),
    ("form", b"prompt=1", "application/x-www-form-urlencoded", 415, "unsupported Content-Type"),
    ("empty", b"", "application/json", 400, "max_response_len is required"),
]


@pytest.mark.parametrize("data, ctype, status, fragment", [c[1:] for c in WIRE], ids=[c[0] for c in WIRE])
def test_unreadable_bodies(up, data, ctype, status, fragment):
    before = up.digest()
    code, reply = up.post("rollout", data, fmt=ctype)
    assert code == status and fragment in reply["error"]["message"], reply
    up.assert_up()
    assert up.digest() == before


def test_oversized_body_is_413_before_it_is_read(up):
    before = up.digest()
    code, reply = up.post("rollout", req(prompt_ids=list(range(5, 200)) * 6000))  # ~1.7 MB > the 1 MiB limit
    assert code == 413 and reply["error"]["kind"] == "too_large"
    up.assert_up()
    assert up.digest() == before


@pytest.mark.parametrize("header", ["abc", "-1", "1" * 30])
def test_bad_content_length_is_refused(up, header):
    answer = up.raw("POST", "/rollout", {"Content-Length": header, "Authorization": f"Bearer {up.token}"})
    assert answer.startswith("HTTP/1.1 400"), answer
    up.assert_up()


ROUTES = [
    ("get-rollout", "GET", "/rollout", 405, "method_not_allowed"),
    ("post-stats", "POST", "/stats", 405, "method_not_allowed"),
    ("unknown-path", "GET", "/nope", 404, "not_found"),
    ("since-letters", "GET", "/stats?since=abc", 400, "bad_request"),
    ("since-negative", "GET", "/stats?since=-1", 400, "bad_request"),
    ("since-arabic-digits", "GET", "/stats?since=\u0661\u0662", 400, "bad_request"),
    ("since-superscript", "GET", "/stats?since=\u00b2", 400, "bad_request"),
    ("since-20-digits", "GET", "/stats?since=99999999999999999999", 400, "bad_request"),
    ("since-float", "GET", "/stats?since=1.5", 400, "bad_request"),
]


@pytest.mark.parametrize("method, path, status, kind", [c[1:] for c in ROUTES], ids=[c[0] for c in ROUTES])
def test_wrong_routes_and_queries(up, method, path, status, kind):
    r = requests.request(method, up.url + path, timeout=30, headers={"Authorization": f"Bearer {up.token}"})
    assert r.status_code == status and r.json()["error"]["kind"] == kind, r.text
    up.assert_up()


def test_large_since_is_an_empty_answer(up):
    assert up.client().stats(since=10**17)["steps"] == []
