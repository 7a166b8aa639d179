"""Benchmarks of the screening path: ``make bench`` (``python -m bench``) writes RESULTS.md."""
