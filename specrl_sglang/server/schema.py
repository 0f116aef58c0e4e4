"""Validation of request bodies: decoded msgpack/JSON in, typed calls out, or ApiError(400).

Every check names the offending field (`requests[2].prompt_ids`, `sampling.top_p`, ...) and
runs before the service touches the engine or the store, so a refused request changes nothing.
Unknown keys are refused too (a typo such as `max_respones_len` must not silently fall back to a
default). Token ids travel as lists of ints, or in msgpack as bytes of little-endian int32.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

import numpy as np

from specrl_sglang.rollout_types import RolloutRequest
from specrl_sglang.sampling import SamplingConfig
from specrl_sglang.server.errors import ApiError

MiB = 1 << 20


@dataclass(frozen=True)
class ServerLimits:
    """Size limits of one request (over them: 413 for bytes, 400 for counts)."""

    max_body_bytes: int = 16 * MiB  # every endpoint except tensor weight updates
    max_weights_bytes: int = 4096 * MiB  # POST /update_weights body (raw tensors)
    max_prompts: int = 4096  # prompts in one rollout request
    max_samples_per_prompt: int = 256
    max_total_samples: int = 16384  # sum of n over a rollout request
    max_prompt_id_len: int = 512

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) < 1:
                raise ValueError(f"{f.name} must be >= 1, got {getattr(self, f.name)}")


class ModelShape(NamedTuple):
    vocab_size: int
    context_len: int


class RolloutCall(NamedTuple):
    requests: list[RolloutRequest]
    sampling: SamplingConfig
    max_response_len: int


_SAMPLING_TYPES = {f.name: f.type for f in fields(SamplingConfig)}
TORCH_DTYPES = ("float32", "float16", "bfloat16", "float64", "int64", "int32", "int8", "uint8", "bool")


def as_map(value: Any, field: str | None, allowed: set[str]) -> dict[str, Any]:
    where = field or "body"
    if not isinstance(value, dict):
        raise ApiError(400, f"{where} must be a map/object, got {type(value).__name__}", field)
    unknown = sorted(set(map(str, value)) - allowed)
    if unknown:
        raise ApiError(400, f"unknown field {unknown[0]!r} in {where}; allowed: {sorted(allowed)}", _join(field, unknown[0]))
    return value


def as_int(value: Any, field: str, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ApiError(400, f"{field} must be an integer, got {type(value).__name__}", field)
    if value < lo or (hi is not None and value > hi):
        bound = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ApiError(400, f"{field} must be {bound}, got {value}", field)
    return int(value)


def as_number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ApiError(400, f"{field} must be a number, got {type(value).__name__}", field)
    return float(value)


def as_wait(body: dict[str, Any]) -> float | None:
    """`wait_s`: how long a weight update / flush may wait for the step in flight (None: no limit)."""
    value = body.get("wait_s")
    if value is None:
        return None
    wait = as_number(value, "wait_s")
    if math.isnan(wait) or wait < 0:
        raise ApiError(400, f"wait_s must be >= 0 or null, got {value}", "wait_s")
    return wait


def as_path(value: Any, field: str, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise ApiError(400, f"{field} must be a non-empty string", field)
    return value


def token_ids(value: Any, field: str, vocab_size: int) -> np.ndarray:
    """A non-empty 1-D int32 array of ids in [0, vocab_size)."""
    if isinstance(value, (bytes, bytearray)):
        if len(value) % 4:
            raise ApiError(400, f"{field} as bytes must be little-endian int32 (length % 4 == 0)", field)
        arr = np.frombuffer(bytes(value), dtype="<i4").astype(np.int64)
    elif isinstance(value, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in value):
        arr = np.array(value, dtype=np.int64) if value else np.zeros(0, np.int64)
    else:
        raise ApiError(400, f"{field} must be a list of integer token ids (or int32 bytes)", field)
    if arr.size == 0:
        raise ApiError(400, f"{field} must not be empty", field)
    bad = arr[(arr < 0) | (arr >= vocab_size)]
    if bad.size:
        raise ApiError(400, f"{field} has token id {int(bad[0])} outside the vocabulary [0, {vocab_size})", field)
    return arr.astype(np.int32)


def parse_sampling(value: Any) -> SamplingConfig:
    body = as_map({} if value is None else value, "sampling", set(_SAMPLING_TYPES))
    kwargs: dict[str, Any] = {}
    for name, raw in body.items():
        field = f"sampling.{name}"
        if name == "top_k":
            kwargs[name] = as_int(raw, field, -1)
        elif name == "ignore_eos":
            if not isinstance(raw, bool):
                raise ApiError(400, f"{field} must be a boolean", field)
            kwargs[name] = raw
        elif name == "stop_token_ids":
            if not isinstance(raw, list):
                raise ApiError(400, f"{field} must be a list of token ids", field)
            kwargs[name] = tuple(as_int(t, f"{field}[{i}]", 0) for i, t in enumerate(raw))
        else:
            kwargs[name] = as_number(raw, field)
    try:
        return SamplingConfig(**kwargs)
    except ValueError as exc:
        name = str(exc).split(" ")[0]
        raise ApiError(400, str(exc), f"sampling.{name}" if name in _SAMPLING_TYPES else "sampling") from None


def parse_rollout(body: Any, limits: ServerLimits, model: ModelShape) -> RolloutCall:
    """Validate `{"requests": [{"prompt_id", "prompt_ids", "n"}], "sampling": {...}, "max_response_len"}`."""
    body = as_map(body, None, {"requests", "sampling", "max_response_len"})
    if "max_response_len" not in body:
        raise ApiError(400, "max_response_len is required", "max_response_len")
    max_len = as_int(body["max_response_len"], "max_response_len", 1, model.context_len - 1)
    raw = body.get("requests")
    if not isinstance(raw, list) or not raw:
        raise ApiError(400, "requests must be a non-empty list", "requests")
    if len(raw) > limits.max_prompts:
        raise ApiError(400, f"requests has {len(raw)} prompts; the limit is {limits.max_prompts}", "requests")
    requests, seen, total = [], set(), 0
    for i, item in enumerate(raw):
        where = f"requests[{i}]"
        item = as_map(item, where, {"prompt_id", "prompt_ids", "n"})
        for key in ("prompt_id", "prompt_ids", "n"):
            if key not in item:
                raise ApiError(400, f"{where}.{key} is required", f"{where}.{key}")
        prompt_id = item["prompt_id"]
        if not isinstance(prompt_id, str) or not prompt_id or len(prompt_id) > limits.max_prompt_id_len:
            raise ApiError(400, f"{where}.prompt_id must be a string of 1..{limits.max_prompt_id_len} chars", f"{where}.prompt_id")
        if prompt_id in seen:
            raise ApiError(400, f"{where}.prompt_id {prompt_id!r} appears twice; ask for n samples once", f"{where}.prompt_id")
        seen.add(prompt_id)
        ids = token_ids(item["prompt_ids"], f"{where}.prompt_ids", model.vocab_size)
        if ids.size + max_len > model.context_len:
            raise ApiError(
                400,
                f"{where}: {ids.size} prompt tokens + max_response_len {max_len} exceed the model's context "
                f"length {model.context_len}",
                f"{where}.prompt_ids",
            )
        n = as_int(item["n"], f"{where}.n", 1, limits.max_samples_per_prompt)
        total += n
        requests.append(RolloutRequest(prompt_id, ids, n))
    if total > limits.max_total_samples:
        raise ApiError(400, f"requests ask for {total} samples; the limit is {limits.max_total_samples}", "requests")
    return RolloutCall(requests, parse_sampling(body.get("sampling")), max_len)


def parse_tensors(body: Any) -> tuple[list[tuple[str, Any]], float | None]:
    """`{"tensors": {name: {"dtype", "shape", "data"}}, "wait_s"}` -> ([(name, torch.Tensor)], wait_s).

    `data` is the tensor's raw bytes in C order (msgpack bin; base64 text in JSON).
    """
    import base64

    import torch

    body = as_map(body, None, {"tensors", "wait_s"})
    tensors = body.get("tensors")
    if not isinstance(tensors, dict) or not tensors:
        raise ApiError(400, "tensors must be a non-empty map of name -> {dtype, shape, data}", "tensors")
    named = []
    for name, spec in tensors.items():
        where = f"tensors.{name}"
        spec = as_map(spec, where, {"dtype", "shape", "data"})
        dtype = spec.get("dtype")
        if dtype not in TORCH_DTYPES:
            raise ApiError(400, f"{where}.dtype must be one of {TORCH_DTYPES}, got {dtype!r}", f"{where}.dtype")
        shape = spec.get("shape")
        if not isinstance(shape, list):
            raise ApiError(400, f"{where}.shape must be a list of ints", f"{where}.shape")
        shape = [as_int(s, f"{where}.shape[{j}]", 0) for j, s in enumerate(shape)]
        data = spec.get("data")
        if isinstance(data, str):
            try:
                data = base64.b64decode(data, validate=True)
            except ValueError:
                raise ApiError(400, f"{where}.data is not valid base64", f"{where}.data") from None
        if not isinstance(data, (bytes, bytearray)):
            raise ApiError(400, f"{where}.data must be bytes (msgpack bin) or base64 text", f"{where}.data")
        torch_dtype = getattr(torch, dtype)
        expected = math.prod(shape) * torch.empty(0, dtype=torch_dtype).element_size()
        if len(data) != expected:
            raise ApiError(400, f"{where}.data has {len(data)} bytes; dtype {dtype} x shape {shape} needs {expected}", f"{where}.data")
        flat = torch.frombuffer(bytearray(data), dtype=torch_dtype) if expected else torch.empty(0, dtype=torch_dtype)
        named.append((str(name), flat.reshape(shape)))
    return named, as_wait(body)


def _join(prefix: str | None, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name
