"""The test CA on HTTP, for relying parties under test: OCSP (RFC 6960, POST and GET) for every
CA generation and a fresh CRL for each CA of each generation, answered from the CA directory's
current state.

    POST /ocsp                      DER request in, application/ocsp-response out
    GET  /ocsp/<base64 request>     the same, RFC 6960 appendix A.1
    GET  /crl/signature.crl         DER CRL of the current generation's signature CA
                                    (application/pkix-crl)
    GET  /crl/authentication.crl    DER CRL of the current generation's authentication CA
    GET  /crl/signature-<N>.crl     DER CRL of generation N's signature CA (N = 1, 2, …)
    GET  /crl/authentication-<N>.crl

Answers come from the CA held in memory: its keys, loaded once, and a copy of its record,
followed rather than re-read. Before each answer one cheap check (SQLite's data_version on
ca.sqlite, microseconds) tells whether another process changed the record, and then only the
changed entries are read, so revocations recorded by another process (`jpki ca revoke`) are served
at once, without a restart. A new generation (`jpki ca rollover`) is noticed the same way, by a
listing of generations/, and the CA is then loaded again. Requests without a nonce get responses
signed once and reused for up to a minute, or until the certificate's entry changes, as RFC 5019
responders pre-sign them; a request with a nonce is signed afresh, to echo it. CRLs are re-signed
when the record changes or a minute has passed. Binds to loopback unless told otherwise.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import logging
import re
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
from jpki.issuer.ca import (
    CAError,
    CertificateAuthority,
    Generation,
    IssuedCertificate,
    TestCA,
    generation_marker,
)

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
OCSP_PATH = "/ocsp"
# /crl/<kind>.crl (the current generation) or /crl/<kind>-<N>.crl (generation N).
CRL_PATH = re.compile(
    r"/crl/(?P<kind>{})(?:-(?P<generation>[1-9][0-9]{{0,8}}))?\.crl".format(
        "|".join(kind.value for kind in CertificateKind)
    )
)
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
# Signed responses to nonce-less requests (and CRLs) are reused for this long at most; the
# responses say they are valid for an hour (revocation.OCSP_VALIDITY).
PRESIGNED_SECONDS = 60.0
# Distinct nonce-less requests remembered; beyond, the oldest is forgotten.
PRESIGNED_RESPONSES = 4096


# The revoked certificates of one CA: its kind and generation.
CAKey = tuple[CertificateKind, int]


class CASnapshot:
    """The CA's generations and a copy of its record, in memory (revocation.IssuerRecord)."""

    def __init__(self, ca: TestCA) -> None:
        self.generations: tuple[Generation, ...] = ca.generations
        self._entries: dict[int, IssuedCertificate] = {}
        self._revoked: dict[CAKey, dict[int, IssuedCertificate]] = {}
        # What readers see: replaced whole by `apply`, never changed in place.
        self._revoked_lists: dict[CAKey, tuple[IssuedCertificate, ...]] = {}

    @property
    def current(self) -> Generation:
        return self.generations[-1]

    def authority(
        self, kind: CertificateKind, generation: int | None = None
    ) -> CertificateAuthority:
        """The `kind` CA of `generation` (default: the current one); CAError if there is none."""
        number = self.current.number if generation is None else generation
        if not 1 <= number <= len(self.generations):
            raise CAError(f"the test CA has no generation {number}")
        return self.generations[number - 1].authority(kind)

    def find_issued(self, serial: int) -> IssuedCertificate | None:
        return self._entries.get(serial)

    def revoked(
        self, kind: CertificateKind, generation: int | None = None
    ) -> tuple[IssuedCertificate, ...]:
        if generation is not None:
            return self._revoked_lists.get((kind, generation), ())
        lists = [entries for key, entries in self._revoked_lists.items() if key[0] is kind]
        return tuple(sorted((e for entries in lists for e in entries), key=lambda e: e.serial))

    def apply(self, entries: tuple[IssuedCertificate, ...]) -> None:
        """Take in entries issued or revoked since the copy was made. One writer at a time (the
        cache's lock); readers in other threads see each entry and each list whole, old or new."""
        changed = set()
        for entry in entries:
            self._entries[entry.serial] = entry
            key = (entry.kind, entry.generation)
            revoked = self._revoked.setdefault(key, {})
            if entry.revoked or entry.serial in revoked:
                changed.add(key)
                if entry.revoked:
                    revoked[entry.serial] = entry
                else:
                    del revoked[entry.serial]
        for key in changed:
            revoked = self._revoked[key]
            self._revoked_lists[key] = tuple(revoked[serial] for serial in sorted(revoked))


class CAStateCache:
    """The CA of a directory in memory, following its record; safe across threads.

    Keys and settings are loaded once (again only if a version-1 ca.json is migrated meanwhile);
    the record is copied once, then only changed entries are read, when `TestCA.record_version`
    says there are some. Signed answers are kept as the module docstring says.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._lock = threading.Lock()
        self._ca: TestCA | None = None
        self._snapshot: CASnapshot | None = None
        self._version: tuple[object, ...] = ()
        self._generations: tuple[str, ...] = ()
        self._counter = -1
        # Bumped by every change of the record: a signed answer made from an older copy is not
        # kept (another thread may have signed it while the change came in).
        self._generation = 0
        self._responses: dict[bytes, tuple[int, float, bytes]] = {}  # request: serial, time, DER
        self._crls: dict[CAKey, tuple[int, float, bytes]] = {}

    def current(self) -> CASnapshot:
        """The CA as of now; raises CAError when the directory holds no usable CA."""
        return self._current()[0]

    def _current(self) -> tuple[CASnapshot, int]:
        with self._lock:
            if self._ca is None or self._snapshot is None:
                return self._load()
            if generation_marker(self.directory) != self._generations:
                return self._load()  # a rollover: load the CA again, with its new generation
            version = self._ca.record_version()
            if version != self._version:
                if version[0] != self._version[0] or version[0] == "ca.json":
                    return self._load()  # a version-1 record, migrated: load the CA again
                self._follow(version)
            return self._snapshot, self._generation

    def _load(self) -> tuple[CASnapshot, int]:
        # Before reading: a change in between is seen next time.
        generations = generation_marker(self.directory)
        ca = TestCA.load(self.directory)
        version = ca.record_version()
        counter, entries = ca.changes_since(-1)
        snapshot = CASnapshot(ca)
        snapshot.apply(entries)
        if self._ca is not None:
            self._ca.close()
        self._ca, self._snapshot, self._version, self._counter = ca, snapshot, version, counter
        self._generations = generations
        self._generation += 1
        self._responses.clear()
        self._crls.clear()
        return snapshot, self._generation

    def _follow(self, version: tuple[object, ...]) -> None:
        assert self._ca is not None and self._snapshot is not None
        self._version = version
        self._counter, entries = self._ca.changes_since(self._counter)
        if not entries:
            return  # e.g. a checkpoint: nothing that answers depend on
        self._snapshot.apply(entries)
        self._generation += 1
        changed = {entry.serial for entry in entries}
        for request in [key for key, value in self._responses.items() if value[0] in changed]:
            del self._responses[request]
        self._crls.clear()

    def ocsp_response(self, request_der: bytes) -> bytes:
        """The DER response to a DER OCSP request."""
        snapshot, generation = self._current()
        with self._lock:
            kept = self._responses.get(request_der)
        if kept is not None and time.monotonic() - kept[1] < PRESIGNED_SECONDS:
            return kept[2]
        question = revocation.read_ocsp_request(request_der)
        if isinstance(question, bytes):
            return question  # malformed or unauthorized: unsigned, nothing to keep
        signed_at = time.monotonic()
        response = revocation.answer_ocsp(snapshot, question)
        if question.nonce is None:
            with self._lock:
                if generation == self._generation:
                    if len(self._responses) >= PRESIGNED_RESPONSES:
                        del self._responses[next(iter(self._responses))]
                    self._responses[request_der] = (question.serial, signed_at, response)
        return response

    def crl(self, kind: CertificateKind, ca_generation: int | None = None) -> bytes | None:
        """The DER CRL of one CA: the `kind` CA of generation `ca_generation` (default: the
        current one); None when the CA has no such generation."""
        snapshot, generation = self._current()
        number = snapshot.current.number if ca_generation is None else ca_generation
        if not 1 <= number <= len(snapshot.generations):
            return None
        key = (kind, number)
        with self._lock:
            kept = self._crls.get(key)
        if (
            kept is not None
            and kept[0] == generation
            and time.monotonic() - kept[1] < PRESIGNED_SECONDS
        ):
            return kept[2]
        signed_at = time.monotonic()
        crl = revocation.build_crl(snapshot, kind, generation=number)
        der = crl.public_bytes(serialization.Encoding.DER)
        with self._lock:
            if generation == self._generation:
                self._crls[key] = (generation, signed_at, der)
        return der


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
        elif crl_path := CRL_PATH.fullmatch(path):
            number = crl_path["generation"]
            self._answer_crl(
                CertificateKind(crl_path["kind"]), None if number is None else int(number)
            )
        else:
            self.send_error(HTTPStatus.NOT_FOUND)

    def _answer_ocsp(self, request_der: bytes) -> None:
        try:
            body = self.server.ca_state.ocsp_response(request_der)
        except CAError as error:
            logger.error("cannot answer OCSP: %s", error)
            body = _internal_error_response()
        self._send(body, revocation.OCSP_RESPONSE_MEDIA_TYPE)

    def _answer_crl(self, kind: CertificateKind, generation: int | None) -> None:
        try:
            crl = self.server.ca_state.crl(kind, generation)
        except CAError as error:
            logger.error("cannot make the %s CRL: %s", kind.value, error)
            self.send_error(HTTPStatus.INTERNAL_SERVER_ERROR)
            return
        if crl is None:  # no such generation
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        self._send(crl, revocation.CRL_MEDIA_TYPE)

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
            "test CA %s: OCSP at %s%s, CRLs at %s/crl/{signature,authentication}[-N].crl",
            ca_directory,
            server.base_url,
            OCSP_PATH,
            server.base_url,
        )
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            logger.info("stopped")
