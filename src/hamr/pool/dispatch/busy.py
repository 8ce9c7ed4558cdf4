"""Per-device busy time, summed in memory and written to the registry about once a second."""

from __future__ import annotations

import threading
import time
from collections import Counter

from hamr.pool.registry import Registry

FLUSH_EVERY_S = 1.0


class BusyTime:
    def __init__(self, registry: Registry):
        self.registry = registry
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._pending: Counter = Counter()  # device uuid -> seconds not yet written
        self._flushed = time.monotonic()

    def add(self, device: str, seconds: float) -> None:
        with self._lock:
            self._pending[device] += seconds

    def flush(self, force: bool = True) -> None:
        if not force and time.monotonic() - self._flushed < FLUSH_EVERY_S:
            return
        with self._flushing:  # a flush that returns has written everything added before it
            with self._lock:
                pending, self._pending = dict(self._pending), Counter()
            self._flushed = time.monotonic()
            self.registry.add_busy_seconds(pending)


__all__ = ["BusyTime"]
