"""Jobs as Gavel's simulations generate them (Narayanan et al., OSDI 2020), from its throughputs file.

Per job, one random stream (seed + 2) draws, in this order:
- the scale factor: 1, 2, 4 or 8 GPUs with probability 0.70, 0.10, 0.15, 0.05 (single-GPU jobs unless `multi_gpu`);
- the duration: 60 * 10**U(1.5, 3) s with probability 0.8, else 60 * 10**U(3, 4) s;
- the job type: uniform over the single-GPU types of the file, drawn again until it has a measurement at that scale.

Its steps are the duration times its throughput on a V100. Arrivals are a Poisson process of `rate` jobs per hour
(a second stream, seed + 3), the first at t = 0.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

SCALES = ((0.70, 1), (0.80, 2), (0.95, 4), (1.0, 8))  # cumulative probability -> GPUs
REFERENCE_TYPE = "v100"


@dataclass(frozen=True)
class GavelJob:
    id: int
    kind: str
    scale: int
    steps: float
    arrival: float  # seconds


def _scale(rng: random.Random) -> int:
    r = rng.random()
    return next(scale for bound, scale in SCALES if r < bound)


def _duration(rng: random.Random) -> float:
    if rng.random() >= 0.8:
        return 60 * 10 ** rng.uniform(3, 4)
    return 60 * 10 ** rng.uniform(1.5, 3)


def stream(
    throughputs: dict[str, dict[tuple[str, int], float]], rate: float, seed: int, multi_gpu: bool
) -> Iterator[GavelJob]:
    """Jobs arriving at `rate` jobs per hour, without end (a simulation takes what it needs)."""
    reference = throughputs[REFERENCE_TYPE]
    kinds = sorted(kind for kind, n in reference if n == 1)
    draw, arrivals = random.Random(seed + 2), random.Random(seed + 3)
    now = 0.0
    for i in itertools.count():
        scale = _scale(draw) if multi_gpu else 1
        duration = _duration(draw)
        kind = draw.choice(kinds)
        while (kind, scale) not in reference:
            kind = draw.choice(kinds)
        if i:
            now += -math.log(1.0 - arrivals.random()) * 3600.0 / rate
        yield GavelJob(i, kind, scale, duration * reference[(kind, scale)], now)


def generate(throughputs: dict, count: int, rate: float, seed: int, multi_gpu: bool) -> list[GavelJob]:
    """The first `count` jobs of `stream`."""
    return list(itertools.islice(stream(throughputs, rate, seed, multi_gpu), count))
