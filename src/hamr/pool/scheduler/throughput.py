"""Throughput per (executable, architecture), learned from completed runs.

Each completed run reports its latency; the model keeps an exponential moving average of
runs per second. `max_throughput` ranks architectures by it, which is what makes the
policy heterogeneity-aware (Gavel, OSDI'20): the same job can be fastest on a different
architecture than the next job.
"""

from __future__ import annotations

import threading


class ThroughputModel:
    def __init__(self, smoothing: float = 0.2) -> None:
        self.smoothing = smoothing
        self._rates: dict[tuple[str, str], tuple[float, int]] = {}  # -> (runs/s, samples)
        self._lock = threading.Lock()

    def observe(self, executable: str, architecture: str, latency_s: float) -> None:
        if latency_s <= 0:
            return
        rate = 1.0 / latency_s
        with self._lock:
            old = self._rates.get((executable, architecture))
            if old is None:
                self._rates[(executable, architecture)] = (rate, 1)
            else:
                self._rates[(executable, architecture)] = (old[0] + self.smoothing * (rate - old[0]), old[1] + 1)

    def set(self, executable: str, architecture: str, rate: float) -> None:
        """A known throughput (runs or steps per second), e.g. from a benchmark."""
        with self._lock:
            self._rates[(executable, architecture)] = (float(rate), 1)

    def rate(self, executable: str, architecture: str) -> float | None:
        entry = self._rates.get((executable, architecture))
        return None if entry is None else entry[0]

    def typical_share(self) -> dict[str, float]:
        """Per architecture, the mean over every measured executable of its rate there divided by its
        best rate anywhere: how good the architecture is for a typical job (1.0: best for all)."""
        with self._lock:
            best: dict[str, float] = {}
            for (exe, _), (rate, _) in self._rates.items():
                best[exe] = max(best.get(exe, 0.0), rate)
            shares: dict[str, list[float]] = {}
            for (exe, arch), (rate, _) in self._rates.items():
                if best[exe] > 0:
                    shares.setdefault(arch, []).append(rate / best[exe])
        return {arch: sum(v) / len(v) for arch, v in shares.items()}

    def rates(self, executable: str) -> dict[str, float]:
        with self._lock:
            return {arch: rate for (exe, arch), (rate, _) in self._rates.items() if exe == executable}
