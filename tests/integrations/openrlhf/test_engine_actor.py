"""SpecRolloutActor in-process on a real CPU SGLang engine, driven by OpenRLHF's real executors.

One engine and one Ray cluster for the module (Ray hosts a peer draft-store shard). Covers
OpenRLHF's vLLM actor contract (generate_responses with SingleTurnAgentExecutor + a reward file,
MultiTurnAgentExecutor, vLLM-shaped outputs, rollout log-probs in OpenRLHF's Experience), one
concurrent step per prompt group, draft reuse after a weight sync, fresh draws (repeat, identical
groups, DAPO-filtered groups), eval isolation, the gloo weight stream, partial rollouts (interrupt,
resume under the new weights, never two policies in a sample), draft checkpoints, and the sharded
store reaching a peer shard through Ray.
"""

import asyncio
import math
import time

import numpy as np
import pytest
import torch

vllm = pytest.importorskip("vllm")
ray = pytest.importorskip("ray")
from openrlhf.trainer.ppo_utils.samples_generator import SamplesGenerator  # noqa: E402
from openrlhf.utils.agent import AgentInstanceBase, MultiTurnAgentExecutor  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from integrations.openrlhf.draft_snapshots import read_meta, shard_paths  # noqa: E402
from integrations.openrlhf.engine_actor import SpecRolloutActor  # noqa: E402
from integrations.openrlhf.sampling_translation import UnsupportedSamplingError  # noqa: E402
from integrations.openrlhf.sharded_store import ShardedDraftStore, owner_of  # noqa: E402
from integrations.openrlhf.spec_args import SpecSettings  # noqa: E402
from integrations.openrlhf.step_log import METRIC_NAMES  # noqa: E402
from radix_cache.responses import Response  # noqa: E402
from radix_cache.trajectory_store import TrajectoryStore  # noqa: E402
from specrl_sglang.engine_config import EngineConfig  # noqa: E402
from specrl_sglang.prompt_identity import prompt_key  # noqa: E402

MAX_NEW = 12
PROMPTS = [("rev: a b =", "b a"), ("rev: c d e =", "e d c"), ("rev: f g h a =", "a h g f")]
REWARD = '''import torch
def reward_func(queries, prompts, labels):
    r = torch.tensor([1.0 if l == "const" else float(len(q) % 3) / 2 for q, l in zip(queries, labels)])
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
def ray_cluster():
    ray.init(num_cpus=1, include_dashboard=False, object_store_memory=80 * 1024 * 1024, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def actor(tiny_model_path, tmp_path_factory, ray_cluster):
    reward = tmp_path_factory.mktemp("reward") / "reward.py"
    reward.write_text(REWARD)
    act = SpecRolloutActor(
        tiny_model_path,
        settings=SpecSettings(lenience=math.inf, group_window_s=0.01),
        engine_config=EngineConfig(model_path=tiny_model_path, max_total_tokens=16384),
        max_model_len=64,
        logprobs_mode="processed_logprobs",
        remote_rm_url=[str(reward)],
    )
    yield act
    act.shutdown()


@pytest.fixture(scope="module")
def tokenizer(tiny_model_path):
    return AutoTokenizer.from_pretrained(tiny_model_path)


@pytest.fixture
def fresh(actor, base_weights):
    """Base weights (a new policy version), an empty local store, no peers, default rules."""
    actor.runtime.update_weights(base_weights)
    actor.runtime.replace_store(ShardedDraftStore(TrajectoryStore(max_tokens=None), 0))
    actor.drafts = actor.runtime.store_call(lambda s: s)
    actor.fresh.fresh_ids.clear()
    actor.fresh.filtering_range = None
    return base_weights


def one_pass(loop, actor, tokenizer, prompts=PROMPTS, n=4, params=None, eval_=False, max_length=64):
    method = actor.generate_eval_responses if eval_ else actor.generate_responses

    async def go():
        return await asyncio.gather(*(method(p, l, params or openrlhf_params(), max_length, tokenizer, num_samples=n)
                                      for p, l in prompts))

    return loop.run_until_complete(go())


def key_of(tokenizer, prompt, label):
    return prompt_key(label, tokenizer(prompt, add_special_tokens=False)["input_ids"])


def stored(actor, key):
    return actor.runtime.store_call(lambda s: sorted(tuple(d.token_ids.tolist()) for d in s.local.samples(key))
                                    if key in s.local else None)


def new_version(actor, weights):
    actor.runtime.update_weights(weights)


def test_each_prompt_is_one_concurrent_step_and_outputs_become_experiences(loop, actor, tokenizer, fresh):
    before = len(actor.log.records)
    outs = one_pass(loop, actor, tokenizer)
    records = list(actor.log.records)[before:]
    assert sorted(r["prompt_id"] for r in records) == sorted(key_of(tokenizer, p, l) for p, l in PROMPTS)
    assert all(r["num_prompts"] == 1 and r["num_samples"] == 4 and r["purpose"] == "train" for r in records)
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
    assert actor.get_num_unfinished_requests() == 0


def test_groups_of_different_prompts_run_at_the_same_time(loop, actor, tokenizer, fresh):
    before = len(actor.log.records)
    one_pass(loop, actor, tokenizer, n=2, params=openrlhf_params(max_tokens=64, ignore_eos=True), max_length=128)
    spans = [(r["end_time"] - r["total_s"], r["end_time"]) for r in list(actor.log.records)[before:]]
    assert len(spans) == 3 and max(s for s, _ in spans) < min(e for _, e in spans)  # all three steps overlapped


def test_after_a_weight_sync_each_slot_reuses_a_distinct_draft(loop, actor, tokenizer, fresh):
    first = one_pass(loop, actor, tokenizer)
    new_version(actor, fresh)  # same weights, new policy version (as after every training step)
    second = one_pass(loop, actor, tokenizer)
    flat = [s for samples in second for s in samples]
    assert all(s["extra_logs"]["spec_draft_hit"] == 1.0 and s["extra_logs"]["spec_fresh_draw"] == 0.0 for s in flat)
    assert all(s["extra_logs"]["spec_full_reuse"] == 1.0 and s["extra_logs"]["spec_decoded_tokens"] == 0 for s in flat)
    for a, b in zip(first, second):  # lenience inf: each prompt's 4 responses come back as the previous 4
        assert sorted(tuple(s["observation_tokens"]) for s in a) == sorted(tuple(s["observation_tokens"]) for s in b)
        np.testing.assert_allclose(sorted(sum(s["rollout_log_probs"]) for s in a),
                                   sorted(sum(s["rollout_log_probs"]) for s in b), atol=1e-4)


def test_a_prompt_asked_again_under_the_same_policy_is_drawn_fresh(loop, actor, tokenizer, fresh):
    first = one_pass(loop, actor, tokenizer, prompts=PROMPTS[:1])
    again = one_pass(loop, actor, tokenizer, prompts=PROMPTS[:1])  # no weight sync in between
    record = list(actor.log.records)[-1]
    assert record["fresh_reason"] == "repeat" and record["mode"] == "exact" and record["num_with_draft"] == 4
    assert all(s["extra_logs"]["spec_fresh_draw"] == 1.0 for s in again[0])
    assert sorted(tuple(s["observation_tokens"]) for s in again[0]) != sorted(tuple(s["observation_tokens"]) for s in first[0])


def test_a_group_of_identical_fully_reused_drafts_is_redrawn(loop, actor, tokenizer, fresh):
    prompt, label = PROMPTS[1]
    key = key_of(tokenizer, prompt, label)
    ids = np.asarray(tokenizer(prompt, add_special_tokens=False)["input_ids"], dtype=np.int32)
    out = actor.runtime.run(actor.runtime.engine.generate("k", ids, MAX_NEW, actor_sampling()))
    copies = [Response(out.token_ids.copy(), out.logprobs.copy()) for _ in range(4)]
    actor.runtime.store_call(lambda s: s.local.put(key, ids, copies))
    samples = one_pass(loop, actor, tokenizer, prompts=[(prompt, label)])[0]
    copied, redrawn = list(actor.log.records)[-2:]
    assert copied["prompt_id"] == redrawn["prompt_id"] == key
    assert copied["num_fully_reused"] == 4 and copied["fresh_reason"] is None
    assert redrawn["fresh_reason"] == "identical" and redrawn["mode"] == "exact"
    assert len({tuple(s["observation_tokens"]) for s in samples}) > 1  # a real group, not 4 copies
    assert actor.fresh.counts["identical"] >= 1


def actor_sampling():
    from specrl_sglang.sampling import SamplingConfig

    return SamplingConfig()


def test_a_group_dapo_will_filter_is_drawn_fresh_next_time(loop, actor, tokenizer, fresh):
    actor.fresh.filtering_range = (0.0, 1.0)  # OpenRLHF's default --algo.dynamic_filtering_range
    prompts = [("rev: b c =", "const"), PROMPTS[0]]  # the reward file scores "const" 1.0: mean 1.0 is filtered
    const_key = key_of(tokenizer, *prompts[0])
    first = one_pass(loop, actor, tokenizer, prompts=prompts)
    assert actor.fresh.fresh_ids == {const_key}
    new_version(actor, fresh)
    second = one_pass(loop, actor, tokenizer, prompts=prompts)
    by_key = {r["prompt_id"]: r for r in list(actor.log.records)[-2:]}
    assert by_key[const_key]["fresh_reason"] == "filtered" and by_key[const_key]["mode"] == "exact"
    assert by_key[const_key]["num_fully_reused"] < 4  # new samples, not the filtered ones replayed
    assert sorted(tuple(s["observation_tokens"]) for s in second[0]) != sorted(tuple(s["observation_tokens"]) for s in first[0])
    other = by_key[key_of(tokenizer, *PROMPTS[0])]
    assert other["fresh_reason"] is None and other["num_fully_reused"] == 4  # the rest keeps SPEC-RL reuse
    assert actor.fresh.fresh_ids == {const_key}  # filtered again (constant reward): fresh again next time


def test_eval_never_speculates_and_never_touches_training_drafts(loop, actor, tokenizer, fresh):
    one_pass(loop, actor, tokenizer)  # training drafts for every prompt
    keys = [key_of(tokenizer, p, l) for p, l in PROMPTS]
    before = [stored(actor, k) for k in keys]
    puts_before = actor.drafts.stats().num_puts
    new_version(actor, fresh)
    # Eval set == training set, another temperature, IS-correction log-probs mode (refused for training).
    outs = one_pass(loop, actor, tokenizer, params=openrlhf_params(temperature=0.6), eval_=True)
    records = list(actor.log.records)[-3:]
    assert all(r["purpose"] == "eval" and r["mode"] == "vanilla" and r["temperature"] == 0.6 for r in records)
    assert all(r["num_with_draft"] == 0 and r["num_tokens_decoded"] > 0 for r in records)
    assert all(s["extra_logs"]["spec_draft_hit"] == 0.0 for samples in outs for s in samples)
    assert [stored(actor, k) for k in keys] == before and actor.drafts.stats().num_puts == puts_before
    with pytest.raises(UnsupportedSamplingError, match="temperature=0.6"):  # training at 0.6 would be refused
        loop.run_until_complete(actor.generate([5, 9], openrlhf_params(temperature=0.6)))


def test_vllm_shaped_generate_output(loop, actor, fresh):
    out = loop.run_until_complete(actor.generate([5, 9, 13, 17], openrlhf_params(logprobs=None)))
    c = out.outputs[0]
    assert out.prompt_token_ids == [5, 9, 13, 17] and 1 <= len(c.token_ids) <= MAX_NEW
    assert c.finish_reason in ("stop", "length") and c.logprobs is None and isinstance(c.text, str)
    new_version(actor, fresh)
    out = loop.run_until_complete(actor.generate([5, 9, 13, 17], openrlhf_params()))
    c = out.outputs[0]
    assert [list(d) for d in c.logprobs] == [[t] for t in c.token_ids]
    assert math.isclose(sum(d[t].logprob for d, t in zip(c.logprobs, c.token_ids)), c.cumulative_logprob, abs_tol=1e-4)
    with pytest.raises(UnsupportedSamplingError, match="text-only"):
        loop.run_until_complete(actor.generate_responses("x", "y", openrlhf_params(), 64, None, 1, images=["i"]))


class TwoTurnAgent(AgentInstanceBase):
    def __init__(self, *args, **kwargs):
        self.turn = 0

    async def step(self, state_dict, **kwargs):
        self.turn += 1
        return {"rewards": torch.tensor(1.0), "scores": torch.tensor(1.0), "environment_feedback": " ok =",
                "done": self.turn >= 2, "extra_logs": {}}


def test_multi_turn_executor_runs_on_the_engine(loop, actor, tokenizer, fresh):
    actor.executor, saved = MultiTurnAgentExecutor(TwoTurnAgent), actor.executor
    try:  # many stop tokens: each turn ends early, leaving budget for the second turn
        outs = one_pass(loop, actor, tokenizer, n=2, params=openrlhf_params(max_tokens=None, stop_token_ids=list(range(3, 150))))
    finally:
        actor.executor = saved
    for samples in outs:
        for s in samples:
            assert len(s["action_ranges"]) == 2 and len(s["rollout_log_probs"]) == len(s["observation_tokens"])
            assert s["reward"] == 2.0


@pytest.fixture(scope="module")
def trainer(loop, actor, gloo_trainer):
    return gloo_trainer(loop, actor)


def test_weight_sync_streams_into_the_runtime(loop, actor, trainer, fresh, hf_reference):
    new = hf_reference.perturbed(fresh, 0.05, seed=3)
    prompt, draft = np.array([5, 9, 13, 17], np.int32), np.array([21, 25, 29], np.int32)
    version = actor.runtime.policy_version
    trainer.sync(new)
    assert actor.runtime.policy_version == version + 1 and not actor.runtime.poisoned
    after = actor.runtime.run(actor.runtime.engine.verify("k", prompt, draft)).logprobs
    np.testing.assert_allclose(after, hf_reference(new).logprobs(prompt, draft), atol=2e-4)


def test_an_incomplete_weight_round_poisons_the_engine_until_a_complete_one(loop, actor, trainer, fresh):
    from specrl_sglang.engine_api import EngineError

    (name, p), *rest = fresh
    loop.run_until_complete(actor.pause_generation())
    with pytest.raises(Exception, match="bogus"):  # the trainer broadcast it; the runtime refused the name
        trainer.sync([("bogus." + name, p)] + rest[:1])
    assert loop.run_until_complete(actor.resume_generation()) is True  # the failed load closed the round itself
    assert actor.runtime.poisoned and actor.weights.num_aborted_rounds >= 1
    with pytest.raises(EngineError, match="weight update"):
        loop.run_until_complete(actor.generate([5, 9, 13], openrlhf_params()))
    trainer.sync(fresh)  # a complete round heals it
    assert not actor.runtime.poisoned
    assert len(loop.run_until_complete(actor.generate([5, 9, 13], openrlhf_params())).outputs[0].token_ids) >= 1


def test_partial_rollout_interrupts_and_resumes_under_the_new_policy(loop, actor, trainer, fresh, hf_reference, tokenizer):
    new = hf_reference.perturbed(fresh, 0.05, seed=4)
    long = openrlhf_params(max_tokens=300, ignore_eos=True)

    async def go():
        rollout = asyncio.ensure_future(asyncio.gather(*(actor.generate_responses(p, l, long, 400, tokenizer, 4)
                                                         for p, l in PROMPTS[:2])))
        while actor.runtime.health()["active_steps"] < 2:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # decoding 300 tokens takes seconds here
        await actor.pause_generation()  # OpenRLHF's partial-rollout weight sync: pause, broadcast, resume
        assert actor.runtime.health()["parked_steps"] == 2
        await trainer.broadcast(new)
        await actor.resume_generation()
        return await rollout

    before = len(actor.log.records)
    outs = loop.run_until_complete(go())
    records = list(actor.log.records)[before:]
    assert len(records) == 2 and all(r["num_rounds"] == 2 and r["policy_version"] == actor.runtime.policy_version
                                     for r in records)
    assert all(r["num_tokens_decoded_all_rounds"] > r["num_tokens_decoded"] for r in records)  # partial work kept
    ref = hf_reference(new)
    for samples in outs:
        for s in samples:
            (start, end), = s["action_ranges"]
            assert end - start == 300 and s["extra_logs"]["spec_rounds"] == 2.0
            tokens = np.asarray(s["observation_tokens"])
            np.testing.assert_allclose(s["rollout_log_probs"][start:], ref.logprobs(tokens[:start], tokens[start:]),
                                       atol=2e-4)  # every token scored by the new policy: nothing mixed
    assert actor.weights.num_interrupting_rounds >= 1


def test_drafts_round_trip_through_a_checkpoint_directory(loop, actor, tokenizer, fresh, tmp_path):
    one_pass(loop, actor, tokenizer)
    keys = [key_of(tokenizer, p, l) for p, l in PROMPTS]
    saved = [stored(actor, k) for k in keys]
    actor.fresh.fresh_ids.add(keys[2])
    meta = loop.run_until_complete(actor.save_drafts(str(tmp_path)))
    assert meta["num_prompts"] == 3 and meta["num_steps"] == actor.runtime.num_steps
    one_pass(loop, actor, tokenizer, eval_=True)  # eval after the save advances the step counter ...
    new_version(actor, fresh)
    counter_at_next_rollout = actor.runtime.num_steps
    one_pass(loop, actor, tokenizer, prompts=PROMPTS[:2])  # ... so the next training step records it
    assert read_meta(shard_paths(tmp_path, 0, 1)[1]).num_steps == counter_at_next_rollout
    actor.runtime.store_call(lambda s: s.local.remove(keys[0]))
    assert [stored(actor, k) for k in keys] != saved
    actor.fresh.fresh_ids.clear()
    assert loop.run_until_complete(actor.load_drafts(str(tmp_path))) == 3
    assert [stored(actor, k) for k in keys] == saved and actor.runtime.num_steps == counter_at_next_rollout
    assert actor.fresh.fresh_ids == {keys[2]}


def test_the_sharded_store_reaches_a_peer_shard_through_ray(loop, actor, tokenizer, fresh):
    class PeerShard:  # defined here: Ray pickles it by value (test modules are not importable on workers)
        """A Ray actor holding shard 1 of a two-shard store, served like an engine's (ShardedDraftStore.serve)."""

        def __init__(self):
            self.store = ShardedDraftStore(TrajectoryStore(max_tokens=None), 1)

        async def store_call(self, method, *args):
            return self.store.serve(method, *args)

        def prompt_ids(self):
            return sorted(self.store.local.prompt_ids())

    peer = ray.remote(PeerShard).remote()
    prompts = [(f"rev: {a} {b} =", f"{b} {a}") for a in "abcd" for b in "efgh"][:8]
    keys = [key_of(tokenizer, p, l) for p, l in prompts]
    remote = sorted(k for k in keys if owner_of(k, 2) == 1)
    assert remote and len(remote) < len(keys)
    loop.run_until_complete(actor.set_peers([None, peer]))
    try:
        one_pass(loop, actor, tokenizer, prompts=prompts, n=2)
        assert ray.get(peer.prompt_ids.remote()) == remote
        assert sorted(actor.runtime.store_call(lambda s: list(s.local.prompt_ids()))) == sorted(set(keys) - set(remote))
        new_version(actor, fresh)
        second = one_pass(loop, actor, tokenizer, prompts=prompts, n=2)
        assert all(s["extra_logs"]["spec_full_reuse"] == 1.0 for samples in second for s in samples)
        assert actor.drafts.num_remote_calls >= 2 * 2 * len(remote)  # lookup + put per remote prompt and pass
    finally:
        loop.run_until_complete(actor.set_peers([]))


def test_eval_routing_sends_openrlhfs_eval_dispatch_to_the_eval_path(ray_cluster):
    from integrations.openrlhf.eval_routing import EvalRoute, _routed

    class Handle:  # a real Ray actor with the two entry points OpenRLHF's dispatcher can reach
        def generate_responses(self, **kwargs):
            return "train"

        def generate_eval_responses(self, **kwargs):
            return "eval"

        def get_num_unfinished_requests(self):
            return 0

    engine = ray.remote(Handle).remote()
    route = EvalRoute(engine)
    assert ray.get([route.generate_responses.remote(prompt="p"), route.get_num_unfinished_requests.remote()]) == ["eval", 0]

    class Generator:  # the attribute and call shape of OpenRLHF's SamplesGenerator.generate_eval_samples
        vllm_engines = [engine]

        def generate_eval_samples(self, **kwargs):
            return ray.get([e.generate_responses.remote(prompt="p") for e in self.vllm_engines])

    routed = _routed(Generator.generate_eval_samples)
    gen = Generator()
    assert routed(gen) == ["eval"] and gen.vllm_engines == [engine]  # swapped only while it runs
    assert ray.get(gen.vllm_engines[0].generate_responses.remote()) == "train"
