"""`SpecRolloutActor`: OpenRLHF's vLLM rollout-actor contract over one `RolloutRuntime`.

OpenRLHF calls (openrlhf/trainer/ray/vllm_engine.py::RolloutRayActor) `generate_responses` (n
executor runs of one prompt), `generate` (from the executors, once per sample; vLLM-shaped output),
`get_num_unfinished_requests`, `init_process_group` / `update_weight` / `update_weight_cuda_ipc`,
`reset_prefix_cache`, `pause_generation` / `resume_generation` (partial rollouts), `sleep` /
`wake_up`. Ours: `generate_eval_responses` (eval_routing), `save_drafts` / `load_drafts`
(checkpoint_hooks), `store_call` / `set_peers` (sharded_store), `get_spec_stats`.

A thin adapter holding no lock: the runtime (actor_runtime: an in-process engine, or the SGLang
servers of --spec.sglang_urls) owns the engine, the draft store (this engine's shard
behind a ShardedDraftStore), the policy version and the weight-update session, and makes every step
atomic with respect to weight updates. The actor's own state (prompt groups, fresh-draw marks, step
log) lives on its event loop; blocking runtime calls run on one weight-sync thread. Training groups
run under the configured rule or a fresh draw (fresh_draws); eval groups as plain rollouts at the
eval sampling settings under scratch ids the store never keeps. Drafts are keyed by
`prompt_key(label, prompt_ids)`; the label reaches `generate` through a context variable.
"""

from __future__ import annotations

import asyncio
import contextvars
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from functools import partial
from typing import Any, NamedTuple

import numpy as np

from integrations.openrlhf.actor_runtime import build_runtime
from integrations.openrlhf.draft_snapshots import ShardCheckpoints
from integrations.openrlhf.fresh_draws import FreshDraws, StepRule, fresh_mode
from integrations.openrlhf.prompt_groups import GroupKey, GroupResult, PromptGroups
from integrations.openrlhf.sampling_translation import UnsupportedSamplingError, translate_sampling
from integrations.openrlhf.sharded_store import ShardedDraftStore, scratch_id
from integrations.openrlhf.spec_args import SpecSettings
from integrations.openrlhf.step_log import StepLog, merge_turn_metrics, sample_metrics
from integrations.openrlhf.vllm_outputs import RequestOutput, build_request_output
from integrations.openrlhf.weight_stream import WeightStream
from integrations.openrlhf.weight_sync import WeightReceiver
from specrl_sglang.prompt_identity import prompt_key
from specrl_sglang.rollout_types import RolloutRequest


class _Call(NamedTuple):  # one generate_responses call, seen by the generate() calls it causes
    label: Any
    purpose: str  # "train" | "eval"
    num_samples: int


_CALL: contextvars.ContextVar[_Call | None] = contextvars.ContextVar("specrl_call", default=None)
_SAMPLE: contextvars.ContextVar[tuple[dict, list] | None] = contextvars.ContextVar("specrl_sample", default=None)


class SpecRolloutActor:
    """One rollout engine; wrap with `ray.remote` (engine_factory does) or use in-process in tests."""

    def __init__(self, model_path: str, *, engine_index: int = 0, settings: SpecSettings = SpecSettings(),
                 engine_config: Any = None, max_model_len: int | None = None, logprobs_mode: str | None = None,
                 agent_func_path: str | None = None, remote_rm_url: Any = None, executor: Any = None) -> None:
        from radix_cache.trajectory_store import TrajectoryStore
        from specrl_sglang.engine_config import EngineConfig
        from transformers import AutoTokenizer

        self.engine_index, self.settings = engine_index, settings
        self.logprobs_mode, self.max_model_len = logprobs_mode, max_model_len
        config = engine_config or EngineConfig(model_path=model_path)
        self.drafts = ShardedDraftStore(TrajectoryStore(max_tokens=settings.store_max_tokens), engine_index)
        self.runtime = build_runtime(settings, model_path, config, self.drafts, engine_index)  # engine or servers
        self.tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=True)
        self.executor = executor if executor is not None else _make_executor(agent_func_path, remote_rm_url)
        self.groups = PromptGroups(self._run_group, settings.group_window_s)
        self.fresh = FreshDraws(settings.mode, settings.dynamic_filtering_range)
        self.log = StepLog(engine_index, settings.stats_jsonl)
        self.receiver = WeightReceiver(device="cuda" if config.profile == "gpu" else "cpu")
        self.weights = WeightStream(self.runtime)
        self._sync_thread = ThreadPoolExecutor(1, thread_name_prefix="weight-sync")
        self.checkpoints = ShardCheckpoints(self.runtime, engine_index)
        self._asleep = False

    # ------------------------------------------------------------------ rollout
    async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None) -> RequestOutput:
        """Sample one response; the n concurrent calls of one prompt share one rollout step."""
        if multi_modal_data:
            raise UnsupportedSamplingError("the sglang-spec rollout backend serves text-only models (no multi_modal_data)")
        call = _CALL.get() or _Call(None, "train", 1)
        # Eval log-probs are never trained on: raw ones are returned whatever the IS-correction mode.
        params = translate_sampling(sampling_params, logprobs_mode=self.logprobs_mode if call.purpose == "train" else None)
        ids = np.asarray(list(prompt_token_ids), dtype=np.int32)
        max_new = params.max_new_tokens or max(1, (self.max_model_len or self.runtime.engine.limits.context_len) - len(ids))
        key = prompt_key(call.label, ids)
        prompt_id = key if call.purpose == "train" else scratch_id(key)
        sample, group = await self.groups.submit(GroupKey(prompt_id, params.sampling, max_new, call.purpose), ids,
                                                 call.num_samples)
        metrics = sample_metrics(sample, group.stats, group.fresh_reason is not None)
        holder = _SAMPLE.get()
        if holder is not None:
            merge_turn_metrics(holder[0], metrics)
            holder[1].append(prompt_id)
        text = self.tokenizer.decode(sample.token_ids.tolist(), skip_special_tokens=params.skip_special_tokens)
        return build_request_output(uuid.uuid4().hex, ids.tolist(), sample.token_ids,
                                    sample.logprobs if params.num_logprobs is not None else None,
                                    sample.finish_reason, text, metrics)

    async def _run_group(self, key: GroupKey, prompt_ids: np.ndarray, n: int) -> GroupResult:
        request = [RolloutRequest(key.prompt_id, prompt_ids, n)]
        if key.purpose == "eval":
            result = await self.runtime.astep(request, key.sampling, key.max_new_tokens, mode="vanilla")
            self.log.add(result, purpose="eval", prompt_id=key.prompt_id, fresh_reason=None,
                         temperature=key.sampling.temperature)
            return GroupResult(result.samples, result.stats, None)
        self.checkpoints.refresh()  # the first training step after a checkpoint records its step counter
        rule = first = self.fresh.rule_for(key.prompt_id, key.sampling, self.runtime.policy_version)
        version = None
        try:
            while True:
                result = await self.runtime.astep(request, key.sampling, key.max_new_tokens, mode=rule.mode)
                self.log.add(result, purpose="train", prompt_id=key.prompt_id, fresh_reason=rule.fresh_reason,
                             temperature=key.sampling.temperature)
                if not self.fresh.needs_redraw(rule, result.samples):
                    break
                rule = StepRule(fresh_mode(key.sampling), "identical")  # the copied group is not returned
            version = result.stats.policy_version
        finally:
            self.fresh.step_done(key.prompt_id, first, version)
        return GroupResult(result.samples, result.stats, rule.fresh_reason)

    async def generate_responses(self, prompt, label, sampling_params, max_length, hf_tokenizer, num_samples=1,
                                 images=None):
        """OpenRLHF's entry point: `num_samples` executor runs of one prompt, in order."""
        return await self._responses("train", prompt, label, sampling_params, max_length, hf_tokenizer,
                                     num_samples, images)

    async def generate_eval_responses(self, prompt, label, sampling_params, max_length, hf_tokenizer,
                                      num_samples=1, images=None):
        """`generate_responses` for OpenRLHF's evaluation (eval_routing): plain rollouts, nothing stored."""
        return await self._responses("eval", prompt, label, sampling_params, max_length, hf_tokenizer,
                                     num_samples, images)

    async def _responses(self, purpose, prompt, label, sampling_params, max_length, hf_tokenizer, num_samples, images):
        if images:
            raise UnsupportedSamplingError("the sglang-spec rollout backend serves text-only models (got images)")
        _CALL.set(_Call(label, purpose, num_samples))

        async def one_sample():
            holder: tuple[dict, list] = ({}, [])
            _SAMPLE.set(holder)  # this task's own context
            out = await self.executor.execute(prompt=prompt, label=label, sampling_params=sampling_params,
                                              max_length=max_length, hf_tokenizer=hf_tokenizer, llm_engine=self,
                                              images=images)
            out["extra_logs"] = {**(out.get("extra_logs") or {}), **holder[0]}
            return out, holder[1]

        outs = await asyncio.gather(*(one_sample() for _ in range(num_samples)), return_exceptions=True)
        failed = next((o for o in outs if isinstance(o, BaseException)), None)
        if failed is not None:  # a group fails as a whole: every sample carries the same error
            raise failed
        first_ids = {ids[0] for _, ids in outs if ids}
        if purpose == "train" and len(first_ids) == 1:  # DAPO: will OpenRLHF drop this group?
            self.fresh.note_scores(first_ids.pop(), [out.get("scores") for out, _ in outs])
        return [out for out, _ in outs]

    def get_num_unfinished_requests(self) -> int:
        return self.groups.num_unfinished

    # ------------------------------------------------------------------ weights, cache, memory
    async def _blocking(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._sync_thread, fn, *args)

    async def init_process_group(self, master_address, master_port, rank_offset, world_size, group_name, backend,
                                 use_ray=False):
        await self._blocking(self.receiver.init_process_group, master_address, master_port, rank_offset, world_size,
                             group_name, backend, use_ray)

    async def update_weight(self, name, dtype, shape, empty_cache=False):
        return await self._blocking(self.weights.receive, partial(self.receiver.receive, name, dtype, shape), empty_cache)

    async def update_weight_cuda_ipc(self, name, dtype, shape, ipc_handles, empty_cache=False):
        receive = partial(self.receiver.receive_cuda_ipc, name, dtype, shape, ipc_handles)
        return await self._blocking(self.weights.receive, receive, empty_cache)

    async def pause_generation(self):
        """Partial rollouts: interrupt the steps in flight until the weight round ends (weight_stream)."""
        return await self._blocking(self.weights.pause)

    async def resume_generation(self):
        return await self._blocking(self.weights.resume)

    async def reset_prefix_cache(self):
        if not self.weights.open:  # an open weight round flushes every KV entry when it ends
            await asyncio.to_thread(self.runtime.flush_cache)

    async def sleep(self, level=1):
        if not self._asleep:
            await self._blocking(self.runtime.release_memory)
            self._asleep = True

    async def wake_up(self, tags=None):
        if self._asleep:
            await self._blocking(self.runtime.resume_memory)
            self._asleep = False

    # ------------------------------------------------------------------ draft store
    async def set_peers(self, peers: list) -> int:
        """All engines' handles in index order: the store shards over them (placement "shared")."""
        await self.runtime.astore_call(lambda s: setattr(s, "peers", list(peers)))
        return len(peers)

    async def store_call(self, method: str, *args):
        """A peer's draft-store call on this engine's shard, served on the rollout loop."""
        return await self.runtime.astore_call(lambda s: s.serve(method, *args))

    async def save_drafts(self, directory: str) -> dict:
        """Write this engine's shard into a checkpoint's draft directory (checkpoint_hooks)."""
        return asdict(await self.checkpoints.save(directory, self.drafts.num_shards, self.fresh.fresh_ids))

    async def load_drafts(self, directory: str) -> int:
        """Restore this engine's shard, step counter and fresh-draw marks (before any rollout)."""
        store, meta = self.checkpoints.load(directory, self.drafts.num_shards)
        restored = ShardedDraftStore(store, self.engine_index, self.drafts.peers)
        await self._blocking(self.runtime.replace_store, restored, None, meta.num_steps)
        self.drafts = restored
        self.fresh.fresh_ids = set(meta.fresh_ids)
        self.fresh.new_policy_epoch()
        return meta.num_prompts

    # ------------------------------------------------------------------ views and lifecycle
    def get_spec_stats(self) -> dict:
        return {
            "engine_index": self.engine_index,
            "health": self.runtime.health(),
            "steps": list(self.log.records),
            "store": self.drafts.stats(),
            "num_remote_store_calls": self.drafts.num_remote_calls,
            "fresh_draws": dict(self.fresh.counts),
            "weight_rounds": {"complete": self.weights.num_rounds, "interrupting": self.weights.num_interrupting_rounds,
                              "aborted": self.weights.num_aborted_rounds},
        }

    def shutdown(self) -> None:
        self.runtime.close()
        self._sync_thread.shutdown()

    def ready(self) -> bool:
        return True


def _make_executor(agent_func_path: str | None, remote_rm_url: Any):
    """OpenRLHF's own executors, chosen exactly as its RolloutRayActor does."""
    if agent_func_path:
        from openrlhf.trainer.ray.vllm_engine import _load_agent_executor

        return _load_agent_executor(agent_func_path)
    from openrlhf.utils.agent import SingleTurnAgentExecutor

    return SingleTurnAgentExecutor(remote_rm_url)
