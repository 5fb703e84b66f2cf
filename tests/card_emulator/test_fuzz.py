"""Seeded, structure-aware APDU fuzzing of the in-memory card, checked by a model after each APDU.

A grammar makes valid commands for the five APs and the card level (SELECT by AID/FID, also of the
GlobalPlatform ISD; READ BINARY by offset and by short EF id; READ RECORD; VERIFY, CHANGE
REFERENCE DATA and CHANGE KEY with right, wrong and odd-length PINs; COMPUTE DIGITAL SIGNATURE
with each P1 and the card-face AP's own key; INTERNAL AUTHENTICATE; GET CHALLENGE; GET DATA;
SET SESSION KEY; other instructions), short and extended, then often mutates the bytes
(truncation, length bytes that lie, bit flips, other CLA/P1/P2); warm resets, power cycles, APDUs
to an unpowered card and the municipal office's unblock are interleaved. After every APDU:

- the card did not raise (except `CardPoweredOff` when it has no power) nor log an error, and the
  response is a known status word (`63Cx` or one of `SW`), with data only under `9000`;
- bytes the reference decoder below finds malformed get `6700` and change nothing; a CLA with a
  channel, secure messaging or chaining never executes; an instruction the card has is never
  `6D00`, one it lacks always is;
- a retry counter changes only on a VERIFY with data in its AP: down by exactly one with `63Cx`
  (x the new value), or back to its maximum with `9000` for the right value of that PIN; a blocked
  counter stays 0; PIN values change only on `9000` to the AP's own change command (CHANGE
  REFERENCE DATA `00 24 01`, or CHANGE KEY `80 32 00` in 住基 and common) of a PIN verified since
  the last power-off, AP switch or ISD SELECT, to a value its rule allows, and never for the
  card-face keys, whose values are printed on the card (with `shared_collation_counters`, the card
  face's collation numbers are the card-info AP's);
- administration (lifecycle.md §6): the model knows the administrator key and each challenge `R`
  the card gave, so it predicts every EXTERNAL AUTHENTICATE exactly (R consumed whatever the
  outcome; 6A86, 6700, 6985 without a usable R, 6984 once blocked, 63Cx spending exactly the
  administrator's try, 9000 only for AES-CMAC(K, R ‖ AID of the current AP), restoring 15); it
  changes no other counter. RESET RETRY COUNTER answers 6982 and changes nothing without the
  administrator state (given only by a right proof in this AP, gone with an AP switch, ISD
  SELECT, reset or power-off); with it, it sets one counter of the current AP to its maximum and,
  with P1 02, a value its rule allows, never for the 照合番号s, the birth-date key or `0012`;
- a signature (`9000` to COMPUTE DIGITAL SIGNATURE) verifies, for the P1 scheme and the data sent,
  under one of the card's keys: a JPKI key whose PIN was verified since the last power-off, AP
  switch or ISD SELECT, or the card-face AP's own key with P1 00 in that AP; INTERNAL AUTHENTICATE
  answers only with the common AP's key, in that AP, over SHA-256 of the challenge;
- READ BINARY answers a slice, at the requested offset, of a transparent file of the current AP
  that the verified PINs open (the signature certificate only after the signature password, the
  my-number image only after collation number A, and so on); READ RECORD answers a record of a
  record file of the current AP;
- GET DATA answers only in the power-on state, with a card-level object whole; SET SESSION KEY is
  refused as each AP refuses it (secure messaging is off);
- no response contains 16 consecutive bytes of a private key (private exponent, primes, CRT values,
  their PKCS#8 DER or PEM) nor of a PIN's salt or hash, nor the administrator key.

The model is kept from the card's answers (which PIN a VERIFY reached is told by its counter), so
the card is checked against the rules, not against a second copy of its engine.

Reproduce or run larger: `python benchmarks/fuzz.py --apdus N --seed S [--card NAME]`.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import cmac, hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
from cryptography.hazmat.primitives.ciphers import algorithms

from card_emulator.applications.model import AccessRule, Application, KeyFile, Never
from card_emulator.engine import TRACE_LOGGER, CardEngine, StatusError
from card_emulator.errors import CardPoweredOff
from card_emulator.signing import SignatureScheme, sign
from card_emulator.state.image import CardImage
from card_emulator.state.pin_reference import PinReference
from card_emulator.state.store import read_image
from card_emulator.transports.memory import VirtualCard
from card_emulator.vocabulary.apdu import CommandApdu
from card_emulator.vocabulary.sw import SW

CARDS = Path(__file__).resolve().parents[2] / "fixtures" / "cards"

# What the spec (/work/shared/spec/jpki-card.md) says, written out here so the oracle does not
# borrow the emulator's own tables.
JPKI, CARD_INFO, CARD_FACE, JUKI, COMMON = "jpki", "card-info", "card-face", "juki", "common"
CARD_LEVEL = "card"  # the card-level data objects of GET DATA, as the card image keeps them
AIDS = {
    JPKI: bytes.fromhex("D392F000260100000001"),
    CARD_INFO: bytes.fromhex("D3921000310001010408"),
    CARD_FACE: bytes.fromhex("D3921000310001010402"),
    JUKI: bytes.fromhex("D3921000310001010401"),
    COMMON: bytes.fromhex("D3921000310001010100"),
}
GLOBAL_PLATFORM_ISD = bytes.fromhex("A0000001510000")  # back to the power-on state (§7)
OTHER_AIDS = [
    bytes.fromhex(aid)
    for aid in (
        "D3921000310001010403",  # a sibling of the card's AIDs that the card does not have
        "A000000151000000",  # the ISD's AID and one byte more
        "A0000003080000100001",  # PIV, as OpenSC probes
        "D392F0002601",  # a prefix of the JPKI AID
        "D392F00026010000000100",  # one byte too many
    )
]
FILES = {  # the data EFs first, then keys and PINs (common 001E: probed by clients, absent)
    JPKI: (0x0001, 0x0002, 0x0006, 0x0008, 0x000A, 0x000B, 0x0017, 0x0018, 0x001A, 0x001B),
    CARD_INFO: (0x0001, 0x0002, 0x0003, 0x0004, 0x0005, 0x0011, 0x0012, 0x0014, 0x0015),
    CARD_FACE: (0x0001, 0x0002, 0x0003, 0x0004, 0x0005, 0x0006, 0x0011, 0x0012, 0x0013),
    JUKI: (0x0002, 0x001C),
    COMMON: (0x0001, 0x0002, 0x0019, 0x001C, 0x001E),
}
DATA_FILES = {JPKI: 6, CARD_INFO: 5, CARD_FACE: 6, JUKI: 1, COMMON: 2}  # how many FILES lead
RECORD_FILES = frozenset({(JUKI, 0x0002), (COMMON, 0x0001), (COMMON, 0x0002)})  # READ RECORD only
# (min length, max length, alphabet, tries) of each PIN
DIGITS, UPPER_ALNUM = b"0123456789", b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
PIN_RULES: dict[tuple[str, int], tuple[int, int, bytes, int]] = {
    (JPKI, 0x18): (4, 4, DIGITS, 3),
    (JPKI, 0x1B): (6, 16, UPPER_ALNUM, 5),
    (CARD_INFO, 0x11): (4, 4, DIGITS, 3),
    (CARD_INFO, 0x12): (4, 4, DIGITS, 3),
    (CARD_INFO, 0x14): (12, 12, DIGITS, 10),
    (CARD_INFO, 0x15): (14, 14, DIGITS, 10),
    (CARD_FACE, 0x11): (6, 6, DIGITS, 10),  # the birth-date key
    (CARD_FACE, 0x12): (14, 14, DIGITS, 10),  # collation number B
    (CARD_FACE, 0x13): (12, 12, DIGITS, 10),  # collation number A
    (JUKI, 0x1C): (4, 4, DIGITS, 3),
    (COMMON, 0x1C): (4, 4, DIGITS, 3),
}
TRIES_SETTINGS = {  # card settings (§10) that replace the tries above
    (CARD_INFO, 0x14): "collation_a_tries",
    (CARD_FACE, 0x13): "collation_a_tries",
    (CARD_INFO, 0x15): "collation_b_tries",
    (CARD_FACE, 0x12): "collation_b_tries",
    (CARD_FACE, 0x11): "birth_date_key_tries",
}
# With the setting shared_collation_counters, the card face's A and B are the card-info AP's.
SHARED_COUNTERS = {(CARD_FACE, 0x13): (CARD_INFO, 0x14), (CARD_FACE, 0x12): (CARD_INFO, 0x15)}
# Their values come from the printed face: CHANGE answers 6982 (§5).
UNCHANGEABLE = frozenset({(CARD_FACE, 0x11), (CARD_FACE, 0x12), (CARD_FACE, 0x13)})
# How each AP changes a PIN (INS, P1): CHANGE REFERENCE DATA, or CHANGE KEY in 住基 and common.
PIN_CHANGE = {
    JPKI: (0x24, 0x01),
    CARD_INFO: (0x24, 0x01),
    CARD_FACE: (0x24, 0x01),
    JUKI: (0x32, 0x00),
    COMMON: (0x32, 0x00),
}
READ_NEEDS: dict[tuple[str, int], frozenset[int]] = {  # files only these PINs open
    (JPKI, 0x0001): frozenset({0x1B}),
    (CARD_INFO, 0x0001): frozenset({0x11, 0x14}),
    (CARD_INFO, 0x0002): frozenset({0x11, 0x15}),
    (CARD_INFO, 0x0003): frozenset({0x11, 0x14, 0x15}),
    (CARD_FACE, 0x0001): frozenset({0x11}),
    (CARD_FACE, 0x0002): frozenset({0x12, 0x13}),
    (CARD_FACE, 0x0005): frozenset({0x13}),
    (CARD_FACE, 0x0006): frozenset({0x12, 0x13}),
}
KEY_PINS = {0x17: 0x18, 0x1A: 0x1B}  # the JPKI keys and the PIN each needs
CARD_KEY = (CARD_FACE, 0x0000)  # COMPUTE DIGITAL SIGNATURE P2 00, P1 00 only, no PIN (§5)
AUTHENTICATION_KEY = (COMMON, 0x0019)  # INTERNAL AUTHENTICATE only, no PIN (§6)
INTERNAL_AUTHENTICATE_SCHEME = 0x03  # PKCS#1 v1.5 of DigestInfo(SHA-256(challenge)), as P1 03
GET_DATA_TAGS = (0x0042, 0x0045, 0x0066, 0x00F0, 0x00F2, 0x00F7, 0x00F8, 0x7F21, 0x5F51)
ATR_INFORMATION = 0x5F51
SECOND_CVC = 0x7F21
SESSION_KEY_REFUSALS = {JPKI: 0x6982, JUKI: 0x6982, CARD_INFO: 0x6982, COMMON: 0x66F1,
                        CARD_FACE: 0x66F1}  # fmt: skip
SESSION_KEY_AFTER_PIN = 0x6A80  # the card-info AP, PIN 0011 verified, secure messaging off
SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")
KNOWN_INS = (0xA4, 0xB0, 0x20, 0x24, 0x2A, 0x84, 0xB2, 0x88, 0xCA, 0xAE, 0x32, 0x82, 0x2C)
OTHER_INS = (0x0E, 0x22, 0xC0, 0xD6, 0x44, 0x21, 0xB1, 0x25, 0xCB, 0xDA, 0xB3, 0x89)
# Administration (lifecycle.md §6): the administrator's own counter, and what a reset may not do.
ADMIN = ("admin", 0)  # its entry in a snapshot
ADMIN_MAX_TRIES = 15
ADMIN_CHALLENGE = 16
NEVER_RESET = frozenset({(CARD_INFO, 0x12)})  # blocked at issuance, for good
UNBLOCK_ONLY = UNCHANGEABLE | {(CARD_INFO, 0x14), (CARD_INFO, 0x15)}  # values from the face
VALID_SW = frozenset(int(sw) for sw in SW) | {0x63C0 | tries for tries in range(16)}
PLAIN_CLA = (0x00, 0x80)
ODD_CLASSES = (0x80, 0x0C, 0x08, 0x04, 0x01, 0x03, 0x10, 0x40, 0x60, 0x20, 0xFF, 0x8C, 0x84, 0xA0)
CLA_REFUSALS = frozenset({0x6881, 0x6882, 0x6884, 0x69FC, 0x6E00})
SECRET_WINDOW = 16

# The suite's size: a few seconds on a 2-core machine (see the report in benchmarks/README.md).
SUITE_RUNS = [  # (card, settings, seed, APDUs, signature budget)
    ("taro", {}, 1, 16_000, 25),
    (
        "taro",
        {
            "warm_reset_keeps_security_state": False,
            "wrong_length_pin_counts_as_attempt": False,
            "admin_apdus": False,
        },
        6,
        10_000,
        15,
    ),
    ("child", {}, 3, 7_000, 10),
    ("hanako-long-address", {}, 4, 7_000, 10),
    ("taro", {"shared_collation_counters": True}, 7, 7_000, 10),
]


class FuzzFailure(AssertionError):
    """An invariant broke; the message says how to replay it."""


@dataclass(frozen=True)
class Command:
    """A command APDU as the reference decoder reads it."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes
    ne: int | None
    extended: bool


def decode(raw: bytes) -> Command | None:
    """ISO 7816-3 12.1: the four cases, short and extended; None for malformed bytes."""
    if len(raw) < 4:
        return None
    cla, ins, p1, p2 = raw[:4]
    body = raw[4:]
    n = len(body)
    if n == 0:
        return Command(cla, ins, p1, p2, b"", None, False)
    if n == 1:
        return Command(cla, ins, p1, p2, b"", body[0] or 256, False)
    if body[0]:
        lc = body[0]
        if n == 1 + lc:
            return Command(cla, ins, p1, p2, body[1:], None, False)
        if n == 2 + lc:
            return Command(cla, ins, p1, p2, body[1:-1], body[-1] or 256, False)
        return None
    if n == 3:
        return Command(cla, ins, p1, p2, b"", int.from_bytes(body[1:], "big") or 65536, True)
    if n < 3:
        return None
    lc = int.from_bytes(body[1:3], "big")
    if lc == 0:
        return None
    if n == 3 + lc:
        return Command(cla, ins, p1, p2, body[3:], None, True)
    if n == 5 + lc:
        return Command(
            cla, ins, p1, p2, body[3:-2], int.from_bytes(body[-2:], "big") or 65536, True
        )
    return None


def encode(
    cla: int,
    ins: int,
    p1: int,
    p2: int,
    data: bytes = b"",
    ne: int | None = None,
    *,
    extended: bool = False,
) -> bytes:
    header = bytes([cla, ins, p1, p2])
    if extended or len(data) > 255 or (ne is not None and ne > 256):
        body = b"\x00" if data or ne is not None else b""
        if data:
            body += len(data).to_bytes(2, "big") + data
        if ne is not None:
            body += (ne % 65536).to_bytes(2, "big")
        return header + body
    body = bytes([len(data)]) + data if data else b""
    if ne is not None:
        body += bytes([ne % 256])
    return header + body


# The card's secrets and keys -------------------------------------------------------------------


def _private_byte_strings(key: rsa.RSAPrivateKey) -> Iterator[bytes]:
    numbers = key.private_numbers()
    for value in (numbers.d, numbers.p, numbers.q, numbers.dmp1, numbers.dmq1, numbers.iqmp):
        minimal = value.to_bytes((value.bit_length() + 7) // 8, "big")
        yield minimal
        yield minimal[::-1]  # little-endian, in case anything ever serialises it that way
    yield key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    yield key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _windows(data: bytes) -> Iterator[bytes]:
    for start in range(len(data) - SECRET_WINDOW + 1):
        yield data[start : start + SECRET_WINDOW]


class Secrets:
    """Every 16-byte window of private material that appears in no public byte of the card."""

    def __init__(self, image: CardImage) -> None:
        public: set[bytes] = set()
        for contents in image.applications.values():
            for data in contents.files.values():
                public.update(_windows(data))
            for key in contents.keys.values():
                public.update(
                    _windows(
                        key.public_key().public_bytes(
                            serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo,
                        )
                    )
                )
        self.public = public
        self.windows: set[bytes] = set()
        for contents in image.applications.values():
            for key in contents.keys.values():
                for secret in _private_byte_strings(key):
                    self.add(secret)
            for reference in contents.pins.values():
                self.add_pin(reference)

    def add(self, secret: bytes) -> None:
        self.windows.update(w for w in _windows(secret) if w not in self.public)

    def add_pin(self, reference: PinReference) -> None:
        self.add(reference.salt + reference.digest)
        self.add(reference.digest)

    def leaked(self, data: bytes) -> bytes | None:
        windows = self.windows
        for start in range(len(data) - SECRET_WINDOW + 1):
            window = data[start : start + SECRET_WINDOW]
            if window in windows:
                return window
        return None


def signature_verifies(key: rsa.RSAPublicKey, p1: int, data: bytes, signature: bytes) -> bool:
    """Whether `signature` is what P1 `p1` over `data` gives with the private half of `key`."""
    if len(signature) != key.key_size // 8:
        return False
    if p1 in (0x04, 0x05):
        digest = data if p1 == 0x04 else hashlib.sha256(data).digest()
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
        try:
            key.verify(signature, digest, pss, utils.Prehashed(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            return False
        return True
    sha = hashlib.sha256(data).digest()
    payload = {0: data, 1: sha, 2: SHA256_DIGEST_INFO + data, 3: SHA256_DIGEST_INFO + sha}[p1]
    size = key.key_size // 8
    block = b"\x00\x01" + b"\xff" * (size - len(payload) - 3) + b"\x00" + payload
    numbers = key.public_numbers()
    return pow(int.from_bytes(signature, "big"), numbers.e, numbers.n) == int.from_bytes(
        block, "big"
    )


def _record(data: bytes, number: int) -> bytes:
    """Record `number` (from 1) of a record EF, whose records are simple TLVs one after another
    (a tag, a length of one byte or FF and two bytes, the value); empty if there is none."""
    position, record = 0, b""
    for _ in range(number):
        if position + 2 > len(data):
            return b""
        size, header = data[position + 1], 2
        if size == 0xFF:
            size, header = int.from_bytes(data[position + 2 : position + 4], "big"), 4
        record, position = data[position : position + header + size], position + header + size
    return record


def prepared_image(
    card: str, settings: dict[str, Any], rng: random.Random
) -> tuple[CardImage, dict[tuple[str, int], bytes]]:
    """The fixture card with PINs whose values the model knows (one PBKDF2 round: only speed)."""
    image = read_image(CARDS / f"{card}.json")
    for name, value in settings.items():
        assert hasattr(image.settings, name), name
        setattr(image.settings, name, value)
    values: dict[tuple[str, int], bytes] = {}
    for (app, fid), (low, _high, alphabet, _tries) in PIN_RULES.items():
        contents = image.applications.get(app)
        if contents is None or fid not in contents.pins:
            continue
        value = {(JPKI, 0x18): b"1234", (JPKI, 0x1B): b"ABC123", (CARD_INFO, 0x11): b"1234"}.get(
            (app, fid), bytes(rng.choice(alphabet) for _ in range(low))
        )
        tries = contents.pins[fid].tries_left
        contents.pins[fid] = PinReference.create(value, tries, iterations=1)
        values[app, fid] = value
    return image, values


Snapshot = dict[tuple[str, int], tuple[int, bytes, bytes]]


def snapshot(image: CardImage) -> Snapshot:
    """Every PIN reference, and the administrator's counter under ADMIN."""
    taken = {
        (app, fid): (reference.tries_left, reference.salt, reference.digest)
        for app, contents in image.applications.items()
        for fid, reference in contents.pins.items()
    }
    if image.admin is not None:
        taken[ADMIN] = (image.admin.tries_left, b"", b"")
    return taken


def cmac_proof(key: bytes, challenge: bytes, aid: bytes) -> bytes:
    """AES-CMAC(K, R ‖ AID), written out here rather than borrowed from the emulator."""
    mac = cmac.CMAC(algorithms.AES(key))
    mac.update(challenge + aid)
    return mac.finalize()


# The model: what the card may do --------------------------------------------------------------


@dataclass
class FuzzStats:
    apdus: int = 0
    seconds: float = 0.0
    sws: Counter[int] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)

    def merge(self, other: FuzzStats) -> None:
        self.apdus += other.apdus
        self.seconds += other.seconds
        self.sws.update(other.sws)
        self.events.update(other.events)


class Model:
    """What the card has been told, and so what it may answer."""

    def __init__(self, image: CardImage, values: dict[tuple[str, int], bytes]) -> None:
        settings = image.settings
        # Which AP an AID prefix selects is the card's choice: the model cannot follow it.
        assert not settings.select_by_aid_prefix, "the model expects exact AIDs"
        self.image = image
        self.values = values
        self.keep_on_reset = settings.warm_reset_keeps_security_state
        self.select_fci = settings.select_fci
        self.shared_counters = settings.shared_collation_counters
        self.current: str | None = None  # the current DF (None: the MF, after power-on or reset)
        self.application: str | None = None  # whose PINs `verified` are
        self.verified: set[int] = set()
        self.admin_key = image.admin.key if image.admin is not None else None
        self.admin_apdus = settings.admin_apdus  # off: EXTERNAL AUTHENTICATE and RESET are 6D00
        self.challenge: bytes | None = None  # R: the last 16-byte challenge in this AP
        self.administrator = False  # a right proof in this AP
        self.public_keys = {
            (app, fid): key.public_key()
            for app, contents in image.applications.items()
            for fid, key in contents.keys.items()
        }
        self.secrets = Secrets(image)
        if self.admin_key is not None:
            self.secrets.add(self.admin_key)
        self.stats = FuzzStats()

    # what the card's settings make of the spec's rules
    def max_tries(self, pin: tuple[str, int]) -> int:
        setting = TRIES_SETTINGS.get(pin)
        return PIN_RULES[pin][3] if setting is None else int(getattr(self.image.settings, setting))

    def counter(self, pin: tuple[str, int]) -> tuple[str, int]:
        """The reference data (value and counter) that a PIN's VERIFY reaches."""
        return SHARED_COUNTERS.get(pin, pin) if self.shared_counters else pin

    def value_of(self, pin: tuple[str, int]) -> bytes | None:
        return self.values.get(self.counter(pin))

    # events
    def power_cycle(self) -> None:
        self.current = self.application = None
        self.verified.clear()
        self.forget_administration()

    def reset(self) -> None:
        self.current = None
        if not self.keep_on_reset:
            self.verified.clear()
        self.forget_administration()  # whatever the warm-reset setting

    def forget_administration(self) -> None:
        self.challenge = None
        self.administrator = False

    # the checks
    def check(self, raw: bytes, response: bytes, before: Snapshot, after: Snapshot) -> None:
        if len(response) < 2:
            raise FuzzFailure(f"a response of {len(response)} bytes has no status word")
        data, sw = response[:-2], int.from_bytes(response[-2:], "big")
        self.stats.sws[sw] += 1
        if sw not in VALID_SW:
            raise FuzzFailure(f"status word {sw:04X} is not one the card knows")
        if sw == SW.NO_PRECISE_DIAGNOSIS:
            raise FuzzFailure("6F00: the engine hit an internal error")
        if data and sw != SW.SUCCESS:
            raise FuzzFailure(f"{len(data)} bytes of data with {sw:04X}")
        if data and (window := self.secrets.leaked(data)) is not None:
            raise FuzzFailure(f"the response carries private material: {window.hex()}")
        command = decode(raw)
        if command is None:
            self.stats.events["malformed"] += 1
            if sw != SW.WRONG_LENGTH:
                raise FuzzFailure(f"malformed bytes answered {sw:04X}, not 6700")
            self._unchanged(before, after)
            return
        if command.cla not in PLAIN_CLA:
            if sw not in CLA_REFUSALS | {SW.INS_NOT_SUPPORTED}:
                raise FuzzFailure(f"CLA {command.cla:02X} answered {sw:04X}")
            self._unchanged(before, after)
            return
        handler = {
            0xA4: self._select,
            0xB0: self._read_binary,
            0x20: self._verify,
            0x24: self._change,
            0x32: self._change,
            0x2A: self._sign,
            0x84: self._challenge,
            0xB2: self._read_record,
            0x88: self._internal_authenticate,
            0xCA: self._get_data,
            0xAE: self._set_session_key,
            0x82: self._external_authenticate,
            0x2C: self._reset_retry_counter,
        }.get(command.ins)
        if command.ins in (0x82, 0x2C) and not self.admin_apdus:
            handler = None
        if handler is None:
            if sw != SW.INS_NOT_SUPPORTED:
                raise FuzzFailure(f"unknown INS {command.ins:02X} answered {sw:04X}")
            self._unchanged(before, after)
            return
        if sw == SW.INS_NOT_SUPPORTED:
            raise FuzzFailure(f"INS {command.ins:02X}, which the card has, answered 6D00")
        handler(command, data, sw, before, after)

    def _unchanged(self, before: Snapshot, after: Snapshot) -> None:
        if before != after:
            changed = sorted(k for k in before if before[k] != after.get(k))
            raise FuzzFailure(f"PIN reference data changed: {changed}")

    def _select(
        self, command: Command, data: bytes, sw: int, before: Snapshot, after: Snapshot
    ) -> None:
        self._unchanged(before, after)
        if sw != SW.SUCCESS:
            return
        if command.p2 not in (0x00, 0x0C):
            raise FuzzFailure(f"SELECT with P2={command.p2:02X} answered 9000")
        if command.p1 == 0x04 and command.data == GLOBAL_PLATFORM_ISD:
            if not self.image.settings.global_platform_isd_selectable or data:
                raise FuzzFailure(f"SELECT of the ISD answered 9000 with {len(data)} bytes")
            self.power_cycle()  # the power-on state: no AP, the left AP's security state gone
            self.stats.events["select ISD"] += 1
            return
        if command.p1 == 0x04:
            application = next((a for a, aid in AIDS.items() if aid == command.data), None)
            if application is None:
                raise FuzzFailure(f"SELECT of the unknown AID {command.data.hex()} answered 9000")
            if application != self.application:
                self.verified.clear()
                self.forget_administration()
                self.application = application
            self.current = application
            wants_fci = command.p2 == 0x00 and command.ne is not None
            if data != (self.select_fci if wants_fci else b""):
                raise FuzzFailure(f"SELECT AP answered data {data.hex()}")
            self.stats.events[f"select {application}"] += 1
            return
        if command.p1 not in (0x00, 0x02) or data:
            raise FuzzFailure(f"SELECT P1={command.p1:02X} answered 9000 with {len(data)} bytes")
        if self.current is None:
            raise FuzzFailure("SELECT EF answered 9000 with no AP selected since power-on/reset")
        self.stats.events["select EF"] += 1

    def _readable(self, application: str, fid: int) -> bool:
        needs = READ_NEEDS.get((application, fid))
        return needs is None or bool(self.verified & needs)

    def _read_binary(
        self, command: Command, data: bytes, sw: int, before: Snapshot, after: Snapshot
    ) -> None:
        self._unchanged(before, after)
        if sw != SW.SUCCESS:
            return
        if self.current is None or command.ne is None or command.data:
            raise FuzzFailure("READ BINARY answered 9000 without an AP, without Le or with data")
        application = self.current
        contents = self.image.applications[application].files
        binary = [fid for fid in contents if (application, fid) not in RECORD_FILES]
        if command.p1 & 0x80:
            offset = command.p2
            candidates = [fid for fid in binary if fid & 0x1F == command.p1 & 0x1F]
        else:
            offset = command.p1 << 8 | command.p2
            candidates = binary
        wanted = slice(offset, offset + command.ne)
        sources = [fid for fid in candidates if data and contents[fid][wanted] == data]
        if not sources:
            raise FuzzFailure(f"READ BINARY answered {len(data)} bytes that are no file's slice")
        if not any(self._readable(application, fid) for fid in sources):
            raise FuzzFailure(f"READ BINARY of {sources} without the PIN it needs")
        self.stats.events["read"] += 1

    def _read_record(
        self, command: Command, data: bytes, sw: int, before: Snapshot, after: Snapshot
    ) -> None:
        self._unchanged(before, after)
        if sw != SW.SUCCESS:
            return
        if self.current is None or command.ne is None or command.data:
            raise FuzzFailure("READ RECORD answered 9000 without an AP, without Le or with data")
        if command.p2 & 0x07 != 0x04 or command.p1 == 0:
            raise FuzzFailure(f"READ RECORD P1={command.p1:02X} P2={command.p2:02X} answered 9000")
        application, sfi = self.current, command.p2 >> 3
        contents = self.image.applications[application].files
        candidates = [
            fid for fid in contents if (application, fid) in RECORD_FILES and sfi in (0, fid & 0x1F)
        ]
        sources = [
            fid
            for fid in candidates
            if data and data == _record(contents[fid], command.p1)[: command.ne]
        ]
        if not sources:
            raise FuzzFailure(f"READ RECORD answered {len(data)} bytes that are no record")
        if not any(self._readable(application, fid) for fid in sources):
            raise FuzzFailure(f"READ RECORD of {sources} without the PIN it needs")
        self.stats.events["read record"] += 1

    def _pins_of_application(self) -> list[tuple[str, int]]:
        if self.current is None:
            raise FuzzFailure("a PIN command was executed with no AP current")
        return [key for key in self.values if key[0] == self.current]

    def _verify(
        self, command: Command, data: bytes, sw: int, before: Snapshot, after: Snapshot
    ) -> None:
        changed = [key for key in before if before[key] != after[key]]
        if any(before[key][1:] != after[key][1:] for key in changed):
            raise FuzzFailure("VERIFY changed a PIN value")
        if sw == SW.SUCCESS:
            if not command.data:
                raise FuzzFailure("a retry query answered 9000 (OpenSC needs 63Cx)")
            # Two PINs of one AP can share a value (4-digit ones after a CHANGE): any may be it.
            matching = [
                k
                for k in self._pins_of_application()
                if self.value_of(k) == command.data
                and before[self.counter(k)][0]
                and after[self.counter(k)][0] == self.max_tries(k)
            ]
            if not matching:
                raise FuzzFailure(
                    "VERIFY answered 9000 without the right value of an unblocked "
                    "PIN of the current AP, restored to its maximum"
                )
            if set(changed) - {self.counter(k) for k in matching}:
                raise FuzzFailure(f"VERIFY 9000 changed other counters: {changed}")
            self.verified.update(fid for _, fid in matching)
            self.stats.events["verify ok"] += 1
            return
        if sw & 0xFFF0 == 0x63C0:
            tries = sw & 0x0F
            if not command.data:  # the retry query: nothing changes
                self._unchanged(before, after)
                if all(after[self.counter(k)][0] != tries for k in self._pins_of_application()):
                    raise FuzzFailure(f"retry query answered {sw:04X}: no PIN has {tries} tries")
                self.stats.events["retry query"] += 1
                return
            if len(changed) != 1:
                raise FuzzFailure(f"wrong VERIFY {sw:04X} changed counters {changed}")
            (reached,) = changed
            pins = [k for k in self._pins_of_application() if self.counter(k) == reached]
            if not pins:
                raise FuzzFailure(f"wrong VERIFY {sw:04X} spent {reached}, not a current AP's")
            if after[reached][0] != before[reached][0] - 1 or after[reached][0] != tries:
                raise FuzzFailure(
                    f"wrong VERIFY {sw:04X}: {reached} {before[reached][0]} -> {after[reached][0]}"
                )
            if self.values.get(reached) == command.data:
                raise FuzzFailure(f"the right value of {reached} answered {sw:04X}")
            self.verified.difference_update(fid for _, fid in pins)
            self.stats.events["verify wrong"] += 1
            return
        self._unchanged(before, after)
        if sw == SW.AUTHENTICATION_METHOD_BLOCKED:
            if all(after[self.counter(k)][0] for k in self._pins_of_application()):
                raise FuzzFailure("6984 with no PIN of the current AP blocked")
            self.stats.events["verify blocked"] += 1

    def _change(
        self, command: Command, data: bytes, sw: int, before: Snapshot, after: Snapshot
    ) -> None:
        changed = [key for key in before if before[key] != after[key]]
        if sw != SW.SUCCESS:
            self._unchanged(before, after)
            return
        if len(changed) != 1:
            raise FuzzFailure(f"CHANGE 9000 changed {changed}")
        (reached,) = changed
        pins = [k for k in self._pins_of_application() if self.counter(k) == reached]
        if UNCHANGEABLE.intersection(pins):
            raise FuzzFailure(f"CHANGE of {pins} answered 9000: its value is printed on the card")
        if not any(fid in self.verified for _, fid in pins):
            raise FuzzFailure(
                f"CHANGE of {reached} answered 9000 but it was not verified "
                f"(verified in {self.application}: {sorted(self.verified)})"
            )
        if (command.ins, command.p1) != PIN_CHANGE[self.current or ""]:
            raise FuzzFailure(
                f"{command.ins:02X} with P1={command.p1:02X} changed a PIN of {self.current}"
            )
        if after[reached][0] != before[reached][0] or before[reached][0] == 0:
            raise FuzzFailure(f"CHANGE of {reached} changed its counter or a blocked PIN")
        low, high, alphabet, _ = PIN_RULES[reached]
        value = command.data
        if not low <= len(value) <= high or value.strip(alphabet):
            raise FuzzFailure(
                f"CHANGE of {reached} took a value its rule refuses ({len(value)} bytes)"
            )
        app, fid = reached
        reference = self.image.applications[app].pins[fid]
        if not reference.matches(value):
            raise FuzzFailure(
                f"CHANGE of {reached} answered 9000 but the new value does not verify"
            )
        self.values[reached] = value
        self.secrets.add_pin(reference)
        self.stats.events["change ok" if command.ins == 0x24 else "change key ok"] += 1

    def _sign(
        self, command: Command, data: bytes, sw: int, before: Snapshot, after: Snapshot
    ) -> None:
        self._unchanged(before, after)
        if sw != SW.SUCCESS:
            return
        if command.p1 > 0x05:
            raise FuzzFailure(f"COMPUTE DIGITAL SIGNATURE with P1={command.p1:02X} answered 9000")
        signers = [
            name
            for name, key in self.public_keys.items()
            if signature_verifies(key, command.p1, command.data, data)
        ]
        if not signers:
            raise FuzzFailure("a 9000 signature verifies under none of the card's keys")
        (key,) = signers
        if key == CARD_KEY:  # no credential, P1 00 only (§5)
            if self.current != CARD_FACE or command.p1 != 0x00:
                raise FuzzFailure(f"the card key signed with P1={command.p1:02X} in {self.current}")
            needs_birth_date = self.image.settings.card_face_sign_requires == "birth_date"
            if needs_birth_date and (self.application != CARD_FACE or 0x11 not in self.verified):
                raise FuzzFailure("the card key signed without the birth-date key verified")
            self.stats.events["card-face signature"] += 1
            return
        app, fid = key
        if app != JPKI or fid not in KEY_PINS:
            raise FuzzFailure(f"key {key} answered COMPUTE DIGITAL SIGNATURE")
        if self.current != JPKI or self.application != JPKI or KEY_PINS[fid] not in self.verified:
            raise FuzzFailure(
                f"key {fid:04X} signed without its PIN verified "
                f"(AP {self.application}, verified {sorted(self.verified)})"
            )
        self.stats.events["signature"] += 1

    def _internal_authenticate(
        self, command: Command, data: bytes, sw: int, before: Snapshot, after: Snapshot
    ) -> None:
        self._unchanged(before, after)
        if sw != SW.SUCCESS:
            return
        if command.p1 != 0x00 or not 1 <= len(command.data) <= 255:
            raise FuzzFailure(
                f"INTERNAL AUTHENTICATE P1={command.p1:02X} of {len(command.data)} bytes: 9000"
            )
        key = self.public_keys.get(AUTHENTICATION_KEY)
        scheme = INTERNAL_AUTHENTICATE_SCHEME
        if key is None or not signature_verifies(key, scheme, command.data, data):
            raise FuzzFailure("INTERNAL AUTHENTICATE: not the common AP key's signature")
        if self.current != COMMON:
            raise FuzzFailure(f"the common AP's key answered in {self.current}")
        self.stats.events["internal authenticate"] += 1

    def _get_data(
        self, command: Command, data: bytes, sw: int, before: Snapshot, after: Snapshot
    ) -> None:
        self._unchanged(before, after)
        if sw != SW.SUCCESS:
            return
        settings = self.image.settings
        tag = command.p1 << 8 | command.p2
        if tag not in GET_DATA_TAGS:
            raise FuzzFailure(f"GET DATA of tag {tag:04X}, which the card does not have: 9000")
        with_application = tag == ATR_INFORMATION and settings.atr_information_with_application
        if self.current is not None and not with_application:
            raise FuzzFailure(f"GET DATA {tag:04X} answered 9000 with {self.current} current")
        if tag == ATR_INFORMATION:
            expected: bytes | None = settings.atr[1:]  # without TS
        elif tag == SECOND_CVC and not settings.second_cvc_present:
            expected = None
        else:
            expected = self.image.applications[CARD_LEVEL].files.get(tag)
        if data != expected:
            raise FuzzFailure(f"GET DATA {tag:04X} answered {len(data)} bytes, not the object")
        if command.data or command.ne is None or command.ne < len(data):
            raise FuzzFailure(f"GET DATA {tag:04X} answered 9000 with data or Le={command.ne}")
        self.stats.events["get data"] += 1

    def _set_session_key(
        self, command: Command, data: bytes, sw: int, before: Snapshot, after: Snapshot
    ) -> None:
        self._unchanged(before, after)
        if sw == SW.SUCCESS:
            raise FuzzFailure("SET SESSION KEY answered 9000 with secure messaging off")
        if self.current is None:
            return
        expected = SESSION_KEY_REFUSALS[self.current]
        if self.current == CARD_INFO and self.application == CARD_INFO and 0x11 in self.verified:
            expected = SESSION_KEY_AFTER_PIN
        if sw != expected:
            raise FuzzFailure(f"SET SESSION KEY in {self.current} answered {sw:04X}")
        self.stats.events["session key refused"] += 1

    def _challenge(
        self, command: Command, data: bytes, sw: int, before: Snapshot, after: Snapshot
    ) -> None:
        self._unchanged(before, after)
        if sw != SW.SUCCESS:
            return
        if command.extended or command.data or command.p1 or command.p2:
            raise FuzzFailure("GET CHALLENGE answered 9000 to an extended, case 3/4 or P1P2 form")
        if command.ne is None or len(data) != command.ne or command.ne > 256:
            raise FuzzFailure(f"GET CHALLENGE answered {len(data)} bytes for Le={command.ne}")
        self.challenge = data if len(data) == ADMIN_CHALLENGE else None
        self.stats.events["challenge"] += 1

    def _only_admin_changed(self, before: Snapshot, after: Snapshot, what: str) -> None:
        changed = [key for key in before if before[key] != after.get(key) and key != ADMIN]
        if changed:
            raise FuzzFailure(f"{what} changed counters other than the administrator's: {changed}")

    def _external_authenticate(
        self, command: Command, data: bytes, sw: int, before: Snapshot, after: Snapshot
    ) -> None:
        """Predicted exactly: the model knows K and the R the card gave."""
        self._only_admin_changed(before, after, "EXTERNAL AUTHENTICATE")
        challenge, self.challenge = self.challenge, None  # consumed whatever the outcome
        tries = before[ADMIN][0] if ADMIN in before else None
        right = (
            challenge is not None
            and self.current is not None
            and self.admin_key is not None
            and command.data == cmac_proof(self.admin_key, challenge, AIDS[self.current])
        )
        expected: int
        if command.p1 or command.p2:
            expected = SW.INCORRECT_P1_P2
        elif len(command.data) != 16 or command.ne is not None:
            expected = SW.WRONG_LENGTH
        elif challenge is None or self.current is None or tries is None:
            expected = SW.CONDITIONS_OF_USE_NOT_SATISFIED
        elif tries == 0:
            expected = SW.AUTHENTICATION_METHOD_BLOCKED
        elif right:
            expected = SW.SUCCESS
        else:
            expected = 0x63C0 | (tries - 1)
        if sw != expected:
            raise FuzzFailure(
                f"EXTERNAL AUTHENTICATE answered {sw:04X}, expected {expected:04X} "
                f"(R {'known' if challenge else 'none'}, {tries} administrator tries)"
            )
        admin_after = after[ADMIN][0] if ADMIN in after else None
        if sw == SW.SUCCESS:
            if admin_after != ADMIN_MAX_TRIES:
                raise FuzzFailure(f"a right proof left the administrator {admin_after} tries")
            self.administrator = True
            self.stats.events["admin authenticated"] += 1
        elif sw & 0xFFF0 == 0x63C0:
            if admin_after != sw & 0x0F:
                raise FuzzFailure(f"a wrong proof {sw:04X} left {admin_after} tries on the card")
            self.administrator = False
            self.stats.events["admin proof refused"] += 1
        else:
            if before.get(ADMIN) != after.get(ADMIN):
                raise FuzzFailure(f"EXTERNAL AUTHENTICATE {sw:04X} changed the administrator")
            self.stats.events[f"admin {SW(sw).name.lower()}"] += 1

    def _reset_retry_counter(
        self, command: Command, data: bytes, sw: int, before: Snapshot, after: Snapshot
    ) -> None:
        changed = [key for key in before if before[key] != after[key]]
        if not self.administrator:
            if sw != SW.SECURITY_STATUS_NOT_SATISFIED:
                raise FuzzFailure(f"RESET RETRY COUNTER without the proof answered {sw:04X}")
            self._unchanged(before, after)
            return
        if command.p1 not in (0x02, 0x03):
            expected: int | None = SW.INCORRECT_P1_P2
        elif (command.p1 == 0x02) != bool(command.data) or command.ne is not None:
            expected = SW.WRONG_LENGTH
        else:
            expected = None  # which key P2 names is the card's current EF: not followed here
        if expected is not None and sw != expected:
            raise FuzzFailure(f"RESET RETRY COUNTER answered {sw:04X}, expected {expected:04X}")
        if sw != SW.SUCCESS:
            self._unchanged(before, after)
            return
        if len(changed) > 1 or ADMIN in changed:
            raise FuzzFailure(f"RESET RETRY COUNTER 9000 changed {changed}")
        application = self.current or ""
        candidates = [k for k in self._pins_of_application()]
        if command.p2 != 0x80:
            candidates = [k for k in candidates if k[1] & 0x1F == command.p2 & 0x1F]
        if changed:
            candidates = [k for k in candidates if self.counter(k) == changed[0]]
        if not candidates:
            raise FuzzFailure(f"RESET RETRY COUNTER 9000 reached no PIN of {application}")
        if len(candidates) == 1:
            (target,) = candidates
            if target in NEVER_RESET:
                raise FuzzFailure(f"RESET RETRY COUNTER reset {target}, blocked for good")
            if command.p1 == 0x02 and target in UNBLOCK_ONLY:
                raise FuzzFailure(f"RESET RETRY COUNTER gave {target} a new value (printed)")
            reached = self.counter(target)
            if after[reached][0] != self.max_tries(target):
                raise FuzzFailure(f"RESET RETRY COUNTER left {target} at {after[reached][0]}")
            self.verified.discard(target[1])  # a reset does not verify: the holder VERIFYs
            if command.p1 == 0x02:
                low, high, alphabet, _ = PIN_RULES[target]
                value = command.data
                if not low <= len(value) <= high or value.strip(alphabet):
                    raise FuzzFailure(f"RESET RETRY COUNTER gave {target} a value its rule refuses")
                reference = self.image.applications[reached[0]].pins[reached[1]]
                if not reference.matches(value):
                    raise FuzzFailure(f"the new value of {target} does not verify")
                self.values[reached] = value
                self.secrets.add_pin(reference)
            elif changed and after[reached][1:] != before[reached][1:]:
                raise FuzzFailure(f"an unblock changed the value of {target}")
        elif changed or command.p1 == 0x02:
            raise FuzzFailure(f"RESET RETRY COUNTER 9000: cannot tell which of {candidates}")
        self.stats.events[f"reset retry counter {command.p1:02X} ok"] += 1


# The generator -----------------------------------------------------------------------------


class Generator:
    """Commands from a grammar of what clients send, then mutated."""

    def __init__(self, rng: random.Random, model: Model, signature_budget: int) -> None:
        self.rng = rng
        self.model = model
        self.signature_budget = signature_budget
        self.productions = [
            (self.select_application, 10),
            (self.select_file, 12),
            (self.read_binary, 16),
            (self.verify, 16),
            (self.change, 5),
            (self.sign, 8),
            (self.challenge, 4),
            (self.other_instruction, 5),
            (self.garbage, 2),
            (self.unlock_sequence, 2),
            (self.read_sequence, 4),
            (self.read_record, 5),
            (self.internal_authenticate, 3),
            (self.get_data, 4),
            (self.set_session_key, 2),
            (self.card_face_sequence, 2),
            (self.record_sequence, 2),
        ]
        self.productions.append((self.admin_sequence, 3))
        self.weights = [weight for _, weight in self.productions]
        # Queued commands; a callable is made when its turn comes (a proof needs the last R).
        self.queue: deque[bytes | Callable[[], bytes]] = deque()

    def next(self) -> bytes:
        if not self.queue:
            (production,) = self.rng.choices([p for p, _ in self.productions], self.weights)
            raw = production()
            if self.rng.random() < 0.3:
                raw = self.mutate(raw)
            self.queue.appendleft(raw)  # before what the production queued after it
        item = self.queue.popleft()
        return item() if callable(item) else item

    # helpers
    def cla(self) -> int:
        return 0x00 if self.rng.random() < 0.85 else self.rng.choice(ODD_CLASSES)

    def le(self, short_only: bool = False) -> tuple[int | None, bool]:
        roll = self.rng.random()
        if roll < 0.35:
            return 256, False  # Le=00
        if roll < 0.7:
            return self.rng.choice((1, 2, 4, 7, 0x20, 0xFF, self.rng.randrange(1, 256))), False
        if roll < 0.8 or short_only:
            return None, False
        return self.rng.choice((65536, 256, 1, 0x0700, self.rng.randrange(1, 65536))), True

    def over_budget(self, event: str | None = None) -> bool:
        """Whether this kind of signature reached the budget (signing is what takes time)."""
        if event is None:
            event = "card-face signature" if self.model.current == CARD_FACE else "signature"
        return self.model.stats.events[event] >= self.signature_budget

    def application(self) -> str:
        return self.model.current or self.model.application or self.rng.choice(tuple(AIDS))

    def pin(self) -> tuple[str, int]:
        app = self.application()
        pins = [key for key in PIN_RULES if key[0] == app]
        return self.rng.choice(pins)

    def value(self, pin: tuple[str, int], kind: str) -> bytes:
        low, high, alphabet, _ = PIN_RULES[pin]
        rng = self.rng
        right = self.model.value_of(pin)
        if kind == "right" and right is not None:
            return right
        if kind in ("right", "wrong"):
            while True:
                value = bytes(rng.choice(alphabet) for _ in range(rng.randint(low, high)))
                if value != right:
                    return value
        if kind == "odd":
            length = rng.choice((1, low - 1, high + 1, high + 5, 0x40)) or 1
            return bytes(rng.choice(alphabet) for _ in range(length))
        right = right or b"1234"
        return rng.choice(
            (
                right.lower(),
                right + b"\x00",
                right + b"\xff",
                b" " + right,
                right[:-1],
                bytes(len(right)),
            )
        )

    # productions
    def select_application(self) -> bytes:
        rng = self.rng
        roll = rng.random()
        if roll < 0.35:
            aid = AIDS[JPKI]
        elif roll < 0.5:
            aid = AIDS[CARD_INFO]
        elif roll < 0.75:
            aid = AIDS[rng.choice((CARD_FACE, CARD_FACE, JUKI, COMMON))]
        elif roll < 0.8:
            aid = GLOBAL_PLATFORM_ISD
        elif roll < 0.92:
            aid = rng.choice(OTHER_AIDS)
        else:
            aid = rng.randbytes(rng.randint(1, 16))
        if rng.random() < 0.8:
            return encode(self.cla(), 0xA4, 0x04, 0x0C, aid)
        ne, extended = self.le()
        return encode(
            self.cla(), 0xA4, 0x04, rng.choice((0x00, 0x0C, 0x04, 0x02)), aid, ne, extended=extended
        )

    def select_file(self) -> bytes:
        rng = self.rng
        app = self.model.application or JPKI
        fid = rng.choice((*FILES[app], *FILES[app], 0x3F00, rng.randrange(65536)))
        data = fid.to_bytes(2, "big")
        if rng.random() < 0.08:
            data = rng.choice((b"", b"\x3f", data + b"\x00", b"\x3f\x00"))
        p1 = rng.choice((0x02, 0x02, 0x02, 0x00, 0x01, 0x08))
        p2 = 0x0C if rng.random() < 0.85 else rng.choice((0x00, 0x04, 0x0C))
        ne, extended = self.le() if rng.random() < 0.15 else (None, False)
        return encode(self.cla(), 0xA4, p1, p2, data, ne, extended=extended)

    def read_binary(self) -> bytes:
        rng = self.rng
        ne, extended = self.le()
        if ne is None and rng.random() < 0.7:
            ne = 256
        if rng.random() < 0.4:
            app = self.model.application or JPKI
            sfi = rng.choice([fid & 0x1F for fid in FILES[app]] + [rng.randrange(32)])
            p1 = 0x80 | sfi if rng.random() < 0.95 else rng.choice((0xA0, 0xC0, 0xE0)) | sfi
            return encode(
                self.cla(),
                0xB0,
                p1,
                rng.choice((0, 0, 4, 0xFF, rng.randrange(256))),
                ne=ne,
                extended=extended,
            )
        offset = rng.choice(
            (0, 0, 4, 0x100, 0x200, 0x600, 0x6A0, rng.randrange(0x900), rng.randrange(0x8000))
        )
        data = b"" if rng.random() < 0.95 else b"\x00"
        return encode(self.cla(), 0xB0, offset >> 8, offset & 0xFF, data, ne, extended=extended)

    def verify(self) -> bytes:
        rng = self.rng
        pin = self.pin()
        p2 = (
            0x80 | (pin[1] & 0x1F)
            if rng.random() < 0.75
            else rng.choice((0x80, 0x80, rng.randrange(256)))
        )
        p1 = 0x00 if rng.random() < 0.95 else rng.randrange(256)
        roll = rng.random()
        if roll < 0.2:  # the retry query, sometimes with a Le it must not have
            return encode(self.cla(), 0x20, p1, p2, ne=256 if rng.random() < 0.1 else None)
        kind = (
            "right" if roll < 0.65 else "wrong" if roll < 0.8 else "odd" if roll < 0.9 else "near"
        )
        value = self.value(pin, kind)
        ne = None if rng.random() < 0.95 else 256
        return encode(self.cla(), 0x20, p1, p2, value, ne, extended=rng.random() < 0.05)

    def change(self) -> bytes:
        """CHANGE REFERENCE DATA or CHANGE KEY, mostly the one the AP takes."""
        rng = self.rng
        pin = self.pin()
        forms = ((0x24, 0x01), (0x32, 0x00))
        ins, p1 = PIN_CHANGE[pin[0]] if rng.random() < 0.85 else rng.choice(forms)
        p2 = 0x80 | (pin[1] & 0x1F) if rng.random() < 0.8 else 0x80
        if rng.random() < 0.1:
            p1 = rng.choice((0x00, 0x01, 0x02, rng.randrange(256)))
        kind = "wrong" if rng.random() < 0.75 else rng.choice(("odd", "near"))
        cla = (0x80 if ins == 0x32 else 0x00) if rng.random() < 0.85 else self.cla()
        value = self.value(pin, kind)
        return encode(cla, ins, p1, p2, value, extended=rng.random() < 0.05)

    def sign(self) -> bytes:
        rng = self.rng
        p1 = rng.choice((0, 0, 1, 2, 3, 4, 5)) if rng.random() < 0.92 else rng.randrange(6, 256)
        p2 = rng.choice((0x97, 0x97, 0x9A, 0x00, 0x80, 0x98, 0x99, 0x86, rng.randrange(256)))
        right = {
            0: rng.choice((51, 35, 83, 20, 1, 245)),
            1: rng.randint(1, 255),
            2: 32,
            3: rng.randint(1, 255),
            4: 32,
            5: rng.randint(1, 255),
        }.get(p1, 32)
        length = right if rng.random() < 0.8 else rng.choice((0, 31, 33, 246, 255, 256, 300))
        if self.over_budget():
            length = rng.choice((0, 256, 300))  # no scheme takes these: the budget holds
        data = rng.randbytes(length)
        ne = 256 if rng.random() < 0.85 else None
        return encode(
            0x80 if rng.random() < 0.9 else self.cla(),
            0x2A,
            p1,
            p2,
            data,
            ne,
            extended=rng.random() < 0.1 or length > 255,
        )

    def challenge(self) -> bytes:
        rng = self.rng
        ne, extended = self.le()
        p1p2 = (0, 0) if rng.random() < 0.9 else (rng.randrange(256), rng.randrange(256))
        data = b"" if rng.random() < 0.95 else rng.randbytes(4)
        return encode(self.cla(), 0x84, *p1p2, data, ne, extended=extended)

    def other_instruction(self) -> bytes:
        rng = self.rng
        ins = rng.choice((*OTHER_INS, *KNOWN_INS, rng.randrange(256)))
        data = rng.randbytes(rng.choice((0, 0, 1, 8, rng.randrange(300))))
        ne, extended = self.le()
        return encode(
            self.cla(), ins, rng.randrange(256), rng.randrange(256), data, ne, extended=extended
        )

    def garbage(self) -> bytes:
        return self.rng.randbytes(self.rng.choice((0, 1, 2, 3, 4, 5, 6, 7, 9, 40)))

    def unlock_sequence(self) -> bytes:
        """What a signing client sends: AP, PIN, signature (queued, mutated only at the head)."""
        rng = self.rng
        key = rng.choice((0x17, 0x17, 0x1A))
        pin = (JPKI, KEY_PINS[key])
        self.queue.extend(
            [
                encode(0x00, 0x20, 0x00, 0x80 | pin[1], self.model.values.get(pin, b"1234")),
                encode(0x80, 0x2A, 0x00, 0x80 | key, SHA256_DIGEST_INFO + rng.randbytes(32), 256)
                if not self.over_budget("signature")
                else encode(0x00, 0x20, 0x00, 0x80 | pin[1]),
            ]
        )
        return encode(0x00, 0xA4, 0x04, 0x0C, AIDS[JPKI])

    def read_sequence(self) -> bytes:
        """How clients read an EF: SELECT it, then chunks (Le=00 or one extended read)."""
        rng = self.rng
        app = self.model.current or rng.choice((JPKI, CARD_INFO, CARD_FACE))
        fid = rng.choice(FILES[app][: DATA_FILES[app]])
        offsets = [0, 4, 0x100, 0x200, 0x300, 0x400, 0x500, 0x600, 0x700, 0x900]
        for offset in rng.sample(offsets, rng.randint(1, 4)):
            ne, extended = rng.choice(((256, False), (65536, True), (4, False), (0x80, False)))
            self.queue.append(
                encode(0x00, 0xB0, offset >> 8, offset & 0xFF, ne=ne, extended=extended)
            )
        return encode(0x00, 0xA4, 0x02, 0x0C, fid.to_bytes(2, "big"))

    def read_record(self) -> bytes:
        rng = self.rng
        app = self.application()
        sfi = rng.choice([fid & 0x1F for fid in FILES[app]] + [0, 0, rng.randrange(32)])
        mode = 0x04 if rng.random() < 0.85 else rng.choice((0x05, 0x06, 0x00, rng.randrange(8)))
        p1 = rng.choice((1, 1, 1, 2, 0, rng.randrange(256)))
        ne, extended = self.le()
        if ne is None and rng.random() < 0.7:
            ne = 256
        data = b"" if rng.random() < 0.95 else b"\x00"
        return encode(self.cla(), 0xB2, p1, sfi << 3 | mode, data, ne, extended=extended)

    def internal_authenticate(self) -> bytes:
        rng = self.rng
        p2 = rng.choice((0x99, 0x99, 0x99, 0x80, 0x97, 0x9A, 0x00, rng.randrange(256)))
        p1 = 0x00 if rng.random() < 0.95 else rng.randrange(256)
        length = rng.choice((16, 32, 1, 255)) if rng.random() < 0.85 else rng.choice((0, 256, 300))
        if self.over_budget("internal authenticate"):
            length = rng.choice((0, 256, 300))  # no challenge of these lengths: the budget holds
        ne, extended = (256, False) if rng.random() < 0.85 else self.le()
        return encode(
            self.cla(),
            0x88,
            p1,
            p2,
            rng.randbytes(length),
            ne,
            extended=extended or length > 255,
        )

    def get_data(self) -> bytes:
        rng = self.rng
        tag = rng.choice((*GET_DATA_TAGS, *GET_DATA_TAGS, 0xDF30, 0x0000, rng.randrange(65536)))
        roll = rng.random()
        ne: int | None
        if roll < 0.5:
            ne, extended = 256, False  # Le 00: objects up to 256 bytes
        elif roll < 0.75:
            ne, extended = 65536, True  # the larger CVCs come only this way
        else:
            ne, extended = self.le()
        data = b"" if rng.random() < 0.95 else b"\x5c"
        return encode(self.cla(), 0xCA, tag >> 8, tag & 0xFF, data, ne, extended=extended)

    def set_session_key(self) -> bytes:
        rng = self.rng
        data = rng.randbytes(rng.choice((256, 256, 36, 0, rng.randrange(300))))
        ne, extended = (None, False) if rng.random() < 0.8 else self.le()
        cla = 0x80 if rng.random() < 0.85 else self.cla()
        return encode(cla, 0xAE, 0x00, 0x00, data, ne, extended=extended or len(data) > 255)

    def card_face_sequence(self) -> bytes:
        """What card-face clients send: a key, a record read, or the card key's challenge."""
        rng = self.rng
        if rng.random() < 0.5:
            pin = rng.choice([key for key in PIN_RULES if key[0] == CARD_FACE])
            fid = rng.choice((0x0001, 0x0002, 0x0005, 0x0006))
            self.queue.extend(
                [
                    encode(0x00, 0x20, 0x00, 0x80 | pin[1], self.value(pin, "right")),
                    encode(0x00, 0xA4, 0x02, 0x0C, fid.to_bytes(2, "big")),
                    encode(0x00, 0xB0, 0x00, 0x00, ne=256),
                ]
            )
        else:
            challenge = rng.randbytes(16)
            digest_info = SHA256_DIGEST_INFO + hashlib.sha256(challenge).digest()
            self.queue.extend(
                [
                    encode(0x00, 0x84, 0x00, 0x00, ne=16),
                    encode(0x80, 0x2A, 0x00, 0x00, digest_info, 256)
                    if not self.over_budget("card-face signature")
                    else encode(0x00, 0x84, 0x00, 0x00, ne=16),
                ]
            )
        return encode(0x00, 0xA4, 0x04, 0x0C, AIDS[CARD_FACE])

    def record_sequence(self) -> bytes:
        """What 住基 and common AP clients send: a record, the key's challenge, a PIN change."""
        rng = self.rng
        app = rng.choice((JUKI, COMMON, COMMON))
        pin = (app, 0x1C)
        roll = rng.random()
        if roll < 0.4:
            fid = rng.choice(FILES[app][: DATA_FILES[app]])
            self.queue.append(encode(0x00, 0xB2, 0x01, (fid & 0x1F) << 3 | 0x04, ne=256))
        elif roll < 0.7 and app == COMMON and not self.over_budget("internal authenticate"):
            self.queue.append(encode(0x00, 0x88, 0x00, 0x99, rng.randbytes(16), 256))
        else:
            self.queue.extend(
                [
                    encode(0x00, 0x20, 0x00, 0x80 | pin[1], self.value(pin, "right")),
                    encode(0x80, 0x32, 0x00, 0x80 | pin[1], self.value(pin, "wrong")),
                ]
            )
        return encode(0x00, 0xA4, 0x04, 0x0C, AIDS[app])

    def admin_sequence(self) -> bytes:
        """What a window terminal sends: an AP, a challenge, the proof (right, wrong, made for
        another AP, or without a usable challenge), then resets of its keys."""
        rng = self.rng
        app = rng.choice(tuple(AIDS))
        kind = rng.choice(("right", "right", "right", "wrong", "other AP", "no R", "short R"))
        if kind != "no R":
            self.queue.append(encode(0x00, 0x84, 0x00, 0x00, ne=8 if kind == "short R" else 16))
        self.queue.append(lambda: self.external_authenticate(kind, app))
        for _ in range(rng.randint(0, 3)):
            self.queue.append(self.reset_retry_counter(app))
        return encode(0x00, 0xA4, 0x04, 0x0C, AIDS[app])

    def external_authenticate(self, kind: str, app: str) -> bytes:
        key, challenge = self.model.admin_key, self.model.challenge
        if kind == "wrong" or key is None:
            tag = self.rng.randbytes(16)
        else:
            other = self.rng.choice([a for a in AIDS if a != app]) if kind == "other AP" else app
            tag = cmac_proof(key, challenge or bytes(16), AIDS[other])
        return encode(0x00, 0x82, 0x00, 0x00, tag)

    def reset_retry_counter(self, app: str) -> bytes:
        rng = self.rng
        pin = rng.choice([key for key in PIN_RULES if key[0] == app])
        p1 = rng.choice((0x02, 0x03, 0x03)) if rng.random() < 0.95 else rng.randrange(256)
        p2 = 0x80 | (pin[1] & 0x1F) if rng.random() < 0.85 else rng.choice((0x80, 0x81, 0x00))
        if p1 == 0x02:
            data = self.value(pin, "wrong" if rng.random() < 0.8 else "odd")
        else:
            data = b"" if rng.random() < 0.9 else self.value(pin, "wrong")
        return encode(0x00, 0x2C, p1, p2, data)

    # mutations
    def mutate(self, raw: bytes) -> bytes:
        rng = self.rng
        kind = rng.randrange(10)
        if kind == 0 and raw:  # truncation
            return raw[: rng.randrange(len(raw))]
        if kind == 1:  # trailing bytes
            return raw + rng.randbytes(rng.choice((1, 1, 2, 3)))
        if kind == 2 and len(raw) > 4:  # Lc or Le lies (short or extended length byte)
            position = rng.choice(
                [4] + ([5, 6] if raw[4] == 0 and len(raw) > 6 else []) + [len(raw) - 1]
            )
            mutated = bytearray(raw)
            mutated[position] = rng.choice(
                ((raw[position] + 1) % 256, (raw[position] - 1) % 256, 0, 0xFF, rng.randrange(256))
            )
            return bytes(mutated)
        if kind == 3 and raw:  # bit flips
            mutated = bytearray(raw)
            for _ in range(rng.randint(1, 3)):
                position = rng.randrange(len(mutated))
                mutated[position] ^= 1 << rng.randrange(8)
            return bytes(mutated)
        if kind == 4 and raw:  # another CLA
            return bytes([rng.choice((0x0C, 0x08, 0x01, 0x10, 0x40, 0x80, 0xFF, 0x00))]) + raw[1:]
        if kind == 5 and len(raw) >= 4:  # other P1/P2
            index = rng.choice((2, 3))
            return raw[:index] + bytes([rng.randrange(256)]) + raw[index + 1 :]
        command = decode(raw)
        if command is None:
            return raw
        if kind == 6:  # the same command in the other form (short <-> extended)
            return encode(
                command.cla,
                command.ins,
                command.p1,
                command.p2,
                command.data,
                command.ne,
                extended=not command.extended,
            )
        if kind == 7:  # drop or add Le
            ne = None if command.ne is not None else rng.choice((256, 1, 65536))
            return encode(
                command.cla,
                command.ins,
                command.p1,
                command.p2,
                command.data,
                ne,
                extended=command.extended,
            )
        if kind == 8 and command.data:  # data one byte short or long, lengths kept honest
            data = command.data[:-1] if rng.random() < 0.5 else command.data + b"\x00"
            return encode(
                command.cla,
                command.ins,
                command.p1,
                command.p2,
                data,
                command.ne,
                extended=command.extended,
            )
        return raw[:4] + rng.randbytes(rng.randrange(1, 12))  # a random body


# The run ---------------------------------------------------------------------------------


def _setting_text(value: object) -> str:
    """A card setting as `benchmarks/fuzz.py --setting` takes it: true/false or hex."""
    if isinstance(value, bool):
        return str(value).lower()
    return value.hex().upper() if isinstance(value, bytes) else str(value)


def run_fuzz(
    seed: int,
    apdus: int,
    card: str = "taro",
    settings: dict[str, Any] | None = None,
    signature_budget: int = 25,
) -> FuzzStats:
    """`apdus` fuzzed APDUs against a fresh in-memory card; raises FuzzFailure on a broken rule."""
    rng = random.Random(seed)
    image, values = prepared_image(card, settings or {}, rng)
    virtual = VirtualCard.in_memory(image)
    virtual.power_off()
    virtual.power_on()
    model = Model(image, values)
    generator = Generator(rng, model, signature_budget)
    history: deque[str] = deque(maxlen=24)
    started = time.perf_counter()

    def fail(step: int, problem: str) -> FuzzFailure:
        replay = (
            f"python benchmarks/fuzz.py --apdus {step + 1} --seed {seed} --card {card} "
            f"--signatures {signature_budget}"
        )
        if settings:
            replay += "".join(f" --setting {k}={_setting_text(v)}" for k, v in settings.items())
        return FuzzFailure(
            f"step {step}: {problem}\nreplay: {replay}\nlast events:\n  " + "\n  ".join(history)
        )

    for step in range(apdus):
        roll = rng.random()
        if roll < 0.015:
            virtual.reset()
            model.reset()
            model.stats.events["warm reset"] += 1
            history.append("reset")
        elif roll < 0.025:
            virtual.power_off()
            virtual.power_on()
            model.power_cycle()
            model.stats.events["power cycle"] += 1
            history.append("power cycle")
        elif roll < 0.03:
            unblocked = [key for key, (tries, _, _) in snapshot(image).items() if tries == 0]
            if unblocked:  # the municipal office resets a blocked PIN (tries only)
                app, fid = rng.choice(unblocked)
                if (app, fid) == ADMIN and image.admin is not None:
                    image.admin.restore()  # only the issuing side unblocks the administrator
                else:
                    image.applications[app].pins[fid].tries_left = model.max_tries((app, fid))
                model.stats.events["office unblock"] += 1
                history.append(f"office unblocks {app} {fid:04X}")
        raw = generator.next()
        before = snapshot(image)
        unpowered = rng.random() < 0.004
        if unpowered:
            virtual.power_off()
            model.power_cycle()
        try:
            response = virtual.transmit(raw)
        except CardPoweredOff as error:
            if not unpowered:
                raise fail(step, f"CardPoweredOff while powered: {error}") from error
            history.append(f"unpowered {raw.hex().upper()} -> CardPoweredOff")
            if snapshot(image) != before:
                raise fail(step, "an unpowered card changed") from None
            virtual.power_on()
            model.stats.events["unpowered APDU refused"] += 1
            model.stats.apdus += 1
            continue
        except Exception as error:  # noqa: BLE001 - the card must never raise
            raise fail(step, f"the card raised {error!r} on {raw.hex().upper()}") from error
        if unpowered:
            raise fail(step, "an unpowered card answered")
        history.append(
            f"{raw.hex().upper()[:80]} -> {response.hex().upper()[-4:]} ({len(response) - 2} bytes)"
        )
        try:
            model.check(raw, response, before, snapshot(image))
        except FuzzFailure as failure:
            raise fail(step, str(failure)) from None
        model.stats.apdus += 1
    model.stats.seconds = time.perf_counter() - started
    return model.stats


# The suite -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("card", "settings", "seed", "apdus", "budget"),
    SUITE_RUNS,
    ids=[f"{card}-seed{seed}" for card, _, seed, _, _ in SUITE_RUNS],
)
def test_fuzzed_apdus_keep_every_rule(
    caplog: pytest.LogCaptureFixture,
    card: str,
    settings: dict[str, Any],
    seed: int,
    apdus: int,
    budget: int,
) -> None:
    caplog.set_level(logging.WARNING, logger="card_emulator")
    stats = run_fuzz(seed, apdus, card, settings, budget)
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING and r.name != TRACE_LOGGER]
    assert not errors, "the card logged errors"
    assert stats.apdus == apdus
    # The grammar reached the interesting states, not only refusals.
    reached = stats.events
    for event in (
        "verify ok",
        "verify wrong",
        "verify blocked",
        "change ok",
        "read",
        "malformed",
        "warm reset",
        "power cycle",
        "challenge",
        "select EF",
        *(f"select {application}" for application in AIDS),
        "select ISD",
        "read record",
        "change key ok",
        "get data",
        "session key refused",
    ):
        assert reached[event], f"the run never reached {event!r}: {dict(reached)}"
    administration = (
        "admin authenticated",
        "admin proof refused",
        "admin conditions_of_use_not_satisfied",
        "reset retry counter 02 ok",
        "reset retry counter 03 ok",
    )
    for event in administration:
        if settings.get("admin_apdus", True):
            assert reached[event], f"the run never reached {event!r}: {dict(reached)}"
        else:
            assert not reached[event], f"{event!r} with the administration APDUs off"
    for signatures in ("signature", "card-face signature", "internal authenticate"):
        assert 0 < reached[signatures] <= budget + 5, (signatures, reached[signatures])


def test_reference_decoder_agrees_on_the_spec_examples() -> None:
    """The oracle's own decoder, on forms the spec names."""
    assert decode(bytes.fromhex("00A4040C0AD392F000260100000001")) == Command(
        0, 0xA4, 4, 0x0C, AIDS[JPKI], None, False
    )
    assert decode(bytes.fromhex("00B0000000")) == Command(0, 0xB0, 0, 0, b"", 256, False)
    assert decode(bytes.fromhex("00B00000000000")) == Command(0, 0xB0, 0, 0, b"", 65536, True)
    assert decode(bytes.fromhex("00B08A0400069700")) is None  # 4 bytes of body: no such case
    assert decode(bytes.fromhex("00B08A04000697")) == Command(0, 0xB0, 0x8A, 4, b"", 0x0697, True)
    assert decode(bytes.fromhex("00200080")) == Command(0, 0x20, 0, 0x80, b"", None, False)
    assert decode(bytes.fromhex("0020008000")) == Command(0, 0x20, 0, 0x80, b"", 256, False)
    assert decode(bytes.fromhex("00200080000000")) == Command(0, 0x20, 0, 0x80, b"", 65536, True)
    assert decode(bytes.fromhex("0020008000000131")) == Command(0, 0x20, 0, 0x80, b"1", None, True)
    assert decode(bytes.fromhex("0020008000000131FF")) is None  # neither case 3 nor case 4
    assert decode(b"\x00\xa4\x04") is None
    for raw in (bytes.fromhex("802A00973301") + bytes(50) + b"\x00", bytes(7)):
        command = decode(raw)
        if command is not None:
            assert (
                decode(
                    encode(
                        command.cla,
                        command.ins,
                        command.p1,
                        command.p2,
                        command.data,
                        command.ne,
                        extended=command.extended,
                    )
                )
                == command
            )


def test_secret_scanner_sees_a_leak() -> None:
    """The leak check itself works: a fragment of a private key is found, a certificate is not."""
    image = read_image(CARDS / "taro.json")
    secrets = Secrets(image)
    key = image.applications[JPKI].keys[0x17]
    prime = key.private_numbers().p.to_bytes(128, "big")
    assert secrets.leaked(b"\x01\x02" + prime[40:60] + b"\x90") is not None
    assert secrets.leaked(image.applications[JPKI].files[0x000A]) is None


# The oracle is not vacuous: faults put into the engine are caught -------------------------------


def _keeps_state_across_aps(self: CardEngine, application: Application) -> None:
    self._security_application = application.name  # the verified PINs of the AP left survive
    self._current_df = application
    self._current_ef = None


def _power_off_keeps_state(self: CardEngine) -> None:
    self.powered = False
    self._current_df = self._current_ef = None


def _power_on_keeps_state(self: CardEngine) -> bytes:
    self.powered = True
    self._current_df = self._current_ef = None
    return self.atr


def _refunds_wrong_tries(self: CardEngine, command: CommandApdu) -> bytes:
    try:
        return ORIGINAL_VERIFY(self, command)
    except StatusError as status:
        if status.sw & 0xFFF0 == 0x63C0 and command.data and self._current_ef is not None:
            self._contents().pins[self._current_ef.fid].tries_left += 1
        raise


def _reads_keys(self: CardEngine, command: CommandApdu) -> bytes:
    if command.p1 & 0x80 and self._current_df is not None:
        found = self._current_df.file_by_short_id(command.p1 & 0x1F)
        if isinstance(found, KeyFile) and found.fid in self._contents().keys:
            pem = (
                self._contents()
                .keys[found.fid]
                .private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
            return pem[command.p2 : command.p2 + (command.le or 0)]
    return ORIGINAL_READ_BINARY(self, command)


def _query_answers_9000_once_verified(self: CardEngine, command: CommandApdu) -> bytes:
    if not command.data and self._verified and command.p1 == 0 and command.le is None:
        return b""
    return ORIGINAL_VERIFY(self, command)


def _get_data_in_any_state(self: CardEngine, command: CommandApdu) -> bytes:
    current, self._current_df = self._current_df, None
    try:
        return ORIGINAL_GET_DATA(self, command)
    finally:
        self._current_df = current


def _isd_keeps_state(self: CardEngine, command: CommandApdu) -> bytes:
    if command.p1 == 0x04 and command.data == GLOBAL_PLATFORM_ISD:
        self._current_df = self._current_ef = None
        return b""
    return ORIGINAL_SELECT(self, command)


def _printed_keys_changeable(self: CardEngine, rule: AccessRule) -> bool:
    return isinstance(rule, Never) or ORIGINAL_ALLOWED(self, rule)


def _any_key_authenticates(self: CardEngine, command: CommandApdu) -> bytes:
    if command.p1 or not 1 <= len(command.data) <= 255:
        return ORIGINAL_INTERNAL_AUTHENTICATE(self, command)
    key_file = self._referenced(command.p2, KeyFile)
    key = self._contents().keys[key_file.fid]
    return sign(key, SignatureScheme.PKCS1_SHA256_MESSAGE, command.data)


def _reset_without_proof(self: CardEngine, command: CommandApdu) -> bytes:
    self._administrator = True
    return ORIGINAL_RESET_RETRY_COUNTER(self, command)


def _refunds_wrong_proofs(self: CardEngine, command: CommandApdu) -> bytes:
    try:
        return ORIGINAL_EXTERNAL_AUTHENTICATE(self, command)
    except StatusError as status:
        admin = self.store.image.admin
        if status.sw & 0xFFF0 == 0x63C0 and admin is not None:
            admin.tries_left += 1
        raise


def _keeps_the_challenge(self: CardEngine, command: CommandApdu) -> bytes:
    challenge = self._challenge
    try:
        return ORIGINAL_EXTERNAL_AUTHENTICATE(self, command)
    finally:
        self._challenge = challenge


def _proof_for_any_ap(self: CardEngine, command: CommandApdu) -> bytes:
    admin, challenge = self.store.image.admin, self._challenge
    if admin is not None and challenge is not None and not admin.blocked and command.p1 == 0:
        for application in self.applications:
            if application.aid and admin.proves(challenge, application.aid, command.data):
                self._challenge, self._administrator = None, True
                return b""
    return ORIGINAL_EXTERNAL_AUTHENTICATE(self, command)


def _forgets_only_the_challenge(self: CardEngine) -> None:
    self._challenge = None  # the administrator state survives an AP switch, a reset, power-off


ORIGINAL_VERIFY = CardEngine._verify
ORIGINAL_RESET_RETRY_COUNTER = CardEngine._reset_retry_counter
ORIGINAL_EXTERNAL_AUTHENTICATE = CardEngine._external_authenticate
ORIGINAL_READ_BINARY = CardEngine._read_binary
ORIGINAL_GET_DATA = CardEngine._get_data
ORIGINAL_SELECT = CardEngine._select
ORIGINAL_ALLOWED = CardEngine._allowed
ORIGINAL_INTERNAL_AUTHENTICATE = CardEngine._internal_authenticate
MUTANTS: dict[str, dict[str, Any]] = {
    "AP switch keeps PINs verified": {"_select_application": _keeps_state_across_aps},
    "power cycle keeps PINs verified": {
        "power_off": _power_off_keeps_state,
        "power_on": _power_on_keeps_state,
    },
    "every access rule satisfied": {"_allowed": lambda self, rule: True},
    "a wrong PIN's try refunded": {"_verify": _refunds_wrong_tries},
    "key EFs readable by short id": {"_read_binary": _reads_keys},
    "retry query 9000 once verified": {"_verify": _query_answers_9000_once_verified},
    "GET DATA with an AP current": {"_get_data": _get_data_in_any_state},
    "ISD SELECT keeps PINs verified": {"_select": _isd_keeps_state},
    "printed keys changeable": {"_allowed": _printed_keys_changeable},
    "every key answers INTERNAL AUTHENTICATE": {"_internal_authenticate": _any_key_authenticates},
    "RESET RETRY COUNTER without the proof": {"_reset_retry_counter": _reset_without_proof},
    "a wrong proof's try refunded": {"_external_authenticate": _refunds_wrong_proofs},
    "the challenge outlives its proof": {"_external_authenticate": _keeps_the_challenge},
    "a proof for another AP accepted": {"_external_authenticate": _proof_for_any_ap},
    "the administrator state outlives the AP": {
        "_forget_administration": _forgets_only_the_challenge
    },
}


PLANTED_FAULT_RUN: dict[str, Any] = {
    "seed": 11, "apdus": 20_000, "card": "taro", "signature_budget": 25,
}  # fmt: skip


def test_the_planted_fault_run_passes_without_a_fault() -> None:
    """So that each mutant below is caught for its fault, not for something else."""
    assert run_fuzz(**PLANTED_FAULT_RUN).apdus == PLANTED_FAULT_RUN["apdus"]


@pytest.mark.parametrize("mutant", MUTANTS)
def test_the_fuzzer_catches_a_planted_fault(monkeypatch: pytest.MonkeyPatch, mutant: str) -> None:
    for name, replacement in MUTANTS[mutant].items():
        monkeypatch.setattr(CardEngine, name, replacement)
    with pytest.raises(FuzzFailure):
        run_fuzz(**PLANTED_FAULT_RUN)
