"""The clients of ``bench.load``: run in a process of their own, so their CPU is not the server's.

One thread per client, each with its own keep-alive HTTP/1.1 connection (``http.client``: the
least work a client can do per request), sending screening requests back to back. The process
also samples the server's CPU time from ``/proc`` at the edges of the measured window.
"""

from __future__ import annotations

import http.client
import json
import os
import resource
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

PATH = "/v1/screen"
PHOTOS_PER_CLIENT = 2
REQUEST_TIMEOUT = 120.0
ACCOUNT_AGE = timedelta(days=3 * 365)
_BOUNDARY = "vigil-bench-load-boundary"
# The one refusal a loaded server may give: it could not record the screening in time (on
# SQLite, the write lock waited longer than `database_lock_timeout_seconds`). It is counted;
# any other refusal means the benchmark measures the wrong thing, and stops it.
UNAVAILABLE = 503


@dataclass(frozen=True)
class Target:
    """The server under load: its process (for its CPU time), port and API key."""

    pid: int
    port: int
    key: str


@dataclass(frozen=True)
class Drive:
    """What the clients measured for one level."""

    answers: int  # allowed screenings answered within the measured window
    seconds: float  # the measured window
    latencies: tuple[float, ...]  # of those answers
    unavailable: int  # 503 answers, warm-up included
    connection_errors: int  # requests whose connection failed, warm-up included
    server_cpu_seconds: float
    client_cpu_seconds: float
    lockdown_level: int  # the highest level the answers reported


class Refused(Exception):
    """The server answered something other than an allowed screening or a 503."""


def drive(
    target: Target, photos: Sequence[bytes], clients: int, warmup: float, seconds: float
) -> Drive:
    """Run ``clients`` clients for ``warmup`` + ``seconds``; measure the last ``seconds``.

    Client *n* is account ``bench-load-n`` and alternates between photos *n* and *n* + 1.
    """
    stop = threading.Event()
    failures: list[str] = []
    lock = threading.Lock()
    latencies: list[float] = []
    totals = {"unavailable": 0, "connection_errors": 0, "level": 0}
    window_start = time.perf_counter() + warmup
    window_end = window_start + seconds

    def client(number: int) -> None:
        bodies = [
            _multipart(photos[(number + turn) % len(photos)], _context(number))
            for turn in range(PHOTOS_PER_CLIENT)
        ]
        headers = {
            "Authorization": f"Bearer {target.key}",
            "Content-Type": f"multipart/form-data; boundary={_BOUNDARY}",
        }
        connection = _connect(target)
        mine: list[float] = []
        unavailable = connection_errors = level = sent = 0
        try:
            while not stop.is_set() and time.perf_counter() < window_end:
                body = bodies[sent % len(bodies)]
                sent += 1
                started = time.perf_counter()
                try:
                    connection.request("POST", PATH, body=body, headers=headers)
                    response = connection.getresponse()
                    payload = response.read()
                except (OSError, http.client.HTTPException):
                    connection_errors += 1
                    connection.close()
                    connection = _connect(target)
                    continue
                finished = time.perf_counter()
                if response.status == UNAVAILABLE:
                    unavailable += 1
                    continue
                level = max(level, _allowed_level(response.status, payload))
                if window_start <= finished <= window_end:
                    mine.append(finished - started)
        except Refused as refusal:
            with lock:
                failures.append(str(refusal))
            stop.set()
        finally:
            connection.close()
            with lock:
                latencies.extend(mine)
                totals["unavailable"] += unavailable
                totals["connection_errors"] += connection_errors
                totals["level"] = max(totals["level"], level)

    threads = [threading.Thread(target=client, args=(number,)) for number in range(clients)]
    for thread in threads:
        thread.start()
    stop.wait(max(0.0, window_start - time.perf_counter()))
    server_before, client_before = tree_cpu_seconds(target.pid), _own_cpu_seconds()
    measured_from = time.perf_counter()
    stop.wait(max(0.0, window_end - time.perf_counter()))
    server_after, client_after = tree_cpu_seconds(target.pid), _own_cpu_seconds()
    measured = time.perf_counter() - measured_from
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"POST {PATH} did not allow a benchmark photo: {failures[0]}")
    return Drive(
        answers=len(latencies),
        seconds=measured,
        latencies=tuple(latencies),
        unavailable=totals["unavailable"],
        connection_errors=totals["connection_errors"],
        server_cpu_seconds=server_after - server_before,
        client_cpu_seconds=client_after - client_before,
        lockdown_level=totals["level"],
    )


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its descendants (and its reaped children)."""
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # The name in parentheses may hold spaces: the fields start after its closing one.
        stats[int(entry.name)] = text[text.rindex(")") + 2 :].split()
    if pid not in stats:
        raise RuntimeError(f"the server process {pid} is gone")
    children: dict[int, list[int]] = {}
    for process, fields in stats.items():
        children.setdefault(int(fields[1]), []).append(process)
    ticks, pending = 0, [pid]
    while pending:
        process = pending.pop()
        fields = stats[process]
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
        pending += children.get(process, [])
    ticks += int(stats[pid][13]) + int(stats[pid][14])  # cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def _connect(target: Target) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", target.port, timeout=REQUEST_TIMEOUT)


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _context(client: int) -> str:
    """An established account (three years old, basic trust): at lockdown level 1, which its
    own upload rate may trip, only new and unknown accounts are held."""
    return json.dumps(
        {
            "uploader_id": f"bench-load-{client}",
            "account_created_at": (datetime.now(UTC) - ACCOUNT_AGE).isoformat(),
            "trust_level": "basic",
        }
    )


def _multipart(image: bytes, context: str) -> bytes:
    return b"".join(
        (
            f"--{_BOUNDARY}\r\n".encode(),
            b'Content-Disposition: form-data; name="context"\r\n\r\n',
            context.encode(),
            f"\r\n--{_BOUNDARY}\r\n".encode(),
            b'Content-Disposition: form-data; name="image"; filename="upload.jpg"\r\n',
            b"Content-Type: image/jpeg\r\n\r\n",
            image,
            f"\r\n--{_BOUNDARY}--\r\n".encode(),
        )
    )


def _allowed_level(status: int, payload: bytes) -> int:
    """The lockdown level of an allowed screening; raise :class:`Refused` for anything else."""
    text = payload[:500].decode(errors="replace")
    if status != 200:
        raise Refused(f"HTTP {status}: {text}")
    answer = json.loads(payload)
    if not isinstance(answer, dict) or answer.get("decision") != "allow":
        raise Refused(f"the decision was not allow: {text}")
    return int(answer.get("lockdown_level", 0))
