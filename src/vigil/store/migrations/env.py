"""Alembic environment: migrations run on the connection Vigil hands over (``vigil.store``)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from vigil.store.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=target_metadata,
        # SQLite alters tables by copying them; batch mode writes migrations that way.
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:  # the alembic command line, for writing new migrations: VIGIL_DATABASE_URL decides
    import os

    url = os.environ.get("VIGIL_DATABASE_URL", "sqlite:///vigil-data/vigil.db")
    with create_engine(url).begin() as own_connection:
        _run(own_connection)
