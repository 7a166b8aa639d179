"""How long a background delivery waits before trying again."""

from __future__ import annotations

import random


def backoff_seconds(attempts: int, base_seconds: float, max_seconds: float) -> float:
    """Delay before the next attempt: doubling from the base, capped, with +-20 % jitter so a
    receiver coming back up is not hit by every retry at once."""
    delay = min(base_seconds * 2 ** (attempts - 1), max_seconds)
    return float(delay * random.uniform(0.8, 1.2))
