"""Codec, request validation, tensor encoding and metrics, without an engine (fast)."""

import math

import msgpack
import numpy as np
import pytest
import torch

from specrl_sglang.server.client import _request_body, encode_tensor
from specrl_sglang.plain_json import plain
from specrl_sglang.server.codec import JSON, MSGPACK, decode, encode, media_type_of, response_type
from specrl_sglang.server.errors import ApiError
from specrl_sglang.server.metrics import ServiceMetrics
from specrl_sglang.server.schema import ServerLimits, parse_rollout, parse_tensors
from specrl_sglang.token_checks import ModelLimits

MODEL = ModelLimits(vocab_size=100, context_len=64)


def test_codec_round_trips_and_negotiates():
    obj = {"a": [1, 2.5, None], "b": "x", "nan": float("nan"), "np": np.float32(0.5), "arr": np.arange(3)}
    want = {"a": [1, 2.5, None], "b": "x", "nan": None, "np": 0.5, "arr": [0, 1, 2]}
    assert decode(encode(obj, MSGPACK), MSGPACK) == want
    assert decode(encode(obj, JSON), JSON) == want
    assert decode(b'{"k": 1}', None) == {"k": 1} and decode(msgpack.packb({"k": 1}), None) == {"k": 1}
    assert decode(b"", MSGPACK) == {}
    assert media_type_of("application/x-msgpack") == MSGPACK and media_type_of("application/json; charset=utf-8") == JSON
    assert media_type_of(None) is None
    with pytest.raises(ApiError) as err:
        media_type_of("text/plain")
    assert err.value.status == 415
    assert response_type("application/msgpack", JSON) == MSGPACK and response_type("*/*", MSGPACK) == MSGPACK
    assert response_type(None, None) == JSON
    with pytest.raises(ApiError) as err:
        decode(b"\xc1", MSGPACK)
    assert err.value.status == 400
    assert plain((1, [math.inf])) == [1, [None]]


def test_parse_rollout_accepts_lists_and_int32_bytes():
    body = {
        "requests": [
            {"prompt_id": "a", "prompt_ids": [1, 2, 3], "n": 2},
            {"prompt_id": "b", "prompt_ids": np.array([4, 5], dtype="<i4").tobytes(), "n": 1},
        ],
        "sampling": {"temperature": 0.7, "top_k": 5, "stop_token_ids": [9], "ignore_eos": True},
        "max_response_len": 16,
    }
    call = parse_rollout(body, ServerLimits(), MODEL, "spec-rl")
    assert [r.prompt_id for r in call.requests] == ["a", "b"]
    assert call.requests[1].prompt_ids.tolist() == [4, 5] and call.requests[0].num_samples == 2
    assert call.sampling.temperature == 0.7 and call.sampling.stop_token_ids == (9,) and call.max_response_len == 16


@pytest.mark.parametrize(
    "limits, requests, field",
    [
        (ServerLimits(max_prompts=1), [{"prompt_id": "a", "prompt_ids": [1], "n": 1}] * 2, "requests"),
        (ServerLimits(max_samples_per_prompt=4), [{"prompt_id": "a", "prompt_ids": [1], "n": 5}], "requests[0].n"),
        (ServerLimits(max_total_samples=3), [{"prompt_id": p, "prompt_ids": [1], "n": 2} for p in "ab"], "requests"),
        (ServerLimits(), [{"prompt_id": "a" * 513, "prompt_ids": [1], "n": 1}], "requests[0].prompt_id"),
        (ServerLimits(), [{"prompt_id": "a", "prompt_ids": list(range(1, 60)), "n": 1}], "requests[0].prompt_ids"),
    ],
)
def test_parse_rollout_enforces_count_and_context_limits(limits, requests, field):
    with pytest.raises(ApiError) as err:
        parse_rollout({"requests": requests, "max_response_len": 8}, limits, MODEL, "spec-rl")
    assert err.value.status == 400 and err.value.field == field


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.int64])
def test_tensors_round_trip_through_the_wire_format(dtype):
    t = (torch.randn(3, 4) * 10).to(dtype)
    body = msgpack.unpackb(msgpack.packb({"tensors": {"w": encode_tensor(t), "s": encode_tensor(torch.tensor(2.0))}, "wait_s": 1.5}))
    named, options = parse_tensors(body)
    assert options.wait_s == 1.5 and options.interrupt is False and [n for n, _ in named] == ["w", "s"]
    assert named[0][1].dtype == dtype and torch.equal(named[0][1], t) and named[1][1].shape == ()
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert torch.equal(parse_tensors({"tensors": {"a": encode_tensor(arr)}})[0][0][1], torch.from_numpy(arr))


def test_client_sends_int32_bytes_only_when_lossless():
    assert isinstance(_request_body({"prompt_id": "a", "prompt_ids": np.array([1, 2]), "n": 1})["prompt_ids"], bytes)
    big = np.array([1, 2**40])
    assert _request_body({"prompt_id": "a", "prompt_ids": big, "n": 1})["prompt_ids"] == [1, 2**40]


def test_metrics_render_step_and_store_state():
    from prometheus_client.parser import text_string_to_metric_families

    m = ServiceMetrics()
    row = {"total_s": 0.2, "full_reuse_ratio": 0.5, "kv_hit_ratio": None, "num_samples": 4, "num_fully_reused": 2,
           "num_with_draft": 4, "num_tokens_decoded": 10, "num_tokens_reused": 30, "num_draft_tokens": 40,
           "kv_cached_tokens": 0, "kv_expected_tokens": 0}
    m.observe_step({**row, "mode": "exact"})
    m.set_state(3, {"total_tokens": 100, "num_prompts": 2, "num_samples": 4, "num_evicted_prompts": 1, "num_evicted_tokens": 7})
    m.observe_request("rollout", 200, 0.2)
    values = {s.name: s.value for f in text_string_to_metric_families(m.render().decode()) for s in f.samples}
    assert values["specrl_tokens_reused_total"] == 30 and values["specrl_policy_version"] == 3
    assert values["specrl_store_num_evicted_tokens"] == 7 and values["specrl_last_full_reuse_ratio"] == 0.5
    assert ServiceMetrics().render() != m.render()  # private registries: no shared global state
