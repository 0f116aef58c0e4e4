"""WorkerRouter: deterministic, balanced, and stable when a worker is added or removed."""

import subprocess
import sys
from collections import Counter

import pytest

from specrl_sglang.prompt_identity import prompt_key
from specrl_sglang.worker_routing import WorkerRouter

URLS = [f"http://127.0.0.1:{30000 + i}" for i in range(5)]
KEYS = [prompt_key(f"label-{i}", [i, i + 1, i + 2]) for i in range(6000)]


def assignment(router):
    return {k: router.worker(k) for k in KEYS}


def test_every_request_of_a_prompt_goes_to_one_worker():
    router = WorkerRouter(URLS[:3])
    for key in KEYS[:200]:
        assert len({router.pick(key) for _ in range(5)}) == 1
    assert WorkerRouter(URLS[:1]).pick("anything") == 0


def test_routing_is_the_same_in_another_process():
    code = ("from specrl_sglang.worker_routing import WorkerRouter; "
            f"r = WorkerRouter({URLS[:3]!r}); print(','.join(str(r.pick(k)) for k in {KEYS[:50]!r}))")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    router = WorkerRouter(URLS[:3])
    assert other == ",".join(str(router.pick(k)) for k in KEYS[:50])


@pytest.mark.parametrize("num_workers", [2, 3, 5])
def test_load_is_balanced(num_workers):
    counts = Counter(assignment(WorkerRouter(URLS[:num_workers])).values())
    expected = len(KEYS) / num_workers
    assert len(counts) == num_workers
    # binomial std is sqrt(K p (1-p)) <= 39 here; 5 sigma
    assert max(abs(c - expected) for c in counts.values()) < 5 * (expected * (1 - 1 / num_workers)) ** 0.5


def test_removing_a_worker_moves_only_its_own_keys():
    before = assignment(WorkerRouter(URLS[:4]))
    removed = URLS[2]
    after = assignment(WorkerRouter([u for u in URLS[:4] if u != removed]))
    moved = [k for k in KEYS if before[k] != after[k]]
    assert moved and all(before[k] == removed for k in moved)
    assert len(moved) == sum(1 for k in KEYS if before[k] == removed)  # every one of its keys, no other
    assert len({after[k] for k in moved}) == 3  # spread over the survivors, not dumped on one


def test_adding_a_worker_moves_only_keys_to_it_and_about_one_in_n_plus_one():
    before = assignment(WorkerRouter(URLS[:3]))
    after = assignment(WorkerRouter(URLS[:4]))
    moved = [k for k in KEYS if before[k] != after[k]]
    assert all(after[k] == URLS[3] for k in moved)
    assert abs(len(moved) / len(KEYS) - 1 / 4) < 0.03


def test_worker_order_does_not_matter():
    a = assignment(WorkerRouter(URLS[:4]))
    b = assignment(WorkerRouter(list(reversed(URLS[:4]))))
    assert a == b


@pytest.mark.parametrize("workers, match", [([], "at least one"), (["a", "a"], "distinct"), (["a", ""], "non-empty"),
                                            (["a", 3], "non-empty strings")])
def test_bad_worker_lists_are_refused(workers, match):
    with pytest.raises(ValueError, match=match):
        WorkerRouter(workers)
