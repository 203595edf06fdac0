"""Rendered PNG bytes (and the colour indices they are drawn from), per server process.

Kept apart from the run stores: a rendering is derived from a run and is cheap to redo, so each
process caches its own, bounded by bytes, least recently used dropped first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol


class Sized(Protocol):
    @property
    def nbytes(self) -> int: ...


Rendered = bytes | Sized  # PNG bytes, or a layer's colour indices (render.LayerColours)


def _size(value: Rendered) -> int:
    return len(value) if isinstance(value, bytes) else value.nbytes


class RenderCache:
    """Rendered PNG bytes (and the colour indices they are drawn from) by key, least recently
    used dropped first beyond max_bytes.

    Thread-safe. Two requests for the same missing key may both render; the result is the same.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple, Rendered] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        """Whether key is cached now (not counted as a hit or a miss, not refreshed)."""
        with self._lock:
            return key in self._items

    def get(self, key: tuple) -> Any:
        with self._lock:
            data = self._items.get(key)
            if data is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return data

    def put(self, key: tuple, data: Rendered) -> None:
        size = _size(data)
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= _size(old)
            while self._items and self._bytes + size > self.max_bytes:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= _size(dropped)
            self._items[key] = data
            self._bytes += size

    def get_or_render(self, key: tuple, render: Callable[[], Any]) -> Any:
        """Cached value for key, else render() it (outside the lock) and keep it."""
        data = self.get(key)
        if data is None:
            data = render()
            self.put(key, data)
        return data
