"""The one database access layer: engine, sessions and migrations, for SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from vigil.config import Settings
from vigil.errors import ScreeningUnavailable

_BEGIN_OPTION = "vigil_sqlite_begin"


class Database:
    """Engine plus session factory. ``session()`` for reads and write-first transactions;
    ``write_session()`` where a transaction reads and then writes what it read."""

    def __init__(self, url: str, *, lock_timeout_seconds: float = 10.0) -> None:
        self.url = url
        self.engine = _create_engine(url, lock_timeout_seconds)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        """The database the settings point at (not yet migrated)."""
        return cls(
            settings.resolved_database_url,
            lock_timeout_seconds=settings.database_lock_timeout_seconds,
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction committed when the block ends, rolled back if it raises."""
        with self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def write_session(self) -> Iterator[Session]:
        """Like ``session()``, but takes SQLite's write lock up front, so a read-then-write
        transaction waits its turn instead of failing when another writer got there first."""
        with self._sessions() as session, session.begin():
            # The option is read by the "begin" listener as the connection starts its transaction.
            session.connection(execution_options={_BEGIN_OPTION: "BEGIN IMMEDIATE"})
            yield session

    def ping(self) -> None:
        """Raise :class:`ScreeningUnavailable` unless a screening could be recorded now.

        On SQLite this takes the write lock (and lets go): reads keep working while another
        process holds the lock, but no screening could be written.
        """
        try:
            with self._sessions() as session:
                session.connection(execution_options={_BEGIN_OPTION: "BEGIN IMMEDIATE"})
                session.execute(text("SELECT 1"))
                session.rollback()
        except SQLAlchemyError as error:
            raise ScreeningUnavailable(f"the database cannot be written: {error}") from error

    def migrate(self) -> None:
        """Bring the schema to the newest migration (a no-op when it is there already)."""
        with self.engine.begin() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def dispose(self) -> None:
        self.engine.dispose()


def alembic_config() -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(resources.files("vigil.store") / "migrations"))
    return config


def _create_engine(url: str, lock_timeout_seconds: float) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(
        url, connect_args={"check_same_thread": False, "timeout": lock_timeout_seconds}
    )
    busy_timeout_ms = int(lock_timeout_seconds * 1000)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin (see "begin").
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
        cursor.execute("PRAGMA synchronous=NORMAL")  # durable across crashes of the process
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql(connection.get_execution_options().get(_BEGIN_OPTION, "BEGIN"))

    return engine
