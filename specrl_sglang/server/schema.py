"""Validation of request bodies: decoded msgpack/JSON in, typed calls out, or ApiError(400).

Every check names the offending field (`requests[2].prompt_ids`, `sampling.top_p`, ...) and runs
before the service touches the engine or the store, so a refused request changes nothing. Unknown
keys are refused too (a typo such as `max_respones_len` must not silently fall back to a default).
Every number is bounded (JSON integers may be arbitrarily large, JSON floats may be NaN/inf).
Rules owned elsewhere are called, not copied: token ids and context length (`token_checks`),
prompt ids (`prompt_identity`), modes (`spec_config`), sampling ranges (`SamplingConfig`).
Token ids travel as lists of ints, or in msgpack as bytes of little-endian int32.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

import numpy as np

from specrl_sglang.prompt_identity import check_prompt_id
from specrl_sglang.rollout_types import RolloutRequest
from specrl_sglang.sampling import TOP_K_MAX, SamplingConfig
from specrl_sglang.server.errors import ApiError
from specrl_sglang.spec_config import check_mode, check_mode_sampling
from specrl_sglang.token_checks import ModelLimits

MiB = 1 << 20
MAX_WAIT_S = 86_400.0  # a day; null means "no limit"
MAX_STOP_TOKENS = 256
MAX_PATH_CHARS = 4096
MAX_TENSOR_DIMS = 8
MAX_DIM = (1 << 31) - 1


@dataclass(frozen=True)
class ServerLimits:
    """Size limits of one request (over them: 413 for bytes, 400 for counts)."""

    max_body_bytes: int = 16 * MiB  # every endpoint except tensor weight updates
    max_weights_bytes: int = 4096 * MiB  # POST /update_weights body (raw tensors)
    max_prompts: int = 4096  # prompts in one rollout request
    max_samples_per_prompt: int = 256
    max_total_samples: int = 16384  # sum of n over a rollout request

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{f.name} must be an integer >= 1, got {value!r}")


class RolloutCall(NamedTuple):
    requests: list[RolloutRequest]
    sampling: SamplingConfig
    max_response_len: int
    mode: str | None  # None: the server's mode


class UpdateOptions(NamedTuple):
    wait_s: float | None  # None: wait for the steps in flight as long as they take
    interrupt: bool  # abort the steps in flight; they resume under the new weights


_SAMPLING_FIELDS = {f.name for f in fields(SamplingConfig)}
TORCH_DTYPES = ("float32", "float16", "bfloat16", "float64", "int64", "int32", "int8", "uint8", "bool")


def as_map(value: Any, field: str | None, allowed: set[str]) -> dict[str, Any]:
    where = field or "body"
    if not isinstance(value, dict):
        raise ApiError(400, f"{where} must be a map/object, got {type(value).__name__}", field)
    unknown = sorted(set(map(str, value)) - allowed)
    if unknown:
        raise ApiError(400, f"unknown field {unknown[0]!r} in {where}; allowed: {sorted(allowed)}", _join(field, unknown[0]))
    return value


def as_int(value: Any, field: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ApiError(400, f"{field} must be an integer, got {type(value).__name__}", field)
    if not lo <= value <= hi:
        raise ApiError(400, f"{field} must be in [{lo}, {hi}], got {value if abs(value) < 10**30 else 'a huge integer'}", field)
    return int(value)


def as_number(value: Any, field: str) -> float:
    """A finite float (refuses bools, strings, NaN, inf and integers beyond float range)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ApiError(400, f"{field} must be a number, got {type(value).__name__}", field)
    try:
        number = float(value)
    except OverflowError:
        raise ApiError(400, f"{field} is too large", field) from None
    if not math.isfinite(number):
        raise ApiError(400, f"{field} must be a finite number, got {number}", field)
    return number


def as_bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise ApiError(400, f"{field} must be a boolean, got {type(value).__name__}", field)
    return value


def as_update_options(body: dict[str, Any]) -> UpdateOptions:
    """`wait_s` (null or a number of seconds in [0, MAX_WAIT_S]) and `interrupt` (bool)."""
    wait = body.get("wait_s")
    if wait is not None:
        wait = as_number(wait, "wait_s")
        if not 0 <= wait <= MAX_WAIT_S:
            raise ApiError(400, f"wait_s must be in [0, {MAX_WAIT_S:.0f}] seconds or null (no limit), got {wait}", "wait_s")
    return UpdateOptions(wait, as_bool(body.get("interrupt", False), "interrupt"))


def as_path(value: Any, field: str, required: bool) -> str | None:
    """A path or file name as text (no NUL, bounded length); what it may point to is the sandbox's call."""
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise ApiError(400, f"{field} must be a non-empty string", field)
    if "\x00" in value:
        raise ApiError(400, f"{field} must not contain NUL characters", field)
    if len(value) > MAX_PATH_CHARS:
        raise ApiError(400, f"{field} has {len(value)} characters; the limit is {MAX_PATH_CHARS}", field)
    return value


def token_ids(value: Any, field: str, model: ModelLimits) -> np.ndarray:
    """A non-empty 1-D int32 array of ids in [0, vocab_size) (the rule is `token_checks`')."""
    if isinstance(value, (bytes, bytearray)):
        if len(value) % 4:
            raise ApiError(400, f"{field} as bytes must be little-endian int32 (length % 4 == 0)", field)
        value = np.frombuffer(bytes(value), dtype="<i4")
    elif not isinstance(value, list):
        raise ApiError(400, f"{field} must be a list of integer token ids (or int32 bytes)", field)
    try:
        return model.check_ids(value, field)
    except ValueError as exc:
        raise ApiError(400, str(exc), field) from None


def parse_sampling(value: Any, model: ModelLimits) -> SamplingConfig:
    body = as_map({} if value is None else value, "sampling", _SAMPLING_FIELDS)
    kwargs: dict[str, Any] = {}
    for name, raw in body.items():
        field = f"sampling.{name}"
        if name == "top_k":
            is_off = isinstance(raw, int) and not isinstance(raw, bool) and raw == -1
            kwargs[name] = -1 if is_off else as_int(raw, field, 1, TOP_K_MAX)
        elif name == "ignore_eos":
            kwargs[name] = as_bool(raw, field)
        elif name == "stop_token_ids":
            if not isinstance(raw, list) or len(raw) > MAX_STOP_TOKENS:
                raise ApiError(400, f"{field} must be a list of at most {MAX_STOP_TOKENS} token ids", field)
            kwargs[name] = tuple(token_ids(raw, field, model).tolist()) if raw else ()
        else:
            kwargs[name] = as_number(raw, field)
        try:  # SamplingConfig owns the ranges; one field at a time, so the error names its field
            SamplingConfig(**{name: kwargs[name]})
        except ValueError as exc:
            raise ApiError(400, str(exc), field) from None
    return SamplingConfig(**kwargs)


def parse_rollout(body: Any, limits: ServerLimits, model: ModelLimits, default_mode: str) -> RolloutCall:
    """Validate `{"requests": [{"prompt_id", "prompt_ids", "n"}], "sampling", "max_response_len", "mode"}`."""
    body = as_map(body, None, {"requests", "sampling", "max_response_len", "mode"})
    if "max_response_len" not in body:
        raise ApiError(400, "max_response_len is required", "max_response_len")
    max_len = as_int(body["max_response_len"], "max_response_len", 1, model.context_len - 1)
    mode = body.get("mode")
    if mode is not None:
        try:
            mode = check_mode(mode)
        except (TypeError, ValueError) as exc:
            raise ApiError(400, str(exc), "mode") from None
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
        try:
            prompt_id = check_prompt_id(item["prompt_id"], f"{where}.prompt_id")
        except ValueError as exc:
            raise ApiError(400, str(exc), f"{where}.prompt_id") from None
        if prompt_id in seen:
            raise ApiError(400, f"{where}.prompt_id {prompt_id!r} appears twice; ask for n samples once", f"{where}.prompt_id")
        seen.add(prompt_id)
        ids = token_ids(item["prompt_ids"], f"{where}.prompt_ids", model)
        try:
            model.check_len(ids.size + max_len, f"{where}: {ids.size} prompt tokens + max_response_len {max_len}")
        except ValueError as exc:
            raise ApiError(400, str(exc), f"{where}.prompt_ids") from None
        n = as_int(item["n"], f"{where}.n", 1, limits.max_samples_per_prompt)
        total += n
        requests.append(RolloutRequest(prompt_id, ids, n))
    if total > limits.max_total_samples:
        raise ApiError(400, f"requests ask for {total} samples; the limit is {limits.max_total_samples}", "requests")
    sampling = parse_sampling(body.get("sampling"), model)
    try:
        check_mode_sampling(mode or default_mode, sampling)
    except ValueError as exc:
        raise ApiError(400, str(exc), "mode" if mode else "sampling") from None
    return RolloutCall(requests, sampling, max_len, mode)


def parse_tensors(body: Any) -> tuple[list[tuple[str, Any]], UpdateOptions]:
    """`{"tensors": {name: {"dtype", "shape", "data"}}, "wait_s", "interrupt"}` -> ([(name, tensor)], options).

    `data` is the tensor's raw bytes in C order (msgpack bin; base64 text in JSON). Whether the
    names, shapes, dtypes and values suit the model is `weight_checks`' call (in the runtime).
    """
    import base64

    import torch

    body = as_map(body, None, {"tensors", "wait_s", "interrupt"})
    options = as_update_options(body)
    tensors = body.get("tensors")
    if not isinstance(tensors, dict) or not tensors:
        raise ApiError(400, "tensors must be a non-empty map of name -> {dtype, shape, data}", "tensors")
    named = []
    for name, spec in tensors.items():
        if not isinstance(name, str) or not name or len(name) > 512:
            raise ApiError(400, f"tensor names must be strings of 1..512 characters, got {name!r:.60}", "tensors")
        where = f"tensors.{name}"
        spec = as_map(spec, where, {"dtype", "shape", "data"})
        dtype = spec.get("dtype")
        if dtype not in TORCH_DTYPES:
            raise ApiError(400, f"{where}.dtype must be one of {TORCH_DTYPES}, got {dtype!r:.60}", f"{where}.dtype")
        shape = spec.get("shape")
        if not isinstance(shape, list) or len(shape) > MAX_TENSOR_DIMS:
            raise ApiError(400, f"{where}.shape must be a list of at most {MAX_TENSOR_DIMS} ints", f"{where}.shape")
        shape = [as_int(s, f"{where}.shape[{j}]", 0, MAX_DIM) for j, s in enumerate(shape)]
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
        named.append((name, flat.reshape(shape)))
    return named, options


def _join(prefix: str | None, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name
