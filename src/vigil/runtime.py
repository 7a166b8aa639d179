"""One process's Vigil: settings, database, index, stores and services, wired once."""

from __future__ import annotations

from dataclasses import dataclass

from vigil.actions.images import ImageStore
from vigil.clock import Clock, SystemClock
from vigil.config import Settings
from vigil.evidence.vault import Vault
from vigil.matching.matcher import Matcher
from vigil.metrics import Metrics
from vigil.screening import Screener, ScreeningService
from vigil.signals.classifiers import ClassifierSuite
from vigil.store import sites
from vigil.store.database import Database

BOOTSTRAP_SITE = "default"


@dataclass
class Runtime:
    settings: Settings
    database: Database
    matcher: Matcher
    images: ImageStore
    metrics: Metrics
    classifiers: ClassifierSuite
    screener: Screener
    screening: ScreeningService
    clock: Clock
    vault: Vault

    @classmethod
    def open(
        cls, settings: Settings, *, migrate: bool = True, clock: Clock | None = None
    ) -> Runtime:
        """Create the data folder if needed, bring the schema up to date, wire the services.

        Models are loaded by ``classifiers.load()`` (the server does it at start-up), or else on
        the first image: commands that screen nothing never pay for them.
        """
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        database = Database.from_settings(settings)
        if migrate:
            database.migrate()
        matcher = Matcher(database, settings.matching, settings.pdq_index_dir)
        images = ImageStore(settings.data_dir / "images")
        metrics = Metrics(database)
        classifiers = ClassifierSuite.from_settings(settings)
        screener = Screener(settings, matcher, classifiers=classifiers)
        clock = clock or SystemClock()
        vault = Vault(settings, database)
        screening = ScreeningService(screener, database, images, metrics, vault, clock)
        return cls(
            settings,
            database,
            matcher,
            images,
            metrics,
            classifiers,
            screener,
            screening,
            clock,
            vault,
        )

    def close(self) -> None:
        self.classifiers.close()
        self.database.dispose()


def ensure_bootstrap_key(database: Database) -> str | None:
    """On a fresh instance, an admin key for the ``default`` site; None once any key exists."""
    with database.write_session() as session:
        if sites.count_api_keys(session):
            return None
        site = sites.get_or_create_site(session, BOOTSTRAP_SITE)
        _, plain = sites.create_api_key(session, site, sites.Role.ADMIN)
        return plain
