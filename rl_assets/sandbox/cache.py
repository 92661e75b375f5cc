"""Result cache of a read-only world database."""

from __future__ import annotations

import threading
from collections import OrderedDict

from rl_assets.sandbox.results import QueryResult

__all__ = ["ResultCache"]


class ResultCache:
    """A thread-safe LRU cache of query results for one read-only database.

    The world is immutable, so the same query on the same table always gives the same result:
    ok results and validation errors are cached; timeouts and resource errors (which depend on
    the moment) are not. RL rollouts repeat queries a lot (a GRPO group asks the same question
    many times), and a hit skips parsing and execution entirely.
    """

    def __init__(self, max_entries: int = 50_000):
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0
        self._data: OrderedDict[tuple, QueryResult] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> QueryResult | None:
        with self._lock:
            result = self._data.get(key)
            if result is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return result

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.hits = self.misses = 0

    def put(self, key: tuple, result: QueryResult) -> None:
        if result.error_kind in _UNCACHEABLE:
            return
        with self._lock:
            self._data[key] = result
            self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)


_UNCACHEABLE = frozenset({"timeout", "resource_limit", "execution_error"})
