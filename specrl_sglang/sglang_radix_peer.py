"""SGLang's own RadixCache behind the method names of ``radix_cache.RadixCache``.

Used only as a reference peer: by the differential test and by ``specrl-sglang bench tree``.
SGLang (and torch) are imported lazily, when a peer is built; ``radix_cache`` never imports this.
Built with ``RadixCache.create_simulated`` and a no-op allocator: no memory pool, CPU only.
"""

from __future__ import annotations

import contextlib
import sys
from array import array
from collections.abc import Hashable
from typing import Any, NamedTuple

import numpy as np


class PeerMatch(NamedTuple):
    prefix_len: int
    last_node: Any  # sglang TreeNode


class PeerInsert(NamedTuple):
    prefix_len: int
    last_node: Any


class _NullAllocator:
    """The two members SGLang's RadixCache touches on its allocator: ``device``, ``free_segment``."""

    device = "cpu"

    def free_segment(self, indices: Any, start_pos: int = 0) -> None:
        return None


def to_peer_key(token_ids: Any) -> array:
    """Token ids as SGLang keys them: ``array('q')`` (int64)."""
    if isinstance(token_ids, array):
        return token_ids
    key = array("q")
    key.frombytes(np.ascontiguousarray(token_ids, dtype="<i8").tobytes())
    return key


def to_peer_value(value: Any) -> Any:
    """A numpy payload as the torch tensor SGLang stores (shares memory); None stays None."""
    if value is None:
        return None
    import torch

    if isinstance(value, torch.Tensor):
        return value
    return torch.from_numpy(np.ascontiguousarray(value))


class SGLangRadixPeer:
    """``insert / match_prefix / evict / inc_lock_ref / dec_lock_ref / sizes`` over SGLang's tree.

    Keys may be numpy arrays, lists or ``array('q')``; pre-convert with :func:`to_peer_key` and
    :func:`to_peer_value` to keep conversion out of timings. ``value=None`` makes SGLang store the
    token ids themselves as the payload.
    """

    def __init__(self, page_size: int = 1) -> None:
        # SGLang's import logs warnings to stdout; send them to stderr so stdout stays clean
        # (e.g. for ``bench tree --json``). Handlers created meanwhile keep pointing at stderr.
        with contextlib.redirect_stdout(sys.stderr):
            from sglang.srt.mem_cache import base_prefix_cache, radix_cache

        self._params = base_prefix_cache
        self._radix_key = radix_cache.RadixKey
        self.cache = radix_cache.RadixCache.create_simulated(
            mock_allocator=_NullAllocator(), page_size=page_size
        )
        self.page_size = page_size

    def reset(self) -> None:
        self.cache.reset()

    def insert_path(self, key: Any, value: Any = None, extra_key: Hashable | None = None) -> PeerInsert:
        params = self._params.InsertParams(
            key=self._radix_key(to_peer_key(key), extra_key), value=to_peer_value(value)
        )
        result = self.cache.insert(params)
        return PeerInsert(result.prefix_len, result.last_device_node)

    def insert(self, key: Any, value: Any = None, extra_key: Hashable | None = None) -> int:
        return self.insert_path(key, value, extra_key).prefix_len

    def match_prefix(self, key: Any, extra_key: Hashable | None = None) -> PeerMatch:
        params = self._params.MatchPrefixParams(key=self._radix_key(to_peer_key(key), extra_key))
        result = self.cache.match_prefix(params)
        return PeerMatch(result.device_prefix_len, result.last_device_node)

    def evict(self, num_tokens: int) -> int:
        return self.cache.evict(self._params.EvictParams(num_tokens=num_tokens)).num_tokens_evicted

    def inc_lock_ref(self, node: Any) -> int:
        return self.cache.inc_lock_ref(node).delta

    def dec_lock_ref(self, node: Any) -> int:
        return self.cache.dec_lock_ref(node).delta

    def path_value(self, node: Any) -> np.ndarray:
        """Payload from the root down to ``node``, as numpy."""
        return self.cache.path_device_indices(node).numpy()

    def evictable_size(self) -> int:
        return self.cache.evictable_size()

    def protected_size(self) -> int:
        return self.cache.protected_size()

    def total_size(self) -> int:
        return self.cache.total_size()

    def pretty_print(self) -> None:
        self.cache.pretty_print()
