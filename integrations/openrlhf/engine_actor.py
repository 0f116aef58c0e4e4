"""`SpecRolloutActor`: an SGLang + SPEC-RL rollout engine with OpenRLHF's vLLM actor contract.

OpenRLHF calls these methods on each of its rollout actors (openrlhf/trainer/ray/vllm_engine.py):
- `generate_responses(prompt, label, sampling_params, max_length, hf_tokenizer, num_samples, images)`
  -> list of `num_samples` response dicts from its agent executor (n samples of one prompt, in order);
- `generate(prompt_token_ids, sampling_params, multi_modal_data)` -> a vLLM-shaped RequestOutput
  (called by the executors, once per sample);
- `get_num_unfinished_requests()` -> int, for its load-based dispatch;
- `init_process_group(...)`, `update_weight(...)`, `update_weight_cuda_ipc(...)`: weight sync;
- `reset_prefix_cache()`, `pause_generation()`, `resume_generation()`, `sleep()`, `wake_up(tags)`.

Threads: the Ray actor is async (one event loop). The SGLang engine is created on and only used
from one dedicated "engine thread" (SGLang's offline Engine drives its own event loop with
run_until_complete, which cannot run inside the actor's loop). Weight-sync receives run on a third
thread so a blocking broadcast never stalls the loop. `step_lock` serialises rollout steps, weight
loads and cache flushes.

Drafts are keyed by `prompt_key(label, prompt_ids)`; the label reaches `generate` through a context
variable set by `generate_responses` (asyncio copies it into the executor's tasks). Per-sample
SPEC-RL metrics are added to each response's `extra_logs`, which OpenRLHF turns into per-step
`train/spec_*` entries of its wandb/tensorboard logs.
"""

from __future__ import annotations

import asyncio
from functools import partial
import contextvars
import json
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from integrations.openrlhf.batcher import RolloutBatcher
from integrations.openrlhf.placement import LockedStore, ShardedDraftStore, prompt_key
from integrations.openrlhf.sampling_translation import UnsupportedSamplingError, translate_sampling
from integrations.openrlhf.spec_args import SpecSettings
from integrations.openrlhf.vllm_outputs import RequestOutput, build_request_output
from integrations.openrlhf.weight_sync import WeightReceiver

_LABEL: contextvars.ContextVar[Any] = contextvars.ContextVar("specrl_label", default=None)
_SAMPLE_METRICS: contextvars.ContextVar[dict | None] = contextvars.ContextVar("specrl_sample_metrics", default=None)

# Per-sample metrics (OpenRLHF averages them over the step's samples and logs train/<name>).
METRIC_NAMES = (
    "spec_full_reuse",  # 1: the whole response is a verified draft (no decoding)
    "spec_draft_hit",  # 1: a draft was offered
    "spec_accepted_len",  # draft tokens kept
    "spec_decoded_tokens",  # tokens the engine decoded
    "spec_policy_version",  # engine weight version that served the sample
    "spec_step_verify_s",  # the serving step's verify / continue / total wall time
    "spec_step_continue_s",
    "spec_step_total_s",
)


def sample_metrics(sample, stats) -> dict[str, float]:
    return {
        "spec_full_reuse": float(sample.fully_reused),
        "spec_draft_hit": float(sample.draft_len > 0),
        "spec_accepted_len": float(sample.accepted_len),
        "spec_decoded_tokens": float(sample.num_decoded),
        "spec_policy_version": float(stats.policy_version),
        "spec_step_verify_s": float(stats.verify_s),
        "spec_step_continue_s": float(stats.continue_s),
        "spec_step_total_s": float(stats.total_s),
    }


# How a multi-turn sample's metrics combine over its turns: token counts add up, full reuse needs
# every turn, the rest keep the largest value. A single-turn sample has exactly one turn.
_TURN_MERGE = {"spec_accepted_len": sum, "spec_decoded_tokens": sum, "spec_full_reuse": min}


def merge_turn_metrics(total: dict[str, float], turn: dict[str, float]) -> None:
    for name, value in turn.items():
        total[name] = value if name not in total else _TURN_MERGE.get(name, max)((total[name], value))


def _new_thread_loop() -> None:
    asyncio.set_event_loop(asyncio.new_event_loop())


class SpecRolloutActor:
    """One rollout engine; wrap with `ray.remote` (engine_factory does) or use in-process in tests."""

    def __init__(
        self,
        model_path: str,
        *,
        engine_index: int = 0,
        settings: SpecSettings = SpecSettings(),
        engine_config: Any = None,
        max_model_len: int | None = None,
        logprobs_mode: str | None = None,
        agent_func_path: str | None = None,
        remote_rm_url: Any = None,
        executor: Any = None,
    ) -> None:
        from radix_cache.trajectory_store import TrajectoryStore
        from specrl_sglang.engine import RolloutEngine
        from specrl_sglang.engine_config import EngineConfig
        from specrl_sglang.spec_rollout import SpecConfig, SpecRollout
        from transformers import AutoTokenizer

        self.engine_index, self.settings = engine_index, settings
        self.logprobs_mode, self.max_model_len = logprobs_mode, max_model_len
        self._engine_thread = ThreadPoolExecutor(1, thread_name_prefix="sglang-engine", initializer=_new_thread_loop)
        self._sync_thread = ThreadPoolExecutor(1, thread_name_prefix="weight-sync")
        config = engine_config or EngineConfig(model_path=model_path)
        self.engine = self._engine_thread.submit(RolloutEngine, config).result()
        self.tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=True)
        self.local_store = LockedStore(TrajectoryStore(max_tokens=settings.store_max_tokens))
        self.drafts = ShardedDraftStore(self.local_store, engine_index)
        spec = SpecConfig(lenience=settings.lenience, enabled=settings.enabled, seed=settings.seed + engine_index)
        self.rollout = SpecRollout(self.engine, self.drafts, spec)
        self.executor = executor if executor is not None else _make_executor(agent_func_path, remote_rm_url)
        self.step_lock = asyncio.Lock()
        self._weight_round_open = False
        self.batcher = RolloutBatcher(self._run_step, self._engine_thread, self.step_lock, settings.batch_window_s)
        self.receiver = WeightReceiver(device="cuda" if config.profile == "gpu" else "cpu")
        self.step_history: list[dict] = []

    # ------------------------------------------------------------------ placement
    def set_peers(self, peers: list) -> int:
        """Give this engine the handles of all engines (index order) so drafts shard across them."""
        self.drafts.peers = list(peers)
        return len(self.drafts.peers)

    def store_lookup(self, prompt_id, prompt_ids, n, lock=True):
        return self.local_store.lookup(prompt_id, prompt_ids, n, lock=lock)

    def store_put(self, prompt_id, prompt_ids, responses):
        return self.local_store.put(prompt_id, prompt_ids, responses)

    def store_release(self, prompt_id):
        return self.local_store.release(prompt_id)

    def get_spec_stats(self) -> dict:
        """Cumulative view for diagnostics: every step's StepStats, the store's stats, RPC counts."""
        return {
            "engine_index": self.engine_index,
            "policy_version": self.engine.policy_version,
            "steps": list(self.step_history),
            "store": self.local_store.stats(),
            "num_remote_store_calls": self.drafts.num_remote_calls,
        }

    # ------------------------------------------------------------------ rollout
    def _run_step(self, requests, sampling, max_new_tokens):
        """Engine thread: one SpecRollout step, logged."""
        result = self.rollout.step(requests, sampling, max_new_tokens)
        record = {"engine_index": self.engine_index, **result.stats.to_dict()}
        self.step_history.append(record)
        if self.settings.stats_jsonl:
            with open(self.settings.stats_jsonl, "a") as fh:
                fh.write(json.dumps(record, default=float) + "\n")
        return result

    async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None) -> RequestOutput:
        """Sample one response to `prompt_token_ids` (a SPEC-RL step batches concurrent calls)."""
        if multi_modal_data:
            raise UnsupportedSamplingError("the sglang-spec rollout backend serves text-only models (no multi_modal_data)")
        params = translate_sampling(sampling_params, logprobs_mode=self.logprobs_mode)
        prompt_ids = np.asarray(list(prompt_token_ids), dtype=np.int32)
        max_new = params.max_new_tokens
        if max_new is None:  # vLLM's default: fill the model length
            max_new = max(1, (self.max_model_len or self.engine.context_len) - len(prompt_ids))
        key = prompt_key(_LABEL.get(), prompt_ids)
        sample, stats = await self.batcher.submit(key, prompt_ids, params.sampling, max_new)
        metrics = sample_metrics(sample, stats)
        holder = _SAMPLE_METRICS.get()
        if holder is not None:
            merge_turn_metrics(holder, metrics)
        text = self.tokenizer.decode(sample.token_ids.tolist(), skip_special_tokens=params.skip_special_tokens)
        return build_request_output(
            request_id=uuid.uuid4().hex,
            prompt_token_ids=prompt_ids.tolist(),
            token_ids=sample.token_ids,
            logprobs=sample.logprobs if params.num_logprobs is not None else None,
            finish_reason=sample.finish_reason,
            text=text,
            metrics=metrics,
        )

    async def generate_responses(self, prompt, label, sampling_params, max_length, hf_tokenizer, num_samples=1, images=None):
        """OpenRLHF's entry point: `num_samples` executor runs of one prompt, in order."""
        if images:
            raise UnsupportedSamplingError("the sglang-spec rollout backend serves text-only models (got images)")
        _LABEL.set(label)

        async def one_sample():
            holder: dict = {}
            _SAMPLE_METRICS.set(holder)  # this task's own context
            out = await self.executor.execute(
                prompt=prompt,
                label=label,
                sampling_params=sampling_params,
                max_length=max_length,
                hf_tokenizer=hf_tokenizer,
                llm_engine=self,
                images=images,
            )
            out["extra_logs"] = {**(out.get("extra_logs") or {}), **holder}
            return out

        return await asyncio.gather(*(one_sample() for _ in range(num_samples)))

    def get_num_unfinished_requests(self) -> int:
        return self.batcher.num_unfinished

    # ------------------------------------------------------------------ weights and cache
    async def init_process_group(self, master_address, master_port, rank_offset, world_size, group_name, backend, use_ray=False):
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(
            self._sync_thread,
            self.receiver.init_process_group,
            master_address, master_port, rank_offset, world_size, group_name, backend, use_ray,
        )

    async def update_weight(self, name, dtype, shape, empty_cache=False):
        return await self._stream_weight(partial(self.receiver.receive, name, dtype, shape), empty_cache)

    async def update_weight_cuda_ipc(self, name, dtype, shape, ipc_handles, empty_cache=False):
        return await self._stream_weight(
            partial(self.receiver.receive_cuda_ipc, name, dtype, shape, ipc_handles), empty_cache
        )

    async def _stream_weight(self, receive, last: bool) -> int | None:
        """Receive one parameter and load it straight into an open engine weight update.

        The first parameter of a round takes `step_lock` and opens the update; OpenRLHF marks the
        last one with `empty_cache=True`, which closes it (flush + policy version bump) and releases
        the lock. So no rollout step spans two policies, and no copy of the weights is buffered.
        On any failure the update is aborted: the engine refuses requests until the next full round.
        """
        loop = asyncio.get_running_loop()
        if not self._weight_round_open:
            await self.step_lock.acquire()
            try:
                await loop.run_in_executor(self._engine_thread, self.engine.begin_weight_update)
            except BaseException:
                self.step_lock.release()
                raise
            self._weight_round_open = True
        try:
            await loop.run_in_executor(self._sync_thread, receive)
            await loop.run_in_executor(self._engine_thread, self.engine.load_weights, self.receiver.take())
            if last:
                return await loop.run_in_executor(self._engine_thread, self.engine.end_weight_update)
            return None
        except BaseException:
            last = True
            await loop.run_in_executor(self._engine_thread, self.engine.abort_weight_update)
            raise
        finally:
            if last:
                self._weight_round_open = False
                self.step_lock.release()

    async def reset_prefix_cache(self):
        async with self.step_lock:
            await asyncio.get_running_loop().run_in_executor(self._engine_thread, self.engine.flush_cache)

    async def pause_generation(self):
        await self.batcher.pause()

    async def resume_generation(self):
        self.batcher.resume()

    async def sleep(self, level=1):
        await self._memory_call("release_memory", "sleep")

    async def wake_up(self, tags=None):
        await self._memory_call("resume_memory", "wake_up")

    async def _memory_call(self, method: str, what: str):
        fn = getattr(self.engine, method, None)
        if fn is None:
            raise NotImplementedError(
                f"{what}: RolloutEngine has no {method}() (SGLang release/resume_memory_occupation), "
                "so --vllm.enable_sleep is not supported by the sglang-spec backend yet"
            )
        async with self.step_lock:
            await asyncio.get_running_loop().run_in_executor(self._engine_thread, fn)

    def shutdown(self) -> None:
        self._engine_thread.submit(self.engine.shutdown).result()
        self._engine_thread.shutdown()
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
