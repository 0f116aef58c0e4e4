"""RolloutClient: the Python client of `specrl-sglang serve`, one method per endpoint.

Bodies go out and come back as msgpack. Integer numpy prompts travel as int32 bytes; responses'
`token_ids` / `logprobs` come back as np.int32 / np.float32 arrays. Any non-200 answer raises
`ServerError` carrying the server's status, error kind, offending field and message. With
`auth_token` (default: the environment variable SPECRL_AUTH_TOKEN, like the server) every request
carries `Authorization: Bearer <token>`. One client holds one HTTP session: use one client per
thread or process.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from typing import Any

import msgpack
import numpy as np
import requests

from specrl_sglang.rollout_types import RolloutRequest
from specrl_sglang.sampling import SamplingConfig
from specrl_sglang.server.auth import TOKEN_ENV

MSGPACK = "application/msgpack"


class ServerError(RuntimeError):
    """The server refused or failed a request."""

    def __init__(self, status: int, kind: str, field: str | None, message: str) -> None:
        super().__init__(f"HTTP {status} {kind}" + (f" [{field}]" if field else "") + f": {message}")
        self.status, self.kind, self.field, self.message = status, kind, field, message


class RolloutClient:
    def __init__(self, url: str = "http://127.0.0.1:8377", timeout: float | None = 600.0,
                 auth_token: str | None = None) -> None:
        self.url, self.timeout = url.rstrip("/"), timeout
        self._http = requests.Session()
        token = auth_token if auth_token is not None else os.environ.get(TOKEN_ENV)
        if token:
            self._http.headers["Authorization"] = f"Bearer {token}"

    # ------------------------------------------------------------------ verbs
    def rollout(
        self,
        requests_: Iterable[RolloutRequest | Mapping[str, Any]],
        max_response_len: int,
        sampling: SamplingConfig | Mapping[str, Any] | None = None,
        mode: str | None = None,
    ) -> dict[str, Any]:
        """One rollout step. `requests_`: RolloutRequests or {prompt_id, prompt_ids, n} maps;
        `mode`: "spec-rl" | "exact" | "vanilla" for this step (None: the server's).

        Returns {policy_version, step, samples: [{prompt_id, prompt_index, token_ids, logprobs,
        draft_len, accepted_len, fully_reused, finish_reason}], stats}; samples are grouped by
        prompt in request order, n contiguous samples each.
        """
        items = [_request_body(r) for r in requests_]
        if isinstance(sampling, SamplingConfig):
            sampling = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(sampling).items()}
        body = {"requests": items, "sampling": dict(sampling or {}), "max_response_len": max_response_len}
        if mode is not None:
            body["mode"] = mode
        reply = self._post("rollout", body)
        for sample in reply["samples"]:
            sample["token_ids"] = np.asarray(sample["token_ids"], dtype=np.int32)
            sample["logprobs"] = np.asarray(sample["logprobs"], dtype=np.float32)
        return reply

    def update_weights(self, named_tensors: Mapping[str, Any] | Iterable[tuple[str, Any]], wait_s: float | None = None,
                       interrupt: bool = False) -> dict[str, Any]:
        """Send tensors (torch or numpy); waits for the steps in flight unless `wait_s` runs out (409);
        `interrupt=True` parks them instead (they resume under the new weights)."""
        pairs = named_tensors.items() if isinstance(named_tensors, Mapping) else named_tensors
        tensors = {name: encode_tensor(t) for name, t in pairs}
        return self._post("update_weights", {"tensors": tensors, "wait_s": wait_s, "interrupt": interrupt})

    def update_weights_from_disk(self, path: str, wait_s: float | None = None, interrupt: bool = False) -> dict[str, Any]:
        """Load a checkpoint directory on the server's machine (inside one of its --weights-dir)."""
        return self._post("update_weights_from_disk", {"path": str(path), "wait_s": wait_s, "interrupt": interrupt})

    def flush(self, store: bool = False, wait_s: float | None = None) -> dict[str, Any]:
        """Drop SGLang's KV cache; `store=True` also forgets every stored draft."""
        return self._post("flush", {"store": store, "wait_s": wait_s})

    def snapshot(self, path: str | None = None) -> dict[str, Any]:
        return self._post("snapshot", {} if path is None else {"path": str(path)})

    def restore(self, path: str | None = None, wait_s: float | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"wait_s": wait_s}
        if path is not None:
            body["path"] = str(path)
        return self._post("restore", body)

    def store_digest(self) -> dict[str, Any]:
        """{content_sha256, store}: a fingerprint of every stored draft (radix_cache.snapshot.content_digest)."""
        return self._get("store")

    def health(self) -> dict[str, Any]:
        return self._get("health")

    def stats(self, since: int = 0) -> dict[str, Any]:
        return self._get("stats", params={"since": since})

    def metrics(self) -> str:
        response = self._http.get(f"{self.url}/metrics", timeout=self.timeout)
        response.raise_for_status()
        return response.text

    def wait_until_ready(self, timeout: float = 120.0, poll_s: float = 0.25) -> dict[str, Any]:
        """Poll /health until the server answers with a running engine (or raise TimeoutError)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.health()
            except (requests.ConnectionError, ServerError) as exc:
                if isinstance(exc, ServerError) and exc.status != 503:
                    raise
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no server answered at {self.url} within {timeout}s") from None
                time.sleep(poll_s)

    # ------------------------------------------------------------------ transport
    def _post(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        data = msgpack.packb(body, use_bin_type=True)
        headers = {"Content-Type": MSGPACK, "Accept": MSGPACK}
        return _unpack(self._http.post(f"{self.url}/{name}", data=data, headers=headers, timeout=self.timeout))

    def _get(self, name: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return _unpack(self._http.get(f"{self.url}/{name}", params=params, headers={"Accept": MSGPACK}, timeout=self.timeout))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "RolloutClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def encode_tensor(tensor: Any) -> dict[str, Any]:
    """{dtype, shape, data} of a torch tensor or numpy array (raw C-order bytes)."""
    if isinstance(tensor, np.ndarray):
        arr = np.ascontiguousarray(tensor)
        return {"dtype": str(arr.dtype), "shape": list(arr.shape), "data": arr.tobytes()}
    t = tensor.detach().cpu().contiguous()
    flat = t.reshape(-1)
    import torch

    data = flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""
    return {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape), "data": data}


def _request_body(request: RolloutRequest | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(request, RolloutRequest):
        prompt_id, ids, n = request.prompt_id, request.prompt_ids, request.num_samples
    else:
        prompt_id, ids, n = request.get("prompt_id"), request.get("prompt_ids"), request.get("n")
    if isinstance(ids, np.ndarray):
        fits = ids.dtype.kind in "iu" and ids.ndim == 1 and (not ids.size or (ids.min() >= 0 and ids.max() < 2**31))
        ids = np.ascontiguousarray(ids, dtype="<i4").tobytes() if fits else ids.tolist()  # else the server says why
    return {"prompt_id": prompt_id, "prompt_ids": ids, "n": n}


def _unpack(response: requests.Response) -> dict[str, Any]:
    try:
        body = msgpack.unpackb(response.content, raw=False) if response.content else {}
    except Exception:
        body = {"error": {"kind": "unreadable", "message": response.text[:500]}}
    if response.status_code != 200:
        err = body.get("error", {}) if isinstance(body, dict) else {}
        raise ServerError(response.status_code, err.get("kind", "error"), err.get("field"), err.get("message", response.reason))
    return body
