"""HTTP routes of the rollout service (Starlette ASGI app, served by uvicorn).

Why Starlette + uvicorn rather than SGLang's own HTTP server: the rollout step is our logic (draft
-> verify -> accept -> continue -> record), not one SGLang call, so SGLang's server would still
need a service in front of it plus a second process hop per verify/continue; keeping the offline
engine in process saves that hop and keeps one owner of weights, KV and drafts (RolloutRuntime).

Concurrency: handlers are coroutines that await the service, which awaits the runtime; so many
clients' steps are in SGLang's scheduler at once. Decoding and validating a body run in a worker
thread (a large weights body must not stall the event loop). Mutating endpoints check the bearer
token (if configured) before reading the body.

| method, path                   | body                                                                 | answer |
|--------------------------------|----------------------------------------------------------------------|--------|
| POST /rollout                  | {requests: [{prompt_id, prompt_ids, n}], sampling, max_response_len, mode} | samples, stats, policy_version, mode |
| POST /update_weights           | {tensors: {name: {dtype, shape, data}}, wait_s, interrupt}           | {policy_version, seconds} |
| POST /update_weights_from_disk | {path, wait_s, interrupt} (inside a --weights-dir)                   | {policy_version, seconds, path} |
| POST /flush                    | {store: bool, wait_s}                                                | {policy_version, store} |
| POST /snapshot                 | {path} (a NAME.snap in --snapshot-dir; default: --snapshot)          | {path, bytes, store} |
| POST /restore                  | {path, wait_s}                                                       | {path, num_prompts, dropped, ...} |
| GET /health, /stats?since=N, /store, /metrics | -                                                     | see RolloutService; Prometheus text |
Errors: 400/401/404/405/408/409/413/415/500/503 with body {"error": {status, kind, field, message}}.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from specrl_sglang.server import schema
from specrl_sglang.server.auth import BearerAuth
from specrl_sglang.server.codec import JSON, decode, encode, media_type_of, read_body, response_type
from specrl_sglang.server.errors import ApiError
from specrl_sglang.server.service import RolloutService

log = logging.getLogger("specrl_sglang.server")
_SINCE = re.compile(r"[0-9]{1,18}")

Parse = Callable[[Any], Any]  # decoded body -> typed call (in a worker thread)
Act = Callable[[Any], Awaitable[dict[str, Any]]]  # typed call -> answer (on the event loop)


def build_app(service: RolloutService, auth: BearerAuth, idle_s: float) -> Starlette:
    """The ASGI app serving `service` (see the module docstring for the routes)."""
    limits, model, mode = service.prepared.limits, service.model, service.config.mode

    def parse_flush(body: Any) -> tuple[bool, float | None]:
        body = schema.as_map(body, None, {"store", "wait_s"})
        return schema.as_bool(body.get("store", False), "store"), schema.as_update_options(body).wait_s

    def parse_disk(body: Any) -> tuple[str, schema.UpdateOptions]:
        body = schema.as_map(body, None, {"path", "wait_s", "interrupt"})
        return schema.as_path(body.get("path"), "path", True), schema.as_update_options(body)

    def parse_name(allowed: set[str]) -> Parse:
        def parse(body: Any) -> tuple[str | None, float | None]:
            body = schema.as_map(body, None, allowed)
            return schema.as_path(body.get("path"), "path", False), schema.as_update_options(body).wait_s

        return parse

    def _post(name: str, limit: int, parse: Parse, act: Act) -> Route:
        async def endpoint(request: Request) -> Response:
            t0 = time.perf_counter()
            media = response_type(request.headers.get("accept"), _known_type(request.headers.get("content-type")))
            try:
                auth.check(request.headers.get("authorization"))
                in_type = media_type_of(request.headers.get("content-type"))
                raw = await read_body(request, limit, idle_s)
                call = await run_in_threadpool(lambda: parse(decode(raw, in_type)))
                status, result = 200, await act(call)
            except ApiError as exc:
                status, result = exc.status, exc.body()
            except Exception as exc:  # a bug or an unexpected failure: say what, keep serving
                log.exception("internal error in /%s", name)
                status, result = 500, ApiError(500, f"{type(exc).__name__}: {exc}").body()
            service.metrics.observe_request(name, status, time.perf_counter() - t0)
            return _answer(result, status, media, status == 401)

        return Route(f"/{name}", endpoint, methods=["POST"])

    routes = [
        _post("rollout", limits.max_body_bytes, lambda b: schema.parse_rollout(b, limits, model, mode), service.rollout),
        _post("update_weights", limits.max_weights_bytes, schema.parse_tensors,
              lambda call: service.update_weights(*call)),
        _post("update_weights_from_disk", limits.max_body_bytes, parse_disk,
              lambda call: service.update_weights_from_disk(*call)),
        _post("flush", limits.max_body_bytes, parse_flush, lambda call: service.flush(*call)),
        _post("snapshot", limits.max_body_bytes, parse_name({"path"}), lambda call: service.snapshot(call[0])),
        _post("restore", limits.max_body_bytes, parse_name({"path", "wait_s"}), lambda call: service.restore(*call)),
    ]

    async def health(request: Request) -> Response:
        body = await service.health()
        status = 200 if body["status"] in ("ok", "poisoned") else 503
        return _get(request, "health", lambda: body, status)

    async def stats(request: Request) -> Response:
        def run() -> dict[str, Any]:
            since = request.query_params.get("since", "0")
            if not _SINCE.fullmatch(since):
                raise ApiError(400, f"since must be a non-negative integer (ASCII digits), got {since[:40]!r}", "since")
            return service.stats(int(since))

        return _get(request, "stats", run)

    async def store(request: Request) -> Response:
        t0 = time.perf_counter()
        try:
            status, result = 200, await service.store_digest()
        except ApiError as exc:
            status, result = exc.status, exc.body()
        service.metrics.observe_request("store", status, time.perf_counter() - t0)
        return _answer(result, status, response_type(request.headers.get("accept"), None))

    async def metrics(request: Request) -> Response:
        service.metrics.observe_request("metrics", 200, 0.0)
        return Response(service.metrics.render(), media_type=service.metrics.content_type)

    def _get(request: Request, name: str, run: Callable[[], dict[str, Any]], ok: int = 200) -> Response:
        t0 = time.perf_counter()
        try:
            status, result = ok, run()
        except ApiError as exc:
            status, result = exc.status, exc.body()
        service.metrics.observe_request(name, status, time.perf_counter() - t0)
        return _answer(result, status, response_type(request.headers.get("accept"), None))

    async def http_error(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        body = ApiError(status, f"{request.method} {request.url.path}: {getattr(exc, 'detail', exc)}").body()
        return _answer(body, status, JSON)

    routes += [
        Route("/health", health, methods=["GET"]),
        Route("/stats", stats, methods=["GET"]),
        Route("/store", store, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error})


def _known_type(content_type: str | None) -> str | None:
    """The request's media type if it is one we speak (errors are answered in it), else None."""
    try:
        return media_type_of(content_type)
    except ApiError:
        return None


def _answer(result: dict[str, Any], status: int, media: str, challenge: bool = False) -> Response:
    headers = {"WWW-Authenticate": 'Bearer realm="specrl-sglang"'} if challenge else None
    return Response(encode(result, media), status_code=status, media_type=media, headers=headers)
