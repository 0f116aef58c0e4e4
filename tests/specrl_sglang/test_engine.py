"""InProcessEngine on a real CPU sglang.Engine (through its runtime's loop): log-probs, KV reuse,
weight updates and their validation, the first-token ban."""

import threading
import time

import numpy as np
import pytest
import torch

from radix_cache.trajectory_store import TrajectoryStore
from specrl_sglang.engine_api import EngineError
from specrl_sglang.engine_config import EngineConfig
from specrl_sglang.first_token_ban import TokenBan
from specrl_sglang.rollout_types import RolloutRequest
from specrl_sglang.runtime import RolloutRuntime
from specrl_sglang.sampling import SamplingConfig
from specrl_sglang.spec_config import SpecConfig

PROMPT = np.array([5, 9, 13, 17, 21, 25, 29, 33, 37, 41], dtype=np.int32)


@pytest.fixture(scope="module")
def rt(tiny_model_path):
    with RolloutRuntime.in_process(EngineConfig(model_path=tiny_model_path, max_total_tokens=16384)) as runtime:
        yield runtime


@pytest.fixture
def base(rt, base_weights):
    rt.update_weights(base_weights)
    return base_weights


def gen(rt, prefix, n, sampling=SamplingConfig(), ban=None):
    return rt.run(rt.engine.generate("k", np.asarray(prefix, np.int32), n, sampling, ban))


def verify(rt, prompt, draft):
    return rt.run(rt.engine.verify("k", np.asarray(prompt, np.int32), np.asarray(draft, np.int32)))


def test_verify_log_probs_match_transformers_and_sampling_log_probs(rt, base, hf_reference):
    rt.flush_cache()
    out = gen(rt, PROMPT, 16, SamplingConfig(ignore_eos=True))
    verified = verify(rt, PROMPT, out.token_ids)
    np.testing.assert_allclose(verified.logprobs, out.logprobs, atol=1e-4)
    np.testing.assert_allclose(verified.logprobs, hf_reference(base).logprobs(PROMPT, out.token_ids), atol=1e-4)


def test_sampled_log_probs_stay_raw_at_other_temperatures(rt, base):
    out = gen(rt, PROMPT, 12, SamplingConfig(temperature=0.5, ignore_eos=True))
    np.testing.assert_allclose(out.logprobs, verify(rt, PROMPT, out.token_ids).logprobs, atol=1e-4)


def test_continuation_reuses_the_verify_pass_kv(rt, base):
    rt.flush_cache()
    draft = gen(rt, PROMPT, 20, SamplingConfig(ignore_eos=True)).token_ids
    rt.flush_cache()
    verify(rt, PROMPT, draft)
    for k in (0, 3, 11, 19):
        out = gen(rt, np.concatenate([PROMPT, draft[:k]]), 4)
        assert out.cached_tokens == len(PROMPT) + k - 1


def test_weight_update_flushes_kv_and_changes_log_probs(rt, base, hf_reference):
    draft = gen(rt, PROMPT, 16, SamplingConfig(ignore_eos=True)).token_ids
    before = verify(rt, PROMPT, draft).logprobs
    version = rt.policy_version
    new = hf_reference.perturbed(base, 0.05, seed=0)
    assert rt.update_weights(new) == version + 1
    stale = gen(rt, np.concatenate([PROMPT, draft]), 2)
    assert stale.cached_tokens == 0  # no KV of the old weights survived
    assert stale.weight_version == str(version + 1)  # SGLang's own record of the weights it used
    after = verify(rt, PROMPT, draft).logprobs
    assert np.abs(after - before).max() > 1e-2
    np.testing.assert_allclose(after, hf_reference(new).logprobs(PROMPT, draft), atol=1e-4)


def test_streamed_update_equals_a_whole_update_and_holds_steps_back(rt, base, hf_reference):
    new = hf_reference.perturbed(base, 0.05, seed=3)
    req = RolloutRequest("streamed", PROMPT, 2)
    version = rt.policy_version
    rt.begin_weight_update()
    results = []
    waiter = threading.Thread(target=lambda: results.append(rt.step([req], SamplingConfig(), 8, mode="vanilla")))
    waiter.start()
    for pair in new:  # one parameter at a time, as OpenRLHF broadcasts them
        rt.load_weights([pair])
    waiter.join(timeout=0.5)
    assert waiter.is_alive() and not results  # the step waits for the update to close
    assert rt.end_weight_update() == version + 1
    waiter.join(timeout=60)
    (result,) = results
    assert result.stats.policy_version == version + 1
    ref = hf_reference(new)
    for s in result.samples:
        np.testing.assert_allclose(s.logprobs, ref.logprobs(PROMPT, s.token_ids), atol=1e-4)
    with pytest.raises(EngineError, match="open weight update"):
        rt.load_weights(new[:1])


def test_a_failed_streamed_update_poisons_until_a_complete_one(rt, base):
    rt.begin_weight_update()
    rt.load_weights(base[:1])
    with pytest.raises(ValueError, match="no parameter named"):
        rt.load_weights([("lm_head.bias", torch.zeros(3))])  # aborts the update: half of it is loaded
    assert rt.poisoned
    req = RolloutRequest("poisoned", PROMPT, 1)
    with pytest.raises(EngineError, match="complete weight update"):
        rt.step([req], SamplingConfig(), 4)
    rt.update_weights(base)
    assert not rt.poisoned
    assert rt.step([req], SamplingConfig(), 4).samples[0].response_len >= 1


@pytest.mark.parametrize(
    "bad, match",
    [
        (lambda w: [("model.no_such_weight", torch.zeros(3))], "no parameter named 'model.no_such_weight'"),
        (lambda w: [(w[0][0], torch.zeros(3, 3))], "has shape"),
        (lambda w: [(w[0][0], torch.full_like(w[0][1], float("nan")))], "NaN"),
        (lambda w: [(w[0][0], torch.full_like(w[0][1], float("inf")))], "NaN or infinite"),
        (lambda w: [(w[0][0], w[0][1].to(torch.int64))], "floating point"),
        (lambda w: [(w[0][0], w[0][1].bool())], "floating point"),
        (lambda w: [], "no tensors"),
        (lambda w: [w[0], w[0]], "given twice"),
        (lambda w: [(w[0][0], w[0][1].numpy())], "not a torch.Tensor"),
    ],
)
def test_bad_weights_are_refused_before_anything_is_loaded(rt, base, bad, match):
    version = rt.policy_version
    probe = verify(rt, PROMPT, [7, 8, 9]).logprobs
    with pytest.raises(ValueError, match=match):
        rt.update_weights(bad(base))
    assert rt.policy_version == version and not rt.poisoned
    np.testing.assert_allclose(verify(rt, PROMPT, [7, 8, 9]).logprobs, probe, atol=1e-6)


def test_first_token_ban_excludes_the_token_and_returns_marginal_log_probs(rt, base, hf_reference):
    probs = hf_reference(base).next_token_probs(PROMPT)
    top = int(np.argmax(probs))
    ban = TokenBan(top, float(np.log(probs[top])))
    outs = [gen(rt, PROMPT, 3, ban=ban) for _ in range(40)]
    assert all(int(o.token_ids[0]) != top for o in outs)
    assert any(top in o.token_ids[1:].tolist() for o in outs) or probs[top] < 0.2  # only the first position
    for o in outs[:10]:  # log p(z) of the policy, not of the renormalised residual
        assert abs(float(o.logprobs[0]) - float(np.log(probs[int(o.token_ids[0])]))) < 1e-4


def test_memory_release_needs_the_gpu_memory_saver(rt):
    with pytest.raises(EngineError, match="enable_memory_saver"):
        rt.release_memory()
    with pytest.raises(ValueError, match="enable_memory_saver needs profile='gpu'"):
        EngineConfig(model_path="m", enable_memory_saver=True)
    assert not rt.poisoned


def test_broadcast_update_from_a_trainer_process_group(rt, base, hf_reference):
    """This process is the trainer: rank 0 of a gloo group whose rank 1 is the engine's scheduler."""
    import datetime
    import socket
    import uuid

    from sglang.srt.utils import init_custom_process_group

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    group, box = f"specrl_test_{uuid.uuid4().hex[:8]}", {}
    joining = threading.Thread(target=lambda: box.update(pg=init_custom_process_group(
        backend="gloo", init_method=f"tcp://127.0.0.1:{port}", world_size=2, rank=0, group_name=group,
        timeout=datetime.timedelta(seconds=120))))
    joining.start()
    rt.init_weights_update_group("127.0.0.1", port, 1, 2, group, "gloo")
    joining.join()
    new = hf_reference.perturbed(base, 0.05, seed=21)
    version = rt.policy_version
    receiving = threading.Thread(target=lambda: box.update(v=rt.update_weights_from_distributed(
        [k for k, _ in new], [str(v.dtype) for _, v in new], [list(v.shape) for _, v in new], group)))
    receiving.start()
    try:
        for _, tensor in new:
            torch.distributed.broadcast(tensor.contiguous(), src=0, group=box["pg"])
    finally:
        receiving.join(timeout=120)
        torch.distributed.destroy_process_group(box["pg"])
    assert box["v"] == version + 1
    draft = np.array([7, 8, 9, 10], np.int32)
    np.testing.assert_allclose(verify(rt, PROMPT, draft).logprobs, hf_reference(new).logprobs(PROMPT, draft), atol=1e-4)
