"""Holder and relying-party commands end to end: sign, verify, revocation, login, PINs, openssl.

Signatures of the fixture card are verified `--at` a fixed moment when the fixture CA and card are
valid, never on today's date: the committed certificates expire. Revocation needs the CA's own
clock (`jpki ca crl` and the OCSP responder stamp their answers with now), so those tests use a
CA created and a card issued today, checked today, which holds on any date.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from card_emulator.state.store import FileStore, read_image
from card_emulator.vocabulary.identifiers import JpkiFile
from card_emulator.vocabulary.pins import Pin
from jpki.issuer.ca import TestCA
from jpki.issuer.holder import Holder, Sex
from jpki.issuer.provision import provision_card
from tests.cli.test_card_commands import jpki
from tests.conftest import CA_DIR, CARDS

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = "契約書: the holder agrees.\n"
TARO = Holder(
    "番号　太郎", datetime.date(1980, 2, 17), Sex.MALE, "東京都渋谷区神南一丁目１９番１１号",
    "123456789018",
)  # fmt: skip


def fixture_valid_at() -> datetime.datetime:
    """A day after the fixture card was issued: its certificates and the fixture CA are valid."""
    der = read_image(CARDS / "taro.json").contents("jpki").files[JpkiFile.SIGNATURE_CERTIFICATE]
    return x509.load_der_x509_certificate(der).not_valid_before_utc + datetime.timedelta(days=1)


VALID_AT = fixture_valid_at()
AT_VALID = ("--at", VALID_AT.isoformat())


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """JPKI_HOME with a copy of the fixture CA and the fixture card `taro` as the default card."""
    home = tmp_path / "home"
    shutil.copytree(CA_DIR, home / "ca")
    shutil.copyfile(CARDS / "taro.json", home / "card.json")
    (home / "doc.txt").write_text(DOCUMENT)
    return home


@pytest.fixture(scope="module")
def issued_today(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA created and a card issued for TARO on the wall clock's today (generated keys)."""
    directory = tmp_path_factory.mktemp("issued-today")
    ca = TestCA.create(directory / "ca")
    FileStore.create(directory / "card.json", provision_card(ca, TARO, "1234", "ABC123"))
    return directory


@pytest.fixture
def live_home(tmp_path: Path, issued_today: Path) -> Path:
    """Like `home`, with the CA and card of today, for checks that run on the CA's clock."""
    home = tmp_path / "home"
    shutil.copytree(issued_today, home)
    (home / "doc.txt").write_text(DOCUMENT)
    return home


def sign(home: Path, key: str = "sign", pin: str = "ABC123") -> Path:
    result = jpki(home, "sign", "--key", key, "--pin", pin, str(home / "doc.txt"),
                  "-o", str(home / f"doc.{key}.p7s"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    return home / f"doc.{key}.p7s"


def verify(home: Path, signature: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return jpki(home, "verify", str(home / "doc.txt"), str(signature), *extra)


def test_sign_and_verify_with_the_signature_key(home: Path) -> None:
    result = verify(home, sign(home), "--json", *AT_VALID)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["valid"] is True and report["signer"]["revocation"] == "not checked"


def test_sign_and_verify_with_the_authentication_key(home: Path) -> None:
    signature = sign(home, "auth", "1234")
    accepted = verify(home, signature, "--purpose", "auth", *AT_VALID)
    assert accepted.returncode == 0, accepted.stdout
    # An authentication certificate must not pass as a signature certificate.
    refused = verify(home, signature, "--json", *AT_VALID)
    assert refused.returncode == 1
    assert json.loads(refused.stdout)["reason"] == "wrong-purpose"


def test_tampered_data_fails_with_its_reason(home: Path) -> None:
    signature = sign(home)
    (home / "doc.txt").write_text("契約書: the holder disagrees.\n")
    result = verify(home, signature, *AT_VALID)
    assert result.returncode == 1
    assert result.stdout.startswith("INVALID: the signed data does not match")


def test_a_signature_from_another_ca_fails(home: Path, tmp_path: Path) -> None:
    signature = sign(home)
    other = TestCA.create(tmp_path / "other-ca")  # same DN, other keys
    pinned = tmp_path / "other-sign-ca.pem"
    pinned.write_bytes(other.signature.certificate.public_bytes(serialization.Encoding.PEM))
    result = verify(home, signature, "--ca-cert", str(pinned), "--json", *AT_VALID)
    assert result.returncode == 1
    assert json.loads(result.stdout)["reason"] == "untrusted-issuer"


def test_an_expired_certificate_fails(home: Path) -> None:
    ca = TestCA.load(home / "ca")
    address = "東京都港区芝公園４丁目２番８号"
    holder = Holder("期限　切子", datetime.date(1970, 5, 5), Sex.FEMALE, address, "123456789018")
    issued = datetime.datetime(2015, 1, 6, tzinfo=datetime.UTC)
    image = provision_card(ca, holder, "1234", "ABC123", now=issued)
    FileStore.create(home / "old.json", image)
    result = jpki(home, "--card", str(home / "old.json"), "sign", "--pin", "ABC123",
                  str(home / "doc.txt"), "-o", str(home / "old.p7s"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    # At VALID_AT the CA is valid and the card's certificate long expired.
    refused = verify(home, home / "old.p7s", *AT_VALID)
    assert refused.returncode == 1
    assert refused.stdout.strip() == "INVALID: certificate expired on 2019-05-05 14:59:59Z"


def test_a_certificate_revoked_on_the_crl_fails(live_home: Path) -> None:
    home = live_home
    signature = sign(home)
    revoked = jpki(home, "ca", "revoke", "--cert", "sign", "--reason", "keyCompromise", "--yes")
    assert revoked.returncode == 0, revoked.stderr
    assert jpki(home, "ca", "crl", "sign", "-o", str(home / "sign.crl")).returncode == 0
    result = verify(home, signature, "--crl", str(home / "sign.crl"), "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["reason"] == "revoked" and "keyCompromise" in report["message"]
    # The authentication certificate is not on the sign CA's CRL and still logs in.
    assert jpki(home, "login", "--pin", "1234").returncode == 0


@pytest.fixture
def ocsp_url(live_home: Path) -> Iterator[str]:
    """`jpki ca serve` of the live_home CA on a free loopback port, for the length of one test."""
    server = subprocess.Popen(
        [sys.executable, "-m", "cli", "ca", "serve", "--port", "0"],
        cwd=ROOT,
        env={**os.environ, "JPKI_HOME": str(live_home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert server.stdout is not None
    line = server.stdout.readline()
    match = re.search(r"OCSP at (http://127\.0\.0\.1:\d+/ocsp)", line)
    assert match, line
    yield match[1]
    server.terminate()
    server.wait(timeout=10)


def test_ocsp_good_then_revoked_without_restarting_the_responder(
    live_home: Path, ocsp_url: str
) -> None:
    home = live_home
    signature = sign(home)
    good = verify(home, signature, "--ocsp", ocsp_url, "--json")
    assert good.returncode == 0, good.stdout
    assert json.loads(good.stdout)["signer"]["revocation"] == "ocsp"
    assert (
        jpki(
            home, "ca", "revoke", "--cert", "sign", "--reason", "affiliationChanged", "--yes"
        ).returncode
        == 0
    )
    revoked = verify(home, signature, "--ocsp", ocsp_url)
    assert revoked.returncode == 1
    assert "revoked" in revoked.stdout and "affiliationChanged" in revoked.stdout


def test_login_as_a_relying_party(live_home: Path, ocsp_url: str) -> None:
    home = live_home
    nonce = "00112233445566778899aabbccddeeff"
    result = jpki(home, "login", "--pin", "1234", "--nonce", nonce, "--ocsp", ocsp_url, "--json")
    assert result.returncode == 0, result.stderr + result.stdout
    report = json.loads(result.stdout)
    certificate = x509.load_der_x509_certificate(bytes.fromhex(report["certificate"]))
    assert report["valid"] and report["nonce"] == nonce
    assert report["identity"]["serial"] == f"{certificate.serial_number:X}"
    assert report["identity"]["revocation"] == "ocsp"
    assert (
        jpki(
            home, "ca", "revoke", "--cert", "auth", "--reason", "keyCompromise", "--yes"
        ).returncode
        == 0
    )
    refused = jpki(home, "login", "--pin", "1234", "--ocsp", ocsp_url, "--json")
    assert refused.returncode == 1 and json.loads(refused.stdout)["reason"] == "revoked"


def test_pin_change_then_the_old_pin_fails(home: Path) -> None:
    changed = jpki(home, "pin", "change", "sign", "--pin", "ABC123", "--new-pin", "NEWPASS9")
    assert changed.returncode == 0, changed.stderr
    old = jpki(home, "sign", "--pin", "ABC123", str(home / "doc.txt"))
    assert old.returncode == 6
    assert old.stderr.strip() == "jpki: error: wrong signature password: 4 tries left"
    assert jpki(home, "sign", "--pin", "NEWPASS9", str(home / "doc.txt")).returncode == 0


def test_lockout_is_reported_by_pin_status(home: Path) -> None:
    for tries_left in (2, 1):
        wrong = jpki(home, "login", "--pin", "0000")
        assert wrong.stderr.strip() == (
            f"jpki: error: wrong authentication PIN: {tries_left} "
            f"{'tries' if tries_left > 1 else 'try'} left"
        )
    last = jpki(home, "login", "--pin", "0000")
    assert last.stderr.strip() == "jpki: error: wrong authentication PIN: it is now blocked"
    blocked = jpki(home, "login", "--pin", "1234")
    assert "blocked" in blocked.stderr and blocked.returncode == 6
    status = {row["key"]: row for row in json.loads(jpki(home, "pin", "status", "--json").stdout)}
    assert status["auth"] == {
        "application": "jpki", "key": "auth", "label": "authentication PIN", "ef": "0018",
        "present": True, "tries_left": 0, "max_tries": 3, "blocked": True,
        "protects": Pin.AUTH.lock.protects, "unlock": list(Pin.AUTH.lock.channels),
    }  # fmt: skip
    assert status["sign"]["tries_left"] == 5
    assert "BLOCKED" in jpki(home, "pin", "status").stdout


def test_pin_from_the_environment_and_never_printed(home: Path) -> None:
    env_home = home
    result = subprocess.run(
        [sys.executable, "-m", "cli", "-v", "cert", "read", "sign", "--format", "text"],
        cwd=ROOT,
        env={**os.environ, "JPKI_HOME": str(env_home), "JPKI_PIN": "ABC123"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "番号　太郎" in result.stdout and "1980-02-17 (Showa)" in result.stdout
    assert "414243313233" not in result.stderr and "ABC123" not in result.stderr + result.stdout


def test_cert_read_formats(home: Path) -> None:
    pem = jpki(home, "cert", "read", "auth")
    assert pem.stdout.startswith("-----BEGIN CERTIFICATE-----")
    out = home / "auth-ca.der"
    assert jpki(home, "cert", "read", "auth-ca", "--format", "der", "-o", str(out)).returncode == 0
    assert x509.load_der_x509_certificate(out.read_bytes()).subject == (
        x509.load_pem_x509_certificate((CA_DIR / "authentication-ca.pem").read_bytes()).subject
    )


@pytest.mark.openssl
def test_openssl_accepts_what_jpki_sign_writes(home: Path) -> None:
    signature = sign(home)
    result = subprocess.run(
        ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-content", home / "doc.txt",
         "-in", signature, "-CAfile", CA_DIR / "signature-ca.pem", "-purpose", "any",
         "-attime", str(int(VALID_AT.timestamp())), "-out", os.devnull],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Verification successful" in result.stderr


@pytest.mark.openssl
def test_jpki_verify_accepts_what_openssl_signs(home: Path, tmp_path: Path) -> None:
    ca = TestCA.load(home / "ca")
    key = rsa.generate_private_key(65537, 2048)
    address = "東京都新宿区西新宿２丁目８番１号"
    holder = Holder("署名　一郎", datetime.date(1985, 1, 1), Sex.MALE, address, "123456789018")
    certificate = ca.issue_signature_certificate(holder, key.public_key(), now=VALID_AT)
    (tmp_path / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))  # fmt: skip
    subprocess.run(
        ["openssl", "cms", "-sign", "-binary", "-md", "sha256", "-signer", tmp_path / "cert.pem",
         "-inkey", tmp_path / "key.pem", "-outform", "DER", "-in", home / "doc.txt",
         "-out", tmp_path / "openssl.p7s"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    result = verify(home, tmp_path / "openssl.p7s", *AT_VALID)
    assert result.returncode == 0, result.stdout
    assert result.stdout.startswith("VALID: signed by")
