"""The test CA's record in SQLite (ca.sqlite): issuers in several processes lose nothing, a
running `jpki ca serve` serves what another process records, a version-1 ca.json CA still works
and is migrated on its first write, and damage is one CAError line (exit 4). Behaviour only:
the costs are in benchmarks/issuing.py."""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509 import ocsp

from jpki.certificates import CertificateKind
from jpki.issuer import ca as ca_module
from jpki.issuer.ca import DATABASE_FILE, STATE_FILE, CAError, RevocationReason, TestCA
from jpki.issuer.holder import Holder, Sex
from jpki.issuer.revocation import build_crl
from jpki.relying_party.revocation import check_crl, check_ocsp
from tests.conftest import CA_DIR, CARDS

ROOT = Path(__file__).resolve().parents[2]
EXIT_CA = 4
UTC = datetime.UTC
HOLDER = Holder(
    "並行　発行", datetime.date(1985, 5, 5), Sex.FEMALE, "東京都港区１番", "123456789018"
)
PROCESSES = 4
ISSUED_PER_PROCESS = 12
SECONDS = 120  # for any one subprocess; they take a second or two


def card_certificate(fid: str) -> x509.Certificate:
    import base64

    image = json.loads((CARDS / "taro.json").read_text(encoding="utf-8"))
    return x509.load_der_x509_certificate(
        base64.b64decode(image["applications"]["jpki"]["files"][fid])
    )


AUTH_CERT = card_certificate("000A")  # issued by the fixture CA, recorded in its ca.json
SIGN_CERT = card_certificate("0001")
AUTH_CA = x509.load_pem_x509_certificate((CA_DIR / "authentication-ca.pem").read_bytes())
SIGN_CA = x509.load_pem_x509_certificate((CA_DIR / "signature-ca.pem").read_bytes())


def now() -> datetime.datetime:
    return datetime.datetime.now(UTC)


def public_key() -> rsa.RSAPublicKey:
    """Any RSA key will do for issuing here: no key generation in these tests."""
    key = AUTH_CERT.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    return key


def run_jpki(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=ROOT,
        env={**os.environ, "JPKI_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=SECONDS,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("jpki: error: "), result.stderr
    return lines[0]


def state_version(directory: Path) -> int:
    version = json.loads((directory / STATE_FILE).read_text(encoding="utf-8"))["version"]
    assert isinstance(version, int)
    return version


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def version_1_copy(directory: Path) -> None:
    """A copy of the fixture CA with its record in a version-1 ca.json, as earlier versions
    wrote it (the committed fixture is one; a regenerated one would be converted back)."""
    shutil.copytree(CA_DIR, directory)
    if state_version(directory) == 1:
        return
    test_ca = TestCA.load(directory)
    legacy = ca_module._dumps(test_ca._state(test_ca.next_serial, test_ca.issued))
    test_ca.close()
    for name in [DATABASE_FILE, *(DATABASE_FILE + suffix for suffix in ("-wal", "-shm"))]:
        (directory / name).unlink(missing_ok=True)
    (directory / STATE_FILE).write_bytes(legacy)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """$JPKI_HOME holding the fixture card taro and its CA, with a version-1 ca.json."""
    version_1_copy(tmp_path / "ca")
    shutil.copyfile(CARDS / "taro.json", tmp_path / "card.json")
    return tmp_path


def migrate(directory: Path) -> None:
    """Make a version-1 CA a ca.sqlite one, as its first write would."""
    test_ca = TestCA.load(directory)
    with test_ca.batch():
        pass
    test_ca.close()
    assert state_version(directory) == 2


@pytest.fixture
def migrated(home: Path) -> Path:
    migrate(home / "ca")
    return home / "ca"


# --- several processes issuing at once ------------------------------------------------------

ISSUER = """
import json, os, sys
from pathlib import Path
from cryptography import x509
from jpki.issuer.ca import CAError, RevocationReason, TestCA
from jpki.issuer.holder import Holder, Sex
directory, count, shared = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3], 16)
pem = (directory / "authentication-ca.pem").read_bytes()
key = x509.load_pem_x509_certificate(pem).public_key()
holder = Holder("並行　発行", __import__("datetime").date(1985, 5, 5), Sex.FEMALE,
                "東京都港区１番", "123456789018")
ca = TestCA.load(directory)
print("ready", flush=True)
sys.stdin.readline()  # all start issuing together
serials = []
for index in range(count):
    issue = ca.issue_signature_certificate if index % 2 else ca.issue_authentication_certificate
    certificate = issue(holder, key, label=f"{os.getpid()}-{index}")
    serials.append(certificate.serial_number)
ca.revoke(serials[0], RevocationReason.SUPERSEDED)
try:
    ca.revoke(shared, RevocationReason.KEY_COMPROMISE)
    won = True
except CAError:
    won = False
print(json.dumps({"pid": os.getpid(), "serials": serials, "won": won}), flush=True)
"""


@pytest.mark.parametrize("record", ["version-1 ca.json", "ca.sqlite"])
def test_issuers_in_several_processes_lose_nothing(home: Path, record: str) -> None:
    directory = home / "ca"
    if record == "ca.sqlite":
        migrate(directory)
    before = TestCA.load(directory).issued
    issuers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                ISSUER,
                str(directory),
                str(ISSUED_PER_PROCESS),
                f"{AUTH_CERT.serial_number:x}",
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(PROCESSES)
    ]
    try:
        for issuer in issuers:
            assert issuer.stdout is not None and issuer.stdout.readline() == "ready\n"
        for issuer in issuers:  # as close to "at once" as a test gets
            assert issuer.stdin is not None
            issuer.stdin.write("go\n")
            issuer.stdin.flush()
        reports = []
        for issuer in issuers:
            output, _ = issuer.communicate(timeout=SECONDS)
            assert issuer.returncode == 0
            reports.append(json.loads(output))
    finally:
        for issuer in issuers:
            if issuer.poll() is None:
                issuer.kill()
                issuer.wait()

    serials = [serial for report in reports for serial in report["serials"]]
    assert len(set(serials)) == len(serials) == PROCESSES * ISSUED_PER_PROCESS
    assert sum(report["won"] for report in reports) == 1  # one revocation of a shared serial
    final = TestCA.load(directory)
    assert state_version(directory) == 2  # migrated once, whoever did it
    recorded = {entry.serial: entry for entry in final.issued}
    assert set(serials) | {entry.serial for entry in before} == set(recorded)
    assert final.next_serial > max(recorded)
    for report in reports:
        for index, serial in enumerate(report["serials"]):
            entry = recorded[serial]
            assert entry.label == f"{report['pid']}-{index}"
            assert entry.kind is (CertificateKind.SIGNATURE if index % 2 else
                                  CertificateKind.AUTHENTICATION)  # fmt: skip
            # each process's first certificate was revoked by that process, no other
            assert entry.revoked == (index == 0)
    shared = recorded[AUTH_CERT.serial_number]
    assert shared.revocation is not None
    assert shared.revocation.reason is RevocationReason.KEY_COMPROMISE


def test_threads_of_one_process_share_a_ca(migrated: Path) -> None:
    test_ca = TestCA.load(migrated)
    serials: list[int] = []

    def issue() -> None:
        for _ in range(5):
            serials.append(
                test_ca.issue_authentication_certificate(HOLDER, public_key()).serial_number
            )

    threads = [threading.Thread(target=issue) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(serials)) == 20
    assert set(serials) <= {entry.serial for entry in TestCA.load(migrated).issued}


def test_a_batch_is_recorded_whole_or_not_at_all(migrated: Path) -> None:
    test_ca = TestCA.load(migrated)
    first = test_ca.next_serial
    revoked_before = test_ca.revoked(CertificateKind.AUTHENTICATION)  # the fixture has some
    with pytest.raises(RuntimeError), test_ca.batch():
        test_ca.issue_authentication_certificate(HOLDER, public_key())
        test_ca.revoke(AUTH_CERT.serial_number, RevocationReason.SUPERSEDED)
        raise RuntimeError("the card could not be written")
    reloaded = TestCA.load(migrated)
    assert reloaded.next_serial == first
    assert reloaded.find_issued(first) is None
    assert reloaded.revoked(CertificateKind.AUTHENTICATION) == revoked_before
    with test_ca.batch():
        one = test_ca.issue_authentication_certificate(HOLDER, public_key())
        two = test_ca.issue_signature_certificate(HOLDER, public_key())
    assert (one.serial_number, two.serial_number) == (first, first + 1)
    assert TestCA.load(migrated).next_serial == first + 2


# --- a running server serves what other processes record ------------------------------------


@dataclass
class Server:
    process: subprocess.Popen[str]
    url: str
    log: Path


@pytest.fixture
def server(home: Path) -> Iterator[Server]:
    log = home / "server.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", "ca", "serve", "--port", "0"],
            cwd=ROOT, env={**os.environ, "JPKI_HOME": str(home), "NO_PROXY": "*"},
            stdout=subprocess.PIPE, stderr=sink, text=True,
        )  # fmt: skip
    assert process.stdout is not None
    match = re.search(r"(http://[\d.]+:\d+)/ocsp", process.stdout.readline())
    assert match, "the server did not start"
    yield Server(process, match[1], log)
    process.terminate()
    process.wait(timeout=SECONDS)
    assert "Traceback" not in log.read_text()


def no_nonce_request(serial: int, issuer: x509.Certificate = AUTH_CA) -> bytes:
    """A request as RFC 5019 clients send it: no nonce, so a pre-signed answer will do."""
    probe = ocsp.OCSPRequestBuilder().add_certificate(AUTH_CERT, AUTH_CA, hashes.SHA1()).build()
    if issuer is not AUTH_CA:
        probe = ocsp.OCSPRequestBuilder().add_certificate(SIGN_CERT, SIGN_CA, hashes.SHA1()).build()
    request = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        probe.issuer_name_hash, probe.issuer_key_hash, serial, hashes.SHA1()
    )
    return request.build().public_bytes(serialization.Encoding.DER)


def post(server: Server, request: bytes) -> bytes:
    with urllib.request.urlopen(
        urllib.request.Request(
            f"{server.url}/ocsp",
            data=request,
            headers={"Content-Type": "application/ocsp-request"},
        ),
        timeout=30,
    ) as reply:
        body: bytes = reply.read()
    return body


def status(body: bytes) -> ocsp.OCSPCertStatus:
    response = ocsp.load_der_ocsp_response(body)
    assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    return response.certificate_status


@pytest.mark.parametrize("record", ["version-1 ca.json", "ca.sqlite"])
def test_a_running_server_serves_what_other_processes_record(
    home: Path, record: str, request: pytest.FixtureRequest
) -> None:
    if record == "ca.sqlite":
        migrate(home / "ca")
    served: Server = request.getfixturevalue("server")
    asked = no_nonce_request(AUTH_CERT.serial_number)
    first = post(served, asked)
    assert status(first) is ocsp.OCSPCertStatus.GOOD
    assert post(served, asked) == first  # pre-signed: the same response again
    assert not check_ocsp(AUTH_CERT, AUTH_CA, f"{served.url}/ocsp", at=now()).revoked  # nonce

    revoked = run_jpki(home, "ca", "revoke", f"{AUTH_CERT.serial_number:X}",
                       "--reason", "keyCompromise", "--yes")  # fmt: skip
    assert revoked.returncode == 0, revoked.stderr
    assert state_version(home / "ca") == 2  # the revocation migrated a version-1 CA
    assert status(post(served, asked)) is ocsp.OCSPCertStatus.REVOKED
    with_nonce = check_ocsp(AUTH_CERT, AUTH_CA, f"{served.url}/ocsp", at=now())
    assert with_nonce.revoked and with_nonce.reason == "keyCompromise"
    with urllib.request.urlopen(f"{served.url}/crl/authentication.crl", timeout=30) as reply:
        assert check_crl(AUTH_CERT, AUTH_CA, reply.read(), at=now()).revoked
    assert status(post(served, no_nonce_request(SIGN_CERT.serial_number, SIGN_CA))) is (
        ocsp.OCSPCertStatus.GOOD
    )

    # A serial not issued yet is unknown; once another process issues it, it is good.
    upcoming = TestCA.load(home / "ca").next_serial  # card create issues auth first
    unknown = no_nonce_request(upcoming)
    assert status(post(served, unknown)) is ocsp.OCSPCertStatus.UNKNOWN
    created = run_jpki(home, "card", "create", "--card", str(home / "new.json"),
                       "--auth-pin", "1234", "--sign-pin", "ABC123")  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert status(post(served, unknown)) is ocsp.OCSPCertStatus.GOOD


# --- a version-1 ca.json CA -----------------------------------------------------------------


def files(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def test_a_version_1_ca_is_read_as_it_is_until_its_first_write(home: Path) -> None:
    directory = home / "ca"
    before = files(directory)
    legacy = TestCA.load(directory)
    entries = legacy.issued
    assert entries and legacy.find_issued(AUTH_CERT.serial_number) is not None
    # The revocations are those the version-1 ca.json records (the fixture CA has some).
    recorded = json.loads(before[STATE_FILE])["issued"]
    revoked_in_file = {
        int(entry["serial"], 16)
        for entry in recorded
        if entry["kind"] == CertificateKind.SIGNATURE.value and "revocation" in entry
    }
    assert revoked_in_file
    assert {entry.serial for entry in legacy.revoked(CertificateKind.SIGNATURE)} == revoked_in_file
    listed = build_crl(legacy, CertificateKind.SIGNATURE)
    assert {revoked.serial_number for revoked in listed} == revoked_in_file
    crl = run_jpki(home, "ca", "crl", "sign", "-o", str(home / "sign.crl"))
    assert crl.returncode == 0, crl.stderr
    assert files(directory) == before  # reading wrote nothing (no ca.sqlite either)

    certificate = legacy.issue_authentication_certificate(HOLDER, public_key(), label="first")
    assert certificate.serial_number == int(json.loads(before[STATE_FILE])["next_serial"], 16)
    assert state_version(directory) == 2
    settings = json.loads((directory / STATE_FILE).read_text(encoding="utf-8"))
    old = json.loads(before[STATE_FILE])
    assert settings == {name: old[name] for name in ca_module.SETTINGS_FIELDS} | {"version": 2}
    assert mode(directory / DATABASE_FILE) == 0o600 and mode(directory / STATE_FILE) == 0o600
    migrated = TestCA.load(directory)
    assert migrated.issued[: len(entries)] == entries  # every entry, exactly
    assert migrated.find_issued(certificate.serial_number) is not None
    assert migrated.next_serial == certificate.serial_number + 1
    for name, content in before.items():  # keys and certificates untouched
        if name != STATE_FILE:
            assert (directory / name).read_bytes() == content


def test_jpki_card_create_migrates_a_version_1_ca(home: Path) -> None:
    result = run_jpki(home, "card", "create", "--card", str(home / "new.json"),
                      "--auth-pin", "1234", "--sign-pin", "ABC123")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert state_version(home / "ca") == 2
    info = json.loads(run_jpki(home, "card", "info", "--card", str(home / "new.json"),
                               "--json").stdout)  # fmt: skip
    recorded = TestCA.load(home / "ca")
    for name in ("auth", "sign"):
        serial = int(info["certificates"][name]["serial"], 16)
        assert recorded.find_issued(serial) is not None


def test_an_interrupted_migration_is_finished_by_the_next_write(tmp_path: Path) -> None:
    """A crash after ca.sqlite was made but before ca.json was rewritten."""
    done, interrupted = tmp_path / "done", tmp_path / "interrupted"
    version_1_copy(done)
    version_1_copy(interrupted)
    migrate(done)
    shutil.copyfile(done / DATABASE_FILE, interrupted / DATABASE_FILE)
    assert state_version(interrupted) == 1
    read = TestCA.load(interrupted)  # the record is ca.sqlite's
    assert read.issued == TestCA.load(done).issued
    read.revoke(SIGN_CERT.serial_number, RevocationReason.SUPERSEDED)
    assert state_version(interrupted) == 2
    assert TestCA.load(interrupted).revoked(CertificateKind.SIGNATURE)[0].serial == (
        SIGN_CERT.serial_number
    )


def test_a_ca_sqlite_not_made_from_the_ca_json_beside_it_is_refused(tmp_path: Path) -> None:
    done, other = tmp_path / "done", tmp_path / "other"
    version_1_copy(done)
    version_1_copy(other)
    migrate(done)
    shutil.copyfile(done / DATABASE_FILE, other / DATABASE_FILE)
    state = other / STATE_FILE
    state.write_bytes(state.read_bytes().replace(b'"issued": [', b'"issued": [ ', 1))
    with pytest.raises(CAError, match="was not made from") as raised:
        TestCA.load(other)
    assert "\n" not in str(raised.value)


def test_a_refused_first_write_leaves_a_version_1_ca_as_it_was(home: Path) -> None:
    before = files(home / "ca")
    with pytest.raises(CAError, match="no certificate with serial"):
        TestCA.load(home / "ca").revoke(0x7FFFFF00, RevocationReason.SUPERSEDED)
    after = files(home / "ca")
    assert after.pop(ca_module.LOCK_FILE, b"") == b""  # the lock was taken, nothing else
    assert after == before


# --- new CAs: files and modes ---------------------------------------------------------------


@pytest.fixture(scope="module")
def new_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("new") / "ca"
    previous = os.umask(0)
    try:
        test_ca = TestCA.create(directory)
        test_ca.issue_authentication_certificate(HOLDER, public_key())
        # While a connection is open, SQLite's companions exist: they must be private too.
        for suffix in ("-wal", "-shm"):
            assert mode(Path(f"{directory / DATABASE_FILE}{suffix}")) == 0o600
        test_ca.close()
    finally:
        os.umask(previous)
    return directory


def test_a_new_ca_keeps_its_record_in_ca_sqlite(new_ca: Path) -> None:
    assert state_version(new_ca) == 2
    assert mode(new_ca / DATABASE_FILE) == 0o600 and mode(new_ca / STATE_FILE) == 0o600
    assert mode(new_ca) == 0o700
    assert len(TestCA.load(new_ca).issued) == 1
    assert DATABASE_FILE in ca_module.CA_FILES


def test_a_ca_without_its_record_is_refused(new_ca: Path, tmp_path: Path) -> None:
    copy = tmp_path / "ca"
    shutil.copytree(new_ca, copy)
    (copy / DATABASE_FILE).unlink()
    with pytest.raises(CAError, match=r"ca\.sqlite is missing"):
        TestCA.load(copy)
    assert not (copy / DATABASE_FILE).exists()  # never re-created empty


# --- a damaged ca.sqlite is one CAError line ------------------------------------------------


def sql(*statements: str) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        connection = sqlite3.connect(path)
        try:
            for statement in statements:
                connection.execute(statement)
            connection.commit()
        finally:
            connection.close()

    return damage


def garbage(path: Path) -> None:
    path.write_bytes(b"not a database at all, just some bytes" * 100)


def truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:1000])


def zeroed_pages(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[4096:] = bytes(len(data) - 4096)
    path.write_bytes(bytes(data))


# (damage, what the message names); all found by TestCA.load + reading the record
DAMAGES = {
    "garbage": (garbage, "is corrupt"),
    "truncated": (truncated, ""),
    "zeroed-pages": (zeroed_pages, "is corrupt"),
    "application-id": (sql("PRAGMA application_id = 7"), "not a jpki-emulator-ca database"),
    "version": (sql("PRAGMA user_version = 9"), "has version 9"),
    "extra-table": (sql("CREATE TABLE notes (x)"), "tables are not the ones"),
    "extra-column": (sql("ALTER TABLE issued ADD COLUMN note TEXT"), "tables are not the ones"),
    "no-ca-row": (sql("DELETE FROM ca"), "exactly one row"),
    "next-serial-reused": (
        sql("UPDATE ca SET next_serial = (SELECT max(serial) FROM issued)"),
        "not below next_serial",
    ),  # fmt: skip
    "kind": (sql("UPDATE issued SET kind = 'encryption'"), ".kind"),
    "not-after": (sql("UPDATE issued SET not_after = '2031-02-17T23:59:59+09:00'"), ".not_after"),
    "half-a-revocation": (
        sql("UPDATE issued SET revocation_time = '2026-01-01T00:00:00+00:00'"),
        "both its time and its reason",
    ),  # fmt: skip
    "reason": (
        sql(
            "UPDATE issued SET revocation_time = '2026-01-01T00:00:00+00:00', "
            "revocation_reason = 'bored'"
        ),
        ".revocation_reason",
    ),  # fmt: skip
    "invalid-utf-8": (sql("UPDATE issued SET holder_name = CAST(x'fffe' AS TEXT)"), ""),
}


@pytest.mark.parametrize("damage", DAMAGES.values(), ids=list(DAMAGES))
def test_a_damaged_ca_sqlite_is_one_ca_error_line(
    migrated: Path, damage: tuple[Callable[[Path], None], str]
) -> None:
    change, named = damage
    path = migrated / DATABASE_FILE
    change(path)
    with pytest.raises(CAError) as raised:
        TestCA.load(migrated).issued  # noqa: B018
    message = str(raised.value)
    assert "\n" not in message and str(path) in message and named in message


@pytest.mark.parametrize("damage", ["garbage", "version", "reason"])
def test_a_damaged_ca_sqlite_through_the_cli_is_exit_4(
    home: Path, migrated: Path, damage: str
) -> None:
    DAMAGES[damage][0](migrated / DATABASE_FILE)
    before = (migrated / DATABASE_FILE).read_bytes()
    commands = [
        ("ca", "crl", "auth", "-o", str(home / "auth.crl")),
        ("ca", "revoke", f"{AUTH_CERT.serial_number:X}", "--yes"),
    ]
    if damage != "reason":
        # Issuing reads no existing entry, so a damaged row is found by what reads it; a file
        # that is not the record stops issuing too.
        commands.append(("card", "create", "--card", str(home / "new.json"),
                         "--auth-pin", "1234", "--sign-pin", "ABC123"))  # fmt: skip
    for command in commands:
        result = run_jpki(home, *command)
        assert result.returncode == EXIT_CA, result.stderr
        assert str(migrated / DATABASE_FILE) in one_error_line(result)
    assert (migrated / DATABASE_FILE).read_bytes() == before
    assert not (home / "new.json").exists()


# --- CA keys: checked when made, and cheaply when loaded ------------------------------------


def rewrite_key(
    path: Path, change: Callable[[rsa.RSAPrivateNumbers], rsa.RSAPrivateNumbers]
) -> None:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    damaged = change(key.private_numbers()).private_key(unsafe_skip_rsa_key_validation=True)
    path.write_bytes(
        damaged.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def other_d(numbers: rsa.RSAPrivateNumbers) -> rsa.RSAPrivateNumbers:
    return rsa.RSAPrivateNumbers(numbers.p, numbers.q, numbers.d + 2, numbers.dmp1, numbers.dmq1,
                                 numbers.iqmp, numbers.public_numbers)  # fmt: skip


def other_crt(numbers: rsa.RSAPrivateNumbers) -> rsa.RSAPrivateNumbers:
    return rsa.RSAPrivateNumbers(numbers.p, numbers.q, numbers.d, numbers.dmp1 + 2, numbers.dmq1,
                                 numbers.iqmp, numbers.public_numbers)  # fmt: skip


@pytest.mark.parametrize("name", ["signature-ca.key", "card-info-signer.key"])
@pytest.mark.parametrize("change", [other_d, other_crt])
def test_a_damaged_key_that_still_parses_is_refused(
    home: Path, name: str, change: Callable[[rsa.RSAPrivateNumbers], rsa.RSAPrivateNumbers]
) -> None:
    rewrite_key(home / "ca" / name, change)
    with pytest.raises(CAError, match=f"{re.escape(name)} is damaged"):
        TestCA.load(home / "ca")
