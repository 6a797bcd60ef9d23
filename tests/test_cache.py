"""attn.cache.BoundedCache: LRU bounded in entries and bytes, copies per caller, one computation per key."""

import pickle
import threading
import time

import numpy as np
import pytest

from attn.cache import BoundedCache


def blob_len(value) -> int:
    return len(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


def test_entry_limit_evicts_least_recently_used():
    c = BoundedCache(max_entries=2, max_bytes=10**6)
    c.get_or_compute("a", lambda: 1)
    c.get_or_compute("b", lambda: 2)
    c.get_or_compute("a", lambda: pytest.fail("a is cached"))  # a is now the most recent
    c.get_or_compute("c", lambda: 3)
    assert "a" in c and "c" in c and "b" not in c
    assert len(c) == 2 and c.stats.evictions == 1


def test_byte_limit_is_exact_and_never_exceeded():
    arr = np.zeros(1000, dtype=np.float64)  # 8000 bytes of data
    size = blob_len(arr)
    c = BoundedCache(max_entries=100, max_bytes=3 * size)
    for i in range(10):
        c.get_or_compute(i, lambda: np.zeros(1000))
        assert c.bytes <= 3 * size
    assert len(c) == 3 and c.bytes == 3 * size
    assert [k for k in range(10) if k in c] == [7, 8, 9]


def test_a_value_over_the_per_value_limit_is_returned_but_not_kept():
    c = BoundedCache(max_entries=10, max_bytes=10**6, max_value_bytes=1000)
    value = c.get_or_compute("big", lambda: np.ones(1000))
    assert value.shape == (1000,) and "big" not in c and c.bytes == 0 and c.stats.too_large == 1


def test_each_caller_gets_its_own_copy():
    c = BoundedCache(max_entries=4, max_bytes=10**6)
    first = c.get_or_compute("k", lambda: np.arange(5))
    first[0] = 99
    assert c.get_or_compute("k", lambda: None)[0] == 0


def test_concurrent_callers_of_one_key_compute_it_once():
    c = BoundedCache(max_entries=4, max_bytes=10**6)
    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.3)
        return "result"

    out = []
    threads = [threading.Thread(target=lambda: out.append(c.get_or_compute("k", slow))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == ["result"] * 8 and len(calls) == 1
    assert c.stats.misses == 1 and c.stats.hits == 7


def test_a_failed_computation_is_not_cached_and_waiters_try_again():
    c = BoundedCache(max_entries=4, max_bytes=10**6)
    started = threading.Event()
    results = []

    def fail():
        started.set()
        time.sleep(0.2)
        raise ValueError("boom")

    def first():
        with pytest.raises(ValueError):
            c.get_or_compute("k", fail)

    t = threading.Thread(target=first)
    t.start()
    started.wait()
    results.append(c.get_or_compute("k", lambda: "second try"))  # waits for the failure, then computes
    t.join()
    assert results == ["second try"] and "k" in c


def test_bad_bounds_are_refused():
    with pytest.raises(ValueError):
        BoundedCache(0, 10)
    with pytest.raises(ValueError):
        BoundedCache(10, 0)
