"""Groups of ``vigil`` sub-commands, each in a module of its own; :mod:`vigil.cli` adds them."""

# The evidence commands live in three modules that add to one group: importing them registers them.
from vigil.commands import evidence_export, evidence_reports
from vigil.commands.evidence import evidence_app
from vigil.commands.lockdown import incident_app, lockdown_app

__all__ = ["evidence_app", "evidence_export", "evidence_reports", "incident_app", "lockdown_app"]
