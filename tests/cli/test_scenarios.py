"""The scenario guide (docs/SCENARIOS.md) as tests: forgotten auth PIN, moving house, a lost card,
the fifth birthday, and the administration APDUs, each run as a user runs it (`jpki` processes on
one JPKI_HOME, every step `--at` a fixed moment, so the tests hold on any date).

After every step the witnesses must tell one truth (`Truth`: which PINs are blocked or down some
tries, which certificates the card holds, and which of those the CA issued are good, expired or
revoked, and why): `jpki pin status --json`, `jpki card info --json`, both CRLs (`jpki ca crl`,
parsed), the OCSP answers (the issuer's responder, asked as of the step), the CA's record, and the
card itself read over APDUs (here in memory; tests/pcsc/test_scenarios_pcsc.py runs the same
scenarios through a real pcscd with pyscard).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from card_emulator.state.store import FileStore
from card_emulator.transports.memory import VirtualCard
from card_emulator.vocabulary.administration import administrator_proof
from card_emulator.vocabulary.identifiers import AID, CardInfoFile, JpkiFile
from card_emulator.vocabulary.pins import Pin
from jpki.attributes import parse_basic_attributes
from jpki.certificates import basic_attributes, ocsp_issuer_hashes
from jpki.issuer import history
from jpki.issuer.ca import TestCA
from jpki.issuer.revocation import build_ocsp_response
from tests.cli.test_card_commands import jpki
from tests.cli.test_lifecycle_cli import responder

ROOT = Path(__file__).resolve().parents[2]
UTC = datetime.UTC

# The card is issued at T0 for a holder born 1980-02-17: its certificates end on the 5th birthday
# after, 2026-02-17 23:59:59 JST, and the renewal window opens on 2025-11-18 (JST).
T0 = "2021-04-01T10:00:00+09:00"
ADDRESS = "東京都渋谷区神南一丁目１番１号"
NEW_ADDRESS = "東京都千代田区千代田１番１号"
AUTH_PIN, SIGN_PIN = "1234", "ABC123"
DOCUMENT = "契約書: the holder agrees.\n"

SIGNING_TIME = "signing-time"  # `jpki verify --at signing-time`
GOOD, EXPIRED = "good", "expired"  # a certificate's state, else its RFC 5280 revocation reason
KINDS = ("auth", "sign")
CA_FILES = {"auth": "authentication-ca.pem", "sign": "signature-ca.pem"}

# What a terminal builder sends and reads back (jpki-card.md, lifecycle.md §6).
SW_OK = 0x9000
SW_TRIES_LEFT = 0x63C0  # | tries left
SW_BLOCKED = 0x6984
SW_NOT_AUTHENTICATED = 0x6982
ADMIN_MAX_TRIES = 15
GET_CHALLENGE = bytes.fromhex("0084000010")
EXTERNAL_AUTHENTICATE = bytes.fromhex("0082000010")
SHORT_EF = 0x80  # P2 `80 | SFI` names a key reference by its short EF identifier
CHUNK = 256  # READ BINARY with Le `00`
WRONG_TAG = bytes(range(16))


def at(moment: str, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`jpki --at MOMENT ARGS…` in `home`."""
    return jpki(home, "--at", moment, *args)


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def refused(result: subprocess.CompletedProcess[str], code: int, message: str) -> None:
    """The command exited `code` with one error line that says `message`."""
    assert result.returncode == code, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jpki: error: "), result.stderr
    assert message in lines[0], lines[0]


def start(home: Path, *args: str) -> subprocess.Popen[str]:
    """`jpki ARGS…` in `home`, running."""
    return subprocess.Popen(
        [sys.executable, "-m", "cli", *args],
        cwd=ROOT,
        env={**os.environ, "JPKI_HOME": str(home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    stdout, stderr = process.communicate(timeout=120)
    return process.returncode, stdout, stderr


# --- the card over APDUs -------------------------------------------------------------------------


class Terminal:
    """Raw APDUs, as a terminal builder writes them: `transmit` sends one command APDU and returns
    its data and status word. The same scenarios run it in memory and through pcscd."""

    def __init__(self, transmit: Callable[[bytes], tuple[bytes, int]]) -> None:
        self.transmit = transmit
        self.seen: dict[str, int] = {}  # the tries left each PIN's retry query answered

    def send(self, apdu: bytes | str) -> tuple[bytes, int]:
        raw = bytes.fromhex(apdu.replace(" ", "")) if isinstance(apdu, str) else apdu
        return self.transmit(raw)

    def sw(self, apdu: bytes | str) -> int:
        return self.send(apdu)[1]

    def ok(self, apdu: bytes | str) -> bytes:
        data, sw = self.send(apdu)
        assert sw == SW_OK, f"{apdu!r} → {sw:04X}"
        return data

    def select_ap(self, aid: bytes) -> None:
        self.ok(bytes([0x00, 0xA4, 0x04, 0x0C, len(aid)]) + aid)

    def select_ef(self, fid: int) -> None:
        self.ok(bytes([0x00, 0xA4, 0x02, 0x0C, 0x02]) + fid.to_bytes(2, "big"))

    def verify(self, pin: Pin, value: str) -> int:
        """VERIFY `00 20 00 (80|SFI) Lc value` in the PIN's AP: the status word."""
        self.select_ap(pin.application.value)
        secret = value.encode()
        return self.sw(bytes([0x00, 0x20, 0x00, SHORT_EF | pin.fid, len(secret)]) + secret)

    def tries_left(self, pin: Pin) -> int:
        """The retry query `00 20 00 (80|SFI)` (no try spent): 63Cx → x."""
        self.select_ap(pin.application.value)
        sw = self.sw(bytes([0x00, 0x20, 0x00, SHORT_EF | pin.fid]))
        assert sw & 0xFFF0 == SW_TRIES_LEFT, f"retry query of {pin.key}: {sw:04X}"
        return sw & 0x000F

    def read_ef(self, fid: int) -> bytes:
        """A whole EF holding one DER/BER object with a two-byte length (30 82 HH LL, FF 20 …)."""
        self.select_ef(fid)
        data = bytearray(self.ok("00B0000000")[:CHUNK])
        size = _tlv_size(bytes(data))
        while len(data) < size:
            offset = len(data)
            want = min(size - offset, CHUNK) % CHUNK
            data += self.ok(bytes([0x00, 0xB0]) + offset.to_bytes(2, "big") + bytes([want]))
        return bytes(data[:size])

    def certificate(self, fid: int) -> x509.Certificate:
        self.select_ap(AID.JPKI.value)
        return x509.load_der_x509_certificate(self.read_ef(fid))

    def administrator(self, key: bytes | None, aid: bytes) -> int:
        """GET CHALLENGE, then EXTERNAL AUTHENTICATE with AES-CMAC(K, R ‖ AID), or a wrong tag
        when `key` is None: the status word."""
        challenge = self.ok(GET_CHALLENGE)
        assert len(challenge) == 16
        tag = WRONG_TAG if key is None else administrator_proof(key, challenge, aid)
        return self.sw(EXTERNAL_AUTHENTICATE + tag)

    def reset_retry_counter(self, pin: Pin, new_value: str | None = None) -> int:
        """RESET RETRY COUNTER `00 2C 03 (80|SFI)` (unblock) or `00 2C 02 (80|SFI) Lc value`."""
        if new_value is None:
            return self.sw(bytes([0x00, 0x2C, 0x03, SHORT_EF | pin.fid]))
        value = new_value.encode()
        return self.sw(bytes([0x00, 0x2C, 0x02, SHORT_EF | pin.fid, len(value)]) + value)


def _tlv_size(header: bytes) -> int:
    """The whole size of the TLV `header` starts (one- or two-byte tag, length up to 82 HH LL)."""
    at_length = 2 if header[0] & 0x1F == 0x1F else 1
    first = header[at_length]
    if first == 0x82:
        return at_length + 3 + int.from_bytes(header[at_length + 1 : at_length + 3], "big")
    if first == 0x81:
        return at_length + 2 + header[at_length + 1]
    return at_length + 1 + first


# How a test reaches the card file's card: a context that powers it in a reader and lets go.
CardAccess = Callable[[Path], AbstractContextManager[Terminal]]


@contextmanager
def in_memory(card: Path) -> Iterator[Terminal]:
    """The card file's card, in this process (durable, the file locked while it is open)."""
    with VirtualCard.open(card) as virtual:

        def transmit(apdu: bytes) -> tuple[bytes, int]:
            answer = virtual.transmit(apdu)
            return answer[:-2], int.from_bytes(answer[-2:], "big")

        yield Terminal(transmit)


# --- the truth and its witnesses -------------------------------------------------------------


@dataclass
class Truth:
    """What every witness must say of one card after a step. `certificates` is the CA's: every
    serial it issued (kind, and good, expired or the revocation reason); two cards of one CA
    share it."""

    card: Path
    certificates: dict[str, tuple[str, str]] = field(default_factory=dict)
    on_card: dict[str, str] = field(default_factory=dict)  # kind → serial
    # PIN → tries left, for those not at their maximum (0: blocked).
    tries: dict[str, int] = field(default_factory=dict)
    suspended: bool = False
    address: str = ADDRESS
    pins: dict[str, str] = field(
        default_factory=lambda: {"auth": AUTH_PIN, "sign": SIGN_PIN, "card-info": AUTH_PIN}
    )
    history_start: int = 0  # the card's history entries before the scenario (its issuance)

    def issued(self, kind: str, serial: str) -> None:
        self.certificates[serial] = (kind, GOOD)
        self.on_card[kind] = serial

    def revoked(self, serial: str, reason: str) -> None:
        kind, _ = self.certificates[serial]
        self.certificates[serial] = (kind, reason)

    def all_tries(self, pin: str) -> None:
        self.tries.pop(pin, None)

    def card_args(self) -> tuple[str, ...]:
        return ("--card", str(self.card))


def crl_entries(der: bytes, issuer: x509.Certificate, moment: datetime.datetime) -> dict[str, str]:
    """A CRL, checked as a relying party checks it: revoked serial → reason."""
    crl = x509.load_der_x509_crl(der)
    assert crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    assert crl.issuer == issuer.subject
    assert crl.last_update_utc == moment.astimezone(UTC).replace(microsecond=0)
    listed = {}
    for entry in crl:
        try:
            reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.value
        except x509.ExtensionNotFound:
            reason = "unspecified"
        listed[f"{entry.serial_number:X}"] = reason
    return listed


def ocsp_says(ca: TestCA, issuer: x509.Certificate, serial: str, moment: datetime.datetime) -> str:
    """The issuer's OCSP answer as of `moment`: good, unknown, or the revocation reason."""
    name_hash, key_hash = ocsp_issuer_hashes(issuer, hashes.SHA1())
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate_by_hash(name_hash, key_hash, int(serial, 16), hashes.SHA1())
        .build()
        .public_bytes(serialization.Encoding.DER)
    )
    response = ocsp.load_der_ocsp_response(build_ocsp_response(ca, request, now=moment))
    assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert response.serial_number == int(serial, 16)
    status = response.certificate_status
    if status is ocsp.OCSPCertStatus.REVOKED:
        reason = response.revocation_reason
        return "unspecified" if reason is None else reason.value
    return status.name.lower()


def expected_ocsp(state: str) -> str:
    """What OCSP answers for a certificate in `state`. After its notAfter a certificate is no
    longer answered for (`unknown`) and CRLs drop it (lifecycle.md §4)."""
    return {GOOD: "good", EXPIRED: "unknown"}.get(state, state)


def witnesses(
    home: Path, moment: str, truth: Truth, access: CardAccess | None = in_memory
) -> dict[str, Any]:
    """Every witness, as of `moment`, against `truth`; returns `jpki card info --json`."""
    now = datetime.datetime.fromisoformat(moment)
    crl_files = {kind: home / f"{kind}.crl" for kind in KINDS}
    readers = [
        start(home, "--at", moment, *truth.card_args(), "pin", "status", "--json"),
        start(home, "--at", moment, *truth.card_args(), "card", "info", "--json"),
        *(
            start(home, "--at", moment, "ca", "crl", kind, "-o", str(crl_files[kind]), "--force")
            for kind in KINDS
        ),
    ]  # they only read: all at once
    results = [finish(process) for process in readers]
    for code, stdout, stderr in results:
        assert code == 0, stdout + stderr
    rows = {row["key"]: row for row in json.loads(results[0][1])}
    info = json.loads(results[1][1])
    max_tries = {key: row["max_tries"] for key, row in rows.items()}

    # `jpki pin status` and `jpki card info`: the same counters, and which lock a blocked one is.
    for key, row in rows.items():
        pin = Pin.named(key)
        tries = truth.tries.get(key, row["max_tries"])
        assert (row["tries_left"], row["blocked"]) == (tries, tries == 0), (moment, key, row)
        lock = {"protects": pin.lock.protects, "unlock": list(pin.lock.channels)}
        same = {name: row[name] for name in ("application", "label", "tries_left", "max_tries")}
        same["blocked"] = tries == 0
        if tries == 0:
            assert {name: row[name] for name in lock} == lock
            same |= lock
        else:
            assert "protects" not in row and "unlock" not in row
        assert info["pins"][key] == same, (moment, key)

    # `jpki card info`: the holder, the certificates on the card (expired or not), the marks.
    assert info["holder"]["address"] == truth.address
    on_card = {kind: info["certificates"][kind]["serial"] for kind in KINDS}
    assert on_card == truth.on_card, moment
    for kind, serial in on_card.items():
        not_after = datetime.datetime.fromisoformat(info["certificates"][kind]["not_after"])
        assert (not_after < now) == (truth.certificates[serial][1] == EXPIRED), (moment, kind)
    assert (info["suspended"] is not None) == truth.suspended
    assert info["revoked"] is None

    # The CRLs and the OCSP answers: every certificate the CA issued, revoked or not.
    issuers = {
        kind: x509.load_pem_x509_certificate((home / "ca" / CA_FILES[kind]).read_bytes())
        for kind in KINDS
    }
    for kind in KINDS:
        listed = crl_entries(crl_files[kind].read_bytes(), issuers[kind], now)
        revoked = {
            serial: state
            for serial, (of_kind, state) in truth.certificates.items()
            if of_kind == kind and state not in (GOOD, EXPIRED)
        }
        assert listed == revoked, f"{kind} CRL as of {moment}: lists {listed}, truth {revoked}"
    ca = TestCA.load(home / "ca")
    try:
        answers = {
            serial: ocsp_says(ca, issuers[kind], serial, now)
            for serial, (kind, _state) in truth.certificates.items()
        }
        # The CA's record: what it issued, and what it revoked and why.
        record = {
            f"{entry.serial:X}": (
                entry.kind.key,
                None if entry.revocation is None else entry.revocation.reason.value,
            )
            for entry in ca.issued
        }
    finally:
        ca.close()
    expected = {
        serial: expected_ocsp(state) for serial, (_kind, state) in truth.certificates.items()
    }
    assert answers == expected, f"OCSP as of {moment}: answered {answers}, truth {expected}"
    assert set(record) == set(truth.certificates)
    for serial, (kind, state) in truth.certificates.items():
        assert record[serial][0] == kind
        if state not in (GOOD, EXPIRED):
            assert record[serial][1] == state, (moment, serial)
        elif state == GOOD:
            assert record[serial][1] is None, (moment, serial)

    # The card itself, over APDUs.
    if access is not None:
        with access(truth.card) as terminal:
            card_says(terminal, truth, max_tries, info)
    return info  # type: ignore[no-any-return]


def card_says(
    terminal: Terminal, truth: Truth, max_tries: dict[str, int], info: dict[str, Any]
) -> None:
    """What the card answers over APDUs: its counters (retry queries, no try spent), its
    certificates (the signature one after VERIFY of the password) and its four attributes (after
    VERIFY of the card-info PIN): a VERIFY only of a PIN with all its tries, which it leaves so."""
    for pin in Pin:
        terminal.seen[pin.key] = terminal.tries_left(pin)
        assert terminal.seen[pin.key] == truth.tries.get(pin.key, max_tries[pin.key]), pin.key
    auth = terminal.certificate(JpkiFile.AUTHENTICATION_CERTIFICATE)
    assert f"{auth.serial_number:X}" == truth.on_card["auth"]
    if "sign" not in truth.tries:
        assert terminal.verify(Pin.SIGN, truth.pins["sign"]) == SW_OK
        sign = terminal.certificate(JpkiFile.SIGNATURE_CERTIFICATE)
        assert f"{sign.serial_number:X}" == truth.on_card["sign"]
        # The certificate's four attributes are those `jpki card info` shows.
        shown = info["certificates"]["sign"]["holder"]
        assert basic_attributes(sign)["address"] == shown["address"]
    if "card-info" not in truth.tries:
        assert terminal.verify(Pin.CARD_INFO, truth.pins["card-info"]) == SW_OK
        terminal.select_ap(AID.CARD_INFO_INPUT_SUPPORT.value)
        attributes = parse_basic_attributes(terminal.read_ef(CardInfoFile.BASIC_ATTRIBUTES))
        assert attributes.address == truth.address


def history_of(truth: Truth) -> list[tuple[str, str, str | None]]:
    """The card's history since the scenario began: what, which channel, which target."""
    entries = history.entries(truth.card)[truth.history_start :]
    return [(entry.what, entry.channel, entry.target) for entry in entries]


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def issued(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A JPKI_HOME whose CA was created and card issued at T0, and the card's serials."""
    home = tmp_path_factory.mktemp("scenarios-home")
    ok(
        at(T0, home, "card", "create", "--auth-pin", AUTH_PIN, "--sign-pin", SIGN_PIN,
           "--name", "番号　太郎", "--birth-date", "1980-02-17", "--address", ADDRESS,
           "--my-number", "123456789018", "--security-code", "2285")
    )  # fmt: skip
    info = json.loads(ok(at(T0, home, "card", "info", "--json")).stdout)
    return home, {kind: info["certificates"][kind]["serial"] for kind in KINDS}


@pytest.fixture
def home(tmp_path: Path, issued: tuple[Path, dict[str, str]]) -> Path:
    home = tmp_path / "home"
    shutil.copytree(issued[0], home)
    (home / "doc.txt").write_text(DOCUMENT)
    return home


@pytest.fixture
def truth(home: Path, issued: tuple[Path, dict[str, str]]) -> Truth:
    """The truth right after issuance: both certificates good, every PIN with all its tries."""
    fresh = Truth(home / "card.json")
    fresh.history_start = len(history.entries(fresh.card))
    for kind, serial in issued[1].items():
        fresh.issued(kind, serial)
    return fresh


# --- 1. forgotten auth PIN ---------------------------------------------------------------------

FORGOT = "2025-04-01T10:00:00+09:00"
RESERVED = "2025-04-01T18:30:00+09:00"
TOO_LATE = "2025-04-02T19:00:00+09:00"  # 24.5 hours after the reservation
RESERVED_AGAIN = "2025-04-02T19:05:00+09:00"
AT_THE_KIOSK = "2025-04-02T19:30:00+09:00"
AT_THE_WINDOW = "2025-04-02T11:00:00+09:00"


def login(home: Path, moment: str, pin: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return at(moment, home, "login", "--pin", pin, "--json", *extra)


def logged_in(home: Path, moment: str, pin: str, *extra: str) -> dict[str, Any]:
    result = ok(login(home, moment, pin, *extra))
    answer = json.loads(result.stdout)
    assert answer["valid"] is True, answer
    return answer  # type: ignore[no-any-return]


def three_wrong_tries(home: Path, moment: str, truth: Truth) -> None:
    """Logging in with a PIN the holder misremembers, until it blocks: every witness each time."""
    for tries, says in ((2, "2 tries left"), (1, "1 try left"), (0, "it is now blocked")):
        refused(login(home, moment, "9999"), 6, f"wrong authentication PIN: {says}")
        truth.tries["auth"] = tries
        witnesses(home, moment, truth)
    refused(login(home, moment, truth.pins["auth"]), 6, "the authentication PIN is blocked")


def branch(home: Path, truth: Truth, name: str) -> tuple[Path, Truth]:
    """Another JPKI_HOME where the story goes on from here its other way."""
    other = home.with_name(name)
    shutil.copytree(home, other)
    return other, dataclasses.replace(
        copy.deepcopy(truth), card=other / truth.card.relative_to(home)
    )


def test_forgotten_auth_pin_reset_at_the_store_or_at_the_window(home: Path, truth: Truth) -> None:
    witnesses(home, FORGOT, truth)
    three_wrong_tries(home, FORGOT, truth)
    # Which lock is this: `jpki pin status` says what it protects and who can unlock it.
    text = ok(at(FORGOT, home, "pin", "status")).stdout
    assert "authentication PIN   BLOCKED" in text
    assert "protects logging in (the authentication key)" in text
    assert "jpki store reserve --sign-pin …, then jpki store reset-pin auth" in text
    window_home, window_truth = branch(home, truth, "window-home")

    # The store without a reservation, then more than 24 hours after one: refused, nothing done.
    kiosk = ("store", "reset-pin", "auth", "--sign-pin", SIGN_PIN, "--new-pin", "4321")
    refused(at(FORGOT, home, *kiosk), 9, "no reservation to reset the authentication PIN")
    witnesses(home, FORGOT, truth)
    reserved = ok(at(RESERVED, home, "store", "reserve", "--sign-pin", SIGN_PIN))
    assert reserved.stdout == (
        "Reserved a store reset of the authentication PIN until 2025-04-02T18:30:00+09:00\n"
    )
    witnesses(home, RESERVED, truth)
    refused(at(TOO_LATE, home, *kiosk), 9, "expired at 2025-04-02T18:30:00+09:00")
    # Nor can the store reset what only the window resets.
    refused(
        at(TOO_LATE, home, "store", "reset-pin", "juki", "--auth-pin", "1234", "--new-pin", "1111"),
        9,
        "a convenience store resets only the signature password and the authentication PIN",
    )
    witnesses(home, TOO_LATE, truth)

    # A new reservation, and the kiosk within 24 hours.
    ok(at(RESERVED_AGAIN, home, "store", "reserve", "--sign-pin", SIGN_PIN))
    witnesses(home, RESERVED_AGAIN, truth)
    done = ok(at(AT_THE_KIOSK, home, *kiosk))
    assert done.stdout == "authentication PIN reset at the store\n"
    truth.all_tries("auth")
    truth.pins["auth"] = "4321"
    witnesses(home, AT_THE_KIOSK, truth)
    assert logged_in(home, AT_THE_KIOSK, "4321")["identity"]["serial"] == truth.on_card["auth"]
    refused(at(AT_THE_KIOSK, home, *kiosk), 9, "already used")
    witnesses(home, AT_THE_KIOSK, truth)
    assert history_of(truth) == [
        ("reserve", "store", "auth"),
        ("reserve", "store", "auth"),
        ("reset-pin", "store", "auth"),
    ]

    # Or the window, from the same locked card: a new value at once.
    result = ok(at(AT_THE_WINDOW, window_home, "window", "reset-pin", "auth", "--new-pin", "5678"))
    assert result.stdout == "authentication PIN reset: 3 tries\n"
    window_truth.all_tries("auth")
    window_truth.pins["auth"] = "5678"
    witnesses(window_home, AT_THE_WINDOW, window_truth)
    answer = logged_in(window_home, AT_THE_WINDOW, "5678")
    assert answer["identity"]["serial"] == window_truth.on_card["auth"]
    # One more slip, and the window unblocks a PIN that is not blocked (as the spec allows).
    refused(login(window_home, AT_THE_WINDOW, "1234"), 6, "2 tries left")
    window_truth.tries["auth"] = 2
    witnesses(window_home, AT_THE_WINDOW, window_truth)
    unblocked = ok(at(AT_THE_WINDOW, window_home, "window", "unblock", "auth"))
    assert unblocked.stdout == "authentication PIN unblocked: 3 tries\n"
    window_truth.all_tries("auth")
    witnesses(window_home, AT_THE_WINDOW, window_truth)
    assert history_of(window_truth) == [
        ("reset-pin", "window", "auth"),
        ("unblock", "window", "auth"),
    ]
    for card in (truth.card, window_truth.card):  # never a PIN in the history
        written = card.with_name(card.name + ".history").read_text()
        assert not any(secret in written for secret in ("1234", "4321", "5678", SIGN_PIN))


# --- 1 over APDUs: the administration interface ------------------------------------------------

TERMINAL = "2025-04-01T12:00:00+09:00"


def reset_by_apdus(home: Path, truth: Truth, access: CardAccess) -> None:
    """Scenario 1 as a terminal builder's window terminal does it (lifecycle.md §6): the auth
    PIN blocked by wrong VERIFYs, the administrator's own lock and its restoration by the issuing
    side, an unblock, and a new value for a PIN that is not blocked."""
    key = bytes.fromhex(ok(at(TERMINAL, home, "window", "admin-key")).stdout)
    jpki_ap = AID.JPKI.value
    witnesses(home, TERMINAL, truth, access)

    with access(truth.card) as card:
        for tries in (2, 1, 0):
            assert card.verify(Pin.AUTH, "9999") == SW_TRIES_LEFT | tries
        assert card.verify(Pin.AUTH, truth.pins["auth"]) == SW_BLOCKED
    truth.tries["auth"] = 0
    witnesses(home, TERMINAL, truth, access)

    # A terminal with the wrong key: the administrator's 15 tries, then 6984 even for the right
    # proof; RESET RETRY COUNTER without the administrator state is refused.
    with access(truth.card) as card:
        card.select_ap(jpki_ap)
        for tries in range(ADMIN_MAX_TRIES - 1, -1, -1):
            assert card.administrator(None, jpki_ap) == SW_TRIES_LEFT | tries
        assert card.administrator(key, jpki_ap) == SW_BLOCKED
        assert card.reset_retry_counter(Pin.AUTH) == SW_NOT_AUTHENTICATED
        card.select_ap(AID.CARD_INFO_INPUT_SUPPORT.value)  # every AP: it is the card's lock
        assert card.administrator(key, AID.CARD_INFO_INPUT_SUPPORT.value) == SW_BLOCKED
    witnesses(home, TERMINAL, truth, access)
    restored = ok(at(TERMINAL, home, "window", "unblock", "admin"))
    assert restored.stdout == "administrator authentication unblocked: 15 tries\n"
    witnesses(home, TERMINAL, truth, access)

    # The right key: unblock the auth PIN (value kept), and the holder VERIFYs it.
    with access(truth.card) as card:
        card.select_ap(jpki_ap)
        assert card.administrator(key, jpki_ap) == SW_OK
        assert card.reset_retry_counter(Pin.AUTH) == SW_OK
        assert card.verify(Pin.AUTH, truth.pins["auth"]) == SW_OK
    truth.all_tries("auth")
    witnesses(home, TERMINAL, truth, access)
    answer = logged_in(home, TERMINAL, truth.pins["auth"])
    assert answer["identity"]["serial"] == truth.on_card["auth"]

    # A new value for the signature password, which is not blocked: allowed. The reset verifies
    # nothing (all five tries are there); the holder VERIFYs the new value.
    with access(truth.card) as card:
        card.select_ap(jpki_ap)
        assert card.administrator(key, jpki_ap) == SW_OK
        assert card.reset_retry_counter(Pin.SIGN, "NEWPASS1") == SW_OK
        assert card.tries_left(Pin.SIGN) == Pin.SIGN.max_tries
        assert card.verify(Pin.SIGN, "NEWPASS1") == SW_OK
    truth.pins["sign"] = "NEWPASS1"
    witnesses(home, TERMINAL, truth, access)
    signature = home / "doc.txt.p7s"
    ok(at(TERMINAL, home, "sign", "--pin", "NEWPASS1", str(home / "doc.txt"), "-o", str(signature)))
    verified = json.loads(
        ok(at(TERMINAL, home, "verify", str(home / "doc.txt"), str(signature), "--json")).stdout
    )
    assert verified["valid"] and verified["signer"]["serial"] == truth.on_card["sign"]
    # The card knows nothing of windows: only the issuing side's own unblock is in the history.
    assert history_of(truth) == [("unblock", "window", "admin")]


def test_forgotten_auth_pin_reset_by_the_administration_apdus(home: Path, truth: Truth) -> None:
    reset_by_apdus(home, truth, in_memory)


def test_the_same_through_jpki_apdu_as_a_shell_script_sends_it(home: Path, truth: Truth) -> None:
    """The guide's shell terminal: `jpki apdu` in one session, answering its challenge."""
    key = bytes.fromhex(ok(at(TERMINAL, home, "window", "admin-key")).stdout)
    with in_memory(truth.card) as card:
        for tries in (2, 1, 0):
            assert card.verify(Pin.AUTH, "9999") == SW_TRIES_LEFT | tries
    truth.tries["auth"] = 0
    witnesses(home, TERMINAL, truth)
    # One session that answers each line before it reads the next: the script reads R back.
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "--at", TERMINAL, "apdu"],
        cwd=ROOT,
        env={**os.environ, "JPKI_HOME": str(home)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    to_card, from_card = process.stdin, process.stdout

    def send(line: str) -> str:
        to_card.write(line + "\n")
        to_card.flush()
        return from_card.readline().strip()

    select = f"00A4040C0A{AID.JPKI.value.hex().upper()}"
    assert send(select) == "9000"
    answer = send("0084000010")
    assert len(answer) == 36 and answer.endswith("9000")
    tag = administrator_proof(key, bytes.fromhex(answer[:32]), AID.JPKI.value)
    assert send(f"0082000010{tag.hex().upper()}") == "9000"
    assert send("002C0398") == "9000"
    assert send("0020009804" + AUTH_PIN.encode().hex()) == "9000"
    code, _, stderr = finish(process)
    assert code == 0, stderr
    truth.all_tries("auth")
    witnesses(home, TERMINAL, truth)


# --- 2. moved house ------------------------------------------------------------------------------

SIGNED = "2025-06-01T10:00:00+09:00"
MOVED = "2025-07-01T10:00:00+09:00"
AFTER_THE_MOVE = "2025-07-02T10:00:00+09:00"


def sign(home: Path, moment: str, name: str, pin: str = SIGN_PIN, *card: str) -> Path:
    output = home / f"{name}.p7s"
    ok(at(moment, home, *card, "sign", "--pin", pin, str(home / "doc.txt"), "-o", str(output)))
    return output


def crl_at(home: Path, moment: str, kind: str) -> str:
    """The `kind` CA's CRL as published at `moment` (a CRL is good for a day): its path."""
    path = home / f"{kind}-published.crl"
    ok(at(moment, home, "ca", "crl", kind, "-o", str(path), "--force"))
    return str(path)


def verify(home: Path, moment: str, signature: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    result = at(moment, home, "verify", str(home / "doc.txt"), str(signature), "--json", *extra)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def test_moved_house_old_signatures_stay_valid_at_signing_time(home: Path, truth: Truth) -> None:
    old_signature = sign(home, SIGNED, "before-move")
    witnesses(home, SIGNED, truth)
    before_move = home / "card-before-move.json"  # the card as it was, to sign with later
    before_move.write_bytes(truth.card.read_bytes())

    changed = json.loads(
        ok(at(MOVED, home, "card", "change", "--address", NEW_ADDRESS, "--reissue-sign", "--json"))
        .stdout
    )  # fmt: skip
    old_sign = truth.on_card["sign"]
    assert changed["changed"] == ["address"]
    assert changed["revoked"] == {"sign": {"serial": old_sign, "reason": "affiliationChanged"}}
    assert changed["kept"] == {"auth": truth.on_card["auth"]}
    truth.revoked(old_sign, "affiliationChanged")
    truth.issued("sign", changed["issued"]["sign"])
    truth.address = NEW_ADDRESS
    info = witnesses(home, MOVED, truth)
    assert info["certificates"]["sign"]["holder"]["address"] == NEW_ADDRESS

    crl = crl_at(home, AFTER_THE_MOVE, "sign")
    with responder(home, AFTER_THE_MOVE) as ocsp_url:
        for revocation in (("--crl", crl), ("--ocsp", ocsp_url)):
            code, now = verify(home, AFTER_THE_MOVE, old_signature, *revocation)
            assert code == 1 and now["valid"] is False and now["valid_at_signing_time"] is True
            assert now["event"]["reason"] == "affiliationChanged"
            assert now["signing_time_source"] == "signer"
            code, then = verify(
                home, AFTER_THE_MOVE, old_signature, *revocation, "--at", SIGNING_TIME
            )
            assert code == 0 and then["valid"] is True
        # A new signature needs the new certificate: the old one, signing after the move, fails.
        stale = sign(home, AFTER_THE_MOVE, "stale", SIGN_PIN, "--card", str(before_move))
        code, refused_now = verify(home, AFTER_THE_MOVE, stale, "--ocsp", ocsp_url)
        assert code == 1 and refused_now["reason"] == "revoked"
        assert "before the signing time" in refused_now["message"]
        code, still = verify(home, AFTER_THE_MOVE, stale, "--ocsp", ocsp_url, "--at", SIGNING_TIME)
        assert code == 1 and still["valid"] is False
        fresh = sign(home, AFTER_THE_MOVE, "after-move")
        code, valid = verify(home, AFTER_THE_MOVE, fresh, "--ocsp", ocsp_url)
        assert code == 0 and valid["signer"]["serial"] == truth.on_card["sign"]
        # Logging in is untouched: the authentication certificate was kept.
        answer = logged_in(home, AFTER_THE_MOVE, AUTH_PIN, "--ocsp", ocsp_url)
        assert answer["identity"]["serial"] == truth.on_card["auth"]
    witnesses(home, AFTER_THE_MOVE, truth)
    assert history_of(truth) == [("change", "window", None)]


# --- 3. lost card ----------------------------------------------------------------------------

LOST = "2025-08-01T10:00:00+09:00"
FOUND = "2025-08-05T10:00:00+09:00"


def lost_card(home: Path, truth: Truth, access: CardAccess) -> None:
    """Suspended when reported lost: login refused (on hold, CRL and OCSP), a signature made
    before the loss INVALID either way; found: new certificates at the window, login works."""
    old_signature = sign(home, SIGNED, "before-loss")
    witnesses(home, SIGNED, truth, access)
    suspended = json.loads(ok(at(LOST, home, "card", "suspend", "--json")).stdout)
    old = dict(truth.on_card)
    assert suspended["revoked"] == {
        kind: {"serial": serial, "reason": "certificateHold"} for kind, serial in old.items()
    }
    for serial in old.values():
        truth.revoked(serial, "certificateHold")
    truth.suspended = True
    witnesses(home, LOST, truth, access)

    # The card still answers (a chip has no idea), but relying parties refuse it.
    answer = json.loads(login(home, LOST, AUTH_PIN, "--crl", str(home / "auth.crl")).stdout)
    assert answer["valid"] is False and answer["reason"] == "revoked"
    assert "certificateHold" in answer["message"]
    with responder(home, LOST) as ocsp_url:
        held = login(home, LOST, AUTH_PIN, "--ocsp", ocsp_url)
        assert held.returncode == 1
        answer = json.loads(held.stdout)
        assert answer["reason"] == "revoked" and "certificateHold" in answer["message"]
        # On hold puts the key in doubt: INVALID even as of the signing time.
        for extra in ((), ("--at", SIGNING_TIME)):
            code, checked = verify(home, LOST, old_signature, "--ocsp", ocsp_url, *extra)
            assert code == 1 and checked["valid"] is False
            assert checked["event"]["reason"] == "certificateHold"
    refused(at(LOST, home, "card", "change", "--address", NEW_ADDRESS), 1, "suspended")
    witnesses(home, LOST, truth, access)

    # Found: new certificates at the window (no --force: allowed after a loss at any time).
    renewed = json.loads(ok(at(FOUND, home, "card", "renew", "--json")).stdout)
    assert renewed["revoked"] == {} and renewed["replaced"] == old
    for kind in KINDS:
        truth.issued(kind, renewed["issued"][kind])
    truth.suspended = False
    witnesses(home, FOUND, truth, access)
    with responder(home, FOUND) as ocsp_url:
        answer = logged_in(home, FOUND, AUTH_PIN, "--ocsp", ocsp_url)
        assert answer["identity"]["serial"] == truth.on_card["auth"]
    assert logged_in(home, FOUND, AUTH_PIN, "--crl", str(home / "auth.crl"))["valid"]
    assert history_of(truth) == [("suspend", "window", None), ("renew", "window", None)]


def test_lost_card_suspended_then_found_and_renewed(home: Path, truth: Truth) -> None:
    lost_card(home, truth, in_memory)


# --- 4. the fifth birthday -----------------------------------------------------------------------

SIGNED_LATE = "2025-12-01T10:00:00+09:00"  # inside the renewal window; not renewed
DAY_AFTER = "2026-02-18T10:00:00+09:00"
RENEWED = "2026-02-18T11:00:00+09:00"


def fifth_birthday(home: Path, truth: Truth, access: CardAccess) -> None:
    signature = sign(home, SIGNED_LATE, "before-birthday")
    witnesses(home, SIGNED_LATE, truth, access)
    for serial in truth.on_card.values():
        truth.certificates[serial] = (truth.certificates[serial][0], EXPIRED)

    answer = json.loads(login(home, DAY_AFTER, AUTH_PIN).stdout)
    assert answer["valid"] is False and answer["reason"] == "expired"
    assert answer["message"] == "certificate expired on 2026-02-17 14:59:59Z"
    code, checked = verify(home, DAY_AFTER, signature)
    assert code == 1 and checked["valid_at_signing_time"] is True
    assert checked["event"]["kind"] == "expired"
    code, then = verify(home, DAY_AFTER, signature, "--at", SIGNING_TIME)
    assert code == 0 and then["valid"] is True
    witnesses(home, DAY_AFTER, truth, access)

    renewed = json.loads(ok(at(RENEWED, home, "card", "renew", "--json")).stdout)  # no --force
    assert renewed["replaced"] == truth.on_card
    for kind in KINDS:
        truth.issued(kind, renewed["issued"][kind])
    witnesses(home, RENEWED, truth, access)
    answer = logged_in(home, RENEWED, AUTH_PIN, "--crl", str(home / "auth.crl"))
    assert answer["identity"]["serial"] == truth.on_card["auth"]
    info = json.loads(ok(at(RENEWED, home, "card", "info", "--json")).stdout)
    # To the next fifth birthday, 2031-02-17, which is also the card's own expiry.
    assert info["certificates"]["auth"]["not_after"] == "2031-02-17T14:59:59+00:00"
    assert history_of(truth) == [("renew", "window", None)]


def test_fifth_birthday_expired_then_renewed(home: Path, truth: Truth) -> None:
    fifth_birthday(home, truth, in_memory)


# --- failure branches not covered elsewhere ----------------------------------------------------

INSIDE_WINDOW = "2025-12-01T10:00:00+09:00"
AFTER_RENEWAL = "2025-12-02T10:00:00+09:00"


def test_verification_with_a_superseded_certificate(home: Path, truth: Truth) -> None:
    """Renewed in the window: a signature made before stays valid at its signing time; one made
    afterwards with the superseded certificate (a copy of the old card) is INVALID; logging in
    with the old certificate is refused."""
    before = sign(home, SIGNED, "before-renewal")
    old_card = home / "old-card.json"
    old_card.write_bytes(truth.card.read_bytes())
    renewed = json.loads(ok(at(INSIDE_WINDOW, home, "card", "renew", "--json")).stdout)
    for kind in KINDS:
        truth.revoked(truth.on_card[kind], "superseded")
        truth.issued(kind, renewed["issued"][kind])
    witnesses(home, INSIDE_WINDOW, truth)
    crl = crl_at(home, AFTER_RENEWAL, "sign")
    code, checked = verify(home, AFTER_RENEWAL, before, "--crl", crl)
    assert code == 1 and checked["valid_at_signing_time"] is True
    assert checked["event"]["reason"] == "superseded"
    assert verify(home, AFTER_RENEWAL, before, "--crl", crl, "--at", SIGNING_TIME)[0] == 0
    late = sign(home, AFTER_RENEWAL, "after-renewal", SIGN_PIN, "--card", str(old_card))
    for extra in ((), ("--at", SIGNING_TIME)):
        code, checked = verify(home, AFTER_RENEWAL, late, "--crl", crl, *extra)
        assert code == 1 and checked["valid"] is False and checked["reason"] == "revoked"
    stale = at(AFTER_RENEWAL, home, "--card", str(old_card), "login", "--pin", AUTH_PIN,
               "--json", "--crl", crl_at(home, AFTER_RENEWAL, "auth"))  # fmt: skip
    assert stale.returncode == 1
    assert "superseded" in json.loads(stale.stdout)["message"]


def test_verification_at_a_time_after_expiry(home: Path, truth: Truth) -> None:
    """`jpki verify --at` a moment after the certificate's notAfter: invalid then, valid at the
    signing time; before it: valid."""
    signature = sign(home, SIGNED, "signed")
    witnesses(home, SIGNED, truth)
    after = "2026-02-18T00:00:00+09:00"  # the first second after the end
    last_second = "2026-02-17T23:59:59+09:00"
    code, checked = verify(home, SIGNED, signature, "--at", after)
    assert code == 1 and checked["valid"] is False and checked["valid_at_signing_time"] is True
    assert checked["event"]["kind"] == "expired"
    assert checked["event"]["time"] == "2026-02-17T14:59:59+00:00"
    assert verify(home, SIGNED, signature, "--at", last_second)[0] == 0


# --- two commands at once ------------------------------------------------------------------------

AT_ONCE = "2025-09-01T10:00:00+09:00"


def wait_until_waiting(processes: list[tuple[subprocess.Popen[str], Path]]) -> None:
    """Until each process holds its card's lock file open (it is then waiting for the lock the
    test holds): both are sure to be running when the lock is let go."""
    deadline = time.monotonic() + 60
    for process, card in processes:
        lock = card.with_name(card.name + ".lock").resolve()
        while True:
            assert process.poll() is None, finish(process)
            descriptors = Path(f"/proc/{process.pid}/fd")
            try:
                if any(link.resolve() == lock for link in descriptors.iterdir()):
                    break
            except FileNotFoundError:  # a descriptor closed while we looked
                pass
            assert time.monotonic() < deadline, "the process never reached the card's lock"
            time.sleep(0.01)


def test_two_commands_at_once_on_one_card(home: Path, truth: Truth) -> None:
    """The window resets the signature password while the card's certificates are renewed, in
    two processes that both wait for the card: both complete and nothing either did is lost."""
    holder = FileStore.open(truth.card)
    try:
        processes = [
            start(home, "--at", AT_ONCE, "window", "reset-pin", "sign", "--new-pin", "NEWPASS1"),
            start(home, "--at", AT_ONCE, "card", "renew", "--force", "--json"),
        ]
        wait_until_waiting([(process, truth.card) for process in processes])
    finally:
        holder.close()
    (reset_code, _, reset_error), (renew_code, renewed, renew_error) = map(finish, processes)
    assert (reset_code, renew_code) == (0, 0), reset_error + renew_error
    issued = json.loads(renewed)["issued"]
    for kind in KINDS:
        truth.revoked(truth.on_card[kind], "superseded")
        truth.issued(kind, issued[kind])
    truth.pins["sign"] = "NEWPASS1"  # the witnesses VERIFY it over APDUs: a lost reset shows
    witnesses(home, AT_ONCE, truth)
    assert sorted(history_of(truth)) == [
        ("renew", "window", None),
        ("reset-pin", "window", "sign"),
    ]


def test_two_cards_lifecycle_at_once_on_one_ca(home: Path, truth: Truth) -> None:
    """Card A renewed while card B is suspended, at once on one CA: both complete, each card's
    history has its own, and the CA's record, CRLs and OCSP have both."""
    card_b = home / "hanako.json"
    ok(
        at(T0, home, "card", "create", "--card", str(card_b), "--auth-pin", "2468",
           "--sign-pin", "XYZ789", "--name", "番号　花子", "--birth-date", "1990-12-24",
           "--sex", "female", "--address", ADDRESS)
    )  # fmt: skip
    info_b = json.loads(ok(at(T0, home, "card", "info", "--card", str(card_b), "--json")).stdout)
    truth_b = Truth(card_b, certificates=truth.certificates)  # one CA: one record
    truth_b.pins = {"auth": "2468", "sign": "XYZ789", "card-info": "2468"}
    truth_b.history_start = len(history.entries(card_b))
    for kind in KINDS:
        truth_b.issued(kind, info_b["certificates"][kind]["serial"])

    holders = [FileStore.open(truth.card), FileStore.open(card_b)]
    try:
        processes = [
            start(home, "--at", AT_ONCE, "card", "renew", "--force", "--json"),
            start(home, "--at", AT_ONCE, "--card", str(card_b), "card", "suspend", "--json"),
        ]
        wait_until_waiting(list(zip(processes, (truth.card, card_b), strict=True)))
    finally:
        for holder in holders:
            holder.close()
    (renew_code, renewed, renew_error), (suspend_code, suspended, suspend_error) = map(
        finish, processes
    )
    assert (renew_code, suspend_code) == (0, 0), renew_error + suspend_error
    for kind in KINDS:
        truth.revoked(truth.on_card[kind], "superseded")
        truth.issued(kind, json.loads(renewed)["issued"][kind])
        truth_b.revoked(truth_b.on_card[kind], "certificateHold")
    assert json.loads(suspended)["revoked"] == {
        kind: {"serial": truth_b.on_card[kind], "reason": "certificateHold"} for kind in KINDS
    }
    truth_b.suspended = True
    witnesses(home, AT_ONCE, truth)
    witnesses(home, AT_ONCE, truth_b)
    assert history_of(truth) == [("renew", "window", None)]
    assert history_of(truth_b) == [("suspend", "window", None)]
