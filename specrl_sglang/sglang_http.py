"""HTTP calls to SGLang servers: one aiohttp session, errors that name the server, fan-out to all.

`SGLangHttp` owns the connection pool of an `HttpEngine` (created on, and used only from, the
rollout loop). Error rules, owned here:
- a server that does not answer (refused, reset, timed out) -> `WorkerUnavailable` naming its URL;
- a non-200 answer -> `EngineError` with the server's URL, the path, the status and its message;
- `on_all`: one call per worker, all at once; if any failed, one error naming every failed worker
  (WorkerUnavailable if any of them is unreachable) - the caller decides what a partial failure means.
Idle connections are dropped after KEEPALIVE_S, below SGLang's (uvicorn's) 5 s keep-alive, so a
request never goes out on a connection the server is closing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from specrl_sglang.engine_api import FLUSH_TIMEOUT_S, EngineError, WorkerUnavailable

REQUEST_TIMEOUT_S = 900.0
CONNECT_TIMEOUT_S = 10.0
KEEPALIVE_S = 2.0


class WorkerFacts(NamedTuple):
    """What one worker reports at connect time (/model_info and /server_info)."""

    url: str
    model_path: str  # the path it was launched with (/model_info's follows disk updates)
    architectures: tuple[str, ...]
    max_req_input_len: int
    page_size: int
    tp_size: int
    context_length: int | None
    memory_saver: bool
    weight_version: str


def check_same_model(facts: Sequence[WorkerFacts]) -> None:
    """EngineError unless every worker serves the same model with the same settings and weights."""
    for field in ("architectures", "max_req_input_len", "page_size", "weight_version"):
        values = {f.url: getattr(f, field) for f in facts}
        if len(set(values.values())) > 1:
            raise EngineError(f"the SGLang workers differ in {field}: {values}; every worker must serve the same "
                              "model with the same settings and weights")


class SGLangHttp:
    """See module docstring. Create inside a coroutine on the loop that will use it."""

    def __init__(self, request_timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        import aiohttp

        self.request_timeout_s = float(request_timeout_s)
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512, keepalive_timeout=KEEPALIVE_S))

    async def request(self, url: str, method: str, path: str, payload: Any = None, timeout: float | None = None,
                      headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
        import aiohttp
        import orjson

        data = orjson.dumps(payload) if payload is not None else None
        all_headers = {**({"Content-Type": "application/json"} if data is not None else {}), **(headers or {})}
        limit = aiohttp.ClientTimeout(total=timeout or self.request_timeout_s, sock_connect=CONNECT_TIMEOUT_S)
        try:
            async with self._session.request(method, url + path, data=data, headers=all_headers, timeout=limit) as resp:
                return resp.status, await resp.read()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise WorkerUnavailable(f"SGLang worker {url} did not answer {path}: {type(exc).__name__}: {exc}") from None

    async def call(self, url: str, path: str, payload: Any = None, method: str = "POST", timeout: float | None = None,
                   headers: Mapping[str, str] | None = None) -> Any:
        """The decoded JSON answer (None for an empty or plain-text one) of a call that must succeed."""
        import orjson

        status, body = await self.request(url, method, path, payload, timeout, headers)
        if status != 200:
            raise EngineError(f"{path} failed on {url} (HTTP {status}): {body[:500].decode(errors='replace')}")
        return orjson.loads(body) if body[:1] in (b"{", b"[") else None

    async def on_all(self, urls: Sequence[str], what: str, call: Callable[[int, str], Any]) -> list[Any]:
        """`call(i, url)` for every worker at once; see the module docstring for errors."""
        results = await asyncio.gather(*(call(i, u) for i, u in enumerate(urls)), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, Exception):
                raise r
        failed = [(u, r) for u, r in zip(urls, results) if isinstance(r, Exception)]
        if failed:
            kind = WorkerUnavailable if any(isinstance(e, WorkerUnavailable) for _, e in failed) else EngineError
            raise kind(f"{what} failed on {len(failed)} of {len(urls)} SGLang workers: "
                       + "; ".join(f"{u}: {e}" for u, e in failed))
        return results

    async def facts(self, url: str) -> WorkerFacts:
        info = await self.call(url, "/model_info", method="GET") or {}
        server = await self.call(url, "/server_info", method="GET") or {}
        return WorkerFacts(url, str(server.get("model_path")), tuple(info.get("architectures") or ()),
                           int(server.get("max_req_input_len") or 0), int(server.get("page_size") or 1),
                           int(server.get("tp_size") or 1), server.get("context_length"),
                           bool(server.get("enable_memory_saver")), str(info.get("weight_version")))

    async def flush(self, url: str) -> None:
        """Flush one worker's radix cache, retrying until it is idle (at most FLUSH_TIMEOUT_S)."""
        deadline = time.monotonic() + FLUSH_TIMEOUT_S
        while True:  # SGLang flushes only an idle scheduler; ?timeout= makes it wait for idleness first
            wait = max(0.1, min(5.0, deadline - time.monotonic()))
            status, body = await self.request(url, "POST", f"/flush_cache?timeout={wait:.1f}", timeout=wait + 30)
            if status == 200:
                return
            if time.monotonic() >= deadline:
                raise EngineError(f"flush_cache failed on {url} for {FLUSH_TIMEOUT_S:.0f} s: "
                                  f"{body[:300].decode(errors='replace')}")
            await asyncio.sleep(0.2)

    async def health(self, url: str) -> str:
        try:
            status, _ = await self.request(url, "GET", "/health", timeout=30)
            return "ok" if status == 200 else f"HTTP {status}"
        except WorkerUnavailable as exc:
            return f"unavailable: {exc}"

    def close(self) -> None:
        """Close the pool: now if no loop runs here, else as a task on the running loop."""
        session, self._session = self._session, None
        if session is None or session.closed:
            return
        try:
            asyncio.get_running_loop().create_task(session.close())
        except RuntimeError:
            asyncio.get_event_loop().run_until_complete(session.close())

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
