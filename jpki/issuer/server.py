"""The test CA on HTTP, for relying parties under test: OCSP (RFC 6960, POST and GET) and a fresh
CRL for each of the two CAs, answered from the CA directory's current state.

    POST /ocsp                    DER request in, application/ocsp-response out
    GET  /ocsp/<base64 request>   the same, RFC 6960 appendix A.1
    GET  /crl/signature.crl       DER CRL of the signature CA (application/pkix-crl)
    GET  /crl/authentication.crl  DER CRL of the authentication CA

ca.json is re-read whenever its content changes, so revocations recorded by another process
(`jpki ca revoke`) are served without a restart. Binds to loopback unless told otherwise.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import logging
import socket
import socketserver
import sys
import threading
import time
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.x509 import ocsp

from jpki.certificates import CertificateKind
from jpki.issuer import revocation
from jpki.issuer.ca import STATE_FILE, CAError, TestCA

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
OCSP_PATH = "/ocsp"
CRL_PATHS = {f"/crl/{kind.value}.crl": kind for kind in CertificateKind}
# An OCSP request for one certificate is a few hundred bytes.
MAX_REQUEST_BYTES = 64 * 1024
# A whole request (headers and body) must arrive within this, however slowly it trickles in.
REQUEST_DEADLINE_SECONDS = 10.0
# Connections served at once; more are answered 503 and closed, so a flood cannot exhaust threads.
MAX_CONNECTIONS = 64
BUSY_RESPONSE = (
    b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
)
MAX_LOGGED_PATH_CHARACTERS = 80
BASE64_QUANTUM = 4


class CAStateCache:
    """The CA of a directory, reloaded when ca.json's bytes change; safe across threads."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._lock = threading.Lock()
        self._state: bytes | None = None
        self._ca: TestCA | None = None

    def current(self) -> TestCA:
        state_path = self.directory / STATE_FILE
        try:
            state: bytes | None = state_path.read_bytes()
        except OSError:
            state = None  # TestCA.load then says what is missing or unreadable
        with self._lock:
            # Comparing contents, not mtimes: two writes within one timestamp tick still differ.
            if self._ca is None or state is None or state != self._state:
                self._ca = TestCA.load(self.directory)
                self._state = state
            return self._ca


class CAServer(ThreadingHTTPServer):
    """A threading HTTP server answering OCSP and CRL requests for one test CA directory.

    Each connection has a deadline for its whole request, at most `MAX_CONNECTIONS` are served
    at once, and a client that misbehaves or goes away costs one log line, never a traceback.
    """

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        cache: CAStateCache,
        deadline: float = REQUEST_DEADLINE_SECONDS,
    ) -> None:
        self.ca_state = cache
        self.deadline = deadline
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, _CARequestHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            logger.warning("%s: too many connections, answered 503", client_address[0])
            with contextlib.suppress(OSError):
                request.sendall(BUSY_RESPONSE)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, OSError):  # went away, reset, or too slow: nothing to answer
            logger.info("%s: connection dropped (%s)", client_address[0], error)
        else:
            logger.error("%s: %s: %s", client_address[0], type(error).__name__, error)

    def server_bind(self) -> None:
        # HTTPServer.server_bind also looks up the host's FQDN, which can stall without DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.socket.getsockname()[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    @property
    def port(self) -> int:
        """The bound port (the ephemeral one when asked for port 0)."""
        return self.server_port

    @property
    def base_url(self) -> str:
        return f"http://{self.server_name}:{self.server_port}"


def _loggable_path(raw_path: str) -> str:
    path = urllib.parse.urlsplit(raw_path).path
    # A GET request embeds issuer and serial, which identify a card holder: keep it out of logs.
    if path.startswith(OCSP_PATH + "/"):
        return OCSP_PATH + "/<request>"
    printable = "".join(character if character.isprintable() else "?" for character in path)
    return printable[:MAX_LOGGED_PATH_CHARACTERS]


def _decode_get_request(encoded: str) -> bytes:
    """The DER request of a GET URL path segment; b"" (a malformed request) when not base64."""
    text = urllib.parse.unquote(encoded)
    # Some clients drop the base64 padding.
    text += "=" * (-len(text) % BASE64_QUANTUM)
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        return b""


def _internal_error_response() -> bytes:
    return ocsp.OCSPResponseBuilder.build_unsuccessful(
        ocsp.OCSPResponseStatus.INTERNAL_ERROR
    ).public_bytes(serialization.Encoding.DER)


class _DeadlineReader(io.RawIOBase):
    """A socket's receiving side that fails once the request's deadline has passed."""

    def __init__(self, connection: socket.socket, deadline: float) -> None:
        self._connection = connection
        self._deadline = time.monotonic() + deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request took longer than its deadline")
        self._connection.settimeout(remaining)
        return self._connection.recv_into(buffer)


class _CARequestHandler(BaseHTTPRequestHandler):
    server: CAServer
    server_version = "jpki-test-ca"

    def setup(self) -> None:
        super().setup()
        self.rfile = io.BufferedReader(_DeadlineReader(self.connection, self.server.deadline))

    def do_POST(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path.rstrip("/") != OCSP_PATH:
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            self.send_error(HTTPStatus.LENGTH_REQUIRED)
            return
        try:
            length = int(length_text)
        except ValueError:
            length = -1
        if length < 0:
            self.send_error(HTTPStatus.BAD_REQUEST, "bad Content-Length")
            return
        if length > MAX_REQUEST_BYTES:
            self.send_error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
            return
        body = self.rfile.read(length)
        if len(body) != length:
            self.send_error(HTTPStatus.BAD_REQUEST, "body shorter than its Content-Length")
            return
        self._answer_ocsp(body)

    def do_GET(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path.startswith(OCSP_PATH + "/") and len(path) > len(OCSP_PATH) + 1:
            self._answer_ocsp(_decode_get_request(path[len(OCSP_PATH) + 1 :]))
        elif path in CRL_PATHS:
            self._answer_crl(CRL_PATHS[path])
        else:
            self.send_error(HTTPStatus.NOT_FOUND)

    def _answer_ocsp(self, request_der: bytes) -> None:
        try:
            body = revocation.build_ocsp_response(self.server.ca_state.current(), request_der)
        except CAError as error:
            logger.error("cannot answer OCSP: %s", error)
            body = _internal_error_response()
        self._send(body, revocation.OCSP_RESPONSE_MEDIA_TYPE)

    def _answer_crl(self, kind: CertificateKind) -> None:
        try:
            crl = revocation.build_crl(self.server.ca_state.current(), kind)
        except CAError as error:
            logger.error("cannot make the %s CRL: %s", kind.value, error)
            self.send_error(HTTPStatus.INTERNAL_SERVER_ERROR)
            return
        self._send(crl.public_bytes(serialization.Encoding.DER), revocation.CRL_MEDIA_TYPE)

    def _send(self, body: bytes, media_type: str) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", media_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        status = code.value if isinstance(code, HTTPStatus) else code
        logger.info(
            '%s "%s %s" %s',
            self.client_address[0],
            getattr(self, "command", None) or "-",
            _loggable_path(getattr(self, "path", "")),
            status,
        )

    def log_error(self, format: str, *args: object) -> None:
        if args and isinstance(args[0], TimeoutError):  # nothing else reports a slow client
            logger.info("%s: request timed out", self.client_address[0])
        else:
            self.log_message(format, *args)

    def log_message(self, format: str, *args: object) -> None:
        # Error details repeat the request line, already logged once by log_request.
        logger.debug("%s %s", self.client_address[0], format % args)


def make_server(
    ca_directory: Path,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    deadline: float = REQUEST_DEADLINE_SECONDS,
) -> CAServer:
    """A server bound to host:port (0 picks a free port; see `.port`), not yet serving.

    Raises CAError at once when the directory holds no usable test CA.
    """
    cache = CAStateCache(ca_directory)
    cache.current()
    return CAServer((host, port), cache, deadline)


def serve(ca_directory: Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    """Serve OCSP and CRLs for the test CA in `ca_directory` until interrupted."""
    # A no-op when the caller has configured logging already.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    with make_server(ca_directory, host, port) as server:
        logger.info(
            "test CA %s: OCSP at %s%s, CRLs at %s/crl/{signature,authentication}.crl",
            ca_directory,
            server.base_url,
            OCSP_PATH,
            server.base_url,
        )
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            logger.info("stopped")
