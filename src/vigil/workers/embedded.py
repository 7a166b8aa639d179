"""Background work inside the server process: the embedded default, no broker needed.

Jobs are safe to run in several processes at once (outbox rows are leased), so running one of
these in every API process duplicates no work.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

Job = Callable[[], int]  # does what is due; returns how much it did


class EmbeddedWorker:
    def __init__(self, jobs: list[Job], poll_seconds: float) -> None:
        self._jobs = jobs
        self._poll_seconds = poll_seconds
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vigil-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """Run the jobs now rather than at the next poll (new work was just written)."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.is_set():
            busy = False
            for job in self._jobs:
                try:
                    busy = bool(job()) or busy
                except Exception:
                    log.exception("background job failed; retrying at the next poll")
            if not busy:
                self._wake.wait(self._poll_seconds)
                self._wake.clear()
