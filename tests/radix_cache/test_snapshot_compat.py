"""Snapshots written in format version 1 (per-token versions in the node table) still load.

The fixtures under ``fixtures/`` were written by ``save_snapshot`` of format version 1 (commit
54a2e67) from the stores ``compat_store(page_size)`` builds; loading one must give exactly the
store that the same puts build today (same drafts, budget, counters, LRU order).
"""

from __future__ import annotations

from pathlib import Path

import msgpack
import numpy as np
import pytest

from radix_cache.responses import Response
from radix_cache.snapshot import content_digest, load_snapshot, read_snapshot, save_snapshot
from radix_cache.trajectory_store import TrajectoryStore

FIXTURES = Path(__file__).parent / "fixtures"


def _resp(tokens, versions=None) -> Response:
    token_ids = np.array(tokens, dtype=np.int32)
    logprobs = -(np.arange(len(tokens), dtype=np.float32) + 1) / (len(tokens) + 3)
    return Response(token_ids, logprobs, None if versions is None else np.array(versions, dtype=np.int32))


def compat_store(page_size: int) -> TrajectoryStore:
    """Uniform and mixed per-token versions, prefixes shared across versions, tails, empties."""
    store = TrajectoryStore(max_tokens=200, samples_per_prompt=5, page_size=page_size)
    base = list(range(1, 13))
    store.put("uniform", [1, 2], [_resp(base, [3] * 12), _resp(base[:7] + [50, 51], [3] * 9), _resp([], [])])
    store.put("mixed", [3], [
        _resp(base, [1] * 4 + [2] * 8),
        _resp(base[:9] + [60, 61, 62], [5] * 12),  # shares 9 tokens with an older-versioned sample
        _resp(base[:2] + [70], [7, 8, 9]),
        _resp([80, 81, 82, 83, 84], [0, 1, 0, 1, 0]),
    ])
    store.put("plain", [4, 5], [_resp(base[:10]), _resp(base[:5] + [90, 91, 92, 93])])
    store.lookup("uniform", [1, 2], 2)  # LRU order: mixed, plain, uniform
    store.lookup("missing", [9], 1)
    return store


@pytest.mark.parametrize("page_size", [1, 4])
def test_format_1_fixture_loads_as_the_same_store(page_size, dump_store, check):
    path = FIXTURES / f"store_v1_page{page_size}.snap"
    assert msgpack.unpackb(path.read_bytes(), raw=False)["format_version"] == 1
    loaded = load_snapshot(path)
    expected = compat_store(page_size)
    assert dump_store(loaded)[:-1] == dump_store(expected)[:-1]  # all but the tree's access ticks
    assert content_digest(loaded) == content_digest(expected)
    check(loaded.tree)
    checked = read_snapshot(path, vocab_size=100)  # the checked load works on old files too
    assert [pid for pid, _ in checked.dropped] == [] and checked.num_prompts_saved == 3


@pytest.mark.parametrize("page_size", [1, 4])
def test_format_1_fixture_resaves_in_the_current_format(tmp_path, page_size, dump_store):
    loaded = load_snapshot(FIXTURES / f"store_v1_page{page_size}.snap")
    save_snapshot(loaded, tmp_path / "new.snap")
    again = load_snapshot(tmp_path / "new.snap")
    assert dump_store(again)[:-1] == dump_store(loaded)[:-1]


if __name__ == "__main__":  # how the fixtures were made (with the format-version-1 code)
    for size in (1, 4):
        save_snapshot(compat_store(size), FIXTURES / f"store_v1_page{size}.snap")
