"""The machine a benchmark ran on: what its figures depend on, for the header of RESULTS.md."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

from PIL import features


def describe_machine() -> dict[str, str]:
    """CPU, cores, memory, Python and the libraries the measured code runs on."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "CPU": _cpu_model(),
        "Cores": f"{os.cpu_count()} ({usable} usable by this process)",
        "Memory": _memory(),
        "OS": platform.platform(),
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "Pillow": metadata.version("pillow"),
        "libjpeg-turbo": features.version("libjpeg_turbo") or "not used",
        "NumPy": metadata.version("numpy"),
        "onnxruntime": metadata.version("onnxruntime"),
        "pdqhash": metadata.version("pdqhash"),
        "SQLAlchemy": metadata.version("sqlalchemy"),
        "FastAPI": metadata.version("fastapi"),
        "uvicorn": metadata.version("uvicorn"),
        # What the matcher benchmark compares against.
        "threatexchange": _installed("threatexchange"),
        "faiss": _installed("faiss-cpu"),
    }


def _installed(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or "unknown"
    for line in lines:
        name, _, value = line.partition(":")
        if name.strip() == "model name":
            return value.strip()
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        lines = Path("/proc/meminfo").read_text().splitlines()
    except OSError:
        return "unknown"
    for line in lines:
        name, _, value = line.partition(":")
        if name == "MemTotal":
            kilobytes = int(value.split()[0])
            return f"{kilobytes / 1024**2:.1f} GiB"
    return "unknown"
