"""Attack detection: signals over time windows, graduated lockdown levels, and their expiry.

Submodules are imported directly (``vigil.lockdown.levels``...): the settings import the
small vocabulary in :mod:`vigil.lockdown.kinds`, so this package imports nothing itself.
"""
