"""HttpEngine: the `engine_api.Engine` protocol over SGLang HTTP servers (`python -m sglang.launch_server`).

Requests (aiohttp on the runtime's rollout loop): verify = POST /generate with prompt + draft,
max_new_tokens 0, return_logprob, logprob_start_len = len(prompt) - 1; a continuation = POST
/generate from prompt + accepted prefix (default logprob_start_len, so the radix match is not
capped); exact mode's ban is `first_token_ban.generate_with_ban` (two plain requests, same worker).
Routing: `WorkerRouter` over the URLs sends every request of one route key (prompt identity) to
one worker: its verify, its continuations and next epoch's verify meet their KV there. With
`router_url` (an sglang-router started with `--policy manual`), requests go to the router with the
route key in its `x-smg-routing-key` header (sticky per key); control calls still go to each
worker directly, since the router has no weight-update endpoints.

Control calls go to every worker at once and must all succeed; otherwise EngineError (or
WorkerUnavailable) names each worker that failed (`sglang_http`), and the runtime stays poisoned. Every update
flushes every worker's KV (/flush_cache, retried until the worker is idle, for at most
FLUSH_TIMEOUT_S), then sets /update_weight_version to "<policy version>@<engine id>"; a response
reporting another `weight_version` than the one this engine last set (or found at connect) is an
EngineError, never a result - also when another client updated a worker behind our back.
- update_weights_from_disk: the directory must be readable by the servers.
- begin / load / end (in-memory tensors): SGLang's /update_weights_from_tensor cannot take CPU
  tensors over HTTP (torch pickles them as shared-memory file descriptors; the server cannot fetch
  them - AuthenticationError - and its scheduler dies, measured). So `load_weights` stages tensors
  as safetensors files in a temporary directory (`staging_dir`, which the servers must see: same
  machine or shared filesystem) and `end_weight_update` loads it with /update_weights_from_disk
  inside /begin_weight_update ... /end_weight_update. Remote servers: use the broadcast.
- init_weights_update_group / update_weights_from_distributed: SGLang's broadcast group (gloo on
  CPU, nccl on GPU); worker i takes ranks from rank_offset + (tp sizes of workers before it).

Connect (`HttpEngine(urls)` on the loop's thread before it runs, or `await HttpEngine.connect(urls)`):
every worker must answer, report the same architecture, page size, input limit and weight version,
and pass a log-prob probe (tokens sampled at temperatures 0.5 and 2 are verified; the two log-probs
must agree, i.e. the server runs with SGLANG_RETURN_ORIGINAL_LOGPROB=1). Vocabulary, context and
EOS come from the checkpoint's config (`model_path`, default: the path the first worker was launched
with): SGLang does not report the vocabulary over HTTP, and an out-of-vocabulary id kills a
worker's scheduler (measured), so the runtime must know it to validate every request.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from specrl_sglang.engine import model_facts
from specrl_sglang.engine_api import EngineError, GenerateResult, VerifyResult
from specrl_sglang.first_token_ban import TokenBan, generate_with_ban
from specrl_sglang.sampling import SamplingConfig
from specrl_sglang.sglang_http import REQUEST_TIMEOUT_S, SGLangHttp, check_same_model
from specrl_sglang.sglang_results import generate_result, joined, verify_result
from specrl_sglang.token_checks import ModelLimits
from specrl_sglang.weight_checks import WeightSpec
from specrl_sglang.worker_routing import WorkerRouter

PROBE_TEMPERATURES = (0.5, 2.0)
PROBE_TOLERANCE = 2e-3  # float32 prefill vs decode agree to ~1e-6; the other convention is off by ~0.1
ROUTING_KEY_HEADER = "x-smg-routing-key"  # sglang-router's manual policy
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def checked_url(url: str) -> str:
    """`url` without a trailing slash; ValueError unless it is http(s)://host[:port][/path]."""
    url = str(url).strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"an SGLang server URL must start with http:// or https://, got {url!r}")
    parsed = urlparse(url)
    try:
        parsed.port  # noqa: B018 - raises on a port that is not a number in 0..65535
    except ValueError:
        raise ValueError(f"an SGLang server URL needs a numeric port, got {url!r}") from None
    if not parsed.hostname:
        raise ValueError(f"an SGLang server URL needs a host, got {url!r}")
    return url


def checked_urls(urls: Sequence[str] | str, router_url: str | None = None) -> tuple[list[str], str | None]:
    """(the workers' URLs, the router's) checked as `HttpEngine` takes them: at least one worker,
    each URL well-formed, the workers distinct, the router none of them; ValueError naming the bad one."""
    workers = [checked_url(u) for u in ([urls] if isinstance(urls, str) else urls)]
    WorkerRouter(workers)  # at least one, distinct
    router = checked_url(router_url) if router_url is not None else None
    if router is not None and router in workers:
        raise ValueError(f"the router URL {router} is one of the workers' (the router is a separate process in front of them)")
    return workers, router


class HttpEngine:
    """See module docstring."""

    def __init__(self, urls: Sequence[str] | str, model_path: str | None = None, *, router_url: str | None = None,
                 staging_dir: str | None = None, request_timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        """Connect and check every worker, blocking this thread's event loop (it must not be running:
        call it as a RolloutRuntime's `make_engine`); from a coroutine use `await HttpEngine.connect`."""
        loop = asyncio.get_event_loop()
        if loop.is_running():
            raise RuntimeError("HttpEngine(...) cannot block a running event loop; use `await HttpEngine.connect(...)`")
        self._setup(urls, model_path, router_url, staging_dir)
        loop.run_until_complete(self._connect(request_timeout_s))

    @classmethod
    async def connect(cls, urls: Sequence[str] | str, model_path: str | None = None, *, router_url: str | None = None,
                      staging_dir: str | None = None, request_timeout_s: float = REQUEST_TIMEOUT_S) -> "HttpEngine":
        """Connect on the running loop (every later coroutine must run on it too)."""
        self = cls.__new__(cls)
        self._setup(urls, model_path, router_url, staging_dir)
        await self._connect(request_timeout_s)
        return self

    def _setup(self, urls, model_path, router_url, staging_dir) -> None:
        self.urls, self.router_url = checked_urls(urls, router_url)
        self.router = WorkerRouter(self.urls)
        self._model_path, self.staging_dir = model_path, staging_dir
        # a path visible here is the servers' path too (runtime.update_weights_from_disk checks it first)
        self.shares_filesystem = all(urlparse(u).hostname in LOCAL_HOSTS for u in self.urls)
        self.engine_id = uuid.uuid4().hex[:8]  # tags the weight versions this engine sets
        self.num_requests: Counter[str] = Counter()  # generate requests per target (worker, or the router)
        self.http_overhead_s = 0.0  # sum over requests of (client wall time - SGLang's e2e latency)
        self._staging: Path | None = None
        self._num_parts = 0

    async def _connect(self, request_timeout_s: float) -> None:
        self.http = SGLangHttp(request_timeout_s)
        try:
            self.facts = list(await asyncio.gather(*(self.http.facts(u) for u in self.urls)))
            check_same_model(self.facts)
            first = self.facts[0]
            model_path = self._model_path or first.model_path
            try:
                limits, self.eos_token_ids = await asyncio.to_thread(model_facts, model_path)
            except (OSError, ValueError) as exc:
                raise EngineError(f"cannot read the served model's config at {model_path!r} ({exc}); pass "
                                  "model_path= (the checkpoint the workers serve, readable here)") from None
            self.limits = ModelLimits(limits.vocab_size, min(limits.context_len, first.context_length or limits.context_len))
            self.page_size = first.page_size
            self.weight_spec = await asyncio.to_thread(WeightSpec.from_checkpoint, model_path)
            self.weight_version: str | None = first.weight_version
            via = f" via router {self.router_url}" if self.router_url else ""
            self.description = f"SGLang HTTP workers {', '.join(self.urls)}{via} serving {model_path}"
            await asyncio.gather(*(self._probe_convention(u) for u in self.urls))
            if self.router_url is not None:
                await self._probe_convention(self.router_url, "specrl-connect-probe")
        except BaseException:
            await self.http.aclose()
            raise

    async def _probe_convention(self, url: str, key: str | None = None) -> None:
        prompt = np.array([(7 * i + 3) % self.limits.vocab_size for i in range(8)], dtype=np.int32)
        headers = {ROUTING_KEY_HEADER: key} if key else None
        for temperature in PROBE_TEMPERATURES:
            params = {"max_new_tokens": 4, "temperature": temperature, "ignore_eos": True}
            sampled = await self._send(url, prompt.tolist(), params, headers)
            verified = await self._verify_on(url, prompt, sampled.token_ids, headers)
            gap = float(np.max(np.abs(sampled.logprobs - verified.logprobs), initial=0.0))
            if not gap <= PROBE_TOLERANCE:
                raise EngineError(
                    f"SGLang worker {url} returns sampled log-probs in another convention than verified ones (at "
                    f"temperature {temperature} they differ by {gap:.3g}): restart it with "
                    "SGLANG_RETURN_ORIGINAL_LOGPROB=1 in its environment (raw temperature-1 log-probs)")

    # ------------------------------------------------------------------ requests
    def _target(self, route_key: str) -> tuple[str, dict[str, str] | None]:
        if self.router_url is not None:
            return self.router_url, {ROUTING_KEY_HEADER: route_key}
        return self.urls[self.router.pick(route_key)], None

    async def _generate(self, url: str, payload: dict[str, Any], headers: dict[str, str] | None) -> dict[str, Any]:
        self.num_requests[url] += 1
        t0 = time.perf_counter()
        out = await self.http.call(url, "/generate", {**payload, "return_logprob": True}, headers=headers)
        self.http_overhead_s += max(0.0, time.perf_counter() - t0 - float(out["meta_info"].get("e2e_latency") or 0.0))
        return out

    def _current(self, url: str, result: Any) -> Any:
        if result.weight_version != self.weight_version:
            raise EngineError(f"SGLang worker {url} answered under weight version {result.weight_version!r}, expected "
                              f"{self.weight_version!r}; the response was discarded (it may be another policy's)")
        return result

    async def verify(self, route_key: str, prompt_ids: np.ndarray, draft_ids: np.ndarray) -> VerifyResult:
        url, headers = self._target(route_key)
        return await self._verify_on(url, prompt_ids, draft_ids, headers)

    async def _verify_on(self, url: str, prompt_ids: np.ndarray, draft_ids: np.ndarray,
                         headers: dict[str, str] | None = None) -> VerifyResult:
        out = await self._generate(url, {"input_ids": np.concatenate([prompt_ids, draft_ids]).tolist(),
                                         "sampling_params": {"max_new_tokens": 0},
                                         "logprob_start_len": int(prompt_ids.shape[0]) - 1}, headers)
        return self._current(url, verify_result(out, int(draft_ids.shape[0])))

    async def generate(self, route_key: str, prefix_ids: np.ndarray, max_new_tokens: int, sampling: SamplingConfig,
                       ban: TokenBan | None = None) -> GenerateResult:
        url, headers = self._target(route_key)
        params = sampling.to_sglang(max_new_tokens)
        if ban is None:
            return await self._send(url, prefix_ids.tolist(), params, headers)

        async def send(ids: list[int], request_params: dict[str, Any]) -> GenerateResult:
            return await self._send(url, ids, request_params, headers)

        return await generate_with_ban(send, lambda first, rest: joined(first, rest, ban), prefix_ids.tolist(), params, ban)

    async def _send(self, url: str, input_ids: list[int], params: dict[str, Any],
                    headers: dict[str, str] | None = None) -> GenerateResult:
        out = await self._generate(url, {"input_ids": input_ids, "sampling_params": params}, headers)
        return self._current(url, generate_result(out))

    async def abort_all(self) -> None:
        await self._on_all("abort_all", "/abort_request", {"abort_all": True})

    async def _on_all(self, what: str, path: str, payload: Any) -> None:
        await self.http.on_all(self.urls, what, lambda i, u: self.http.call(u, path, payload))

    # ------------------------------------------------------------------ cache and weights
    async def flush_cache(self) -> None:
        await self.http.on_all(self.urls, "flush_cache", lambda i, u: self.http.flush(u))

    async def _finish_update(self, weight_version: str) -> None:
        await self.flush_cache()
        tagged = f"{weight_version}@{self.engine_id}"  # unique: another client's version "3" is not ours
        await self._on_all("update_weight_version", "/update_weight_version",
                           {"new_version": tagged, "abort_all_requests": False})
        self.weight_version = tagged

    async def _open_session(self) -> None:
        """/begin_weight_update on every worker (SGLang loads tensors only inside such a session)."""
        try:
            await self._on_all("begin_weight_update", "/begin_weight_update", {})
        except EngineError:
            await self._end_quietly()  # close it on the workers that opened it
            raise

    async def _end_quietly(self) -> None:
        await asyncio.gather(*(self.http.call(u, "/end_weight_update", {}) for u in self.urls), return_exceptions=True)

    async def begin_weight_update(self) -> None:
        if self._staging is not None:
            raise EngineError("a weight update is already open on these workers")
        await self._open_session()
        self._staging, self._num_parts = Path(tempfile.mkdtemp(prefix="specrl-weights-", dir=self.staging_dir)), 0

    async def load_weights(self, named_tensors: Sequence[tuple[str, Any]]) -> None:
        if self._staging is None:
            raise EngineError("load_weights needs begin_weight_update first")
        path = self._staging / f"part-{self._num_parts:05d}.safetensors"
        self._num_parts += 1
        await asyncio.to_thread(_save_safetensors, named_tensors, path)

    async def end_weight_update(self, weight_version: str) -> None:
        staging, num_parts = self._staging, self._num_parts
        try:
            if staging is None:
                raise EngineError("end_weight_update needs begin_weight_update first")
            if num_parts:
                await self._on_all("update_weights_from_disk (staged tensors)", "/update_weights_from_disk",
                                   {"model_path": str(staging), "flush_cache": False})
        except BaseException:
            await self.abort_weight_update()
            raise
        self._drop_staging()
        await self._on_all("end_weight_update", "/end_weight_update", {})
        await self._finish_update(weight_version)

    async def abort_weight_update(self) -> None:
        self._drop_staging()
        await self._on_all("end_weight_update", "/end_weight_update", {})

    def _drop_staging(self) -> None:
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
        self._staging = None

    async def update_weights_from_disk(self, model_path: str, weight_version: str) -> None:
        await self._on_all("update_weights_from_disk", "/update_weights_from_disk",
                           {"model_path": str(model_path), "flush_cache": False})
        await self._finish_update(weight_version)

    async def init_weights_update_group(self, master_address: str, master_port: int, rank_offset: int,
                                        world_size: int, group_name: str, backend: str) -> None:
        offsets = [int(rank_offset) + sum(f.tp_size for f in self.facts[:i]) for i in range(len(self.facts))]
        last = offsets[-1] + self.facts[-1].tp_size - 1
        if last >= int(world_size):
            raise EngineError(f"{len(self.urls)} SGLang workers need ranks {rank_offset}..{last} of the weight-update "
                              f"group, but its world_size is {world_size}")

        def join(i: int, url: str):
            return self.http.call(url, "/init_weights_update_group", {
                "master_address": master_address, "master_port": int(master_port), "rank_offset": offsets[i],
                "world_size": int(world_size), "group_name": group_name, "backend": backend})

        await self.http.on_all(self.urls, "init_weights_update_group", join)

    async def update_weights_from_distributed(self, names, dtypes, shapes, group_name: str, weight_version: str) -> None:
        payload = {"names": list(names), "dtypes": [str(d).replace("torch.", "") for d in dtypes],
                   "shapes": [list(map(int, s)) for s in shapes], "group_name": group_name, "flush_cache": False}
        await self._open_session()
        try:
            await self._on_all("update_weights_from_distributed", "/update_weights_from_distributed", payload)
        except BaseException:
            await self._end_quietly()
            raise
        await self._on_all("end_weight_update", "/end_weight_update", {})
        await self._finish_update(weight_version)

    async def release_memory(self) -> None:
        self._need_memory_saver("release_memory")
        await self._on_all("release_memory", "/release_memory_occupation", {})

    async def resume_memory(self) -> None:
        self._need_memory_saver("resume_memory")
        await self._on_all("resume_memory", "/resume_memory_occupation", {})

    def _need_memory_saver(self, what: str) -> None:
        missing = [f.url for f in self.facts if not f.memory_saver]
        if missing:
            raise EngineError(f"{what} needs SGLang servers started with --enable-memory-saver (GPU); not: {missing}")

    # ------------------------------------------------------------------ views and lifecycle
    async def health(self) -> dict[str, Any]:
        statuses = await asyncio.gather(*(self.http.health(u) for u in self.urls))
        return {"engine": self.description, "weight_version": self.weight_version, "workers": dict(zip(self.urls, statuses))}

    def shutdown(self) -> None:
        """Close the connections (the servers keep running)."""
        self._drop_staging()
        self.http.close()


def _save_safetensors(named_tensors: Sequence[tuple[str, Any]], path: Path) -> None:
    from safetensors.torch import save_file

    # own contiguous CPU copies: tied parameters share storage, which safetensors refuses
    save_file({name: t.detach().to("cpu", copy=True).contiguous() for name, t in named_tensors}, str(path))
