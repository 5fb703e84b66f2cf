"""`jpki ca rollover` end to end: a new generation issues new cards, old cards keep verifying
and their revocation is published by their own generation, and a verifier trusts the generations
it pins (by default every generation in $JPKI_HOME/ca).

Every command runs at AT ($JPKI_NOW), when the fixture CA and card taro are valid."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from card_emulator.state.store import read_image
from card_emulator.vocabulary.identifiers import JpkiFile
from jpki.certificates import authority_key_id
from tests.conftest import CA_DIR, CARDS, FIXTURE_VALID_AT

ROOT = Path(__file__).resolve().parents[2]
AT = FIXTURE_VALID_AT
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_CA = 4
EXIT_UNKNOWN = 8
KEY_ID = r"(?:[0-9A-F]{2}:){19}[0-9A-F]{2}"


def jpki(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "JPKI_HOME": str(home), "JPKI_NOW": AT.isoformat()}
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def ok(home: Path, *args: str) -> str:
    result = jpki(home, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def card_certificate(card: Path, fid: int) -> x509.Certificate:
    return x509.load_der_x509_certificate(read_image(card).contents("jpki").files[fid])


def key_id_text(certificate: x509.Certificate) -> str:
    key_id = x509.SubjectKeyIdentifier.from_public_key(certificate.public_key()).digest
    return key_id.hex(":").upper()


def rsa_key(certificate: x509.Certificate) -> rsa.RSAPublicKey:
    public_key = certificate.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    return public_key


def pem(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


@pytest.fixture(scope="module")
def rolled_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """JPKI_HOME: the fixture CA rolled over once, taro's card (generation 1), a new card
    (generation 2), and a document signed by each."""
    home = tmp_path_factory.mktemp("rolled")
    shutil.copytree(CA_DIR, home / "ca")
    shutil.copyfile(CARDS / "taro.json", home / "card.json")
    (home / "doc.txt").write_text("契約書\n", encoding="utf-8")
    home.joinpath("rollover.out").write_text(ok(home, "ca", "rollover"))
    ok(home, "card", "create", "--card", str(home / "new.json"),
       "--auth-pin", "1234", "--sign-pin", "ABC123")  # fmt: skip
    for card, signature in (("card.json", "old.p7s"), ("new.json", "new.p7s")):
        ok(home, "--card", str(home / card), "sign", str(home / "doc.txt"), "--pin", "ABC123",
           "-o", str(home / signature))  # fmt: skip
    return home


@pytest.fixture
def home(tmp_path: Path, rolled_home: Path) -> Path:
    """A copy of `rolled_home` that a test may change."""
    copy = tmp_path / "home"
    shutil.copytree(rolled_home, copy)
    return copy


def generation_files(home: Path, number: int) -> dict[str, Path]:
    directory = home / "ca" if number == 1 else home / "ca" / "generations" / str(number)
    return {kind: directory / f"{kind}-ca.pem" for kind in ("signature", "authentication")}


def test_rollover_prints_the_generation_and_its_key_ids(rolled_home: Path) -> None:
    output = (rolled_home / "rollover.out").read_text()
    files = generation_files(rolled_home, 2)
    assert output.splitlines()[0].startswith(f"Generation 2 of the test CA in {rolled_home / 'ca'}")
    for key, kind in (("sign", "signature"), ("auth", "authentication")):
        line = next(line for line in output.splitlines() if line.strip().startswith(f"{key} CA"))
        shown = re.search(KEY_ID, line)
        assert shown is not None and shown[0] == key_id_text(pem(files[kind]))
        assert str(files[kind]) in line
    listing = ok(rolled_home, "ca", "generations")
    assert "Generation 1:" in listing and "Generation 2:" in listing
    assert listing.index("(issues)") > listing.index("Generation 2:")
    assert str(generation_files(rolled_home, 1)["signature"]) in listing


def test_help_says_where_the_certificates_are(rolled_home: Path) -> None:
    help_text = ok(rolled_home, "ca", "rollover", "--help")
    assert "Example:" in help_text and "jpki ca rollover" in help_text
    assert "generations/N/signature-ca.pem" in help_text and "--ca-cert" in help_text


def test_a_new_card_comes_from_generation_2_and_an_old_one_stays_generation_1(
    rolled_home: Path,
) -> None:
    for fid in (JpkiFile.SIGNATURE_CERTIFICATE, JpkiFile.AUTHENTICATION_CERTIFICATE):
        kind = "signature" if fid == JpkiFile.SIGNATURE_CERTIFICATE else "authentication"
        new = card_certificate(rolled_home / "new.json", fid)
        old = card_certificate(rolled_home / "card.json", fid)
        new_ca, old_ca = (
            pem(generation_files(rolled_home, 2)[kind]),
            pem(generation_files(rolled_home, 1)[kind]),
        )
        assert authority_key_id(new) == bytes.fromhex(key_id_text(new_ca).replace(":", ""))
        assert authority_key_id(old) == bytes.fromhex(key_id_text(old_ca).replace(":", ""))
        assert new.issuer == old.issuer  # one DN for every generation
    # The new card holds its own generation's CA certificates.
    image = read_image(rolled_home / "new.json").contents("jpki").files
    anchor = x509.load_der_x509_certificate(image[JpkiFile.SIGNATURE_CA_CERTIFICATE])
    assert anchor == pem(generation_files(rolled_home, 2)["signature"])


def verify(home: Path, signature: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return jpki(home, "verify", str(home / "doc.txt"), str(home / signature), *extra)


def test_verifiers_trust_the_generations_they_pin(rolled_home: Path) -> None:
    generation_1 = generation_files(rolled_home, 1)["signature"]
    generation_2 = generation_files(rolled_home, 2)["signature"]
    for signature in ("old.p7s", "new.p7s"):
        # Without --ca-cert: every generation in $JPKI_HOME/ca.
        assert verify(rolled_home, signature).returncode == 0
        both = verify(rolled_home, signature, "--ca-cert", str(generation_1),
                      "--ca-cert", str(generation_2))  # fmt: skip
        assert both.returncode == 0, both.stdout
    assert verify(rolled_home, "old.p7s", "--ca-cert", str(generation_1)).returncode == 0
    refused = verify(rolled_home, "new.p7s", "--ca-cert", str(generation_1))
    assert refused.returncode == EXIT_FAILURE
    assert "not issued by a trusted CA" in refused.stdout
    login = jpki(rolled_home, "--card", str(rolled_home / "new.json"), "login", "--pin", "1234",
                 "--json")  # fmt: skip
    assert login.returncode == 0, login.stdout + login.stderr
    assert json.loads(login.stdout)["valid"] is True


def test_each_generation_publishes_the_revocations_of_its_certificates(home: Path) -> None:
    ok(home, "ca", "revoke", "--card", str(home / "card.json"), "--cert", "sign",
       "--reason", "affiliationChanged", "--yes")  # fmt: skip
    crls = {}
    for number in (1, 2):
        crls[number] = home / f"sign-{number}.crl"
        written = ok(home, "ca", "crl", "sign", "--generation", str(number),
                     "-o", str(crls[number]))  # fmt: skip
        assert f"generation {number}" in written
    current = home / "sign.crl"
    ok(home, "ca", "crl", "sign", "-o", str(current))
    assert x509.load_der_x509_crl(current.read_bytes()).is_signature_valid(
        rsa_key(pem(generation_files(home, 2)["signature"]))
    )
    for number in (1, 2):
        crl = x509.load_der_x509_crl(crls[number].read_bytes())
        own = pem(generation_files(home, number)["signature"])
        assert crl.is_signature_valid(rsa_key(own))

    old_revoked = verify(home, "old.p7s", "--crl", str(crls[1]))
    assert old_revoked.returncode == EXIT_FAILURE
    assert "revoked" in old_revoked.stdout and "affiliationChanged" in old_revoked.stdout
    assert verify(home, "new.p7s", "--crl", str(crls[2])).returncode == 0
    # Another generation's CRL says nothing about a certificate: its status is unknown.
    wrong = verify(home, "old.p7s", "--crl", str(crls[2]))
    assert wrong.returncode == EXIT_UNKNOWN
    assert "another key" in wrong.stdout

    missing = jpki(home, "ca", "crl", "sign", "--generation", "3", "-o", str(home / "x.crl"))
    assert missing.returncode == EXIT_USAGE and "generations 1 to 2" in missing.stderr
    assert not (home / "x.crl").exists()


def test_a_damaged_generation_certificate_is_exit_4_naming_it(home: Path) -> None:
    damaged = generation_files(home, 2)["signature"]
    damaged.write_bytes(damaged.read_bytes()[:300])
    for result in (
        verify(home, "old.p7s"),
        jpki(home, "ca", "rollover"),
        jpki(home, "ca", "crl", "sign", "-o", str(home / "sign.crl")),
    ):
        assert result.returncode == EXIT_CA, result.stdout + result.stderr
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and str(damaged) in lines[0], result.stderr
    assert not (home / "ca" / "generations" / "3").exists()


def test_a_generation_directory_others_can_write_is_refused(home: Path) -> None:
    directory = home / "ca" / "generations" / "2"
    os.chmod(directory, 0o777)
    refused = verify(home, "old.p7s")
    assert refused.returncode == EXIT_CA
    assert str(directory) in refused.stderr and "writable" in refused.stderr
    os.chmod(directory, 0o700)
    assert verify(home, "old.p7s").returncode == 0
