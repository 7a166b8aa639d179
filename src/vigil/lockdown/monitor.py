"""The watch: measures every site's rules, relaxes calm sites, escalates unacknowledged pages,
watches the urgent queue and prunes old signals. One ``tick`` does all of it.

Safe in several processes at once: each site's state row is locked while it changes, and each
incident tier is claimed by a conditional update, so ticks running side by side page no one twice.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select

from vigil.actions import incidents
from vigil.clock import Clock
from vigil.config import Settings
from vigil.lockdown import control, signals
from vigil.store.database import Database
from vigil.store.models import Site

log = logging.getLogger(__name__)

_PRUNE_INTERVAL = timedelta(minutes=1)


class LockdownMonitor:
    def __init__(self, database: Database, settings: Settings, clock: Clock) -> None:
        self._database = database
        self._settings = settings
        self._clock = clock
        self._last_tick: datetime | None = None
        self._last_prune: datetime | None = None

    def tick_if_due(self) -> int:
        """For a worker that polls often: a tick at most every ``lockdown.evaluate_seconds``."""
        now = self._clock.now()
        interval = timedelta(seconds=self._settings.lockdown.evaluate_seconds)
        if self._last_tick is not None and now - self._last_tick < interval:
            return 0
        return self.tick()

    def tick(self) -> int:
        """Do everything due now; returns how many levels changed and pages were written.

        Each step looks first in a read-only transaction and takes the write lock only when
        it has something to write: on SQLite, a watch holding the lock every few seconds would
        make every other writer wait.
        """
        now = self._clock.now()
        self._last_tick = now
        settings = self._settings
        changed = 0
        for site_id in self._site_ids():
            with self._database.session() as session:
                lockdown_due = control.needs_evaluation(session, settings, site_id, now)
                urgent_due = incidents.urgent_queue_changed(session, settings.paging, site_id, now)
            if not (lockdown_due or urgent_due):
                continue
            with self._database.write_session() as session:
                site = session.get(Site, site_id)
                if site is None:
                    continue
                if lockdown_due:
                    changed += control.evaluate_site(session, settings, site, now)
                if urgent_due:
                    incidents.watch_urgent_queue(session, settings.paging, site, now)
        with self._database.session() as session:
            incidents_due = incidents.work_due(session, settings.paging, now)
        if incidents_due:
            with self._database.write_session() as session:
                changed += incidents.escalate_due(session, settings.paging, now)
                incidents.resolve_quiet(session, settings.paging, now)
        self._prune(now)
        return changed

    def _prune(self, now: datetime) -> None:
        """Forget signals no window reaches, at most once a minute."""
        if self._last_prune is not None and now - self._last_prune < _PRUNE_INTERVAL:
            return
        self._last_prune = now
        horizon = now - timedelta(minutes=self._settings.lockdown.longest_window_minutes + 5)
        with self._database.session() as session:
            if not signals.any_before(session, horizon):
                return
        with self._database.write_session() as session:
            signals.prune(session, horizon)

    def _site_ids(self) -> list[int]:
        # Every site: a quiet one may still have a level to relax, a schedule starting or an
        # urgent item waiting. A deployment has a handful of sites, not thousands.
        with self._database.session() as session:
            return list(session.scalars(select(Site.id).order_by(Site.id)).all())
