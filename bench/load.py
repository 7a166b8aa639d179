"""End to end: ``POST /v1/screen`` on loopback against a real ``vigil serve``, under 1, 8 and 32
concurrent clients, with the server's CPU use.

The data folder is prepared in this process (SQLite, banks filled as ``bench.fixtures`` does, an
API key, a busy site's recent uploads), then the server is started on it as ``make run`` starts
it, as a process of its own. The clients run in another process (``bench.load_client``).
``python -m bench.load`` prints this section alone.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from sqlalchemy import Table, insert
from tests.images import encode, make_photo

from bench.fixtures import JPEG_QUALITY, MEDIUM, SMALL, BankSetup, ImageSize, fill_banks
from bench.load_client import PHOTOS_PER_CLIENT, Target, drive
from bench.timing import Timing
from vigil.config import load_settings
from vigil.lockdown import signals
from vigil.runtime import BOOTSTRAP_SITE, Runtime, ensure_bootstrap_key
from vigil.store import sites
from vigil.store.models import SiteSignal
from vigil.store.types import utcnow

CLIENTS = (1, 8, 32)
SECONDS = 10.0  # measured per level, after the warm-up
WARMUP_SECONDS = 2.0
SEED = 20240601
SIZES = (MEDIUM, SMALL)  # 2 MP first: the headline
DEFAULT_MODELS = "open_nsfw on every image, face age on suspicion (the defaults)"
NO_MODELS = "off (`opennsfw`, `face_age` false)"
CLASSIFIERS_OFF = "[classifiers]\nopennsfw = false\nface_age = false\nnudenet = false\n"
THREAD_POOL = 40  # AnyIO's default limiter: FastAPI runs the (sync) screening route in it
START_TIMEOUT = 300.0


@dataclass(frozen=True)
class LevelResult:
    """One image size, one server setting, one number of clients."""

    size: ImageSize
    classifiers: bool
    clients: int
    answers: int  # allowed screenings answered within the measured window
    seconds: float  # the measured window
    latency: Timing
    unavailable: int  # 503 answers (warm-up included)
    connection_errors: int  # failed connections (warm-up included)
    server_cpu_seconds: float
    client_cpu_seconds: float
    lockdown_level: int  # the highest level the answers reported

    @property
    def requests_per_second(self) -> float:
        return self.answers / self.seconds

    @property
    def server_cores(self) -> float:
        """Server CPU time over wall time: 1.0 is one core busy all the time."""
        return self.server_cpu_seconds / self.seconds

    @property
    def client_cores(self) -> float:
        return self.client_cpu_seconds / self.seconds


@dataclass(frozen=True)
class ServerSettings:
    """What the measured server ran with (read from the same settings object it reads)."""

    classifier_threads: int
    classifier_concurrency: int
    embedded_worker: bool
    database: str
    near_duplicate_window_minutes: float


@dataclass(frozen=True)
class LoadResult:
    cores: int
    seconds: float
    warmup_seconds: float
    banks: BankSetup
    server: ServerSettings
    start_seconds: float  # from launching the server (default settings) to its ready answer
    jpeg_bytes: dict[str, int]  # mean upload size per image size
    photos: int  # distinct photos per image size
    recent_uploads: int  # other accounts' uploads in the near-duplicate window beforehand
    levels: tuple[LevelResult, ...]


def measure_load(clients: Sequence[int], seconds: float, seed: int) -> LoadResult:
    """Start a server with the default settings and drive it at every size and number of
    clients; then restart it without classifiers and drive it with 2 MP photos again."""
    # Client n sends photos n and n + 1 of a pool as large as the most clients.
    pool_size = max(PHOTOS_PER_CLIENT, *clients)
    photos = {size.label: _photos(size, pool_size, seed) for size in SIZES}
    levels: list[LevelResult] = []
    with tempfile.TemporaryDirectory(prefix="vigil-load-") as folder:
        data_dir = Path(folder) / "data"
        banks, key, server_settings, recent = _prepare(data_dir, seed)
        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
            with _running_server(Path(folder), data_dir, key, None) as (server, started):
                for size in SIZES:
                    for count in clients:
                        levels.append(
                            _level(pool, server, photos[size.label], size, True, count, seconds)
                        )
            config = Path(folder) / "classifiers-off.toml"
            config.write_text(CLASSIFIERS_OFF)
            with _running_server(Path(folder), data_dir, key, config) as (server, _):
                for count in clients:
                    levels.append(
                        _level(pool, server, photos[MEDIUM.label], MEDIUM, False, count, seconds)
                    )
    return LoadResult(
        cores=os.cpu_count() or 1,
        seconds=seconds,
        warmup_seconds=WARMUP_SECONDS,
        banks=banks,
        server=server_settings,
        start_seconds=started,
        jpeg_bytes={label: sum(map(len, data)) // len(data) for label, data in photos.items()},
        photos=len(photos[MEDIUM.label]),
        recent_uploads=recent,
        levels=tuple(levels),
    )


def _photos(size: ImageSize, count: int, seed: int) -> list[bytes]:
    """Different photos (unrelated PDQ hashes), so every account uploads its own pictures."""
    print(f"load: making {count} {size.label} photos ...", file=sys.stderr, flush=True)
    return [
        encode(
            make_photo(size.width, size.height, seed=seed + number), "JPEG", quality=JPEG_QUALITY
        )
        for number in range(count)
    ]


def _prepare(data_dir: Path, seed: int) -> tuple[BankSetup, str, ServerSettings, int]:
    """A data folder on SQLite with the benchmark's banks and an admin API key, then closed."""
    settings = load_settings(data_dir=data_dir)
    runtime = Runtime.open(settings)
    try:
        print("load: filling the banks ...", file=sys.stderr, flush=True)
        banks = fill_banks(runtime, seed)
        key = ensure_bootstrap_key(runtime.database)
        if key is None:
            raise RuntimeError("the benchmark's fresh database already had an API key")
        recent = _fill_recent_uploads(runtime, seed)
    finally:
        runtime.close()
    server = ServerSettings(
        classifier_threads=settings.classifiers.threads,
        classifier_concurrency=settings.classifiers.concurrency,
        embedded_worker=settings.workers.embedded,
        database="SQLite" if settings.database_url is None else "the configured database_url",
        near_duplicate_window_minutes=settings.lockdown.near_duplicate_window_minutes,
    )
    return banks, key, server, recent


def _fill_recent_uploads(runtime: Runtime, seed: int) -> int:
    """Other accounts' uploads of the last minute, as many as the near-duplicate check reads.

    A site answering dozens of screenings a second always has that many in its window, so every
    level pays the same for the check, rather than a first level reading an empty window.
    """
    count = runtime.settings.lockdown.near_duplicate_max_compared
    hashes = np.random.default_rng(seed).integers(0, 256, size=(count, 32), dtype=np.uint8)
    now = utcnow()
    with runtime.database.session() as session:
        site_id = sites.get_site(session, BOOTSTRAP_SITE).id
    rows = [
        {
            "site_id": site_id,
            "kind": signals.UPLOAD,
            "at": now - timedelta(seconds=60 * index / count),
            "uploader_id": f"bench-site-user-{index}",
            "submission_id": str(uuid.uuid4()),
            "pdq": hashes[index].tobytes().hex(),
            "value": 1.0,
        }
        for index in range(count)
    ]
    table = SiteSignal.__table__
    assert isinstance(table, Table)
    with runtime.database.write_session() as session:
        session.execute(insert(table), rows)
    return count


@contextmanager
def _running_server(
    folder: Path, data_dir: Path, key: str, config: Path | None
) -> Iterator[tuple[Target, float]]:
    """``vigil serve`` on a free loopback port, until it answers ``/readyz``; stopped after."""
    vigil = Path(sys.executable).with_name("vigil")
    if not vigil.exists():
        raise RuntimeError(f"no `vigil` command beside {sys.executable}: run `make` first")
    port = _free_port()
    command = [str(vigil), "serve", "--data-dir", str(data_dir), "--port", str(port)]
    if config is not None:
        command += ["--config", str(config)]
    log_path = folder / f"server-{port}.log"
    print(f"load: starting {' '.join(command[1:])} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_ready(process, port, log_path)
        yield Target(process.pid, port, key), time.perf_counter() - started
    except BaseException:
        # The data folder goes with the run: what the server said about the failure goes first.
        tail = log_path.read_text(errors="replace").splitlines()[-40:]
        print("load: the server's last lines:", *tail, sep="\n", file=sys.stderr)
        raise
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_ready(process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"vigil serve exited with {process.returncode}:\n{log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass  # not listening yet, or not ready (503)
        time.sleep(0.2)
    raise RuntimeError(f"vigil serve was not ready after {START_TIMEOUT:.0f} s (see {log_path})")


def _level(
    pool: Executor,
    target: Target,
    photos: Sequence[bytes],
    size: ImageSize,
    classifiers: bool,
    clients: int,
    seconds: float,
) -> LevelResult:
    setting = "classifiers on" if classifiers else "classifiers off"
    print(
        f"load: {size.label}, {setting}, {clients} clients for {WARMUP_SECONDS:g} + {seconds:g} s",
        file=sys.stderr,
        flush=True,
    )
    measured = pool.submit(drive, target, photos, clients, WARMUP_SECONDS, seconds).result()
    if measured.answers < 2:
        raise RuntimeError(
            f"only {measured.answers} allowed answers in {seconds:g} s ({measured.unavailable} "
            f"503s, {measured.connection_errors} failed connections): nothing to measure"
        )
    return LevelResult(
        size=size,
        classifiers=classifiers,
        clients=clients,
        answers=measured.answers,
        seconds=measured.seconds,
        latency=Timing(measured.latencies),
        unavailable=measured.unavailable,
        connection_errors=measured.connection_errors,
        server_cpu_seconds=measured.server_cpu_seconds,
        client_cpu_seconds=measured.client_cpu_seconds,
        lockdown_level=measured.lockdown_level,
    )


# --- the section ----------------------------------------------------------------------------


def render_load(result: LoadResult) -> str:
    """The end-to-end section of RESULTS.md."""
    server, banks = result.server, result.banks
    lines = [
        "## End to end: `POST /v1/screen` under concurrent clients",
        "",
        "The real server, started as `make run` starts it (`vigil serve --data-dir DIR --port "
        "PORT`: one uvicorn process; FastAPI runs the screening route in AnyIO's thread pool of "
        f"{THREAD_POOL}; the embedded background worker "
        f"{'on' if server.embedded_worker else 'off'}; {server.database}), on a 127.0.0.1 port, "
        f"with default settings: classifiers {DEFAULT_MODELS}, `classifiers.threads` = "
        f"{server.classifier_threads}, `classifiers.concurrency` = "
        f"{server.classifier_concurrency}. The last rows restart it with the classifiers "
        f"{NO_MODELS}. Its data folder was prepared beforehand: a PDQ `block` bank of "
        f"{banks.pdq_hashes:,} random hashes, a SHA-256 `block` bank of "
        f"{banks.sha256_hashes:,}, and {result.recent_uploads:,} uploads by other accounts in "
        "the minute before (random PDQ hashes): as many as the lockdown's near-duplicate check "
        "compares, which a site this busy always has in its "
        f"{server.near_duplicate_window_minutes:g}-minute window, so every level pays that "
        "check in full. From launch to its first ready `/readyz` answer, the server took "
        f"{result.start_seconds:.1f} s.",
        "",
        "The clients run in a separate process (their CPU is not the server's, but they share "
        f"the machine's {result.cores} cores with it): one thread per client, each with its own "
        "keep-alive HTTP/1.1 connection, sending request after request, each a multipart upload "
        "of a photo-like JPEG (quality 90) with a `context` naming the client's account (three "
        f"years old, basic trust). {result.photos} different photos per size (mean "
        + ", ".join(f"{size} {count:,} bytes" for size, count in result.jpeg_bytes.items())
        + "); client *n* alternates between photos *n* and *n* + 1, so no picture comes from "
        "more than two accounts (the lockdown's near-duplicate rule wants three). Each level "
        f"runs {result.warmup_seconds:g} s of warm-up, then {result.seconds:g} s measured. "
        "Every answer must be a 200 with decision `allow`, or a 503 (counted); anything else "
        "stops the run.",
        "",
        "**Answers** are the allowed screenings received within the measured window, "
        "**requests/s** those per second; **p50/p99** is the client's time from sending a "
        "request to reading the whole answer. **Server CPU** is the user + system time of the "
        "server process and its children (from `/proc`) over the window's wall time, as a share "
        "of one core and of all the machine's cores; **client CPU** the same for the client "
        "process. **503s** are screenings the server could not record in time (`the database "
        "cannot record screenings right now`; on SQLite, a write that waited longer than "
        "`database_lock_timeout_seconds` for the lock) and **failed** are broken connections, "
        "both counted over warm-up and window. **Level** is the highest lockdown level the "
        "answers reported: an account uploading dozens of images a minute trips the "
        "uploader-rate rule (level 1), which holds only new or unknown accounts, not these.",
        "",
        "| Image | Classifiers | Clients | Answers | Requests/s | p50 ms | p99 ms "
        f"| Server CPU, % of a core | % of {result.cores} cores | Client CPU, % of a core "
        "| 503s | Failed | Level |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for level in result.levels:
        lines.append(
            f"| {level.size.label} | {'default' if level.classifiers else 'off'} "
            f"| {level.clients} | {level.answers:,} | {level.requests_per_second:.1f} "
            f"| {level.latency.median * 1000:.0f} | {level.latency.p99 * 1000:.0f} "
            f"| {level.server_cores:.0%} | {level.server_cores / result.cores:.0%} "
            f"| {level.client_cores:.0%} | {level.unavailable} | {level.connection_errors} "
            f"| {level.lockdown_level} |"
        )
    lines += ["", *headline_load(result)]
    return "\n".join(lines)


def headline_load(result: LoadResult) -> list[str]:
    """The figures the closing note of RESULTS.md quotes: 2 MP, default settings."""
    levels = sorted(
        (level for level in result.levels if level.size == MEDIUM and level.classifiers),
        key=lambda level: level.clients,
    )
    if not levels:
        return []
    few, most = levels[0], levels[-1]
    best = max(levels, key=lambda level: level.requests_per_second)
    refused = sum(level.unavailable for level in levels)
    return [
        f"- **End to end, 2 MP, default settings**: one `vigil serve` process answered "
        f"{few.requests_per_second:.1f} screenings per second to {_clients(few.clients)} "
        f"(p50 {few.latency.median * 1000:.0f} ms, p99 "
        f"{few.latency.p99 * 1000:.0f} ms) and {most.requests_per_second:.1f} per second to "
        f"{most.clients} (p50 {most.latency.median * 1000:.0f} ms, p99 "
        f"{most.latency.p99 * 1000:.0f} ms), at most {best.requests_per_second:.1f} per second "
        f"({_clients(best.clients)}, the server using {best.server_cores:.0%} of one core, "
        f"{best.server_cores / result.cores:.0%} of the machine); "
        + (f"503 answers over these levels: {refused}." if refused else "no answer was a 503.")
    ]


def _clients(count: int) -> str:
    return f"{count} client{'' if count == 1 else 's'}"


def main() -> None:
    print(render_load(measure_load(CLIENTS, SECONDS, SEED)))


if __name__ == "__main__":
    main()
