"""How long a background delivery waits before trying again."""

from __future__ import annotations

import random
from datetime import datetime, timedelta


def backoff_seconds(attempts: int, base_seconds: float, max_seconds: float) -> float:
    """Delay before the next attempt: doubling from the base, capped, with +-20 % jitter so a
    receiver coming back up is not hit by every retry at once."""
    delay = min(base_seconds * 2 ** (attempts - 1), max_seconds)
    return float(delay * random.uniform(0.8, 1.2))


def next_attempt_at(
    attempts: int, max_attempts: int, base_seconds: float, max_seconds: float, now: datetime
) -> datetime | None:
    """When to try again after ``attempts`` failed ones; None once they are used up."""
    if attempts >= max_attempts:
        return None
    return now + timedelta(seconds=backoff_seconds(attempts, base_seconds, max_seconds))
