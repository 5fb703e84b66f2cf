"""CA generations: `TestCA.rollover` makes a new generation (same DNs, new keys) that issues from
then on, while the older ones keep answering for their certificates (CRL per generation, OCSP by
the issuer key hash); the directory's new files are written whole, under the CA lock, and read
strictly.

The fixture CA (generation 1 only, a version-1 ca.json) stands for a CA made before generations
existed. Rollovers and issuance run at AT, when the fixture CA and cards are valid; the HTTP
server stamps its answers with the wall clock, so what asks it checks at now()."""

from __future__ import annotations

import contextlib
import datetime
import errno
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509 import ocsp

from card_emulator.state.store import read_image
from jpki import durable
from jpki.certificates import CertificateKind, authority_key_id
from jpki.issuer import ca as ca_module
from jpki.issuer import profile
from jpki.issuer.ca import (
    DATABASE_FILE,
    STATE_FILE,
    CAError,
    Generation,
    RevocationReason,
    TestCA,
    generation_certificate_files,
)
from jpki.issuer.holder import Holder, Sex
from jpki.issuer.revocation import build_crl, build_ocsp_response
from jpki.issuer.server import CAServer, make_server
from jpki.relying_party.revocation import RevocationCheckError, check_crl, check_ocsp
from jpki.relying_party.verify import TrustStore, VerificationError, verify_certificate
from tests.conftest import CARDS, FIXTURE_VALID_AT

ROOT = Path(__file__).resolve().parents[2]
AT = FIXTURE_VALID_AT
SIGN = CertificateKind.SIGNATURE
AUTH = CertificateKind.AUTHENTICATION
HOLDER = Holder(
    "世代　花子", datetime.date(1990, 1, 1), Sex.FEMALE, "東京都渋谷区１番", "123456789018"
)
POLL_SECONDS = 0.05
OCSP_REQUEST = "application/ocsp-request"


def taro(fid: int) -> x509.Certificate:
    """A certificate of the fixture card taro, issued by generation 1."""
    der = read_image(CARDS / "taro.json").contents("jpki").files[fid]
    return x509.load_der_x509_certificate(der)


TARO_SIGN, TARO_AUTH = taro(0x0001), taro(0x000A)


@pytest.fixture(scope="module")
def card_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


pytestmark = pytest.mark.usefixtures("no_proxy")


@pytest.fixture
def rolled(ca_dir: Path) -> TestCA:
    """The fixture CA rolled over once, at AT: generation 2 issues."""
    test_ca = TestCA.load(ca_dir)
    test_ca.rollover(now=AT)
    return test_ca


def rsa_key(certificate: x509.Certificate) -> rsa.RSAPublicKey:
    public_key = certificate.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    return public_key


def key_id(certificate: x509.Certificate) -> bytes:
    return x509.SubjectKeyIdentifier.from_public_key(certificate.public_key()).digest


def files(directory: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def ca_certificates(directory: Path, *generations: int) -> list[x509.Certificate]:
    paths = generation_certificate_files(directory)
    wanted = [p for p in paths if generation_of(directory, p) in generations]
    return [x509.load_pem_x509_certificate(path.read_bytes()) for path in wanted]


def generation_of(directory: Path, path: Path) -> int:
    return 1 if path.parent == directory else int(path.parent.name)


# --- a CA made before generations loads, and rolls over --------------------------------------


def test_a_ca_made_before_generations_loads_as_generation_1(ca_dir: Path) -> None:
    before = files(ca_dir)
    test_ca = TestCA.load(ca_dir)
    assert [generation.number for generation in test_ca.generations] == [1]
    assert (
        test_ca.signature.certificate.serial_number
        == test_ca.generation(1).signature.certificate.serial_number
    )
    assert {entry.generation for entry in test_ca.issued} == {1}
    assert files(ca_dir) == before  # read as it is


def test_rollover_makes_generation_2_beside_generation_1(ca_dir: Path) -> None:
    generation_1_files = {
        name: data for name, data in files(ca_dir).items() if name.endswith((".pem", ".key"))
    }
    test_ca = TestCA.load(ca_dir)
    serial_before = test_ca.next_serial
    old = test_ca.current
    new = test_ca.rollover(now=AT)

    assert new.number == 2 and test_ca.current is new
    assert test_ca.signature is new.signature and test_ca.authentication is new.authentication
    directory = ca_dir / "generations" / "2"
    assert sorted(path.name for path in directory.iterdir()) == [
        "authentication-ca.key", "authentication-ca.pem", "signature-ca.key", "signature-ca.pem",
    ]  # fmt: skip
    assert mode(ca_dir / "generations") == 0o700 and mode(directory) == 0o700
    for kind in CertificateKind:
        assert mode(directory / f"{kind.value}-ca.key") == 0o600
        assert mode(directory / f"{kind.value}-ca.pem") == 0o644
        old_certificate = old.authority(kind).certificate
        certificate = new.authority(kind).certificate
        # Same DN, new key, ten years from the rollover.
        assert certificate.subject == certificate.issuer == old_certificate.subject
        assert key_id(certificate) != key_id(old_certificate)
        assert certificate.not_valid_before_utc == AT.replace(microsecond=0)
        assert certificate.not_valid_after_utc == profile.ca_expiry(AT)
        assert serial_before <= certificate.serial_number < test_ca.next_serial
    # Generation 1's files are as they were.
    assert {name: (ca_dir / name).read_bytes() for name in generation_1_files} == generation_1_files

    reloaded = TestCA.load(ca_dir)
    assert [generation.number for generation in reloaded.generations] == [1, 2]
    assert key_id(reloaded.signature.certificate) == key_id(new.signature.certificate)
    assert key_id(reloaded.generation(1).signature.certificate) == key_id(old.signature.certificate)


def test_new_certificates_come_from_the_new_generation(
    rolled: TestCA, ca_dir: Path, card_key: rsa.RSAPrivateKey
) -> None:
    for test_ca in (rolled, TestCA.load(ca_dir)):  # this object, and another process's
        sign = test_ca.issue_signature_certificate(HOLDER, card_key.public_key(), now=AT)
        auth = test_ca.issue_authentication_certificate(HOLDER, card_key.public_key(), now=AT)
        generation_2 = test_ca.generation(2)
        assert authority_key_id(sign) == key_id(generation_2.signature.certificate)
        assert authority_key_id(auth) == key_id(generation_2.authentication.certificate)
        for certificate in (sign, auth):
            entry = test_ca.find_issued(certificate.serial_number)
            assert entry is not None and entry.generation == 2
    # Taro's certificates stay generation 1's in the record.
    for certificate in (TARO_SIGN, TARO_AUTH):
        entry = rolled.find_issued(certificate.serial_number)
        assert entry is not None and entry.generation == 1


def test_a_rollover_before_the_current_generation_starts_is_refused(ca_dir: Path) -> None:
    test_ca = TestCA.load(ca_dir)
    started = test_ca.signature.certificate.not_valid_before_utc
    with pytest.raises(CAError, match="before the start of generation 1"):
        test_ca.rollover(now=started - datetime.timedelta(days=1))
    assert not (ca_dir / "generations").exists()
    assert len(TestCA.load(ca_dir).generations) == 1


def test_a_rollover_is_not_part_of_a_batch(ca_dir: Path) -> None:
    test_ca = TestCA.load(ca_dir)
    test_ca.revoke(TARO_AUTH.serial_number, RevocationReason.SUPERSEDED, when=AT)  # migrates
    with pytest.raises(CAError, match="batch"), test_ca.batch():
        test_ca.rollover(now=AT)
    assert not (ca_dir / "generations" / "2").exists()


# --- verifiers: pinned generations ------------------------------------------------------------


def test_verifiers_accept_the_generations_they_pin(
    rolled: TestCA, ca_dir: Path, card_key: rsa.RSAPrivateKey
) -> None:
    new_sign = rolled.issue_signature_certificate(HOLDER, card_key.public_key(), now=AT)
    both = TrustStore(ca_certificates(ca_dir, 1, 2))
    old_only = TrustStore(ca_certificates(ca_dir, 1))
    new_only = TrustStore(ca_certificates(ca_dir, 2))

    at = AT + datetime.timedelta(hours=1)
    for certificate in (TARO_SIGN, new_sign):
        verified = verify_certificate(certificate, SIGN, both, at=at)
        assert key_id(verified.issuer) == authority_key_id(certificate)
    assert verify_certificate(TARO_SIGN, SIGN, old_only, at=at)
    with pytest.raises(VerificationError, match="not issued by a trusted CA") as raised:
        verify_certificate(new_sign, SIGN, old_only, at=at)
    assert raised.value.reason == "untrusted-issuer"
    with pytest.raises(VerificationError, match="not issued by a trusted CA"):
        verify_certificate(TARO_SIGN, SIGN, new_only, at=at)


# --- CRLs: one per generation, signed by its key ------------------------------------------------


def test_each_generation_signs_its_own_crl(
    rolled: TestCA, ca_dir: Path, card_key: rsa.RSAPrivateKey
) -> None:
    new_auth = rolled.issue_authentication_certificate(HOLDER, card_key.public_key(), now=AT)
    rolled.revoke(TARO_AUTH.serial_number, RevocationReason.SUPERSEDED, when=AT)
    rolled.revoke(new_auth.serial_number, RevocationReason.KEY_COMPROMISE, when=AT)
    old_ca = rolled.generation(1).authentication.certificate
    new_ca = rolled.generation(2).authentication.certificate

    crls = {number: build_crl(rolled, AUTH, generation=number, now=AT) for number in (1, 2)}
    # Generation 1's lists taro's (and what the fixture CA revoked before), not the new card's.
    listed_1 = {entry.serial_number for entry in crls[1]}
    assert TARO_AUTH.serial_number in listed_1 and new_auth.serial_number not in listed_1
    assert {entry.serial for entry in rolled.revoked(AUTH, 1)} == listed_1
    assert [entry.serial_number for entry in crls[2]] == [new_auth.serial_number]
    for number, issuer, other in ((1, old_ca, new_ca), (2, new_ca, old_ca)):
        crl = crls[number]
        assert crl.issuer == issuer.subject  # one DN: the key tells them apart
        assert crl.is_signature_valid(rsa_key(issuer))
        assert not crl.is_signature_valid(rsa_key(other))
        aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        assert aki.key_identifier == key_id(issuer)
    # The default is the current generation's.
    assert [e.serial_number for e in build_crl(rolled, AUTH, now=AT)] == [new_auth.serial_number]
    # Loaded afresh, as `jpki ca crl` does.
    reloaded = build_crl(TestCA.load(ca_dir), AUTH, generation=1, now=AT)
    assert {entry.serial_number for entry in reloaded} == listed_1

    der = {number: crl.public_bytes(serialization.Encoding.DER) for number, crl in crls.items()}
    status = check_crl(TARO_AUTH, old_ca, der[1], at=AT)
    assert status.revoked and status.reason == "superseded"
    assert check_crl(new_auth, new_ca, der[2], at=AT).reason == "keyCompromise"
    with pytest.raises(RevocationCheckError, match="another key of the issuer's name"):
        check_crl(TARO_AUTH, old_ca, der[2], at=AT)


# --- OCSP: answered by the generation that issued the certificate --------------------------------


def ocsp_request(certificate: x509.Certificate, issuer: x509.Certificate) -> bytes:
    request = ocsp.OCSPRequestBuilder().add_certificate(certificate, issuer, hashes.SHA1())
    return request.build().public_bytes(serialization.Encoding.DER)


def test_ocsp_is_answered_by_the_generation_the_request_names(
    rolled: TestCA, card_key: rsa.RSAPrivateKey
) -> None:
    new_auth = rolled.issue_authentication_certificate(HOLDER, card_key.public_key(), now=AT)
    rolled.revoke(TARO_AUTH.serial_number, RevocationReason.CERTIFICATE_HOLD, when=AT)
    old_ca = rolled.generation(1).authentication.certificate
    new_ca = rolled.generation(2).authentication.certificate

    def answer(certificate: x509.Certificate, issuer: x509.Certificate) -> ocsp.OCSPResponse:
        der = build_ocsp_response(rolled, ocsp_request(certificate, issuer), now=AT)
        response = ocsp.load_der_ocsp_response(der)
        assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
        assert response.responder_key_hash == key_id(issuer)
        assert response.signature_hash_algorithm is not None
        public_key = issuer.public_key()
        assert isinstance(public_key, rsa.RSAPublicKey)
        public_key.verify(
            response.signature,
            response.tbs_response_bytes,
            padding.PKCS1v15(),
            response.signature_hash_algorithm,
        )
        return response

    old = answer(TARO_AUTH, old_ca)
    assert old.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert old.revocation_reason is x509.ReasonFlags.certificate_hold
    assert answer(new_auth, new_ca).certificate_status is ocsp.OCSPCertStatus.GOOD
    # Asked of the wrong generation, a certificate is unknown there.
    assert answer(TARO_AUTH, new_ca).certificate_status is ocsp.OCSPCertStatus.UNKNOWN
    assert answer(new_auth, old_ca).certificate_status is ocsp.OCSPCertStatus.UNKNOWN


# --- the server: every generation, and a rollover while it runs --------------------------------


@pytest.fixture
def server(ca_dir: Path) -> Iterator[CAServer]:
    with make_server(ca_dir, port=0) as running:
        thread = threading.Thread(target=running.serve_forever, args=(POLL_SECONDS,), daemon=True)
        thread.start()
        yield running
        running.shutdown()
        thread.join()


def fetch(server: CAServer, path: str) -> bytes:
    with urllib.request.urlopen(f"{server.base_url}{path}", timeout=10) as reply:
        body: bytes = reply.read()
        return body


def test_the_server_answers_for_every_generation_after_a_rollover_while_it_runs(
    server: CAServer, ca_dir: Path, card_key: rsa.RSAPrivateKey
) -> None:
    url = f"{server.base_url}/ocsp"
    now = datetime.datetime.now(datetime.UTC)
    assert fetch(server, "/crl/signature-1.crl") == fetch(server, "/crl/signature.crl")
    # Another process rolls over, issues and revokes: the running server sees all of it.
    other = TestCA.load(ca_dir)
    other.rollover(now=AT)
    new_auth = other.issue_authentication_certificate(HOLDER, card_key.public_key(), now=AT)
    other.revoke(TARO_AUTH.serial_number, RevocationReason.SUPERSEDED, when=AT)
    old_ca = other.generation(1).authentication.certificate
    new_ca = other.generation(2).authentication.certificate

    assert check_ocsp(TARO_AUTH, old_ca, url, at=now).reason == "superseded"
    assert not check_ocsp(new_auth, new_ca, url, at=now).revoked
    # Asked of the wrong generation (as check_ocsp never asks), taro's is unknown there.
    request = urllib.request.Request(
        url, data=ocsp_request(TARO_AUTH, new_ca), headers={"Content-Type": OCSP_REQUEST}
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        response = ocsp.load_der_ocsp_response(reply.read())
    assert response.certificate_status is ocsp.OCSPCertStatus.UNKNOWN
    assert response.responder_key_hash == key_id(new_ca)

    crl_1 = fetch(server, "/crl/authentication-1.crl")
    assert check_crl(TARO_AUTH, old_ca, crl_1, at=now).revoked
    for path in ("/crl/authentication-2.crl", "/crl/authentication.crl"):
        crl = fetch(server, path)
        assert not check_crl(new_auth, new_ca, crl, at=now).revoked
        assert x509.load_der_x509_crl(crl).is_signature_valid(rsa_key(new_ca))
    for missing in ("/crl/authentication-3.crl", "/crl/authentication-0.crl", "/crl/auth-1.crl"):
        with pytest.raises(urllib.error.HTTPError) as raised:
            fetch(server, missing)
        assert raised.value.code == 404


# --- strict loading ------------------------------------------------------------------------------


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:300])


def _garbage(path: Path) -> None:
    path.write_bytes(b"not a key at all\n")


def damage_file(name: str, damage: Callable[[Path], None]) -> Callable[[Path], Path]:
    def damaged(directory: Path) -> Path:
        path = directory / "generations" / "2" / name
        damage(path)
        return path

    return damaged


def other_generations_key(directory: Path) -> Path:
    path = directory / "generations" / "2" / "signature-ca.key"
    shutil.copyfile(directory / "signature-ca.key", path)
    return path


def missing_file(directory: Path) -> Path:
    path = directory / "generations" / "2" / "authentication-ca.pem"
    path.unlink()
    return path


def stray_entry(directory: Path) -> Path:
    path = directory / "generations" / "notes"
    path.mkdir()
    return path


def generation_as_a_file(directory: Path) -> Path:
    path = directory / "generations" / "2"
    shutil.rmtree(path)
    path.write_bytes(b"")
    return path


def gap(directory: Path) -> Path:
    (directory / "generations" / "2").rename(directory / "generations" / "3")
    return directory / "generations" / "2"


def copied_generation(directory: Path) -> Path:
    target = directory / "generations" / "3"
    target.mkdir()
    for name in ("signature-ca.pem", "signature-ca.key", "authentication-ca.pem",
                 "authentication-ca.key"):  # fmt: skip
        shutil.copyfile(directory / name, target / name)
    return target / "signature-ca.pem"


def record_names_a_lost_generation(directory: Path) -> Path:
    test_ca = TestCA.load(directory)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    test_ca.issue_authentication_certificate(HOLDER, key.public_key(), now=AT)
    test_ca.close()
    shutil.rmtree(directory / "generations" / "2")
    (directory / "generations").rmdir()
    return directory / "generations" / "2"


DAMAGES = {
    "truncated-certificate": damage_file("signature-ca.pem", _truncated),
    "garbage-key": damage_file("authentication-ca.key", _garbage),
    "key-of-generation-1": other_generations_key,
    "missing-certificate": missing_file,
    "stray-entry": stray_entry,
    "generation-is-a-file": generation_as_a_file,
    "gap": gap,
    "copied-generation": copied_generation,
    "record-names-a-lost-generation": record_names_a_lost_generation,
}


@pytest.mark.parametrize("damage", DAMAGES.values(), ids=list(DAMAGES))
def test_a_damaged_generation_is_refused_in_one_line_naming_it(
    rolled: TestCA, ca_dir: Path, damage: Callable[[Path], Path]
) -> None:
    rolled.close()
    named = damage(ca_dir)
    with pytest.raises(CAError) as raised:
        TestCA.load(ca_dir)
    message = str(raised.value)
    assert "\n" not in message and str(named) in message, message


# --- a rollover is whole or absent ----------------------------------------------------------------


@pytest.mark.parametrize("failing_write", [1, 2, 3, 4])
def test_a_failed_write_leaves_no_half_generation(
    ca_dir: Path, monkeypatch: pytest.MonkeyPatch, failing_write: int
) -> None:
    test_ca = TestCA.load(ca_dir)
    with test_ca.batch():
        pass  # the record migrated from the version-1 ca.json: what fails is the generation
    real_write = durable.write_atomically
    writes = []

    def write_atomically(path: Path, data: bytes, mode: int = 0o600) -> None:
        writes.append(path)
        if len(writes) == failing_write:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real_write(path, data, mode)

    monkeypatch.setattr("jpki.issuer.ca.write_atomically", write_atomically)
    with pytest.raises(CAError, match="cannot write generation 2") as raised:
        test_ca.rollover(now=AT)
    assert "\n" not in str(raised.value)
    assert os.listdir(ca_dir / "generations") == []  # neither the generation nor a leftover
    assert len(test_ca.generations) == 1 and len(TestCA.load(ca_dir).generations) == 1

    monkeypatch.undo()
    assert test_ca.rollover(now=AT).number == 2
    assert [g.number for g in TestCA.load(ca_dir).generations] == [1, 2]


def test_a_rollover_killed_before_its_rename_leaves_a_leftover_that_is_ignored(
    ca_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A kill leaves the temporary directory as it was: here, the rename never happens and the
    # cleanup never runs.
    monkeypatch.setattr(shutil, "rmtree", lambda *args, **kwargs: None)
    monkeypatch.setattr(os, "rename", _killed)
    with pytest.raises(KeyboardInterrupt):
        TestCA.load(ca_dir).rollover(now=AT)
    monkeypatch.undo()
    (leftover,) = (ca_dir / "generations").iterdir()
    assert leftover.name.startswith(".2.") and leftover.name.endswith(".tmp")

    assert len(TestCA.load(ca_dir).generations) == 1
    assert len(generation_certificate_files(ca_dir)) == 2  # verifiers pin generation 1 only
    assert TestCA.load(ca_dir).rollover(now=AT).number == 2
    assert sorted(os.listdir(ca_dir / "generations")) == ["2"]  # the leftover is gone


def _killed(*args: object) -> None:
    raise KeyboardInterrupt


# --- rollovers at once --------------------------------------------------------------------------


def test_rollovers_in_threads_of_one_process_make_one_generation_each(rolled: TestCA) -> None:
    made: list[Generation] = []
    errors: list[BaseException] = []

    def roll() -> None:
        try:
            made.append(rolled.rollover(now=AT))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=roll) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(generation.number for generation in made) == [3, 4]
    assert [generation.number for generation in rolled.generations] == [1, 2, 3, 4]


# One process: wait for the start signal, then roll over, or issue four certificates.
ROLL_AND_ISSUE = """
import datetime, sys, time
from pathlib import Path
from cryptography.hazmat.primitives.asymmetric import rsa
from jpki.issuer.ca import TestCA
from jpki.issuer.holder import Holder, Sex
directory, action, ready, start, at = sys.argv[1:]
at = datetime.datetime.fromisoformat(at)
holder = Holder("世代　花子", datetime.date(1990, 1, 1), Sex.FEMALE, "東京都渋谷区１番",
                "123456789018")
key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
Path(ready).touch()
while not Path(start).exists():
    time.sleep(0.001)
test_ca = TestCA.load(Path(directory))
if action == "rollover":
    print(test_ca.rollover(now=at).number)
else:
    for _ in range(4):
        print(test_ca.issue_authentication_certificate(holder, key, now=at).serial_number)
"""


def test_rollovers_and_issuance_in_several_processes_lose_nothing(
    ca_dir: Path, tmp_path: Path
) -> None:
    start = tmp_path / "start"
    actions = ["rollover", "rollover", "issue", "issue"]
    processes = []
    for index, action in enumerate(actions):
        ready = tmp_path / f"ready-{index}"
        processes.append(
            (
                ready,
                subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        ROLL_AND_ISSUE,
                        str(ca_dir),
                        action,
                        str(ready),
                        str(start),
                        AT.isoformat(),
                    ],  # fmt: skip
                    cwd=ROOT,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
            )
        )
    for ready, process in processes:
        while not ready.exists():
            assert process.poll() is None, process.communicate()
            time.sleep(0.01)
    start.touch()
    outputs = []
    for _, process in processes:
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
        outputs.append([int(line) for line in stdout.split()])

    assert sorted(outputs[0] + outputs[1]) == [2, 3]  # both rollovers, one generation each
    test_ca = TestCA.load(ca_dir)
    assert [generation.number for generation in test_ca.generations] == [1, 2, 3]
    keys = {key_id(a.certificate) for g in test_ca.generations for a in g.authorities}
    assert len(keys) == 6
    # Every certificate issued meanwhile is recorded, with the generation whose key signed it.
    issued = outputs[2] + outputs[3]
    assert len(issued) == len(set(issued)) == 8
    ca_serials = {a.certificate.serial_number for g in test_ca.generations for a in g.authorities}
    assert not ca_serials & set(issued)
    for serial in issued:
        entry = test_ca.find_issued(serial)
        assert entry is not None and entry.kind is AUTH
        assert 1 <= entry.generation <= 3


# --- a ca.sqlite made before generations (version 1) ---------------------------------------------


def make_version_1_database(directory: Path) -> None:
    """The ca.sqlite the program wrote before generations: version 1, no generation column."""
    test_ca = TestCA.load(directory)
    test_ca.revoke(TARO_SIGN.serial_number, RevocationReason.AFFILIATION_CHANGED, when=AT)
    next_serial, entries = test_ca.next_serial, test_ca.issued
    test_ca.close()
    path = directory / DATABASE_FILE
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as connection:
        connection.executescript(ca_module.DATABASE_SCHEMA)
        connection.execute(f"PRAGMA application_id = {ca_module.DATABASE_APPLICATION_ID}")
        connection.execute("PRAGMA user_version = 1")
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("INSERT INTO ca VALUES (1, ?, 0, NULL)", (next_serial,))
        connection.executemany(
            f"INSERT INTO issued ({ca_module.ISSUED_COLUMNS}, changed) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0)",
            (entry.to_row() for entry in entries),
        )
    os.chmod(path, 0o600)


def user_version(directory: Path) -> int:
    with contextlib.closing(sqlite3.connect(directory / DATABASE_FILE)) as connection:
        (version,) = connection.execute("PRAGMA user_version").fetchone()
        return int(version)


def test_a_version_1_ca_sqlite_is_read_as_it_is_and_upgraded_by_the_rollover(
    ca_dir: Path, card_key: rsa.RSAPrivateKey
) -> None:
    make_version_1_database(ca_dir)
    before = (ca_dir / DATABASE_FILE).read_bytes()
    reader = TestCA.load(ca_dir)  # e.g. a running server: loaded before the upgrade
    assert {entry.generation for entry in reader.issued} == {1}
    assert TARO_SIGN.serial_number in {e.serial_number for e in build_crl(reader, SIGN, now=AT)}
    assert user_version(ca_dir) == 1 and (ca_dir / DATABASE_FILE).read_bytes() == before

    writer = TestCA.load(ca_dir)
    writer.rollover(now=AT)
    assert user_version(ca_dir) == 2
    new_auth = writer.issue_authentication_certificate(HOLDER, card_key.public_key(), now=AT)
    # The schema is the one a new CA gets.
    with contextlib.closing(sqlite3.connect(ca_dir / DATABASE_FILE)) as connection:
        schema = connection.execute(ca_module._SCHEMA_QUERY).fetchall()
    assert schema == ca_module._reference_schema(ca_module.DATABASE_VERSION)

    # The reader that loaded the version-1 file sees the new entries' generation.
    entry = reader.find_issued(new_auth.serial_number)
    assert entry is not None and entry.generation == 2
    old = reader.find_issued(TARO_SIGN.serial_number)
    assert old is not None and old.generation == 1 and old.revoked
    assert len(TestCA.load(ca_dir).issued) == len(reader.issued)


def test_a_new_ca_rolls_over_and_its_cards_chain_to_their_generation(
    tmp_path: Path, card_key: rsa.RSAPrivateKey
) -> None:
    test_ca = TestCA.create(tmp_path / "ca", now=AT)
    first = test_ca.issue_authentication_certificate(HOLDER, card_key.public_key(), now=AT)
    later = AT + datetime.timedelta(days=400)
    test_ca.rollover(now=later)
    second = test_ca.issue_authentication_certificate(HOLDER, card_key.public_key(), now=later)
    trust = TrustStore(ca_certificates(tmp_path / "ca", 1, 2))
    assert trust.issuer_of(first) == test_ca.generation(1).authentication.certificate
    assert trust.issuer_of(second) == test_ca.generation(2).authentication.certificate
    assert (tmp_path / "ca" / STATE_FILE).exists()
