"""Timing several cases in one loop, round-robin, so a noisy machine slows them all alike."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Timing:
    """Wall-clock samples of one case, in seconds."""

    samples: tuple[float, ...]

    @property
    def count(self) -> int:
        return len(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def p90(self) -> float:
        return statistics.quantiles(self.samples, n=10, method="inclusive")[-1]

    @property
    def p99(self) -> float:
        return statistics.quantiles(self.samples, n=100, method="inclusive")[-1]


def measure_round_robin(
    cases: Mapping[str, Callable[[], object]], *, repeat: int, warmup: int
) -> dict[str, Timing]:
    """Time every case ``repeat`` times with ``time.perf_counter``, after ``warmup`` rounds.

    Each round runs every case once, starting one case later than the round before: a slow spell
    of a shared machine then lands on every case, not on whichever happened to run during it, and
    ratios between cases of one round stay meaningful.
    """
    names = list(cases)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_number in range(warmup + repeat):
        # Collect between rounds so that one case does not pay for another's garbage.
        gc.collect()
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            call = cases[name]
            started = time.perf_counter()
            call()
            elapsed = time.perf_counter() - started
            if round_number >= warmup:
                samples[name].append(elapsed)
    return {name: Timing(tuple(values)) for name, values in samples.items()}


def milliseconds(seconds: float) -> str:
    """A time as the tables print it: three decimals under a millisecond, two above."""
    value = seconds * 1000
    return f"{value:.3f}" if value < 1 else f"{value:.2f}"
