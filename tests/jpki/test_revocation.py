"""Tests of revocation: the record in the CA, CRLs and OCSP responses of the test CA, the relying
party's checks, and the HTTP server, with openssl as an independent client.

CRLs and responses built here are made and checked at AT, a fixed moment when the fixture CA and
card are valid. The HTTP server stamps its answers with the wall clock, as a responder does, so
the tests that ask it check them at now() instead: made now and checked now holds on any date.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import logging
import shutil
import socket
import sqlite3
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from jpki.certificates import CertificateKind
from jpki.issuer import profile
from jpki.issuer.ca import (
    DATABASE_FILE,
    STATE_FILE,
    CAError,
    IssuedCertificate,
    RevocationReason,
    TestCA,
)
from jpki.issuer.holder import Holder, Sex
from jpki.issuer.revocation import build_crl, build_ocsp_response
from jpki.issuer.server import CAServer, make_server
from jpki.relying_party.revocation import (
    RevocationCheckError,
    RevocationSource,
    check_crl,
    check_ocsp,
)
from tests.conftest import CA_DIR, CARDS

UTC = datetime.UTC
AUTH_CERT_FID = "000A"
SIGN_CERT_FID = "0001"
REVOKED_AT = datetime.datetime(2026, 11, 26, 9, 30, 15, 987654, tzinfo=UTC)
# Short, so that stopping a test server does not wait half a second.
POLL_SECONDS = 0.05
OPENSSL = shutil.which("openssl")


def card_certificate(fid: str, card: str = "taro") -> x509.Certificate:
    image = json.loads((CARDS / f"{card}.json").read_text(encoding="utf-8"))
    encoded = image["applications"]["jpki"]["files"][fid]
    return x509.load_der_x509_certificate(base64.b64decode(encoded))


def ca_certificate(kind: CertificateKind) -> x509.Certificate:
    return x509.load_pem_x509_certificate((CA_DIR / f"{kind.value}-ca.pem").read_bytes())


AUTH_CERT = card_certificate(AUTH_CERT_FID)
SIGN_CERT = card_certificate(SIGN_CERT_FID)
AUTH_CA = ca_certificate(CertificateKind.AUTHENTICATION)
SIGN_CA = ca_certificate(CertificateKind.SIGNATURE)


# A day after the fixture card was issued.
AT = AUTH_CERT.not_valid_before_utc + datetime.timedelta(days=1)


def now() -> datetime.datetime:
    """The wall clock, which the HTTP server signs its answers with."""
    return datetime.datetime.now(UTC)


def der(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.DER)


pytestmark = pytest.mark.usefixtures("no_proxy")


@pytest.fixture
def ca(ca_dir: Path) -> TestCA:
    return TestCA.load(ca_dir)


@pytest.fixture
def server(ca_dir: Path) -> Iterator[CAServer]:
    with make_server(ca_dir, port=0) as running:
        thread = threading.Thread(target=running.serve_forever, args=(POLL_SECONDS,), daemon=True)
        thread.start()
        yield running
        running.shutdown()
        thread.join()


def ocsp_url(server: CAServer) -> str:
    return f"{server.base_url}/ocsp"


# --- the record in ca.sqlite (the fixture's version-1 ca.json is migrated on the first revocation)


def revocation_columns(ca_dir: Path) -> dict[int, tuple[str | None, str | None]]:
    with contextlib.closing(sqlite3.connect(ca_dir / DATABASE_FILE)) as database:
        rows = database.execute(
            "SELECT serial, revocation_time, revocation_reason FROM issued"
        ).fetchall()
    return {serial: (time, reason) for serial, time, reason in rows}


def by_serial(entries: tuple[IssuedCertificate, ...]) -> tuple[IssuedCertificate, ...]:
    """In issuance order, as TestCA.revoked lists them."""
    return tuple(sorted(entries, key=lambda entry: entry.serial))


def test_revoke_is_recorded_durably_in_the_ca_record(ca: TestCA, ca_dir: Path) -> None:
    # The fixture CA has revoked certificates of its own (the `revoked` sample card's).
    auth_before = ca.revoked(CertificateKind.AUTHENTICATION)
    sign_before = ca.revoked(CertificateKind.SIGNATURE)
    entry = ca.revoke(
        AUTH_CERT.serial_number, RevocationReason.AFFILIATION_CHANGED, when=REVOKED_AT
    )

    assert entry.revocation is not None
    assert entry.revocation.reason is RevocationReason.AFFILIATION_CHANGED
    assert entry.revocation.time == REVOKED_AT.replace(microsecond=0)
    assert ca.revoked(CertificateKind.AUTHENTICATION) == by_serial((*auth_before, entry))
    assert ca.revoked(CertificateKind.SIGNATURE) == sign_before
    reloaded = TestCA.load(ca_dir)
    assert reloaded.revoked(CertificateKind.AUTHENTICATION) == by_serial((*auth_before, entry))
    assert reloaded.revoked(CertificateKind.SIGNATURE) == sign_before
    records = revocation_columns(ca_dir)
    assert records[AUTH_CERT.serial_number] == ("2026-11-26T09:30:15+00:00", "affiliationChanged")
    assert records[SIGN_CERT.serial_number] == (None, None)


def test_ca_json_without_revocations_still_loads(ca_dir: Path) -> None:
    # A ca.json as written before revocation existed: the fixture's, without its revocations.
    path = ca_dir / STATE_FILE
    state = json.loads(path.read_text(encoding="utf-8"))
    for entry in state["issued"]:
        entry.pop("revocation", None)
    path.write_text(json.dumps(state, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    assert "revocation" not in path.read_text(encoding="utf-8")
    fixture_ca = TestCA.load(ca_dir)
    assert [entry.serial for entry in fixture_ca.issued] == [
        int(entry["serial"], 16) for entry in state["issued"]
    ]
    assert not any(entry.revoked for entry in fixture_ca.issued)


def test_revoking_an_unknown_serial_is_refused(ca: TestCA, ca_dir: Path) -> None:
    before = (ca_dir / STATE_FILE).read_bytes()
    with pytest.raises(CAError, match="no certificate with serial 0x7fffff00"):
        ca.revoke(0x7FFFFF00, RevocationReason.KEY_COMPROMISE)
    assert (ca_dir / STATE_FILE).read_bytes() == before


def test_revoking_twice_is_refused(ca: TestCA) -> None:
    ca.revoke(SIGN_CERT.serial_number, RevocationReason.SUPERSEDED)
    with pytest.raises(CAError, match="already revoked") as raised:
        ca.revoke(SIGN_CERT.serial_number, RevocationReason.KEY_COMPROMISE)
    assert "\n" not in str(raised.value)


def test_a_corrupt_revocation_reason_is_reported(ca: TestCA, ca_dir: Path) -> None:
    ca.revoke(SIGN_CERT.serial_number, RevocationReason.SUPERSEDED)
    with contextlib.closing(sqlite3.connect(ca_dir / DATABASE_FILE)) as database:
        database.execute(
            "UPDATE issued SET revocation_reason = 'bored' WHERE serial = ?",
            (SIGN_CERT.serial_number,),
        )
        database.commit()
    # reported when the record is read, e.g. to publish a CRL
    with pytest.raises(CAError, match=r"ca\.sqlite is corrupt: .*'bored'") as raised:
        build_crl(TestCA.load(ca_dir), CertificateKind.SIGNATURE, now=AT)
    assert "\n" not in str(raised.value)


# --- CRLs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("reason", list(RevocationReason))
def test_crl_lists_a_revoked_certificate_with_its_reason(
    ca: TestCA, reason: RevocationReason
) -> None:
    ca.revoke(AUTH_CERT.serial_number, reason, when=REVOKED_AT)
    crl = build_crl(ca, CertificateKind.AUTHENTICATION, now=AT)

    entry = crl.get_revoked_certificate_by_serial_number(AUTH_CERT.serial_number)
    assert entry is not None
    assert entry.revocation_date_utc == REVOKED_AT.replace(microsecond=0)
    reasons = [ext.value for ext in entry.extensions if isinstance(ext.value, x509.CRLReason)]
    # RFC 5280 5.3.1: unspecified is expressed by leaving the reason code out.
    expected = [] if reason is RevocationReason.UNSPECIFIED else [x509.CRLReason(reason.flag)]
    assert reasons == expected
    status = check_crl(AUTH_CERT, AUTH_CA, der(crl), at=AT)
    assert status.revoked
    assert status.reason == reason.value
    assert status.revocation_time == REVOKED_AT.replace(microsecond=0)
    assert status.source is RevocationSource.CRL


def test_crl_is_signed_and_identifies_its_ca(ca: TestCA) -> None:
    ca.revoke(AUTH_CERT.serial_number, RevocationReason.KEY_COMPROMISE)
    crl = build_crl(
        ca, CertificateKind.AUTHENTICATION, now=AT, next_update=datetime.timedelta(hours=6)
    )

    assert crl.issuer == AUTH_CA.subject
    assert crl.signature_algorithm_oid == x509.SignatureAlgorithmOID.RSA_WITH_SHA256
    assert crl.is_signature_valid(ca.authentication.private_key.public_key())
    assert crl.next_update_utc is not None
    assert crl.next_update_utc - crl.last_update_utc == datetime.timedelta(hours=6)
    key_id = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_key_id = AUTH_CA.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert key_id.key_identifier == ca_key_id.digest
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number > 0
    # The signature CA's CRL carries its own revocations, none of the authentication CA's.
    listed = {revoked.serial_number for revoked in build_crl(ca, CertificateKind.SIGNATURE)}
    assert listed == {entry.serial for entry in ca.revoked(CertificateKind.SIGNATURE)}
    assert AUTH_CERT.serial_number not in listed
    assert listed.isdisjoint(entry.serial for entry in ca.revoked(CertificateKind.AUTHENTICATION))


def test_a_good_certificate_is_not_revoked_pem_accepted(ca: TestCA) -> None:
    ca.revoke(AUTH_CERT.serial_number, RevocationReason.KEY_COMPROMISE)
    crl = build_crl(ca, CertificateKind.SIGNATURE, now=AT)
    status = check_crl(SIGN_CERT, SIGN_CA, crl.public_bytes(serialization.Encoding.PEM), at=AT)
    assert not status.revoked
    assert status.reason is None
    assert status.revocation_time is None
    assert status.source == "crl"


def test_a_crl_of_the_other_ca_is_refused(ca: TestCA) -> None:
    crl = build_crl(ca, CertificateKind.SIGNATURE, now=AT)
    with pytest.raises(RevocationCheckError, match="not by the certificate's issuer"):
        check_crl(AUTH_CERT, AUTH_CA, der(crl), at=AT)


def test_a_stale_crl_is_refused(ca: TestCA) -> None:
    crl = build_crl(ca, CertificateKind.AUTHENTICATION, now=AT - datetime.timedelta(days=2))
    with pytest.raises(RevocationCheckError, match="stale"):
        check_crl(AUTH_CERT, AUTH_CA, der(crl), at=AT)
    # the same CRL was fresh the day it was made
    assert not check_crl(AUTH_CERT, AUTH_CA, der(crl), at=AT - datetime.timedelta(days=2)).revoked


def test_a_tampered_crl_is_refused(ca: TestCA) -> None:
    ca.revoke(AUTH_CERT.serial_number, RevocationReason.KEY_COMPROMISE)
    encoded = der(build_crl(ca, CertificateKind.AUTHENTICATION, now=AT))
    serial = AUTH_CERT.serial_number.to_bytes(4, "big")
    assert encoded.count(serial) == 1
    # Rename the revoked entry to another serial: still a CRL, no longer the CA's.
    tampered = encoded.replace(serial, (AUTH_CERT.serial_number + 1).to_bytes(4, "big"))
    with pytest.raises(RevocationCheckError, match="signature does not verify"):
        check_crl(AUTH_CERT, AUTH_CA, tampered, at=AT)


def test_an_unparsable_crl_is_refused() -> None:
    with pytest.raises(RevocationCheckError, match="neither a DER nor a PEM CRL"):
        check_crl(AUTH_CERT, AUTH_CA, b"\x30\x03not a CRL", at=AT)


def test_a_crl_check_against_the_wrong_issuer_is_refused(ca: TestCA) -> None:
    crl = build_crl(ca, CertificateKind.SIGNATURE, now=AT)
    with pytest.raises(RevocationCheckError, match="not issued by the given issuer"):
        check_crl(AUTH_CERT, SIGN_CA, der(crl), at=AT)


@pytest.mark.openssl
def test_openssl_shows_the_crl_reason(ca: TestCA, tmp_path: Path) -> None:
    ca.revoke(AUTH_CERT.serial_number, RevocationReason.CESSATION_OF_OPERATION)
    crl_path = tmp_path / "auth.crl"
    crl_path.write_bytes(der(build_crl(ca, CertificateKind.AUTHENTICATION, now=AT)))
    result = subprocess.run(
        [str(OPENSSL), "crl", "-inform", "DER", "-in", str(crl_path), "-text", "-noout"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"Serial Number: {AUTH_CERT.serial_number:08X}" in result.stdout
    assert "X509v3 CRL Reason Code:" in result.stdout
    assert "Cessation Of Operation" in result.stdout
    assert "X509v3 CRL Number:" in result.stdout


# --- OCSP responses (no network) -----------------------------------------------------------------


def ocsp_request(certificate: x509.Certificate, issuer: x509.Certificate) -> bytes:
    request = ocsp.OCSPRequestBuilder().add_certificate(certificate, issuer, hashes.SHA1())
    return request.build().public_bytes(serialization.Encoding.DER)


def test_ocsp_response_is_signed_by_the_issuing_ca_and_echoes_the_nonce(ca: TestCA) -> None:
    nonce = b"n" * 32
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(AUTH_CERT, AUTH_CA, hashes.SHA256())
        .add_extension(x509.OCSPNonce(nonce), critical=False)
        .build()
    )
    moment = datetime.datetime(2026, 12, 1, 0, 0, 0, 500, tzinfo=UTC)
    response = ocsp.load_der_ocsp_response(
        build_ocsp_response(ca, request.public_bytes(serialization.Encoding.DER), now=moment)
    )

    assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert response.serial_number == AUTH_CERT.serial_number
    assert isinstance(response.hash_algorithm, hashes.SHA256)
    ca_key_id = AUTH_CA.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert response.responder_key_hash == ca_key_id.digest
    assert response.this_update_utc == moment.replace(microsecond=0)
    assert response.next_update_utc == moment.replace(microsecond=0) + datetime.timedelta(hours=1)
    assert response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == nonce
    public_key = AUTH_CA.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    public_key.verify(
        response.signature, response.tbs_response_bytes, padding.PKCS1v15(), hashes.SHA256()
    )


def test_ocsp_revoked_unspecified_has_no_reason(ca: TestCA) -> None:
    ca.revoke(SIGN_CERT.serial_number, RevocationReason.UNSPECIFIED, when=REVOKED_AT)
    response = ocsp.load_der_ocsp_response(
        build_ocsp_response(ca, ocsp_request(SIGN_CERT, SIGN_CA), now=AT)
    )
    assert response.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert response.revocation_time_utc == REVOKED_AT.replace(microsecond=0)
    assert response.revocation_reason is None
    assert not list(response.extensions)


def test_malformed_ocsp_request_is_answered_malformed(ca: TestCA) -> None:
    response = ocsp.load_der_ocsp_response(build_ocsp_response(ca, b"\x30\x00 junk"))
    assert response.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_ocsp_request_for_a_foreign_issuer_is_unauthorized(ca: TestCA) -> None:
    request = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        b"\x01" * 20, b"\x02" * 20, AUTH_CERT.serial_number, hashes.SHA1()
    )
    der_request = request.build().public_bytes(serialization.Encoding.DER)
    response = ocsp.load_der_ocsp_response(build_ocsp_response(ca, der_request))
    assert response.response_status is ocsp.OCSPResponseStatus.UNAUTHORIZED


def test_a_serial_of_the_other_ca_is_unknown(ca: TestCA) -> None:
    # The signature certificate's serial asked of the authentication CA.
    probe = ocsp.OCSPRequestBuilder().add_certificate(AUTH_CERT, AUTH_CA, hashes.SHA1()).build()
    request = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        probe.issuer_name_hash, probe.issuer_key_hash, SIGN_CERT.serial_number, hashes.SHA1()
    )
    der_request = request.build().public_bytes(serialization.Encoding.DER)
    response = ocsp.load_der_ocsp_response(build_ocsp_response(ca, der_request))
    assert response.certificate_status is ocsp.OCSPCertStatus.UNKNOWN


# --- the HTTP server and check_ocsp --------------------------------------------------------------


def test_check_ocsp_sees_a_revocation_by_another_process_without_restart(
    server: CAServer, ca_dir: Path
) -> None:
    good = check_ocsp(AUTH_CERT, AUTH_CA, ocsp_url(server), at=now())
    assert not good.revoked
    assert good.source is RevocationSource.OCSP

    # As `jpki ca revoke` would: its own TestCA on the same directory.
    TestCA.load(ca_dir).revoke(
        AUTH_CERT.serial_number, RevocationReason.KEY_COMPROMISE, when=REVOKED_AT
    )

    revoked = check_ocsp(AUTH_CERT, AUTH_CA, ocsp_url(server), at=now())
    assert revoked.revoked
    assert revoked.reason == "keyCompromise"
    assert revoked.revocation_time == REVOKED_AT.replace(microsecond=0)
    assert revoked.source == "ocsp"
    assert not check_ocsp(SIGN_CERT, SIGN_CA, ocsp_url(server), at=now()).revoked


def test_check_ocsp_of_a_serial_the_ca_never_issued_is_an_error(
    server: CAServer, ca: TestCA
) -> None:
    # Signed by the CA but never recorded, as a forged or foreign-generation certificate would be.
    holder = Holder(
        name="番号　太郎",
        birth_date=datetime.date(1980, 2, 17),
        sex=Sex.MALE,
        address="東京都渋谷区神南一丁目１９番１１号",
        my_number="123456789018",
    )
    card_key = AUTH_CERT.public_key()
    assert isinstance(card_key, rsa.RSAPublicKey)
    unrecorded = profile.build_authentication_certificate(
        AUTH_CA,
        ca.authentication.private_key,
        card_key,
        holder,
        serial=ca.next_serial + 1000,
        now=AT,
    )
    with pytest.raises(RevocationCheckError, match="^OCSP responder does not know this cert"):
        check_ocsp(unrecorded, AUTH_CA, ocsp_url(server), at=now())


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_check_ocsp_of_an_unreachable_responder_is_an_error() -> None:
    url = f"http://127.0.0.1:{unused_port()}/ocsp"
    with pytest.raises(RevocationCheckError, match="unreachable") as raised:
        check_ocsp(AUTH_CERT, AUTH_CA, url, at=AT, timeout=2)
    assert str(raised.value).startswith(f"OCSP responder at {url} unreachable: ")
    assert "\n" not in str(raised.value)


def test_check_ocsp_refuses_non_http_urls(tmp_path: Path) -> None:
    with pytest.raises(RevocationCheckError, match="not an http or https URL"):
        check_ocsp(AUTH_CERT, AUTH_CA, (tmp_path / "response").as_uri(), at=AT)


def test_check_ocsp_reports_http_errors(server: CAServer) -> None:
    with pytest.raises(RevocationCheckError, match="answered HTTP 404"):
        check_ocsp(AUTH_CERT, AUTH_CA, f"{server.base_url}/elsewhere", at=now())


def test_ocsp_get_form_is_answered(server: CAServer) -> None:
    encoded = base64.b64encode(ocsp_request(AUTH_CERT, AUTH_CA)).decode("ascii")
    url = f"{server.base_url}/ocsp/{urllib.parse.quote(encoded, safe='')}"
    with urllib.request.urlopen(url, timeout=5) as reply:
        assert reply.headers["Content-Type"] == "application/ocsp-response"
        response = ocsp.load_der_ocsp_response(reply.read())
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD


def test_ocsp_get_with_bad_base64_is_malformed(server: CAServer) -> None:
    with urllib.request.urlopen(f"{server.base_url}/ocsp/%%%%", timeout=5) as reply:
        response = ocsp.load_der_ocsp_response(reply.read())
    assert response.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_server_serves_fresh_crls(server: CAServer, ca_dir: Path) -> None:
    TestCA.load(ca_dir).revoke(AUTH_CERT.serial_number, RevocationReason.SUPERSEDED)
    with urllib.request.urlopen(f"{server.base_url}/crl/authentication.crl", timeout=5) as reply:
        assert reply.headers["Content-Type"] == "application/pkix-crl"
        status = check_crl(AUTH_CERT, AUTH_CA, reply.read(), at=now())
    assert status.revoked
    assert status.reason == "superseded"
    with urllib.request.urlopen(f"{server.base_url}/crl/signature.crl", timeout=5) as reply:
        assert not check_crl(SIGN_CERT, SIGN_CA, reply.read(), at=now()).revoked


def test_server_answers_404_elsewhere(server: CAServer) -> None:
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(f"{server.base_url}/crl/other.crl", timeout=5)
    assert raised.value.code == 404
    raised.value.close()


def test_server_logs_one_line_per_request_without_the_request(
    server: CAServer, caplog: pytest.LogCaptureFixture
) -> None:
    encoded = base64.urlsafe_b64encode(ocsp_request(AUTH_CERT, AUTH_CA)).decode("ascii")
    with caplog.at_level(logging.INFO, logger="jpki.issuer.server"):
        check_ocsp(AUTH_CERT, AUTH_CA, ocsp_url(server), at=now())
        with urllib.request.urlopen(f"{server.base_url}/ocsp/{encoded}", timeout=5) as reply:
            reply.read()
    lines = [
        record.getMessage() for record in caplog.records if record.name == "jpki.issuer.server"
    ]
    assert lines == ['127.0.0.1 "POST /ocsp" 200', '127.0.0.1 "GET /ocsp/<request>" 200']


def test_server_binds_loopback_by_default_and_needs_a_ca(tmp_path: Path, ca_dir: Path) -> None:
    with make_server(ca_dir, port=0) as bound:
        assert bound.server_address[0] == "127.0.0.1"
        assert bound.port != 0
    with pytest.raises(CAError, match="no test CA"):
        make_server(tmp_path / "empty", port=0)


@pytest.mark.openssl
def test_openssl_ocsp_agrees(server: CAServer, ca_dir: Path, tmp_path: Path) -> None:
    certificate_path = tmp_path / "auth.pem"
    certificate_path.write_bytes(AUTH_CERT.public_bytes(serialization.Encoding.PEM))
    issuer_path = ca_dir / "authentication-ca.pem"
    command = [
        str(OPENSSL),
        "ocsp",
        "-issuer",
        str(issuer_path),
        "-cert",
        str(certificate_path),
        "-url",
        ocsp_url(server),
        "-CAfile",
        str(issuer_path),
        # the responder's chain (the fixture CA) checked when it is valid; the response's own
        # times openssl checks against its clock, which is the server's
        "-attime",
        str(int(AT.timestamp())),
        "-resp_text",
    ]

    def run() -> subprocess.CompletedProcess[str]:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True)
        assert "Response verify OK" in result.stderr
        return result

    assert f"{certificate_path}: good" in run().stdout
    TestCA.load(ca_dir).revoke(AUTH_CERT.serial_number, RevocationReason.KEY_COMPROMISE)
    revoked = run().stdout
    assert f"{certificate_path}: revoked" in revoked
    assert "Reason: keyCompromise" in revoked


# --- check_ocsp against hand-made responses ------------------------------------------------------


class CannedResponder(ThreadingHTTPServer):
    """Answers every POST with `body`, whatever was asked."""

    body = b""


class CannedHandler(BaseHTTPRequestHandler):
    server: CannedResponder

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Type", "application/ocsp-response")
        self.send_header("Content-Length", str(len(self.server.body)))
        self.end_headers()
        self.wfile.write(self.server.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def canned() -> Iterator[CannedResponder]:
    with CannedResponder(("127.0.0.1", 0), CannedHandler) as running:
        thread = threading.Thread(target=running.serve_forever, args=(POLL_SECONDS,), daemon=True)
        thread.start()
        yield running
        running.shutdown()
        thread.join()


def canned_url(responder: CannedResponder) -> str:
    return f"http://127.0.0.1:{responder.server_address[1]}/ocsp"


@pytest.fixture(scope="module")
def responder_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def fixture_ca() -> TestCA:
    return TestCA.load(CA_DIR)  # read only


def responder_certificate(
    fixture_ca: TestCA, key: rsa.RSAPrivateKey, *, usages: list[x509.ObjectIdentifier]
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test OCSP responder")]))
        .issuer_name(AUTH_CA.subject)
        .serial_number(x509.random_serial_number())
        .not_valid_before(AT - datetime.timedelta(hours=1))
        .not_valid_after(AT + datetime.timedelta(days=1))
        .public_key(key.public_key())
    )
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    return builder.sign(fixture_ca.authentication.private_key, hashes.SHA256())


def make_response(
    signer: x509.Certificate,
    key: rsa.RSAPrivateKey,
    *,
    this_update: datetime.datetime | None = None,
    next_update: datetime.timedelta = datetime.timedelta(hours=1),
    nonce: bytes | None = None,
    certificates: list[x509.Certificate] | None = None,
) -> bytes:
    this_update = AT if this_update is None else this_update
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response(
            cert=AUTH_CERT,
            issuer=AUTH_CA,
            algorithm=hashes.SHA1(),
            cert_status=ocsp.OCSPCertStatus.REVOKED,
            this_update=this_update,
            next_update=this_update + next_update,
            revocation_time=REVOKED_AT.replace(microsecond=0),
            revocation_reason=x509.ReasonFlags.affiliation_changed,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, signer)
    )
    if certificates:
        builder = builder.certificates(certificates)
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def test_a_delegated_responder_with_ocsp_signing_is_accepted(
    canned: CannedResponder, fixture_ca: TestCA, responder_key: rsa.RSAPrivateKey
) -> None:
    responder = responder_certificate(
        fixture_ca, responder_key, usages=[ExtendedKeyUsageOID.OCSP_SIGNING]
    )
    canned.body = make_response(responder, responder_key, certificates=[responder])
    status = check_ocsp(AUTH_CERT, AUTH_CA, canned_url(canned), at=AT)
    assert status.revoked
    assert status.reason == "affiliationChanged"


def test_a_delegated_responder_without_ocsp_signing_is_refused(
    canned: CannedResponder, fixture_ca: TestCA, responder_key: rsa.RSAPrivateKey
) -> None:
    responder = responder_certificate(
        fixture_ca, responder_key, usages=[ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    canned.body = make_response(responder, responder_key, certificates=[responder])
    with pytest.raises(RevocationCheckError, match="lacks the OCSPSigning usage"):
        check_ocsp(AUTH_CERT, AUTH_CA, canned_url(canned), at=AT)


def test_a_response_signed_by_the_other_ca_is_refused(
    canned: CannedResponder, fixture_ca: TestCA
) -> None:
    canned.body = make_response(SIGN_CA, fixture_ca.signature.private_key)
    with pytest.raises(RevocationCheckError, match="signed neither by the issuer"):
        check_ocsp(AUTH_CERT, AUTH_CA, canned_url(canned), at=AT)


def test_a_forged_signature_is_refused(canned: CannedResponder, fixture_ca: TestCA) -> None:
    genuine = make_response(AUTH_CA, fixture_ca.authentication.private_key)
    # Without certificates the signature's last octet ends the response.
    canned.body = genuine[:-1] + bytes([genuine[-1] ^ 0x01])
    with pytest.raises(RevocationCheckError, match="signature does not verify"):
        check_ocsp(AUTH_CERT, AUTH_CA, canned_url(canned), at=AT)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"nonce": b"x" * 32}, "nonce is not the one we sent"),
        ({"this_update": AT - datetime.timedelta(hours=3)}, "stale"),
        ({"this_update": AT + datetime.timedelta(hours=1)}, "in the future"),
    ],
)
def test_replayed_stale_or_future_responses_are_refused(
    canned: CannedResponder,
    fixture_ca: TestCA,
    changes: dict[str, Any],
    message: str,
) -> None:
    canned.body = make_response(AUTH_CA, fixture_ca.authentication.private_key, **changes)
    with pytest.raises(RevocationCheckError, match=message):
        check_ocsp(AUTH_CERT, AUTH_CA, canned_url(canned), at=AT)


def test_a_response_without_a_nonce_is_accepted(
    canned: CannedResponder, fixture_ca: TestCA
) -> None:
    canned.body = make_response(AUTH_CA, fixture_ca.authentication.private_key)
    assert check_ocsp(AUTH_CERT, AUTH_CA, canned_url(canned), at=AT).revoked


def test_a_response_that_is_not_ocsp_is_an_error(canned: CannedResponder) -> None:
    canned.body = b"<html>proxy login</html>"
    with pytest.raises(RevocationCheckError, match="sent no valid OCSP response"):
        check_ocsp(AUTH_CERT, AUTH_CA, canned_url(canned), at=AT)
