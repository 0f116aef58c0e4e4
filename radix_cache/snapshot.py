"""Save and load a TrajectoryStore as one msgpack file: versioned, checksummed, written atomically.

File: msgpack map {magic, format_version, kind: "trajectory_store", body_sha256, body}, where
``body`` is msgpack bytes holding the config, the event counters and the prompts in LRU order
(least recent first). Each prompt is its namespace's node table (parent index, edge tokens,
edge log-probs) plus its samples (terminal node index, partial-page tail, policy versions as
run-length segments), so shared prefixes are written once. Arrays are raw little-endian bytes;
their dtypes are in the body. Format 2 is written; format 1 (per-token versions in the node
table) is still read. The per-prompt layouts are in snapshot_codec.py.

Loading re-puts every prompt through ``TrajectoryStore.put_digest`` (full validation) in LRU
order, so the store comes back identical: same prompts, samples in the same order with equal
arrays, same budget, same counters, same LRU order. Locks are not saved. A store saved above its
budget (locked prompts are never evicted) is trimmed on load like after any put.

``read_snapshot`` is the checked load for a server: the caller's budget replaces the saved one
(``max_tokens``), and prompts that do not fit the serving model (a token id outside
``vocab_size``, an id refused by ``check_prompt_id``, values ``put`` refuses) are dropped and
listed in the result instead of being loaded; a structurally broken file is a SnapshotError.
Writing is split so a server can encode on the thread that owns the store (``encode_snapshot``,
consistent between two store operations) and write the bytes elsewhere (``write_snapshot``).
``content_digest`` fingerprints what a snapshot saves (config and contents, not counters, LRU
order or locks): two stores with equal digests serve the same drafts.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import msgpack
import numpy as np

from radix_cache.responses import Response
from radix_cache.snapshot_codec import DTYPES, SnapshotError, decode_prompt, encode_prompt
from radix_cache.store_stats import StoreCounters
from radix_cache.trajectory_store import TrajectoryStore

MAGIC = "specrl-radix-snapshot"
FORMAT_VERSION = 2
READABLE_FORMAT_VERSIONS = (1, 2)  # 1: per-token versions in the node table (see snapshot_codec.py)
KIND = "trajectory_store"


SAVED = "saved"  # read_snapshot(max_tokens=SAVED): keep the budget recorded in the file


class LoadedSnapshot(NamedTuple):
    store: TrajectoryStore
    saved_max_tokens: int | None  # the budget recorded in the file
    num_prompts_saved: int  # prompts the file holds
    dropped: list[tuple[str, str]]  # (prompt_id, why) of prompts refused by validation, not loaded
    num_evicted: int  # prompts loaded, then evicted to fit the budget


def tmp_name_pattern(path: str | os.PathLike) -> str:
    """Glob (in the file's directory) of the temp files a killed ``write_snapshot`` leaves."""
    return f".{Path(path).name}.*.tmp"


def save_snapshot(store: TrajectoryStore, path: str | os.PathLike) -> None:
    """Write ``store`` to ``path`` atomically: a temp file in the same directory, flushed and
    fsynced, then ``os.replace``. On any error the previous file at ``path`` is left untouched
    and the temp file is removed. Reads the store only."""
    write_snapshot(encode_snapshot(store), path)


def encode_snapshot(store: TrajectoryStore) -> bytes:
    """The snapshot file's bytes (reads the store only)."""
    body = msgpack.packb(_encode_store(store), use_bin_type=True)
    return msgpack.packb(
        {
            "magic": MAGIC,
            "format_version": FORMAT_VERSION,
            "kind": KIND,
            "body_sha256": hashlib.sha256(body).hexdigest(),
            "body": body,
        },
        use_bin_type=True,
    )


def write_snapshot(data: bytes, path: str | os.PathLike) -> None:
    """Write encoded snapshot bytes atomically (see :func:`save_snapshot`)."""
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise


def load_snapshot(path: str | os.PathLike) -> TrajectoryStore:
    """Read a store written by :func:`save_snapshot`; SnapshotError if the file is not one."""
    loaded = read_snapshot(path)
    if loaded.dropped:
        prompt_id, why = loaded.dropped[0]
        raise SnapshotError(f"{path}: prompt {prompt_id!r} is invalid: {why}")
    return loaded.store


def read_snapshot(
    path: str | os.PathLike, *, max_tokens: int | None | str = SAVED, vocab_size: int | None = None,
    check_prompt_id: Callable[[str], Any] | None = None,
) -> LoadedSnapshot:
    """Load a snapshot, validating each prompt (see module docstring); SnapshotError if the file
    is not a readable snapshot. ``max_tokens``: the store's budget (SAVED: the file's)."""
    data = Path(path).read_bytes()
    try:
        header = msgpack.unpackb(data, raw=False)
    except Exception as exc:  # msgpack raises several types for truncated or garbage input
        raise SnapshotError(f"{path}: not a msgpack snapshot (truncated or corrupt): {exc}") from None
    if not isinstance(header, dict) or header.get("magic") != MAGIC:
        raise SnapshotError(f"{path}: wrong magic, not a radix_cache snapshot")
    format_version = header.get("format_version")
    if format_version not in READABLE_FORMAT_VERSIONS or isinstance(format_version, bool):
        raise SnapshotError(f"{path}: format version {format_version!r}, expected one of {READABLE_FORMAT_VERSIONS}")
    if header.get("kind") != KIND:
        raise SnapshotError(f"{path}: kind {header.get('kind')!r}, expected {KIND!r}")
    body = header.get("body")
    if not isinstance(body, bytes) or hashlib.sha256(body).hexdigest() != header.get("body_sha256"):
        raise SnapshotError(f"{path}: checksum mismatch, the body is corrupt")
    try:
        body = msgpack.unpackb(body, raw=False)
        return _decode_store(body, format_version, max_tokens, vocab_size, check_prompt_id)
    except SnapshotError:
        raise
    except Exception as exc:  # a well-formed file from a buggy writer: say where it broke
        raise SnapshotError(f"{path}: malformed body: {type(exc).__name__}: {exc}") from None


def _encode_store(store: TrajectoryStore) -> dict[str, Any]:
    return {
        "config": {
            "max_tokens": store.max_tokens,
            "samples_per_prompt": store.samples_per_prompt,
            "page_size": store.page_size,
        },
        "counters": _counters_of(store),
        "dtypes": DTYPES,
        "prompts": [encode_prompt(store.tree, prompt_id, entry) for prompt_id, entry in store.stored_prompts()],
    }


def _counters_of(store: TrajectoryStore) -> dict[str, int]:
    stats = store.stats()
    return {name: getattr(stats, name) for name in StoreCounters().as_dict()}


def _decode_store(body: dict[str, Any], format_version: int, max_tokens, vocab_size, check_prompt_id) -> LoadedSnapshot:
    if not isinstance(body, dict) or body.get("dtypes") != DTYPES:
        raise SnapshotError("snapshot body has unknown layout or dtypes")
    config = body["config"]
    budget = config["max_tokens"] if max_tokens == SAVED else max_tokens
    store = TrajectoryStore(budget, config["samples_per_prompt"], config["page_size"])
    dropped: list[tuple[str, str]] = []
    prompts = body["prompts"]
    for prompt in prompts:
        responses = decode_prompt(prompt, format_version)
        why = _refusal(prompt["id"], responses, vocab_size, check_prompt_id)
        if why is None:
            try:
                store.put_digest(prompt["id"], prompt["digest"], responses)
            except (TypeError, ValueError) as exc:
                why = str(exc)
        if why is not None:
            dropped.append((str(prompt["id"]), why))
    num_evicted = len(prompts) - len(dropped) - len(store)
    store.restore_counters(StoreCounters(**body["counters"]))
    return LoadedSnapshot(store, config["max_tokens"], len(prompts), dropped, num_evicted)


def _refusal(prompt_id: Any, responses: list[Response], vocab_size: int | None, check_prompt_id) -> str | None:
    """Why a decoded prompt must not be loaded (None: load it)."""
    if check_prompt_id is not None:
        try:
            check_prompt_id(prompt_id)
        except (TypeError, ValueError) as exc:
            return str(exc)
    if vocab_size is not None:
        for index, response in enumerate(responses):
            if len(response.token_ids) and int(response.token_ids.max()) >= vocab_size:
                bad = int(response.token_ids.max())
                return f"sample {index} has token id {bad} outside the vocabulary [0, {vocab_size})"
    return None


def content_digest(store: TrajectoryStore) -> str:
    """sha256 of the store's config and contents (prompts, prompt digests, every sample's arrays),
    independent of counters, LRU order and locks. Reads the store only."""
    h = hashlib.sha256()
    h.update(repr((store.max_tokens, store.samples_per_prompt, store.page_size)).encode())
    for prompt_id, entry in sorted(store.stored_prompts(), key=lambda item: item[0]):
        h.update(b"\x00P" + prompt_id.encode("utf-8", "surrogatepass") + b"\x00" + entry.digest)
        for draft in store.samples(prompt_id):
            h.update(b"\x00S" + np.ascontiguousarray(draft.token_ids, "<i4").tobytes())
            h.update(b"\x00L" + np.ascontiguousarray(draft.logprobs, "<f4").tobytes())
            if draft.versions is not None:
                h.update(b"\x00V" + np.ascontiguousarray(draft.versions, "<i4").tobytes())
    return h.hexdigest()
