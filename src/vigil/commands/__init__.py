"""Groups of ``vigil`` sub-commands, each in a module of its own; :mod:`vigil.cli` adds them."""

from vigil.commands.lockdown import incident_app, lockdown_app

__all__ = ["incident_app", "lockdown_app"]
