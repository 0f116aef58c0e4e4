"""Wire bodies: msgpack or JSON, chosen per request, read under a size limit.

Contract:
- Request bodies are msgpack when Content-Type is application/msgpack (or x-msgpack), JSON when
  it is application/json; with no Content-Type the body is sniffed (JSON starts with `{` or `[`).
  Any other type -> ApiError 415; a body that does not parse -> ApiError 400.
- Responses use msgpack if the Accept header names msgpack, JSON if it names JSON, else the
  request's own format (JSON for bodiless requests).
- Non-finite floats (e.g. a NaN KV-hit ratio of a step without drafts) are sent as null in both
  formats; numpy scalars and arrays are converted to plain numbers and lists (`plain_json`).
- `read_body` refuses bodies over `limit` bytes with ApiError 413, from Content-Length before
  reading anything, and while streaming for chunked bodies; a client that sends no body bytes for
  `idle_s` seconds gets ApiError 408 (a slow client cannot hold a request open forever).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import msgpack

from specrl_sglang.plain_json import dumps, plain
from specrl_sglang.server.errors import ApiError

MSGPACK = "application/msgpack"
JSON = "application/json"
_MSGPACK_TYPES = (MSGPACK, "application/x-msgpack", "application/vnd.msgpack")


def media_type_of(content_type: str | None) -> str | None:
    """`MSGPACK`, `JSON`, or None (absent); raises ApiError 415 for any other type."""
    base = (content_type or "").split(";")[0].strip().lower()
    if not base:
        return None
    if base in _MSGPACK_TYPES:
        return MSGPACK
    if base == JSON or base.endswith("+json"):
        return JSON
    raise ApiError(415, f"unsupported Content-Type {base!r}; send {MSGPACK} or {JSON}")


def response_type(accept: str | None, request_type: str | None) -> str:
    """The media type to answer with (see module docstring)."""
    accept = (accept or "").lower()
    if "msgpack" in accept:
        return MSGPACK
    if "json" in accept:
        return JSON
    return request_type or JSON


def encode(obj: Any, media_type: str) -> bytes:
    if media_type == MSGPACK:
        return msgpack.packb(plain(obj), use_bin_type=True)
    return dumps(obj, compact=True).encode()


def decode(body: bytes, media_type: str | None) -> Any:
    """Parse a request body; an empty body is an empty dict."""
    if not body.strip():
        return {}
    if media_type is None:
        media_type = JSON if body.lstrip()[:1] in (b"{", b"[") else MSGPACK
    try:
        if media_type == MSGPACK:
            return msgpack.unpackb(body, raw=False, strict_map_key=True)
        return json.loads(body)
    except Exception as exc:  # any parse failure of client input is a 400
        kind = "msgpack" if media_type == MSGPACK else "JSON"
        raise ApiError(400, f"malformed {kind} body: {exc}") from None


async def read_body(request: Any, limit: int, idle_s: float | None = None) -> bytes:
    """Read a Starlette request's body, refusing more than `limit` bytes (ApiError 413) and
    clients idle for `idle_s` seconds between chunks (ApiError 408)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()) or len(declared) > 19:
            raise ApiError(400, f"bad Content-Length header {declared[:40]!r}")
        if int(declared) > limit:
            raise ApiError(413, f"body of {int(declared)} bytes exceeds this endpoint's limit of {limit} bytes")
    chunks, total = [], 0
    stream = request.stream().__aiter__()
    while True:
        try:
            chunk = await asyncio.wait_for(stream.__anext__(), idle_s)
        except StopAsyncIteration:
            break
        except TimeoutError:
            raise ApiError(408, f"the client sent no body bytes for {idle_s} s; request dropped") from None
        total += len(chunk)
        if total > limit:
            raise ApiError(413, f"body exceeds this endpoint's limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
