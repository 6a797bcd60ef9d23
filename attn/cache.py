"""A process-wide result cache bounded in entries AND bytes, with one computation per key.

Streamlit's st.cache_data bounds entries (max_entries) and age (ttl), but not bytes, and
a class of 30 asking for 30 different 512-token attention maps (9 MB each) would grow it
without limit. Values are stored pickled, as st.cache_data stores them: the byte count
is exact (the pickle's length), and every caller gets its own copy, so a page that edits
a figure cannot change what the next user sees.

Concurrent callers of the same key wait for the first one's result instead of computing
it again ("single flight"): a class pressing the same button runs the model once.
"""

from __future__ import annotations

import pickle
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    too_large: int = 0  # results returned but not kept (over the per-value limit)


@dataclass
class _Pending:
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    blob: bytes | None = None


class BoundedCache:
    """LRU over pickled values: at most max_entries entries and max_bytes bytes in all;
    a value whose pickle exceeds max_value_bytes is computed and returned but not kept."""

    def __init__(self, max_entries: int, max_bytes: int, max_value_bytes: int | None = None):
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("A cache needs room for at least one entry and one byte.")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_value_bytes = min(max_value_bytes or max_bytes, max_bytes)
        self._lock = threading.Lock()
        self._data: OrderedDict[Hashable, bytes] = OrderedDict()
        self._pending: dict[Hashable, _Pending] = {}
        self.bytes = 0
        self.stats = CacheStats()

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def __contains__(self, key) -> bool:
        with self._lock:
            return key in self._data

    def get_or_compute(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """The cached value for key (a fresh copy), computing it once if absent."""
        with self._lock:
            blob = self._data.get(key)
            if blob is not None:
                self._data.move_to_end(key)
                self.stats.hits += 1
                return pickle.loads(blob)
            pending = self._pending.get(key)
            owner = pending is None
            if owner:
                pending = self._pending[key] = _Pending()
                self.stats.misses += 1
        if not owner:  # someone is computing this very key: wait for their result
            pending.done.wait()
            if pending.error is not None or pending.blob is None:
                return self.get_or_compute(key, compute)  # their run failed or was stopped: try ourselves
            with self._lock:
                self.stats.hits += 1
            return pickle.loads(pending.blob)
        try:
            value = compute()
            blob = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
            pending.blob = blob
            self._store(key, blob)
            return pickle.loads(blob)
        except BaseException as e:  # noqa: BLE001  (Streamlit stops a thread by raising; waiters must wake)
            pending.error = e
            raise
        finally:
            with self._lock:
                self._pending.pop(key, None)
            pending.done.set()

    def _store(self, key, blob: bytes) -> None:
        with self._lock:
            if len(blob) > self.max_value_bytes:
                self.stats.too_large += 1
                return
            old = self._data.pop(key, None)
            if old is not None:
                self.bytes -= len(old)
            self._data[key] = blob
            self.bytes += len(blob)
            while len(self._data) > self.max_entries or self.bytes > self.max_bytes:
                _, evicted = self._data.popitem(last=False)
                self.bytes -= len(evicted)
                self.stats.evictions += 1
