"""The HTTP API: thin routes over the screening path."""

from vigil.api.app import create_app

__all__ = ["create_app"]
