"""``vigil serve`` as a real process: its output, health endpoints and screening over HTTP."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.images import encode, make_photo
from tests.live import free_port

KEY_PATTERN = re.compile(r"vgl_[A-Za-z0-9_-]{20,}")
STARTUP_SECONDS = 60


def vigil_command(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "vigil.cli", *(str(arg) for arg in args)]


def clean_environment() -> dict[str, str]:
    """This shell's environment without VIGIL_* settings, which would change what is tested."""
    return {name: value for name, value in os.environ.items() if not name.startswith("VIGIL_")}


@dataclass(frozen=True)
class Server:
    url: str
    stdout: Path
    process: subprocess.Popen[bytes]

    def output(self) -> str:
        return self.stdout.read_text()


@contextmanager
def running_server(data_dir: Path, logs: Path) -> Iterator[Server]:
    """``vigil serve`` on a free port, ready (``/healthz`` answers), and always stopped after."""
    port = free_port()
    logs.mkdir(parents=True, exist_ok=True)
    stdout = logs / f"serve-{port}.out"
    stderr = logs / f"serve-{port}.err"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            vigil_command("serve", "--data-dir", data_dir, "--port", str(port)),
            stdout=out,
            stderr=err,
            env=clean_environment(),
        )
    server = Server(f"http://127.0.0.1:{port}", stdout, process)
    try:
        wait_until_alive(server, stderr)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until_alive(server: Server, stderr: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(
                f"vigil serve exited with {server.process.returncode}:\n{stderr.read_text()}"
            )
        try:
            if httpx.get(f"{server.url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    pytest.fail(f"vigil serve did not answer within {STARTUP_SECONDS}s:\n{stderr.read_text()}")


def printed_keys(output: str) -> list[str]:
    return KEY_PATTERN.findall(output)


def screen(server: Server, key: str, image: bytes) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/screen",
        headers={"Authorization": f"Bearer {key}"},
        files={"image": ("upload.png", image, "image/png")},
        timeout=30,
    )


@pytest.fixture(scope="module")
def first_start(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server on a fresh data folder, shared by the tests that only ask it questions."""
    base = tmp_path_factory.mktemp("serve")
    with running_server(base / "data", base / "logs") as server:
        yield server


def test_first_start_prints_its_address_and_a_bootstrap_admin_key(first_start: Server) -> None:
    output = first_start.output()
    assert first_start.url in output
    assert f"{first_start.url}/docs" in output
    assert len(printed_keys(output)) == 1


def test_first_start_prints_the_review_app_and_its_admin_password_once(
    first_start: Server,
) -> None:
    output = first_start.output()
    assert f"{first_start.url}/review" in output
    assert output.count("sign in as 'admin' with this password") == 1
    login = httpx.get(f"{first_start.url}/review/login", timeout=10)
    assert login.status_code == 200
    assert 'name="password"' in login.text


def test_health_readiness_and_documentation_answer(first_start: Server) -> None:
    assert httpx.get(f"{first_start.url}/healthz", timeout=10).json() == {"status": "alive"}

    ready = httpx.get(f"{first_start.url}/readyz", timeout=10)
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    assert ready.json()["database"] == "ok"

    docs = httpx.get(f"{first_start.url}/docs", timeout=10)
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()
    schema = httpx.get(f"{first_start.url}/openapi.json", timeout=10).json()
    assert "/v1/screen" in schema["paths"]


def test_printed_key_screens_an_image_over_http(first_start: Server) -> None:
    [key] = printed_keys(first_start.output())
    image = encode(make_photo(seed=70), "PNG")

    response = screen(first_start, key, image)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["decision"] == "allow"
    assert body["hashes"]["sha256"] == hashlib.sha256(image).hexdigest()

    assert screen(first_start, key[:-1] + "x", image).status_code == 401


def test_second_start_on_the_same_data_folder_prints_no_new_key(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with running_server(data_dir, tmp_path / "logs") as first:
        [key] = printed_keys(first.output())

    with running_server(data_dir, tmp_path / "logs") as second:
        output = second.output()
        assert second.url in output
        assert printed_keys(output) == []
        # The key printed the first time still works.
        response = screen(second, key, encode(make_photo(seed=71), "PNG"))
        assert response.status_code == 200, response.text


def test_port_out_of_range_is_an_invalid_configuration_without_traceback(tmp_path: Path) -> None:
    process = subprocess.run(
        vigil_command("serve", "--data-dir", tmp_path / "data", "--port", "70000"),
        capture_output=True,
        text=True,
        env=clean_environment(),
        timeout=120,
    )
    assert process.returncode == 2
    assert "invalid configuration" in process.stderr
    assert "port" in process.stderr
    assert "Traceback" not in process.stderr
    assert not (tmp_path / "data").exists()  # refused before anything was created
