"""HttpEngine: the `engine_api.Engine` protocol over SGLang HTTP servers (`python -m sglang.launch_server`).

Requests (aiohttp on the runtime's rollout loop): verify = POST /generate with prompt + draft,
max_new_tokens 0, return_logprob, logprob_start_len = len(prompt) - 1; a continuation = POST
/generate from prompt + accepted prefix (default logprob_start_len, so the radix match is not
capped); exact mode's ban is `first_token_ban.generate_with_ban` (two plain requests, same worker).
Routing: `WorkerRouter` over the URLs sends every request of one route key (prompt identity) to
one worker: its verify, its continuations and next epoch's verify meet their KV there.

Control calls go to every worker at once and must all succeed; otherwise EngineError (or
WorkerUnavailable) names each worker that failed, and the runtime stays poisoned. Every update
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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from specrl_sglang.engine import model_facts
from specrl_sglang.engine_api import FLUSH_TIMEOUT_S, EngineError, GenerateResult, VerifyResult, WorkerUnavailable
from specrl_sglang.first_token_ban import TokenBan, generate_with_ban
from specrl_sglang.sampling import SamplingConfig
from specrl_sglang.sglang_results import generate_result, joined, verify_result
from specrl_sglang.token_checks import ModelLimits
from specrl_sglang.weight_checks import WeightSpec
from specrl_sglang.worker_routing import WorkerRouter

REQUEST_TIMEOUT_S = 900.0
CONNECT_TIMEOUT_S = 10.0
KEEPALIVE_S = 2.0  # below SGLang's (uvicorn's) 5 s: never reuse a connection the server is closing
PROBE_TEMPERATURES = (0.5, 2.0)
PROBE_TOLERANCE = 2e-3  # float32 prefill vs decode agree to ~1e-5; the other convention is off by >1e-2


class WorkerFacts(NamedTuple):
    """What one worker reports at connect time."""

    url: str
    model_path: str
    architectures: tuple[str, ...]
    max_req_input_len: int
    page_size: int
    tp_size: int
    context_length: int | None
    memory_saver: bool
    weight_version: str


class HttpEngine:
    """See module docstring."""

    def __init__(self, urls: Sequence[str], model_path: str | None = None, *, staging_dir: str | None = None,
                 request_timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        """Connect and check every worker, blocking this thread's event loop (it must not be running:
        call it as a RolloutRuntime's `make_engine`); from a coroutine use `await HttpEngine.connect`."""
        loop = asyncio.get_event_loop()
        if loop.is_running():
            raise RuntimeError("HttpEngine(...) cannot block a running event loop; use `await HttpEngine.connect(...)`")
        self._setup(urls, model_path, staging_dir, request_timeout_s)
        loop.run_until_complete(self._connect())

    @classmethod
    async def connect(cls, urls: Sequence[str], model_path: str | None = None, **kwargs: Any) -> "HttpEngine":
        """Connect on the running loop (every later coroutine must run on it too)."""
        self = cls.__new__(cls)
        self._setup(urls, model_path, kwargs.get("staging_dir"), kwargs.get("request_timeout_s", REQUEST_TIMEOUT_S))
        await self._connect()
        return self

    def _setup(self, urls, model_path, staging_dir, request_timeout_s) -> None:
        if isinstance(urls, str):
            urls = [urls]
        self.urls = [str(u).strip().rstrip("/") for u in urls]
        for url in self.urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"an SGLang worker URL must start with http:// or https://, got {url!r}")
        self.router = WorkerRouter(self.urls)
        self._model_path, self.staging_dir, self.request_timeout_s = model_path, staging_dir, float(request_timeout_s)
        self.engine_id = uuid.uuid4().hex[:8]  # tags the weight versions this engine sets
        self.num_requests: Counter[str] = Counter()  # generate requests per worker
        self.http_overhead_s = 0.0  # sum over requests of (client wall time - SGLang's e2e latency)
        self._staging: Path | None = None
        self._num_parts = 0
        self._session = None

    async def _connect(self) -> None:
        import aiohttp

        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512, keepalive_timeout=KEEPALIVE_S))
        try:
            self.facts = list(await asyncio.gather(*(self._facts_of(u) for u in self.urls)))
            self._check_same_model()
            first = self.facts[0]
            model_path = self._model_path or first.model_path
            try:
                limits, self.eos_token_ids = await asyncio.to_thread(model_facts, model_path)
            except (OSError, ValueError) as exc:
                raise EngineError(f"cannot read the served model's config at {model_path!r} ({exc}); pass "
                                  "model_path= (the checkpoint the workers serve, readable here)") from None
            context = min(limits.context_len, first.context_length or limits.context_len)
            self.limits = ModelLimits(limits.vocab_size, context)
            self.page_size = first.page_size
            self.weight_spec = await asyncio.to_thread(WeightSpec.from_checkpoint, model_path)
            self.weight_version: str | None = first.weight_version
            self.description = f"SGLang HTTP workers {', '.join(self.urls)} serving {model_path}"
            await asyncio.gather(*(self._probe_convention(u) for u in self.urls))
        except BaseException:
            await self._session.close()
            raise

    async def _facts_of(self, url: str) -> WorkerFacts:
        info, server = await self._get_json(url, "/model_info"), await self._get_json(url, "/server_info")
        # /server_info has the launch arguments; /model_info's model_path follows disk updates (our staging dirs)
        return WorkerFacts(url, str(server.get("model_path")), tuple(info.get("architectures") or ()),
                           int(server.get("max_req_input_len") or 0), int(server.get("page_size") or 1),
                           int(server.get("tp_size") or 1), server.get("context_length"),
                           bool(server.get("enable_memory_saver")), str(info.get("weight_version")))

    def _check_same_model(self) -> None:
        for field in ("architectures", "max_req_input_len", "page_size", "weight_version"):
            values = {f.url: getattr(f, field) for f in self.facts}
            if len(set(values.values())) > 1:
                raise EngineError(f"the SGLang workers differ in {field}: {values}; every worker must serve the same "
                                  "model with the same settings and weights")

    async def _probe_convention(self, url: str) -> None:
        prompt = np.array([(7 * i + 3) % self.limits.vocab_size for i in range(8)], dtype=np.int32)
        for temperature in PROBE_TEMPERATURES:
            params = {"max_new_tokens": 4, "temperature": temperature, "ignore_eos": True}
            sampled = await self._send(url, prompt.tolist(), params)
            verified = await self._verify_on(url, prompt, sampled.token_ids)
            gap = float(np.max(np.abs(sampled.logprobs - verified.logprobs), initial=0.0))
            if not gap <= PROBE_TOLERANCE:
                raise EngineError(
                    f"SGLang worker {url} returns sampled log-probs in another convention than verified ones (at "
                    f"temperature {temperature} they differ by {gap:.3g}): restart it with "
                    "SGLANG_RETURN_ORIGINAL_LOGPROB=1 in its environment (raw temperature-1 log-probs)")

    # ------------------------------------------------------------------ HTTP
    async def _request(self, url: str, method: str, path: str, payload: Any = None, timeout: float | None = None):
        import aiohttp
        import orjson

        data = orjson.dumps(payload) if payload is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else None
        try:
            limit = aiohttp.ClientTimeout(total=timeout or self.request_timeout_s, sock_connect=CONNECT_TIMEOUT_S)
            async with self._session.request(method, url + path, data=data, headers=headers, timeout=limit) as resp:
                return resp.status, await resp.read()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise WorkerUnavailable(f"SGLang worker {url} did not answer {path}: {type(exc).__name__}: {exc}") from None

    async def _call(self, url: str, path: str, payload: Any = None, method: str = "POST", timeout: float | None = None):
        import orjson

        status, body = await self._request(url, method, path, payload, timeout)
        if status != 200:
            raise EngineError(f"{path} failed on {url} (HTTP {status}): {body[:500].decode(errors='replace')}")
        return orjson.loads(body) if body[:1] in (b"{", b"[") else None

    async def _get_json(self, url: str, path: str) -> dict[str, Any]:
        return await self._call(url, path, method="GET") or {}

    async def _generate(self, url: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.num_requests[url] += 1
        t0 = time.perf_counter()
        out = await self._call(url, "/generate", {**payload, "return_logprob": True})
        self.http_overhead_s += max(0.0, time.perf_counter() - t0 - float(out["meta_info"].get("e2e_latency") or 0.0))
        return out

    def _current(self, url: str, result: Any) -> Any:
        if result.weight_version != self.weight_version:
            raise EngineError(f"SGLang worker {url} answered under weight version {result.weight_version!r}, expected "
                              f"{self.weight_version!r}; the response was discarded (it may be another policy's)")
        return result

    async def _on_all(self, what: str, call: Callable[[int, str], Any]) -> list[Any]:
        results = await asyncio.gather(*(call(i, u) for i, u in enumerate(self.urls)), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, Exception):
                raise r
        failed = [(u, r) for u, r in zip(self.urls, results) if isinstance(r, Exception)]
        if failed:
            kind = WorkerUnavailable if any(isinstance(e, WorkerUnavailable) for _, e in failed) else EngineError
            raise kind(f"{what} failed on {len(failed)} of {len(self.urls)} SGLang workers: "
                       + "; ".join(f"{u}: {e}" for u, e in failed))
        return results

    # ------------------------------------------------------------------ requests
    async def verify(self, route_key: str, prompt_ids: np.ndarray, draft_ids: np.ndarray) -> VerifyResult:
        return await self._verify_on(self.urls[self.router.pick(route_key)], prompt_ids, draft_ids)

    async def _verify_on(self, url: str, prompt_ids: np.ndarray, draft_ids: np.ndarray) -> VerifyResult:
        out = await self._generate(url, {"input_ids": np.concatenate([prompt_ids, draft_ids]).tolist(),
                                         "sampling_params": {"max_new_tokens": 0},
                                         "logprob_start_len": int(prompt_ids.shape[0]) - 1})
        return self._current(url, verify_result(out, int(draft_ids.shape[0])))

    async def generate(self, route_key: str, prefix_ids: np.ndarray, max_new_tokens: int, sampling: SamplingConfig,
                       ban: TokenBan | None = None) -> GenerateResult:
        url = self.urls[self.router.pick(route_key)]
        params = sampling.to_sglang(max_new_tokens)
        if ban is None:
            return await self._send(url, prefix_ids.tolist(), params)

        async def send(ids: list[int], request_params: dict[str, Any]) -> GenerateResult:
            return await self._send(url, ids, request_params)

        return await generate_with_ban(send, lambda first, rest: joined(first, rest, ban), prefix_ids.tolist(), params, ban)

    async def _send(self, url: str, input_ids: list[int], params: dict[str, Any]) -> GenerateResult:
        return self._current(url, generate_result(await self._generate(url, {"input_ids": input_ids, "sampling_params": params})))

    async def abort_all(self) -> None:
        await self._on_all("abort_all", lambda i, u: self._call(u, "/abort_request", {"abort_all": True}))

    # ------------------------------------------------------------------ cache and weights
    async def flush_cache(self) -> None:
        await self._on_all("flush_cache", lambda i, u: self._flush(u))

    async def _flush(self, url: str) -> None:
        deadline = time.monotonic() + FLUSH_TIMEOUT_S
        while True:  # SGLang flushes only an idle scheduler; ?timeout= makes it wait for idleness first
            wait = max(0.1, min(5.0, deadline - time.monotonic()))
            status, body = await self._request(url, "POST", f"/flush_cache?timeout={wait:.1f}", timeout=wait + 30)
            if status == 200:
                return
            if time.monotonic() >= deadline:
                raise EngineError(f"flush_cache failed on {url} for {FLUSH_TIMEOUT_S:.0f} s: {body[:300].decode(errors='replace')}")
            await asyncio.sleep(0.2)

    async def _finish_update(self, weight_version: str) -> None:
        await self.flush_cache()
        tagged = f"{weight_version}@{self.engine_id}"  # unique: another client's version "3" is not ours
        payload = {"new_version": tagged, "abort_all_requests": False}
        await self._on_all("update_weight_version", lambda i, u: self._call(u, "/update_weight_version", payload))
        self.weight_version = tagged

    async def begin_weight_update(self) -> None:
        if self._staging is not None:
            raise EngineError("a weight update is already open on these workers")
        await self._open_session()
        self._staging, self._num_parts = Path(tempfile.mkdtemp(prefix="specrl-weights-", dir=self.staging_dir)), 0

    async def _open_session(self) -> None:
        """/begin_weight_update on every worker (SGLang loads tensors only inside such a session)."""
        try:
            await self._on_all("begin_weight_update", lambda i, u: self._call(u, "/begin_weight_update", {}))
        except EngineError:
            await self._end_quietly()  # close it on the workers that opened it
            raise

    async def _end_quietly(self) -> None:
        await asyncio.gather(*(self._call(u, "/end_weight_update", {}) for u in self.urls), return_exceptions=True)

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
                payload = {"model_path": str(staging), "flush_cache": False}
                await self._on_all("update_weights_from_disk (staged tensors)",
                                   lambda i, u: self._call(u, "/update_weights_from_disk", payload))
        except BaseException:
            await self.abort_weight_update()
            raise
        self._drop_staging()
        await self._on_all("end_weight_update", lambda i, u: self._call(u, "/end_weight_update", {}))
        await self._finish_update(weight_version)

    async def abort_weight_update(self) -> None:
        self._drop_staging()
        await self._on_all("end_weight_update", lambda i, u: self._call(u, "/end_weight_update", {}))

    def _drop_staging(self) -> None:
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
        self._staging = None

    async def update_weights_from_disk(self, model_path: str, weight_version: str) -> None:
        payload = {"model_path": str(model_path), "flush_cache": False}
        await self._on_all("update_weights_from_disk", lambda i, u: self._call(u, "/update_weights_from_disk", payload))
        await self._finish_update(weight_version)

    async def init_weights_update_group(self, master_address: str, master_port: int, rank_offset: int,
                                        world_size: int, group_name: str, backend: str) -> None:
        offsets = [int(rank_offset) + sum(f.tp_size for f in self.facts[:i]) for i in range(len(self.facts))]
        if offsets[-1] + self.facts[-1].tp_size > int(world_size):
            raise EngineError(f"{len(self.urls)} SGLang workers need ranks {rank_offset}..{offsets[-1] + self.facts[-1].tp_size - 1}"
                              f" of the weight-update group, but its world_size is {world_size}")

        def join(i: int, url: str):
            return self._call(url, "/init_weights_update_group", {
                "master_address": master_address, "master_port": int(master_port), "rank_offset": offsets[i],
                "world_size": int(world_size), "group_name": group_name, "backend": backend})

        await self._on_all("init_weights_update_group", join)

    async def update_weights_from_distributed(self, names, dtypes, shapes, group_name: str, weight_version: str) -> None:
        payload = {"names": list(names), "dtypes": [str(d).replace("torch.", "") for d in dtypes],
                   "shapes": [list(map(int, s)) for s in shapes], "group_name": group_name, "flush_cache": False}
        await self._open_session()
        try:
            await self._on_all("update_weights_from_distributed",
                               lambda i, u: self._call(u, "/update_weights_from_distributed", payload))
        except BaseException:
            await self._end_quietly()
            raise
        await self._on_all("end_weight_update", lambda i, u: self._call(u, "/end_weight_update", {}))
        await self._finish_update(weight_version)

    async def release_memory(self) -> None:
        self._need_memory_saver("release_memory")
        await self._on_all("release_memory", lambda i, u: self._call(u, "/release_memory_occupation", {}))

    async def resume_memory(self) -> None:
        self._need_memory_saver("resume_memory")
        await self._on_all("resume_memory", lambda i, u: self._call(u, "/resume_memory_occupation", {}))

    def _need_memory_saver(self, what: str) -> None:
        missing = [f.url for f in self.facts if not f.memory_saver]
        if missing:
            raise EngineError(f"{what} needs SGLang servers started with --enable-memory-saver (GPU); not: {missing}")

    # ------------------------------------------------------------------ views and lifecycle
    async def health(self) -> dict[str, Any]:
        async def one(url: str) -> str:
            try:
                status, _ = await self._request(url, "GET", "/health", timeout=30)
                return "ok" if status == 200 else f"HTTP {status}"
            except WorkerUnavailable as exc:
                return f"unavailable: {exc}"

        statuses = await asyncio.gather(*(one(u) for u in self.urls))
        return {"engine": self.description, "weight_version": self.weight_version, "workers": dict(zip(self.urls, statuses))}

    def shutdown(self) -> None:
        """Close the connections (the servers keep running)."""
        self._drop_staging()
        session, self._session = self._session, None
        if session is None or session.closed:
            return
        try:
            asyncio.get_running_loop().create_task(session.close())
        except RuntimeError:  # no loop running: close on this thread's loop
            asyncio.get_event_loop().run_until_complete(session.close())


def _save_safetensors(named_tensors: Sequence[tuple[str, Any]], path: Path) -> None:
    from safetensors.torch import save_file

    # own contiguous CPU copies: tied parameters share storage, which safetensors refuses
    save_file({name: t.detach().to("cpu", copy=True).contiguous() for name, t in named_tensors}, str(path))
