"""HTTP routes of the rollout service (Starlette ASGI app, served by uvicorn).

Why Starlette + uvicorn rather than SGLang's own HTTP server or stdlib http.server: the rollout
step is our logic (draft -> verify -> accept -> continue -> record), not one SGLang call, so SGLang's
server would still need a service in front of it plus a second process hop per verify/continue;
keeping the offline engine in process (RolloutEngine) saves that hop and keeps one owner of
weights, KV and drafts. uvicorn gives robust HTTP/1.1 (keep-alive, chunked bodies, graceful
shutdown that drains requests in flight); both are already SGLang dependencies.

Threading: handlers run on the event loop only to read the body (with the size limit) and to
write the answer; decoding, validation and every service call run in Starlette's thread pool, so
a long rollout step never blocks /health, /stats or /metrics. The service lock orders steps.

| method, path                      | body                                                      | answer                      |
|-----------------------------------|-----------------------------------------------------------|-----------------------------|
| POST /rollout                     | {requests: [{prompt_id, prompt_ids, n}], sampling, max_response_len} | samples, stats, policy_version |
| POST /update_weights              | {tensors: {name: {dtype, shape, data}}, wait_s}           | {policy_version, seconds}   |
| POST /update_weights_from_disk    | {path, wait_s}                                            | {policy_version, seconds}   |
| POST /flush                       | {store: bool, wait_s}                                     | {policy_version, store}     |
| POST /snapshot, POST /restore     | {path} (optional; inside the snapshot directory)          | {path, store, ...}          |
| GET /health, GET /stats?since=N   |                                                           | see RolloutService          |
| GET /metrics                      |                                                           | Prometheus text             |
Errors: status 400/404/409/413/415/500/503 with body {"error": {status, kind, field, message}}.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from specrl_sglang.engine import EngineError
from specrl_sglang.server import schema
from specrl_sglang.server.codec import JSON, decode, encode, media_type_of, read_body, response_type
from specrl_sglang.server.errors import ApiError
from specrl_sglang.server.schema import ServerLimits
from specrl_sglang.server.service import RolloutService

log = logging.getLogger("specrl_sglang.server")

Handler = Callable[[Any], dict[str, Any]]


def build_app(service: RolloutService, limits: ServerLimits = ServerLimits()) -> Starlette:
    """The ASGI app serving `service` (see the module docstring for the routes)."""

    def rollout(body: Any) -> dict[str, Any]:
        return service.rollout(schema.parse_rollout(body, limits, service.model))

    def update_weights(body: Any) -> dict[str, Any]:
        named, wait_s = schema.parse_tensors(body)
        return service.update_weights(named, wait_s)

    def update_weights_from_disk(body: Any) -> dict[str, Any]:
        body = schema.as_map(body, None, {"path", "wait_s"})
        return service.update_weights_from_disk(schema.as_path(body.get("path"), "path", True), schema.as_wait(body))

    def flush(body: Any) -> dict[str, Any]:
        body = schema.as_map(body, None, {"store", "wait_s"})
        clear_store = body.get("store", False)
        if not isinstance(clear_store, bool):
            raise ApiError(400, "store must be a boolean", "store")
        return service.flush(clear_store, schema.as_wait(body))

    def snapshot(body: Any) -> dict[str, Any]:
        body = schema.as_map(body, None, {"path"})
        return service.snapshot(schema.as_path(body.get("path"), "path", False))

    def restore(body: Any) -> dict[str, Any]:
        body = schema.as_map(body, None, {"path"})
        return service.restore(schema.as_path(body.get("path"), "path", False))

    async def health(request: Request) -> Response:
        return await _answer(request, "health", lambda: service.health())

    async def stats(request: Request) -> Response:
        def run() -> dict[str, Any]:
            since = request.query_params.get("since", "0")
            if not since.isdigit():
                raise ApiError(400, f"since must be a non-negative integer, got {since!r}", "since")
            return service.stats(int(since))

        return await _answer(request, "stats", run)

    async def metrics(request: Request) -> Response:
        service.metrics.observe_request("metrics", 200, 0.0)
        return Response(service.metrics.render(), media_type=service.metrics.content_type)

    async def _answer(request: Request, name: str, run: Callable[[], dict[str, Any]]) -> Response:
        t0 = time.perf_counter()
        media = response_type(request.headers.get("accept"), None)
        status, result = _guard(run)
        service.metrics.observe_request(name, status, time.perf_counter() - t0)
        return Response(encode(result, media), status_code=status, media_type=media)

    def post(name: str, handler: Handler, limit: int) -> Route:
        async def endpoint(request: Request) -> Response:
            t0 = time.perf_counter()
            media = response_type(request.headers.get("accept"), None)
            try:
                in_type = media_type_of(request.headers.get("content-type"))
                media = response_type(request.headers.get("accept"), in_type)
                raw = await read_body(request, limit)
                status, result = await run_in_threadpool(_guard, lambda: handler(decode(raw, in_type)))
            except ApiError as exc:
                status, result = exc.status, exc.body()
            service.metrics.observe_request(name, status, time.perf_counter() - t0)
            return Response(encode(result, media), status_code=status, media_type=media)

        return Route(f"/{name}", endpoint, methods=["POST"])

    def _guard(run: Callable[[], dict[str, Any]]) -> tuple[int, dict[str, Any]]:
        """Run `run`; map every failure to (status, error body)."""
        try:
            return 200, run()
        except ApiError as exc:
            return exc.status, exc.body()
        except EngineError as exc:
            status = 503 if service.engine.poisoned else 500
            return status, ApiError(status, f"engine error: {exc}").body()
        except Exception as exc:  # a bug or an unexpected engine failure: say what, keep serving
            log.exception("internal error")
            return 500, ApiError(500, f"{type(exc).__name__}: {exc}").body()

    async def http_error(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        body = ApiError(status, f"{request.method} {request.url.path}: {getattr(exc, 'detail', exc)}").body()
        return Response(encode(body, JSON), status_code=status, media_type=JSON)

    small = limits.max_body_bytes
    routes = [
        post("rollout", rollout, small),
        post("update_weights", update_weights, limits.max_weights_bytes),
        post("update_weights_from_disk", update_weights_from_disk, small),
        post("flush", flush, small),
        post("snapshot", snapshot, small),
        post("restore", restore, small),
        Route("/health", health, methods=["GET"]),
        Route("/stats", stats, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error})
