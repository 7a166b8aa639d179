"""Vigil screens every uploaded image before it is published."""

__version__ = "0.1.0"
