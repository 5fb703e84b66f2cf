"""`jpki ca serve` as a real process under bad clients: it answers with the protocol's error or
closes the connection, logs one line, never a traceback, and keeps serving everyone else."""

from __future__ import annotations

import os
import random
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import CA_DIR

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 1.0


@dataclass
class RunningServer:
    process: subprocess.Popen[str]
    host: str
    port: int
    log: Path

    def request(self, raw: bytes, *, timeout: float = 10) -> bytes:
        """Send raw bytes, half-close, and read the whole answer."""
        with socket.create_connection((self.host, self.port), timeout=timeout) as connection:
            connection.sendall(raw)
            connection.shutdown(socket.SHUT_WR)
            return read_all(connection)

    def crl_works(self) -> bool:
        url = f"http://{self.host}:{self.port}/crl/signature.crl"
        with urllib.request.urlopen(url, timeout=10) as reply:
            return bool(reply.status == 200 and reply.read()[:1] == b"\x30")

    def stop_and_read_log(self) -> str:
        self.process.terminate()
        self.process.wait(timeout=30)
        return self.log.read_text()


def read_all(connection: socket.socket) -> bytes:
    data = b""
    while chunk := connection.recv(65536):
        data += chunk
    return data


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    shutil.copytree(CA_DIR, tmp_path / "ca")
    log = tmp_path / "server.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", "ca", "serve", "--port", "0",
             "--deadline", str(DEADLINE)],
            cwd=ROOT, env={**os.environ, "JPKI_HOME": str(tmp_path), "NO_PROXY": "*"},
            stdout=subprocess.PIPE, stderr=sink, text=True,
        )  # fmt: skip
    assert process.stdout is not None
    match = re.search(r"http://([\d.]+):(\d+)/ocsp", process.stdout.readline())
    assert match, "the server did not start"
    running = RunningServer(process, match[1], int(match[2]), log)
    yield running
    if running.process.poll() is None:
        running.process.kill()
        running.process.wait()


def test_a_body_shorter_than_its_length_is_a_bad_request(server: RunningServer) -> None:
    answer = server.request(
        b"POST /ocsp HTTP/1.0\r\nContent-Type: application/ocsp-request\r\n"
        b"Content-Length: 100\r\n\r\n" + b"\x30" * 10
    )
    assert answer.startswith(b"HTTP/1.0 400")
    assert server.crl_works()
    assert "Traceback" not in server.stop_and_read_log()


def test_an_overlong_body_is_not_taken_as_a_second_request(server: RunningServer) -> None:
    answer = server.request(
        b"POST /ocsp HTTP/1.0\r\nContent-Length: 2\r\n\r\n\x30\x00GET /crl/signature.crl HTTP/1.0"
        b"\r\n\r\n"
    )
    assert answer.count(b"HTTP/1.0 ") == 1  # one answer (an OCSP malformedRequest), then closed
    assert b"application/ocsp-response" in answer


def test_clients_that_go_away_cost_one_line_and_no_traceback(server: RunningServer) -> None:
    for _ in range(40):
        connection = socket.create_connection((server.host, server.port), timeout=10)
        connection.sendall(b"GET /crl/signature.crl HTTP/1.0\r\n\r\n")
        # Close with a reset before the answer is read: the server's write meets a dead peer.
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        connection.close()
    assert server.crl_works()
    log = server.stop_and_read_log()
    assert "Traceback" not in log and "BrokenPipe" not in log.replace("connection dropped", "")


def test_a_slow_client_is_cut_off_at_the_deadline(server: RunningServer) -> None:
    started = time.monotonic()
    with socket.create_connection((server.host, server.port), timeout=30) as connection:
        request = b"POST /ocsp HTTP/1.0\r\nContent-Length: 40\r\n\r\n" + b"\x30" * 40
        closed = False
        for byte in request:  # one byte every 0.2 s: the request alone would take 17 s
            try:
                connection.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            connection.settimeout(0.2)
            try:
                if connection.recv(1024) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
    elapsed = time.monotonic() - started
    assert closed, "the server waited for the whole trickle"
    assert elapsed < DEADLINE + 5
    log = server.stop_and_read_log()
    assert "request timed out" in log and "Traceback" not in log


def test_a_flood_of_connections_is_refused_and_the_server_recovers(server: RunningServer) -> None:
    idle = [socket.create_connection((server.host, server.port), timeout=10) for _ in range(100)]
    try:
        refused = 0
        for connection in idle[64:]:
            connection.settimeout(5)
            answer = read_all(connection)
            refused += answer.startswith(b"HTTP/1.0 503") or answer == b""
        assert refused == len(idle) - 64
    finally:
        for connection in idle:
            connection.close()
    deadline = time.monotonic() + DEADLINE + 10
    while True:  # the idle connections' threads end at their deadline; then all is well again
        try:
            assert server.crl_works()
            break
        except (OSError, AssertionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    assert "Traceback" not in server.stop_and_read_log()


def test_random_requests_never_crash_the_server(server: RunningServer) -> None:
    rng = random.Random(8)
    pieces = [b"GET ", b"POST ", b"/ocsp", b"/ocsp/", b"/crl/signature.crl", b" HTTP/1.0",
              b" HTTP/1.1", b"\r\n", b"Content-Length: ", b"-1", b"99999999", b"7", b"\x00",
              b"\xff", b"%", b"MEUwQzBBMD8wPTAJBgUrDgMCGgUABBQ=", b"\x30\x82\x01\x00"]  # fmt: skip
    for _ in range(150):
        raw = b"".join(rng.choice(pieces) for _ in range(rng.randint(1, 12)))
        answer = server.request(raw + b"\r\n\r\n", timeout=DEADLINE + 5)
        # An HTTP/0.9-style request line (no version) gets a bare error page, as HTTP/0.9 does.
        assert answer == b"" or answer.startswith((b"HTTP/", b"<!DOCTYPE HTML>"))
    assert server.crl_works()
    assert "Traceback" not in server.stop_and_read_log()
