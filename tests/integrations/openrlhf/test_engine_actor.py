"""SpecRolloutActor in-process on a real CPU SGLang engine, driven by OpenRLHF's real executors.

Covers the vLLM actor contract OpenRLHF relies on: `generate_responses` with its
SingleTurnAgentExecutor (+ a reward file) and MultiTurnAgentExecutor, vLLM-shaped `generate`
outputs, rollout log-probs aligned with OpenRLHF's Experience, draft reuse from the second pass, and
a weight update through `update_weight` (gloo broadcast from a "trainer" thread) that bumps the
policy version and changes the engine's log-probs.
"""

import asyncio
import math
import socket
import threading

import numpy as np
import pytest
import torch

vllm = pytest.importorskip("vllm")
from openrlhf.trainer.ppo_utils.samples_generator import SamplesGenerator  # noqa: E402
from openrlhf.utils.agent import AgentInstanceBase, MultiTurnAgentExecutor  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from integrations.openrlhf.engine_actor import METRIC_NAMES, SpecRolloutActor  # noqa: E402
from integrations.openrlhf.spec_args import SpecSettings  # noqa: E402
from integrations.openrlhf.weight_sync import GlooBroadcastGroup  # noqa: E402
from specrl_sglang.engine_config import EngineConfig  # noqa: E402

MAX_NEW = 12
PROMPTS = [("rev: a b =", "b a"), ("rev: c d e =", "e d c"), ("rev: f g h a =", "a h g f")]
REWARD = '''import torch
def reward_func(queries, prompts, labels):
    r = torch.tensor([float(len(q) % 3) / 2 for q in queries])
    return {"rewards": r, "scores": r, "extra_logs": {"qlen": r}}
'''


def openrlhf_params(**kw):  # what SamplesGenerator._dispatch_prompts_to_vllm builds
    return vllm.SamplingParams(**{"temperature": 1.0, "top_p": 1.0, "top_k": -1, "max_tokens": MAX_NEW,
                                  "min_tokens": 1, "skip_special_tokens": False, "logprobs": 1, **kw})


@pytest.fixture(scope="module")
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def actor(tiny_model_path, tmp_path_factory, loop):
    reward = tmp_path_factory.mktemp("reward") / "reward.py"
    reward.write_text(REWARD)
    act = SpecRolloutActor(
        tiny_model_path,
        settings=SpecSettings(lenience=math.inf, batch_window_s=0.01),
        engine_config=EngineConfig(model_path=tiny_model_path, max_total_tokens=8192),
        max_model_len=64,
        logprobs_mode="processed_logprobs",
        remote_rm_url=[str(reward)],
    )
    yield act
    act.batcher.close()
    loop.run_until_complete(asyncio.sleep(0.01))
    act.shutdown()


@pytest.fixture(scope="module")
def tokenizer(tiny_model_path):
    return AutoTokenizer.from_pretrained(tiny_model_path)


def one_pass(loop, actor, tokenizer, n=4, params=None):
    async def go():
        calls = [actor.generate_responses(p, l, params or openrlhf_params(), 64, tokenizer, num_samples=n) for p, l in PROMPTS]
        return await asyncio.gather(*calls)

    return loop.run_until_complete(go())


def test_single_turn_executor_outputs_become_openrlhf_experiences(loop, actor, tokenizer):
    steps_before = len(actor.step_history)
    outs = one_pass(loop, actor, tokenizer)
    assert len(actor.step_history) == steps_before + 1  # every prompt x sample in ONE SpecRollout step
    assert actor.step_history[-1]["num_prompts"] == 3 and actor.step_history[-1]["num_samples"] == 12
    for (prompt, label), samples in zip(PROMPTS, outs):
        assert len(samples) == 4 and all(s["prompt"] == prompt and s["label"] == label for s in samples)
        prompt_len = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        for s in samples:
            (start, end), = s["action_ranges"]
            assert start == prompt_len and 1 <= end - start <= MAX_NEW
            assert len(s["rollout_log_probs"]) == len(s["observation_tokens"]) == end
            assert all(lp <= 0 for lp in s["rollout_log_probs"][start:]) and s["reward"] is not None
            assert set(METRIC_NAMES) <= set(s["extra_logs"]) and "qlen" in s["extra_logs"]
            exp = SamplesGenerator._process_response_into_experience(None, s, max_len=64)  # OpenRLHF's own conversion
            assert exp.sequences.shape == (1, end) and exp.action_mask.shape == exp.rollout_log_probs.shape == (1, end - 1)
            assert exp.action_mask.sum().item() == end - start and "spec_full_reuse" in exp.info


def test_second_pass_reuses_drafts_and_reports_it_per_sample(loop, actor, tokenizer):
    actor.engine.flush_cache()
    first = one_pass(loop, actor, tokenizer)
    second = one_pass(loop, actor, tokenizer)
    flat1 = [s for samples in first for s in samples]
    flat2 = [s for samples in second for s in samples]
    assert all(s["extra_logs"]["spec_draft_hit"] == 1.0 for s in flat2)
    assert all(s["extra_logs"]["spec_full_reuse"] == 1.0 and s["extra_logs"]["spec_decoded_tokens"] == 0 for s in flat2)
    # Same weights, lenience inf: each prompt's 4 responses come back as the previous pass's 4 (any order).
    for a, b in zip(first, second):
        assert sorted(tuple(s["observation_tokens"]) for s in a) == sorted(tuple(s["observation_tokens"]) for s in b)
        np.testing.assert_allclose(sorted(sum(s["rollout_log_probs"]) for s in a), sorted(sum(s["rollout_log_probs"]) for s in b), atol=1e-4)


def test_vllm_shaped_generate_output(loop, actor):
    out = loop.run_until_complete(actor.generate([5, 9, 13, 17], openrlhf_params(logprobs=None)))
    c = out.outputs[0]
    assert out.prompt_token_ids == [5, 9, 13, 17] and 1 <= len(c.token_ids) <= MAX_NEW
    assert c.finish_reason in ("stop", "length") and c.logprobs is None and isinstance(c.text, str)
    out = loop.run_until_complete(actor.generate([5, 9, 13, 17], openrlhf_params()))
    c = out.outputs[0]
    assert [list(d) for d in c.logprobs] == [[t] for t in c.token_ids]
    assert math.isclose(sum(d[t].logprob for d, t in zip(c.logprobs, c.token_ids)), c.cumulative_logprob, abs_tol=1e-4)
    assert actor.get_num_unfinished_requests() == 0


class TwoTurnAgent(AgentInstanceBase):
    def __init__(self, *args, **kwargs):
        self.turn = 0

    async def step(self, state_dict, **kwargs):
        self.turn += 1
        return {"rewards": torch.tensor(1.0), "scores": torch.tensor(1.0), "environment_feedback": " ok =",
                "done": self.turn >= 2, "extra_logs": {}}


def test_multi_turn_executor_runs_on_the_engine(loop, actor, tokenizer):
    actor.executor, saved = MultiTurnAgentExecutor(TwoTurnAgent), actor.executor
    try:
        # Many stop tokens: each turn ends early, leaving budget for the second turn.
        params = openrlhf_params(max_tokens=None, stop_token_ids=list(range(3, 150)))
        outs = one_pass(loop, actor, tokenizer, n=2, params=params)
    finally:
        actor.executor = saved
    for samples in outs:
        for s in samples:
            assert len(s["action_ranges"]) == 2 and len(s["rollout_log_probs"]) == len(s["observation_tokens"])
            assert s["reward"] == 2.0


def test_unsupported_requests_fail_clearly(loop, actor, tokenizer):
    from integrations.openrlhf.sampling_translation import UnsupportedSamplingError

    with pytest.raises(UnsupportedSamplingError, match="temperature=0.5"):
        loop.run_until_complete(actor.generate([5, 9], openrlhf_params(temperature=0.5)))
    with pytest.raises(UnsupportedSamplingError, match="text-only"):
        loop.run_until_complete(actor.generate_responses("x", "y", openrlhf_params(), 64, tokenizer, 1, images=["i"]))


def test_broadcast_weight_sync_bumps_version_and_changes_log_probs(loop, actor, tiny_model_path):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    gen = torch.Generator().manual_seed(0)
    new = [(n, p.detach() + 0.05 * torch.randn(p.shape, generator=gen)) for n, p in model.named_parameters()]
    prompt, draft = np.array([5, 9, 13, 17]), np.array([21, 25, 29])
    before = actor.engine.verify([prompt], [draft])[0].logprobs
    version = actor.engine.policy_version
    with socket.socket() as s:
        s.bind(("", 0))
        port = s.getsockname()[1]
    trainer = {}
    t = threading.Thread(target=lambda: trainer.setdefault("g", GlooBroadcastGroup("127.0.0.1", port, 0, 2)))
    t.start()
    loop.run_until_complete(actor.init_process_group("127.0.0.1", port, 1, 2, "openrlhf", "gloo", False))
    t.join()

    async def sync():  # OpenRLHF's broadcast_to_vllm: fire update_weight, then broadcast, per parameter
        for i, (name, p) in enumerate(new):
            task = asyncio.ensure_future(actor.update_weight(name, p.dtype, p.shape, empty_cache=i == len(new) - 1))
            await asyncio.sleep(0)
            await asyncio.to_thread(trainer["g"].broadcast, p.clone(), 0, None)
            await task

    loop.run_until_complete(sync())
    assert actor.engine.policy_version == version + 1
    after = actor.engine.verify([prompt], [draft])[0].logprobs
    assert np.abs(after - before).max() > 1e-3
    actor.engine.update_weights(list(model.named_parameters()))  # restore
