"""Groups of ``vigil`` sub-commands, each in a module of its own; :mod:`vigil.cli` adds them."""

# The evidence commands live in four modules that add to one group: importing them registers them
# (holds first: `vigil evidence --help` lists the sub-groups in the order they were added).
from vigil.commands import evidence_holds  # isort: skip
from vigil.commands import evidence_export, evidence_reports
from vigil.commands.evidence import evidence_app
from vigil.commands.lockdown import incident_app, lockdown_app

__all__ = [
    "evidence_app",
    "evidence_export",
    "evidence_holds",
    "evidence_reports",
    "incident_app",
    "lockdown_app",
]
