"""Banks on the real runtime's database, made the way the API and command line make them."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

import pytest

from vigil.matching import admin, importer
from vigil.matching.banks import BankAction
from vigil.runtime import Runtime
from vigil.signals import HashType
from vigil.store.models import Bank

ACTOR = "test"

MakeBank = Callable[..., Bank]


def bank_with(
    runtime: Runtime,
    name: str,
    hash_type: HashType,
    action: BankAction = BankAction.BLOCK,
    values: Iterable[str] = (),
    *,
    threshold: int | None = None,
    enabled: bool = True,
) -> Bank:
    """Create a bank and add ``values`` to it; every value must be new and valid."""
    bank = admin.create_bank(
        runtime.database,
        runtime.settings.matching,
        name=name,
        hash_type=hash_type,
        action=action,
        threshold=threshold,
        enabled=enabled,
        description=None,
        actor=ACTOR,
    )
    values = list(values)
    if values:
        report = importer.import_values(runtime.database, name, values, actor=ACTOR)
        assert (report.added, report.bad_line_count) == (len(values), 0)
    return bank


@pytest.fixture
def make_bank(runtime: Runtime) -> MakeBank:
    """``make_bank(name, hash_type, action, values, threshold=..., enabled=...)``."""
    return functools.partial(bank_with, runtime)
