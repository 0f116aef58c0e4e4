"""InProcessEngine: an offline `sglang.Engine` in this process, driven through its async API.

The engine is created on the rollout loop's thread (`RolloutRuntime(make_engine=...)`) and every
request is a coroutine on that loop: verifies and continuations of many samples (and of several
concurrent steps) are in SGLang's scheduler at once, batched continuously. Control calls
(weights, flush, memory) go straight to SGLang's tokenizer manager, awaited on the same loop.

Log-probs: the engine is started with SGLANG_RETURN_ORIGINAL_LOGPROB=1, so verify (prefill) and
sampled (decode) log-probs are both the raw log_softmax of the logits (temperature 1).
Stale KV: `end_weight_update` / `update_weights_from_disk` flush the radix cache (waiting for the
scheduler to retire the last batch) and check the result; SGLang's own in-update flush is
disabled because it fails while the last batch is still being retired. The weight version SGLang
reports in every response is set to the runtime's policy version at each update.
Shutdown kills only this engine's own subprocesses (SGLang's `shutdown()` kills every child of
the calling process, which would take down unrelated servers a test or a trainer started).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from specrl_sglang.engine_api import FLUSH_TIMEOUT_S, EngineError, GenerateResult, VerifyResult, expect_ok
from specrl_sglang.engine_config import EngineConfig
from specrl_sglang.first_token_ban import TokenBan, generate_with_ban
from specrl_sglang.sampling import SamplingConfig
from specrl_sglang.sglang_results import generate_result, joined, verify_result
from specrl_sglang.token_checks import ModelLimits
from specrl_sglang.weight_checks import WeightSpec

RETURN_ORIGINAL_LOGPROB_ENV = "SGLANG_RETURN_ORIGINAL_LOGPROB"


def model_facts(model_path: str) -> tuple[ModelLimits, tuple[int, ...]]:
    """(limits, eos token ids) of a Hugging Face checkpoint directory."""
    from transformers import AutoConfig

    hf = AutoConfig.from_pretrained(model_path)
    eos = getattr(hf, "eos_token_id", None)
    eos_ids = tuple(eos if isinstance(eos, list) else ([] if eos is None else [eos]))
    return ModelLimits(int(hf.vocab_size), int(getattr(hf, "max_position_embeddings", 4096))), eos_ids


class InProcessEngine:
    """See module docstring. Construct on the rollout loop's thread."""

    def __init__(self, config: EngineConfig) -> None:
        os.environ[RETURN_ORIGINAL_LOGPROB_ENV] = "1"  # one log-prob convention, before SGLang starts
        import sglang

        self.config = config
        self.limits, self.eos_token_ids = model_facts(config.model_path)
        self.page_size = config.page_size
        self.description = f"in-process SGLang on {config.model_path}"
        self.weight_spec = WeightSpec.from_checkpoint(config.model_path)
        saved = {name: os.environ.get(name) for name in config.process_env()}
        os.environ.update(config.process_env())  # inherited by SGLang's subprocesses only
        try:
            self._sgl = sglang.Engine(**config.engine_kwargs())
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        self._tm = self._sgl.tokenizer_manager

    # ------------------------------------------------------------------ requests
    async def verify(self, route_key: str, prompt_ids: np.ndarray, draft_ids: np.ndarray) -> VerifyResult:
        input_ids = np.concatenate([prompt_ids, draft_ids]).tolist()
        out = await self._sgl.async_generate(
            input_ids=input_ids, sampling_params={"max_new_tokens": 0}, return_logprob=True,
            logprob_start_len=int(prompt_ids.shape[0]) - 1,
        )
        return verify_result(out, int(draft_ids.shape[0]))  # VerifyAborted if an interrupt aborted it

    async def generate(self, route_key: str, prefix_ids: np.ndarray, max_new_tokens: int, sampling: SamplingConfig,
                       ban: TokenBan | None = None) -> GenerateResult:
        params = sampling.to_sglang(max_new_tokens)
        if ban is None:
            return await self._send(prefix_ids.tolist(), params)

        async def send(ids: list[int], request_params: dict[str, Any]) -> GenerateResult:
            return await self._send(ids, request_params)

        return await generate_with_ban(send, lambda first, rest: joined(first, rest, ban), prefix_ids.tolist(), params, ban)

    async def _send(self, input_ids: list[int], params: dict[str, Any]) -> GenerateResult:
        out = await self._sgl.async_generate(input_ids=input_ids, sampling_params=params, return_logprob=True)
        return generate_result(out)

    async def abort_all(self) -> None:
        self._tm.abort_request(abort_all=True)

    # ------------------------------------------------------------------ cache and weights
    async def flush_cache(self) -> None:
        # With a timeout SGLang defers the flush until the scheduler is idle (a batch that returned to
        # us may not be retired yet); without one it refuses at once. The runtime's gate keeps new
        # requests out meanwhile.
        out = await self._tm.flush_cache(timeout_s=FLUSH_TIMEOUT_S)
        if not out.success:
            raise EngineError(f"flush_cache failed: {out.message or 'scheduler not idle'}")

    async def begin_weight_update(self) -> None:
        from sglang.srt.managers.io_struct import BeginWeightUpdateReqInput

        expect_ok(await self._tm.begin_weight_update(BeginWeightUpdateReqInput(), None), "begin_weight_update")

    async def load_weights(self, named_tensors: Sequence[tuple[str, Any]]) -> None:
        from sglang.srt.managers.io_struct import UpdateWeightsFromTensorReqInput

        obj = UpdateWeightsFromTensorReqInput(
            serialized_named_tensors=self._sgl._serialize_tensors_per_rank(list(named_tensors), None),
            flush_cache=False,  # ours, after the session (see module docstring)
        )
        expect_ok(await self._tm.update_weights_from_tensor(obj, None), "update_weights_from_tensor")

    async def end_weight_update(self, weight_version: str) -> None:
        from sglang.srt.managers.io_struct import EndWeightUpdateReqInput

        expect_ok(await self._tm.end_weight_update(EndWeightUpdateReqInput(), None), "end_weight_update")
        await self._finish_update(weight_version)

    async def abort_weight_update(self) -> None:
        from sglang.srt.managers.io_struct import EndWeightUpdateReqInput

        await self._tm.end_weight_update(EndWeightUpdateReqInput(), None)

    async def update_weights_from_disk(self, model_path: str, weight_version: str) -> None:
        from sglang.srt.managers.io_struct import UpdateWeightFromDiskReqInput

        obj = UpdateWeightFromDiskReqInput(model_path=model_path, flush_cache=False)
        expect_ok(await self._tm.update_weights_from_disk(obj, None), "update_weights_from_disk")
        await self._finish_update(weight_version)

    async def init_weights_update_group(self, master_address: str, master_port: int, rank_offset: int,
                                        world_size: int, group_name: str, backend: str) -> None:
        from sglang.srt.managers.io_struct import InitWeightsUpdateGroupReqInput

        obj = InitWeightsUpdateGroupReqInput(master_address=master_address, master_port=int(master_port),
                                             rank_offset=int(rank_offset), world_size=int(world_size),
                                             group_name=group_name, backend=backend)
        expect_ok(await self._tm.init_weights_update_group(obj, None), "init_weights_update_group")

    async def update_weights_from_distributed(self, names, dtypes, shapes, group_name: str, weight_version: str) -> None:
        from sglang.srt.managers.io_struct import UpdateWeightsFromDistributedReqInput

        obj = UpdateWeightsFromDistributedReqInput(
            names=list(names), dtypes=[str(d).replace("torch.", "") for d in dtypes],
            shapes=[list(map(int, s)) for s in shapes], group_name=group_name, flush_cache=False,
        )
        # SGLang 0.5.23 refuses this outside a begin/end weight-update session.
        await self.begin_weight_update()
        try:
            expect_ok(await self._tm.update_weights_from_distributed(obj, None), "update_weights_from_distributed")
        except BaseException:
            await self.abort_weight_update()
            raise
        await self.end_weight_update(weight_version)

    async def _finish_update(self, weight_version: str) -> None:
        from sglang.srt.managers.io_struct import UpdateWeightVersionReqInput

        await self.flush_cache()
        await self._tm.update_weight_version(UpdateWeightVersionReqInput(new_version=weight_version, abort_all_requests=False))

    async def release_memory(self) -> None:
        from sglang.srt.managers.io_struct import ReleaseMemoryOccupationReqInput

        if not self.config.enable_memory_saver:
            raise EngineError("release_memory needs EngineConfig(profile='gpu', enable_memory_saver=True)")
        await self._tm.release_memory_occupation(ReleaseMemoryOccupationReqInput(), None)

    async def resume_memory(self) -> None:
        from sglang.srt.managers.io_struct import ResumeMemoryOccupationReqInput

        if not self.config.enable_memory_saver:
            raise EngineError("resume_memory needs EngineConfig(profile='gpu', enable_memory_saver=True)")
        await self._tm.resume_memory_occupation(ResumeMemoryOccupationReqInput(), None)

    async def health(self) -> dict[str, Any]:
        return {"engine": self.description, "weight_version": self._tm.server_args.weight_version}

    def shutdown(self) -> None:
        import psutil

        watchdog = getattr(self._tm, "_subprocess_watchdog", None)
        if watchdog is not None:
            watchdog.stop()
        procs = []
        for pid in self._sgl.get_all_child_pids():
            try:
                proc = psutil.Process(pid)
                procs.extend(proc.children(recursive=True))
                procs.append(proc)
            except psutil.NoSuchProcess:
                pass
        for proc in procs:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(procs, timeout=30)

