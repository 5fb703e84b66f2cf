"""The emulator's built-in test CA: two self-signed JPKI CAs (signature and authentication)
in one or more generations, the card-verifiable certificate (CVC) hierarchy of the card's own
APs, and the card-info signer, whose keys, certificates, settings and issuance record live in
one directory.

Layout of the directory:
    signature-ca.pem, signature-ca.key            generation 1: sign CA certificate (0644) and
                                                  PKCS#8 key (0600)
    authentication-ca.pem, authentication-ca.key  generation 1: auth CA certificate (0644) and
                                                  PKCS#8 key (0600)
    generations/N/                                generation N (2, 3, …; 0700), made by
                                                  `rollover`: the same four files, the same
                                                  DNs, new keys
    card-info-signer.key                          PKCS#8 key signing the Text AP's integrity
                                                  record and the card-face records: the issuing
                                                  municipality's CVC key (0600)
    cvc-root.key                                  PKCS#8 key of the CVC root 9000020/001, which
                                                  certifies itself (MF 00F8) and the card issuer
                                                  (0600)
    cvc-issuer.key                                PKCS#8 key of the CVC card issuer 9000023/001
                                                  (MF 7F21), which certifies the municipalities'
                                                  keys (EF 0004 of the Text and card-face APs)
                                                  (0600)
    ca.sqlite                                     the issuance record: next serial, every issued
                                                  certificate and its revocation (SQLite in WAL
                                                  mode, 0600: it names the holders)
    ca.json                                       the settings (OCSP and CRL URLs, production DN),
                                                  fixed at creation (0600)
The directory is created 0700. A new CA writes its keys and certificates, then ca.sqlite, and
ca.json last, so ca.json marks a complete CA; a CA is never created over any of these files.

CA generations (lifecycle.md §4): every generation has a signature and an authentication CA
with the DNs of generation 1 and new keys, so chains are built by key identifier. The newest
generation issues (`TestCA.signature`, `TestCA.authentication` and `issue_*`); older ones stay
loaded and answer for what they issued: each entry of ca.sqlite names the generation that issued
it, each generation signs its own CRL, and OCSP answers with the generation the request's issuer
key hash names. `rollover` makes generation N+1 under the CA lock: its four files are written
into generations/.N+1.<random>.tmp/ and that directory is renamed to generations/N+1 whole, so a
crash leaves the old generation current or the new one complete (leftovers are ignored, and
removed by the next rollover). Generations are numbered from 2 without gaps; anything else in
generations/ is refused. A TestCA issues with the generation that was current when it was
loaded (or that it rolled over to).
The CVCs are not stored: built from the keys when asked for, they are the same bytes each time
(PKCS#1 v1.5 signatures are deterministic). A CA made before the CVC keys existed gets them on
first use of a CVC, made under the CA's lock and written atomically beside the other files,
which stay as they were.

Issuing and revoking are SQLite transactions on ca.sqlite: a write costs the same whatever the
size of the record, several processes issue at once without losing anything (SQLite's write lock
serialises them; every serial is allocated and recorded in one transaction, synced before the
certificate is handed out), and readers never wait.

A ca.sqlite of version 1 (before generations) has no generation column: it is read as it is,
every entry being generation 1's, and its first write transaction adds the column (generation
1 for every entry) and makes it version 2, in that same transaction.

A CA written by earlier versions keeps its whole record in ca.json (version 1). It is read as it
is, and migrated on its first write: under the CA's lock (ca.json.lock) the record is copied into
a new ca.sqlite, which names the SHA-256 of the ca.json it was made from, and then ca.json is
rewritten as the version-2 settings. A crash between the two leaves a version-1 ca.json beside a
ca.sqlite made from it, which is read as migrated and finished by the next write; a ca.sqlite
made from other bytes is refused.

Everything is read strictly: in ca.json an unknown, missing, duplicate or mistyped field, a value
out of range or not in the form this program writes it is refused with one line naming the file
and the field; in ca.sqlite an unexpected schema or application id, a value out of range or a
damaged page is one line naming the file (and the serial). Nothing is rewritten from a partial
reading.

CA keys are checked once, when generated. Loading them skips OpenSSL's full RSA key check (its
primality tests cost ~27 ms a key) and checks instead, in microseconds, that the key's numbers
agree with one another and, for the two CAs, with the certificate's public key: a changed byte
that still parses is refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import enum
import fcntl
import functools
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import sqlite3
import stat
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from jpki import clock, cvc
from jpki.certificates import CertificateKind, issued_by, parse_whole
from jpki.durable import (
    make_private_directories,
    remove_leftovers,
    sync_directory,
    write_atomically,
)
from jpki.errors import BadValueError, JpkiError
from jpki.issuer import profile
from jpki.issuer.card_level import MUNICIPALITY_CODE_PATTERN
from jpki.issuer.holder import Holder

STATE_FILE = "ca.json"
LOCK_FILE = "ca.json.lock"
DATABASE_FILE = "ca.sqlite"
# SQLite's own companions of ca.sqlite in WAL mode.
DATABASE_COMPANIONS = ("-wal", "-shm", "-journal")
STATE_FORMAT = "jpki-emulator-ca"
STATE_VERSION = 2  # ca.json holds the settings; the record is in ca.sqlite
LEGACY_STATE_VERSION = 1  # ca.json held the settings and the whole record
# Signs the integrity record (EF 0003) of the card-info AP, as J-LIS does on real cards.
CARD_INFO_SIGNER_FILE = "card-info-signer.key"
# The card-verifiable certificates' root and card issuer (spec §5 "Key id", §7): ids starting
# with 9 are the emulator's own (OURS), so tools holding J-LIS keys say "unknown CA".
CVC_ROOT_KEY_FILE = "cvc-root.key"
CVC_ISSUER_KEY_FILE = "cvc-issuer.key"
CVC_ROOT_ID = cvc.KeyId("9000020", "001")
CVC_ISSUER_ID = cvc.KeyId("9000023", "001")
# A municipality's CVC subject: 9 ‖ its 5-digit code ‖ 1 / 000 (J-LIS test card: 1322121/000).
MUNICIPALITY_KEY_NUMBER = "000"
RSA_PUBLIC_EXPONENT = 65537
RSA_KEY_BITS = 2048
PRIVATE_FILE_MODE = 0o600
PUBLIC_FILE_MODE = 0o644
SERIAL_HEX_DIGITS = 8
# New CAs start their serial counter at a random point in the lower half of the 4-byte range,
# so that re-created CAs (same DN) rarely repeat issuer + serial, which identifies a user.
SERIAL_START_MAX = 0x3FFFFFFF
SERIAL_PATTERN = re.compile(f"[0-9a-f]{{{SERIAL_HEX_DIGITS}}}")
SETTINGS_FIELDS = ("format", "version", "ocsp_url", "crl_url", "production_dn")
LEGACY_STATE_FIELDS = (
    "format", "version", "next_serial", "ocsp_url", "crl_url", "production_dn", "issued",
)  # fmt: skip
ISSUED_FIELDS = ("serial", "kind", "subject", "not_after", "holder_name", "label")
ISSUED_OPTIONAL_FIELDS = ("revocation",)  # written only once revoked
REVOCATION_FIELDS = ("time", "reason")
# No field holds an integer longer than this; longer ones are refused before conversion.
MAX_INTEGER_DIGITS = 20
SHOWN_CHARACTERS = 40  # of a refused value, so that an error stays one readable line
TIME_EXAMPLE = "2031-02-17T14:59:59+00:00"  # how ca.json and ca.sqlite spell a time
URL_SCHEMES = ("http", "https")
# Parsing errors of a certificate that cryptography may raise lazily, on first use of a part.
CERTIFICATE_ERRORS = (ValueError, TypeError, UnsupportedAlgorithm)
# ca.sqlite: "JPKI" as its application id (the file(1) magic), and the schema's version.
DATABASE_APPLICATION_ID = 0x4A504B49
DATABASE_VERSION = 2  # issued.generation
GENERATIONLESS_DATABASE_VERSION = 1  # read as it is; its first write upgrades it
# How long a writer waits for another process's transaction (a few ms each) before giving up.
BUSY_TIMEOUT_SECONDS = 30.0
DIGEST_PATTERN = re.compile("[0-9a-f]{64}")
DATABASE_SCHEMA = """
CREATE TABLE ca (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    next_serial INTEGER NOT NULL,
    changes INTEGER NOT NULL,
    migrated_from TEXT
) STRICT;
CREATE TABLE issued (
    serial INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    not_after TEXT NOT NULL,
    holder_name TEXT NOT NULL,
    label TEXT,
    revocation_time TEXT,
    revocation_reason TEXT,
    changed INTEGER NOT NULL
) STRICT;
CREATE INDEX issued_by_change ON issued (changed);
"""
# Version 2 is version 1 plus this column; new databases are made the same way, so that a new
# and an upgraded ca.sqlite have one schema.
DATABASE_UPGRADE = (
    "ALTER TABLE issued ADD COLUMN generation INTEGER NOT NULL DEFAULT 1 CHECK (generation >= 1)",
    "CREATE INDEX issued_by_generation ON issued (generation)",
)
ISSUED_COLUMNS = (
    "serial, kind, subject, not_after, holder_name, label, revocation_time, revocation_reason"
)
# What a version-1 ca.sqlite, which has no generation column, reads as the generation.
GENERATION_COLUMN = {DATABASE_VERSION: "generation", GENERATIONLESS_DATABASE_VERSION: "1"}
# CA generations: generation 1 is the top of the directory, the others generations/N.
GENERATIONS_DIRECTORY = "generations"
FIRST_GENERATION = 1
GENERATION_NAME_PATTERN = re.compile(r"[1-9][0-9]{0,8}")
# A generation being written: generations/.N.<8 hex digits>.tmp, renamed to N when complete.
GENERATION_LEFTOVER_PATTERN = re.compile(r"\.[1-9][0-9]{0,8}\.[0-9a-f]{8}\.tmp")
GENERATION_DIRECTORY_MODE = 0o700
MAX_GENERATION = 10**9  # generation numbers have at most 9 digits
E = TypeVar("E", bound=enum.Enum)
T = TypeVar("T")


class CAError(JpkiError):
    """The test CA directory is missing, incomplete or corrupt, or the CA cannot issue."""


class CAExistsError(CAError):
    """The directory already holds files of a CA, which creating one would overwrite."""


class _Corrupt(ValueError):
    """A field of ca.json or ca.sqlite that is not as this program writes it; str() names it."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}" if where else problem)


class RevocationReason(enum.Enum):
    """The CRLReason codes J-LIS uses; the values are RFC 5280's names, as in x509.ReasonFlags."""

    UNSPECIFIED = "unspecified"
    KEY_COMPROMISE = "keyCompromise"
    AFFILIATION_CHANGED = "affiliationChanged"  # the holder's attributes changed
    SUPERSEDED = "superseded"  # renewal
    CESSATION_OF_OPERATION = "cessationOfOperation"
    CERTIFICATE_HOLD = "certificateHold"

    @property
    def flag(self) -> x509.ReasonFlags:
        return x509.ReasonFlags(self.value)


@dataclass(frozen=True)
class Revocation:
    """When and why an issued certificate was revoked (whole seconds, UTC)."""

    time: datetime.datetime
    reason: RevocationReason

    def to_json(self) -> dict[str, Any]:
        return {"time": self.time.isoformat(), "reason": self.reason.value}

    @classmethod
    def from_json(cls, data: Any, where: str = "revocation") -> Revocation:
        """Parse strictly; raises ValueError naming the field."""
        fields = _object(data, where, REVOCATION_FIELDS)
        return cls(
            time=_utc_time(fields["time"], f"{where}.time"),
            reason=_choice(RevocationReason, fields["reason"], f"{where}.reason"),
        )


def certificate_file(kind: CertificateKind) -> str:
    return f"{kind.value}-ca.pem"


def key_file(kind: CertificateKind) -> str:
    return f"{kind.value}-ca.key"


# Every file a CA writes: a new CA is never made where any of them exists.
CA_FILES = (
    STATE_FILE,
    DATABASE_FILE,
    *(name for kind in CertificateKind for name in (certificate_file(kind), key_file(kind))),
    CARD_INFO_SIGNER_FILE,
    CVC_ROOT_KEY_FILE,
    CVC_ISSUER_KEY_FILE,
    GENERATIONS_DIRECTORY,
)


@dataclass(frozen=True)
class CertificateAuthority:
    """One of the two CAs of one generation: its self-signed certificate and its private key."""

    kind: CertificateKind
    certificate: x509.Certificate
    private_key: rsa.RSAPrivateKey
    generation: int = FIRST_GENERATION

    @property
    def key_id(self) -> bytes:
        """The subject key identifier (SHA-1 of the key, method 1): what tells generations,
        which share one DN, apart."""
        return x509.SubjectKeyIdentifier.from_public_key(self.private_key.public_key()).digest


@dataclass(frozen=True)
class Generation:
    """One generation of the test CA: a signature and an authentication CA made together."""

    number: int
    signature: CertificateAuthority
    authentication: CertificateAuthority

    def authority(self, kind: CertificateKind) -> CertificateAuthority:
        return self.signature if kind is CertificateKind.SIGNATURE else self.authentication

    @property
    def authorities(self) -> tuple[CertificateAuthority, CertificateAuthority]:
        return self.signature, self.authentication


def generation_directory(directory: Path, number: int) -> Path:
    """Where generation `number`'s files are: the CA directory itself for generation 1."""
    if number == FIRST_GENERATION:
        return Path(directory)
    return Path(directory) / GENERATIONS_DIRECTORY / str(number)


def generation_marker(directory: Path) -> tuple[str, ...]:
    """What generations/ of `directory` holds, cheaply (one listing, nothing read): it changes
    when a process rolls over, which a long-running reader checks beside `record_version`."""
    try:
        names = os.listdir(Path(directory) / GENERATIONS_DIRECTORY)
    except OSError:
        return ()
    return tuple(sorted(name for name in names if not GENERATION_LEFTOVER_PATTERN.fullmatch(name)))


def generation_certificate_files(directory: Path) -> list[Path]:
    """The CA certificate files of every generation in `directory`, oldest first: the anchors
    a verifier trusting this CA pins. Raises CAError for a generations/ entry this program did
    not write (one line naming it)."""
    directory = Path(directory)
    return [
        generation_directory(directory, number) / certificate_file(kind)
        for number in (FIRST_GENERATION, *_later_generations(directory))
        for kind in CertificateKind
    ]


@dataclass(frozen=True)
class _CvcKeys:
    """The private keys of the CVC root and card issuer."""

    root: rsa.RSAPrivateKey
    issuer: rsa.RSAPrivateKey


def municipality_key_id(municipality_code: str) -> cvc.KeyId:
    """The CVC subject id of a municipality's key: 13113 → 9131131/000."""
    if not MUNICIPALITY_CODE_PATTERN.fullmatch(municipality_code):
        raise ValueError(f"a municipality code is 5 digits, not {municipality_code!r}")
    authority = f"{cvc.EMULATOR_AUTHORITY_PREFIX}{municipality_code}1"
    return cvc.KeyId(authority, MUNICIPALITY_KEY_NUMBER)


@dataclass(frozen=True)
class IssuedCertificate:
    """What the CA remembers of an issued certificate, for revocation later."""

    serial: int
    kind: CertificateKind
    subject: str
    not_after: datetime.datetime
    holder_name: str
    label: str | None = None
    revocation: Revocation | None = None
    # The CA generation that issued it (a version-1 ca.json knows only generation 1).
    generation: int = FIRST_GENERATION

    @property
    def revoked(self) -> bool:
        return self.revocation is not None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "serial": _serial_text(self.serial),
            "kind": self.kind.value,
            "subject": self.subject,
            "not_after": self.not_after.isoformat(),
            "holder_name": self.holder_name,
            "label": self.label,
        }
        # Written only when revoked, so files of CAs that never revoke stay as they were.
        if self.revocation is not None:
            data["revocation"] = self.revocation.to_json()
        return data

    @classmethod
    def from_json(cls, data: Any, where: str = "issued entry") -> IssuedCertificate:
        """Parse strictly; raises ValueError naming the field."""
        fields = _object(data, where, ISSUED_FIELDS, ISSUED_OPTIONAL_FIELDS)
        label = fields["label"]
        revocation = fields.get("revocation")
        if "revocation" in fields and revocation is None:
            # Absent means "not revoked"; a null would be dropped by the next write.
            raise _Corrupt(f"{where}.revocation", "must be an object (absent when not revoked)")
        return cls(
            serial=_serial(fields["serial"], f"{where}.serial"),
            kind=_choice(CertificateKind, fields["kind"], f"{where}.kind"),
            subject=_text(fields["subject"], f"{where}.subject", empty=False),
            not_after=_utc_time(fields["not_after"], f"{where}.not_after"),
            holder_name=_text(fields["holder_name"], f"{where}.holder_name"),
            label=None if label is None else _text(label, f"{where}.label"),
            revocation=None
            if revocation is None
            else Revocation.from_json(revocation, f"{where}.revocation"),
        )

    def to_row(self) -> tuple[Any, ...]:
        """The entry as a row of ca.sqlite's issued table (ISSUED_COLUMNS; the generation is
        written beside them)."""
        revocation = self.revocation
        return (
            self.serial,
            self.kind.value,
            self.subject,
            self.not_after.isoformat(),
            self.holder_name,
            self.label,
            None if revocation is None else revocation.time.isoformat(),
            None if revocation is None else revocation.reason.value,
        )

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> IssuedCertificate:
        """Parse a row (ISSUED_COLUMNS, then the generation) strictly, as ca.json's entries are;
        raises ValueError naming the field."""
        serial, kind, subject, not_after, holder_name, label, revoked_at, reason, generation = row
        if type(serial) is not int or not profile.SERIAL_MIN <= serial <= profile.SERIAL_MAX:
            raise _Corrupt("issued.serial", f"{_shown(str(serial))} is not a 4-byte serial")
        where = f"issued {_serial_text(serial)}"
        if (revoked_at is None) != (reason is None):
            raise _Corrupt(where, "a revocation needs both its time and its reason")
        if type(generation) is not int or not FIRST_GENERATION <= generation < MAX_GENERATION:
            raise _Corrupt(f"{where}.generation", f"{_shown(str(generation))} is out of range")
        return cls(
            serial=serial,
            kind=_choice(CertificateKind, kind, f"{where}.kind"),
            subject=_text(subject, f"{where}.subject", empty=False),
            not_after=_utc_time(not_after, f"{where}.not_after"),
            holder_name=_text(holder_name, f"{where}.holder_name"),
            label=None if label is None else _text(label, f"{where}.label"),
            revocation=None
            if revoked_at is None
            else Revocation(
                _utc_time(revoked_at, f"{where}.revocation_time"),
                _choice(RevocationReason, reason, f"{where}.revocation_reason"),
            ),
            generation=generation,
        )


@dataclass(frozen=True)
class _Settings:
    """What a CA fixes at creation: where its certificates point, and which DN it uses."""

    ocsp_url: str
    crl_url: str | None
    production_dn: bool

    def to_json(self) -> dict[str, Any]:
        """ca.json's version-2 content."""
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "ocsp_url": self.ocsp_url,
            "crl_url": self.crl_url,
            "production_dn": self.production_dn,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], fields: tuple[str, ...]) -> _Settings:
        checked = _object(data, "", fields)
        production_dn = checked["production_dn"]
        if type(production_dn) is not bool:
            raise _Corrupt(
                "production_dn", f"must be true or false, not {_json_type(production_dn)}"
            )
        crl_url = checked["crl_url"]
        return cls(
            ocsp_url=_url(checked["ocsp_url"], "ocsp_url"),
            crl_url=None if crl_url is None else _url(crl_url, "crl_url"),
            production_dn=production_dn,
        )


@dataclass(frozen=True)
class _LegacyState:
    """What a version-1 ca.json holds, checked field by field and for consistency."""

    settings: _Settings
    next_serial: int
    issued: tuple[IssuedCertificate, ...]

    def find(self, serial: int) -> IssuedCertificate | None:
        return next((entry for entry in self.issued if entry.serial == serial), None)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _LegacyState:
        settings = _Settings.from_json(data, LEGACY_STATE_FIELDS)
        # One past the last serial means "used up", which issuing reports.
        next_serial = _serial(data["next_serial"], "next_serial", profile.SERIAL_MAX + 1)
        return cls(settings, next_serial, _issued(data["issued"], next_serial))


def _issued(value: Any, next_serial: int) -> tuple[IssuedCertificate, ...]:
    """The issued list: every serial below the next one, none twice."""
    if not isinstance(value, list):
        raise _Corrupt("issued", f"must be an array, not {_json_type(value)}")
    entries = tuple(
        IssuedCertificate.from_json(item, f"issued[{index}]") for index, item in enumerate(value)
    )
    seen: set[int] = set()
    for index, entry in enumerate(entries):
        where, serial = f"issued[{index}].serial", _serial_text(entry.serial)
        if entry.serial >= next_serial:
            raise _Corrupt(where, f"{serial} is not below next_serial {_serial_text(next_serial)}")
        if entry.serial in seen:
            raise _Corrupt(where, f"{serial} was issued twice")
        seen.add(entry.serial)
    return entries


def _object(
    value: Any, where: str, required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> dict[str, Any]:
    """`value` as an object with all the `required` fields, maybe `optional` ones, no others."""
    if not isinstance(value, dict):
        raise _Corrupt(where, f"must be an object, not {_json_type(value)}")
    unknown = next((name for name in value if name not in (*required, *optional)), None)
    if unknown is not None:
        raise _Corrupt(where, f"unknown field {_shown(unknown)}")
    missing = next((name for name in required if name not in value), None)
    if missing is not None:
        raise _Corrupt(where, f"missing field {missing!r}")
    return value


def _text(value: Any, where: str, *, empty: bool = True) -> str:
    if not isinstance(value, str):
        raise _Corrupt(where, f"must be a string, not {_json_type(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (\ud800) parses but could never be written back.
        raise _Corrupt(where, "is not valid Unicode text") from None
    if not value and not empty:
        raise _Corrupt(where, "must not be empty")
    return value


def _serial(value: Any, where: str, maximum: int = profile.SERIAL_MAX) -> int:
    text = _text(value, where)
    if not SERIAL_PATTERN.fullmatch(text):
        raise _Corrupt(
            where, f"must be {SERIAL_HEX_DIGITS} lowercase hex digits, not {_shown(text)}"
        )
    serial = int(text, 16)
    if not profile.SERIAL_MIN <= serial <= maximum:
        raise _Corrupt(
            where,
            f"{text} is outside {_serial_text(profile.SERIAL_MIN)}-{_serial_text(maximum)}",
        )
    return serial


def _utc_time(value: Any, where: str) -> datetime.datetime:
    text = _text(value, where)
    try:
        time = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise _Corrupt(where, f"{_shown(text)} is not an ISO 8601 time") from None
    # Whole seconds in UTC, spelled as isoformat() spells them: rewriting keeps the bytes.
    if time.utcoffset() != datetime.timedelta(0) or time.microsecond or time.isoformat() != text:
        raise _Corrupt(where, f"{_shown(text)} is not a whole-second UTC time like {TIME_EXAMPLE}")
    return time


def _choice(kind: type[E], value: Any, where: str) -> E:
    text = _text(value, where)
    try:
        return kind(text)
    except ValueError:
        names = ", ".join(str(member.value) for member in kind)
        raise _Corrupt(where, f"{_shown(text)} is not one of {names}") from None


def _url(value: Any, where: str) -> str:
    text = _text(value, where)
    problem = url_problem(text)
    if problem is not None:
        raise _Corrupt(where, problem)
    return text


def url_problem(url: str) -> str | None:
    """Why `url` cannot go into a certificate as an OCSP or CRL location, or None."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme not in URL_SCHEMES
        or not parts.netloc
        or any(character.isspace() or not character.isprintable() for character in url)
    ):
        return f"{_shown(url)} is not an http:// or https:// URL"
    return None


def _json_type(value: Any) -> str:
    """What a JSON value is, without showing it (it may be huge)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    names = {int: "an integer", float: "a number", str: "a string", list: "an array"}
    return names.get(type(value), "an object")


def _shown(text: str) -> str:
    shown = repr(text[:SHOWN_CHARACTERS])
    return shown if len(text) <= SHOWN_CHARACTERS else f"{shown}…"


def _serial_text(serial: int) -> str:
    return f"{serial:0{SERIAL_HEX_DIGITS}x}"


def _parse_json(raw: bytes, path: Path) -> Any:
    """The JSON value in `raw`; anything but UTF-8 JSON with unique keys is one CAError line."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise CAError(f"{path} is not UTF-8 text (byte {error.start})") from None
    try:
        return json.loads(text, object_pairs_hook=_unique_fields, parse_int=_short_integer)
    except _Corrupt as error:
        raise CAError(f"{path} is corrupt: {error}") from None
    except json.JSONDecodeError as error:
        raise CAError(f"{path} is not valid JSON ({error.msg} at line {error.lineno})") from None
    except ValueError as error:  # e.g. a number too long for float()
        raise CAError(f"{path} is not valid JSON ({_one_line(error)})") from None
    except RecursionError:
        raise CAError(f"{path} is not valid JSON (nested too deeply)") from None


def _unique_fields(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name, value in pairs:
        if name in fields:
            raise _Corrupt("", f"field {_shown(name)} appears twice")
        fields[name] = value
    return fields


def _short_integer(digits: str) -> int:
    # Refused before int() runs: converting a huge number costs time and may raise elsewhere.
    if len(digits.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise _Corrupt("", f"an integer has {len(digits)} digits (no field has so many)")
    return int(digits)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[: SHOWN_CHARACTERS * 3]


def _dumps(state: dict[str, Any]) -> bytes:
    """ca.json's bytes: what the reader reads back into the same state."""
    return (json.dumps(state, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def existing_ca_files(directory: Path) -> tuple[str, ...]:
    """The files of a CA that `directory` holds (none when it does not exist)."""
    return tuple(name for name in CA_FILES if os.path.lexists(Path(directory) / name))


def _now(now: datetime.datetime | None) -> datetime.datetime:
    return clock.now() if now is None else now


# --- ca.sqlite -------------------------------------------------------------------------------


def _database_error(path: Path, error: sqlite3.Error) -> CAError:
    """One line for what SQLite said about ca.sqlite."""
    code = getattr(error, "sqlite_errorcode", 0) & 0xFF
    detail = _one_line(error)
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return CAError(
            f"{path} is busy: another process held it for over {BUSY_TIMEOUT_SECONDS:g} s"
        )
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return CAError(f"{path} is corrupt ({detail})")
    if code == sqlite3.SQLITE_CANTOPEN:
        return CAError(f"cannot open {path} ({detail})")
    if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR):
        return CAError(f"cannot write {path} ({detail})")
    return CAError(f"{path}: {detail}")


@contextlib.contextmanager
def _database_errors(path: Path) -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as error:
        raise _database_error(path, error) from error
    except _Corrupt as error:
        raise CAError(f"{path} is corrupt: {error}") from None


@contextlib.contextmanager
def _snapshot(connection: sqlite3.Connection) -> Iterator[None]:
    """Several statements that see one committed state of the record, whatever other
    processes commit meanwhile (a read transaction)."""
    connection.execute("BEGIN")
    try:
        yield
    finally:
        with contextlib.suppress(sqlite3.Error):
            connection.execute("COMMIT")  # a read: nothing to keep or lose


@functools.cache
def _reference_schema(version: int) -> list[tuple[Any, ...]]:
    """sqlite_master as this program makes it for `version` (SQLite normalises the statements'
    text, and ALTER TABLE rewrites the table's)."""
    connection = sqlite3.connect(":memory:")
    try:
        _make_schema(connection, version)
        return connection.execute(_SCHEMA_QUERY).fetchall()
    finally:
        connection.close()


def _make_schema(connection: sqlite3.Connection, version: int) -> None:
    connection.executescript(DATABASE_SCHEMA)
    if version >= DATABASE_VERSION:
        for statement in DATABASE_UPGRADE:
            connection.execute(statement)


_SCHEMA_QUERY = "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"


def _database_image(
    next_serial: int, entries: tuple[IssuedCertificate, ...], migrated_from: str | None
) -> bytes:
    """The bytes of a new ca.sqlite holding `entries`, built in memory (WAL mode is set once
    it is on disk)."""
    connection = sqlite3.connect(":memory:", isolation_level=None)
    try:
        _make_schema(connection, DATABASE_VERSION)
        connection.execute(f"PRAGMA application_id = {DATABASE_APPLICATION_ID}")
        connection.execute(f"PRAGMA user_version = {DATABASE_VERSION}")
        connection.execute("BEGIN")
        connection.execute("INSERT INTO ca VALUES (1, ?, 0, ?)", (next_serial, migrated_from))
        connection.executemany(
            f"INSERT INTO issued ({ISSUED_COLUMNS}, generation, changed) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
            ((*entry.to_row(), entry.generation) for entry in entries),
        )
        connection.execute("COMMIT")
        return connection.serialize()
    finally:
        connection.close()


class _Transaction:
    """One write transaction on ca.sqlite (BEGIN IMMEDIATE: it holds SQLite's write lock)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def next_serial(self) -> int:
        row = self._connection.execute("SELECT next_serial FROM ca WHERE id = 1").fetchone()
        return _next_serial_of(row)

    def find(self, serial: int) -> IssuedCertificate | None:
        return _find(self._connection, GENERATION_COLUMN[DATABASE_VERSION], serial)

    def reserve(self, count: int) -> int:
        """Take `count` serials for certificates that are not recorded (a new generation's CA
        certificates); returns the first."""
        first = _available(self.next_serial())
        _available(first + count - 1)
        self._change(first + count)
        return first

    def _change(self, next_serial: int = 0) -> int:
        """Bump the change counter (and raise the next serial to `next_serial`): the value is
        stamped on the row this write changes, so that readers can follow changes."""
        (counter,) = self._connection.execute(
            "UPDATE ca SET changes = changes + 1, next_serial = max(next_serial, ?) WHERE id = 1 "
            "RETURNING changes",
            (next_serial,),
        ).fetchone()
        return int(counter)

    def add(self, entry: IssuedCertificate) -> None:
        changed = self._change(entry.serial + 1)
        self._connection.execute(
            f"INSERT INTO issued ({ISSUED_COLUMNS}, generation, changed) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*entry.to_row(), entry.generation, changed),
        )

    def revoke(self, entry: IssuedCertificate) -> None:
        revocation = entry.revocation
        assert revocation is not None
        self._connection.execute(
            "UPDATE issued SET revocation_time = ?, revocation_reason = ?, changed = ? "
            "WHERE serial = ?",
            (revocation.time.isoformat(), revocation.reason.value, self._change(), entry.serial),
        )


def _next_serial_of(row: Any) -> int:
    if row is None:
        raise _Corrupt("ca", "the row holding the next serial is missing")
    (next_serial,) = row
    if type(next_serial) is not int or not (
        profile.SERIAL_MIN <= next_serial <= profile.SERIAL_MAX + 1
    ):
        raise _Corrupt("ca.next_serial", f"{_shown(str(next_serial))} is out of range")
    return next_serial


def _find(connection: sqlite3.Connection, generation: str, serial: int) -> IssuedCertificate | None:
    if not 0 <= serial <= profile.SERIAL_MAX:
        return None  # SQLite integers are 64-bit; such a serial was never issued anyway
    row = connection.execute(
        f"SELECT {ISSUED_COLUMNS}, {generation} FROM issued WHERE serial = ?", (serial,)
    ).fetchone()
    return None if row is None else IssuedCertificate.from_row(row)


class _Database:
    """ca.sqlite, open in this process: one connection, shared by its threads under a lock.

    Reads see the latest committed record; writes are transactions that wait (up to
    BUSY_TIMEOUT_SECONDS) for another process's. A forked child opens its own connection.
    A version-1 file is read as it is until a write transaction (here or in another process)
    upgrades it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._connection: sqlite3.Connection | None = None
        self._pid = 0
        self._transaction: _Transaction | None = None
        self._savepoints = 0
        self._version = DATABASE_VERSION  # as `_check` found it

    @classmethod
    def open(cls, path: Path) -> _Database:
        """Open and check an existing ca.sqlite; every problem is one CAError line."""
        if not os.path.lexists(path):
            raise CAError(f"{path} is missing")
        database = cls(path)
        with database._reading() as connection, _snapshot(connection):
            database._check(connection)
        return database

    @classmethod
    def write_new(
        cls,
        path: Path,
        next_serial: int,
        entries: tuple[IssuedCertificate, ...] = (),
        migrated_from: str | None = None,
    ) -> _Database:
        """Write a new ca.sqlite atomically (0600 whatever the umask) and open it in WAL mode.

        The caller holds the CA lock, so SQLite files of an earlier, lost ca.sqlite are stale.
        """
        for suffix in DATABASE_COMPANIONS:
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        remove_leftovers(path)
        write_atomically(path, _database_image(next_serial, entries, migrated_from))
        database = cls(path)
        with database._reading() as connection:
            (mode,) = connection.execute("PRAGMA journal_mode = WAL").fetchone()
            if mode != "wal":
                raise CAError(f"cannot use {path} in WAL mode (the file system gave {mode!r})")
            with _snapshot(connection):
                database._check(connection)
        return database

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None or self._pid != os.getpid():
            # mode=rw: never create an empty database where ca.sqlite went missing.
            uri = f"file:{urllib.parse.quote(str(self.path))}?mode=rw"
            connection = sqlite3.connect(
                uri,
                uri=True,
                timeout=BUSY_TIMEOUT_SECONDS,
                isolation_level=None,  # transactions are explicit
                check_same_thread=False,  # shared by threads, under self._lock
            )
            # Every commit synced before a certificate is handed out: a power cut must not
            # forget a serial, which would then be issued twice.
            connection.execute("PRAGMA synchronous = FULL")
            connection.execute("PRAGMA trusted_schema = OFF")
            # A connection inherited through fork() is abandoned, never closed: SQLite's locks
            # are the parent's.
            self._connection, self._pid = connection, os.getpid()
        return self._connection

    def close(self) -> None:
        with self._lock:
            if self._connection is not None and self._pid == os.getpid():
                self._connection.close()
            self._connection = None

    def _check(self, connection: sqlite3.Connection) -> None:
        (application_id,) = connection.execute("PRAGMA application_id").fetchone()
        if application_id != DATABASE_APPLICATION_ID:
            raise CAError(f"{self.path} is not a {STATE_FORMAT} database")
        (version,) = connection.execute("PRAGMA user_version").fetchone()
        if version not in GENERATION_COLUMN:
            raise CAError(
                f"{self.path} has version {version}; this program reads versions "
                f"{GENERATIONLESS_DATABASE_VERSION} and {DATABASE_VERSION}"
            )
        if connection.execute(_SCHEMA_QUERY).fetchall() != _reference_schema(version):
            raise CAError(f"{self.path} is corrupt: its tables are not the ones this program makes")
        self._version = version
        rows = connection.execute("SELECT id, changes, migrated_from FROM ca").fetchall()
        if len(rows) != 1 or rows[0][0] != 1:
            raise _Corrupt("ca", "must hold exactly one row")
        _, changes, migrated_from = rows[0]
        if type(changes) is not int or changes < 0:
            raise _Corrupt("ca.changes", "must be a count")
        if migrated_from is not None and not (
            isinstance(migrated_from, str) and DIGEST_PATTERN.fullmatch(migrated_from)
        ):
            raise _Corrupt("ca.migrated_from", "must be a SHA-256 in hex")
        next_serial = _next_serial_of(
            connection.execute("SELECT next_serial FROM ca WHERE id = 1").fetchone()
        )
        (highest,) = connection.execute("SELECT max(serial) FROM issued").fetchone()
        if highest is not None and highest >= next_serial:
            raise _Corrupt(
                f"issued {_serial_text(highest)}",
                f"is not below next_serial {_serial_text(next_serial)}",
            )

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """The connection, for statements outside a write transaction (each one sees one
        committed state of the record)."""
        with self._lock, _database_errors(self.path):
            yield self._connect()

    def read(self, query: Callable[[sqlite3.Connection, str], T]) -> T:
        """`query(connection, generation)`, where `generation` is the SQL expression of an
        entry's generation. A version-1 file is read in one snapshot with its version, which
        another process may have upgraded meanwhile."""
        with self._reading() as connection:
            if self._version == DATABASE_VERSION or self._transaction is not None:
                return query(connection, GENERATION_COLUMN[DATABASE_VERSION])
            with _snapshot(connection):
                (version,) = connection.execute("PRAGMA user_version").fetchone()
                if version != self._version:
                    self._check(connection)
                return query(connection, GENERATION_COLUMN[self._version])

    def migrated_from(self) -> str | None:
        """The SHA-256 (hex) of the version-1 ca.json this record was made from, if any."""
        (digest,) = self.read(lambda c, _: c.execute("SELECT migrated_from FROM ca").fetchone())
        return None if digest is None else str(digest)

    def data_version(self) -> int:
        """A number that changes when another connection commits (SQLite's data_version)."""
        return int(self.read(lambda c, _: c.execute("PRAGMA data_version").fetchone()[0]))

    def highest_generation(self) -> int:
        """The newest generation that issued an entry (1 when there are none)."""
        (highest,) = self.read(
            lambda c, generation: (
                (FIRST_GENERATION,)
                if generation == GENERATION_COLUMN[GENERATIONLESS_DATABASE_VERSION]
                else c.execute(f"SELECT max({generation}) FROM issued").fetchone()
            )
        )
        if highest is not None and (type(highest) is not int or highest >= MAX_GENERATION):
            shown = _shown(str(highest))
            raise CAError(f"{self.path} is corrupt: issued.generation {shown} is out of range")
        return FIRST_GENERATION if highest is None else max(FIRST_GENERATION, highest)

    @property
    def in_transaction(self) -> bool:
        return self._transaction is not None

    @contextlib.contextmanager
    def writing(self) -> Iterator[_Transaction]:
        """A write transaction, committed (and synced) when the block ends, rolled back if it
        raises. Nested blocks are savepoints of the outer transaction."""
        with self._lock:
            if self._transaction is not None:
                yield from self._nested(self._transaction)
                return
            with _database_errors(self.path):
                connection = self._connect()
                connection.execute("BEGIN IMMEDIATE")
            version = self._version
            transaction = self._transaction = _Transaction(connection)
            try:
                with _database_errors(self.path):
                    self._upgrade(connection)
                    yield transaction
                    connection.execute("COMMIT")
            finally:
                self._transaction = None
                if connection.in_transaction:
                    self._version = version  # an upgrade rolled back with the rest
                    with contextlib.suppress(sqlite3.Error):
                        connection.execute("ROLLBACK")

    def _upgrade(self, connection: sqlite3.Connection) -> None:
        """Make a version-1 file version 2 (every entry generation 1's) within the write
        transaction that has just begun, unless another process did it already."""
        (version,) = connection.execute("PRAGMA user_version").fetchone()
        if version == GENERATIONLESS_DATABASE_VERSION:
            self._check(connection)  # the version-1 schema, as this program made it
            for statement in DATABASE_UPGRADE:
                connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {DATABASE_VERSION}")
        elif version != self._version:
            self._check(connection)
        self._version = DATABASE_VERSION

    def _nested(self, transaction: _Transaction) -> Iterator[_Transaction]:
        connection = self._connect()
        self._savepoints += 1
        name = f"nested_{self._savepoints}"
        try:
            with _database_errors(self.path):
                connection.execute(f"SAVEPOINT {name}")
            try:
                yield transaction
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute(f"ROLLBACK TO {name}")
                    connection.execute(f"RELEASE {name}")
                raise
            with _database_errors(self.path):
                connection.execute(f"RELEASE {name}")
        finally:
            self._savepoints -= 1


class TestCA:
    """The signature and authentication CAs of every generation, the CVC hierarchy, the
    card-info signer and the issuance record."""

    # Not a pytest test class despite the name.
    __test__: ClassVar[bool] = False

    def __init__(
        self,
        directory: Path,
        generations: tuple[Generation, ...],
        *,
        card_info_signer: rsa.RSAPrivateKey,
        settings: _Settings,
        cvc_keys: _CvcKeys | None = None,
        database: _Database | None = None,
        legacy: _LegacyState | None = None,
        state_file_outdated: bool = False,
    ) -> None:
        if (database is None) == (legacy is None):
            raise ValueError("a TestCA has its record either in ca.sqlite or in ca.json")
        if [generation.number for generation in generations] != list(
            range(FIRST_GENERATION, FIRST_GENERATION + len(generations))
        ):
            raise ValueError("a TestCA has generations 1, 2, … without gaps")
        self.directory = directory
        self._generations = generations
        self.card_info_signer = card_info_signer
        # None until first used, for a CA made before the CVC keys existed.
        self._cvc_keys = cvc_keys
        self.ocsp_url = settings.ocsp_url
        self.crl_url = settings.crl_url
        self.production_dn = settings.production_dn
        self._settings = settings
        self._database = database
        # A version-1 record, read as it is until the first write migrates it.
        self._legacy = legacy
        # ca.json is still version 1 beside the ca.sqlite made from it: the next write fixes it.
        self._state_file_outdated = state_file_outdated
        # One transaction at a time per object (batches nest); other threads wait for it.
        self._lock = threading.RLock()

    # --- generations -------------------------------------------------------------------------

    @property
    def generations(self) -> tuple[Generation, ...]:
        """Every generation, oldest first; the last one issues."""
        return self._generations

    @property
    def current(self) -> Generation:
        """The generation that issues: the newest."""
        return self._generations[-1]

    @property
    def signature(self) -> CertificateAuthority:
        """The signature CA that issues (the current generation's)."""
        return self.current.signature

    @property
    def authentication(self) -> CertificateAuthority:
        """The authentication CA that issues (the current generation's)."""
        return self.current.authentication

    def generation(self, number: int) -> Generation:
        """Generation `number`; CAError when this CA has no such generation."""
        if not FIRST_GENERATION <= number <= len(self._generations):
            raise CAError(
                f"the test CA in {self.directory} has no generation {number} "
                f"(it has {FIRST_GENERATION} to {len(self._generations)})"
            )
        return self._generations[number - FIRST_GENERATION]

    def authority(
        self, kind: CertificateKind, generation: int | None = None
    ) -> CertificateAuthority:
        """The `kind` CA of generation `generation` (default: the current one)."""
        chosen = self.current if generation is None else self.generation(generation)
        return chosen.authority(kind)

    # --- reading the record ------------------------------------------------------------------

    @property
    def next_serial(self) -> int:
        with self._lock:
            if self._database is None:
                assert self._legacy is not None
                return self._legacy.next_serial
            return self._database.read(
                lambda c, _: _next_serial_of(c.execute("SELECT next_serial FROM ca").fetchone())
            )

    @property
    def issued(self) -> tuple[IssuedCertificate, ...]:
        """Every certificate this CA issued, in issuance order."""
        return self._select("", ())

    def find_issued(self, serial: int) -> IssuedCertificate | None:
        with self._lock:
            if self._database is None:
                assert self._legacy is not None
                return self._legacy.find(serial)
            return self._database.read(
                lambda connection, generation: _find(connection, generation, serial)
            )

    def revoked(
        self, kind: CertificateKind, generation: int | None = None
    ) -> tuple[IssuedCertificate, ...]:
        """The revoked certificates of one kind, in issuance order: those of one generation,
        or of every generation when `generation` is None."""
        revoked = self._select(
            "WHERE kind = ? AND revocation_time IS NOT NULL",
            (kind.value,),
            lambda entry: entry.kind is kind and entry.revoked,
        )
        if generation is None:
            return revoked
        return tuple(entry for entry in revoked if entry.generation == generation)

    def _select(
        self,
        where: str,
        parameters: tuple[Any, ...],
        legacy_filter: Callable[[IssuedCertificate], bool] = lambda entry: True,
    ) -> tuple[IssuedCertificate, ...]:
        with self._lock:
            if self._database is None:
                assert self._legacy is not None
                return tuple(entry for entry in self._legacy.issued if legacy_filter(entry))
            rows = self._database.read(
                lambda c, generation: c.execute(
                    f"SELECT {ISSUED_COLUMNS}, {generation} FROM issued {where} ORDER BY serial",
                    parameters,
                ).fetchall()
            )
            with _database_errors(self._database.path):
                return tuple(IssuedCertificate.from_row(row) for row in rows)

    def record_version(self) -> tuple[object, ...]:
        """A cheap token that changes whenever the record may have changed (SQLite's
        data_version; while the record is a version-1 ca.json, that file's identity, which its
        migration changes): what a long-running reader checks before each answer."""
        with self._lock:
            if self._database is None:
                return ("ca.json", *_file_identity(self.directory / STATE_FILE))
            return ("ca.sqlite", self._database.data_version())

    def changes_since(self, counter: int) -> tuple[int, tuple[IssuedCertificate, ...]]:
        """The entries issued or revoked since change `counter` (-1 for all of them), and the
        counter to ask with next time. A version-1 record never changes in this object."""
        with self._lock:
            if self._database is None:
                assert self._legacy is not None
                return (0, self._legacy.issued) if counter < 0 else (counter, ())
            rows = self._database.read(
                lambda c, generation: c.execute(
                    f"SELECT {ISSUED_COLUMNS}, {generation}, changed FROM issued "
                    "WHERE changed > ? ORDER BY changed",
                    (counter,),
                ).fetchall()
            )
            with _database_errors(self._database.path):
                entries = tuple(IssuedCertificate.from_row(row[:-1]) for row in rows)
            return (max(counter, rows[-1][-1]) if rows else counter), entries

    # --- the card-verifiable certificates ----------------------------------------------------

    def cvc_root(self) -> cvc.CardVerifiableCertificate:
        """The self-signed root CVC, 9000020/001: MF GET DATA 00F8 (bare), and the trust anchor
        a relying party pins."""
        root = self._cvc().root
        return cvc.issue(root.public_key(), CVC_ROOT_ID, root, CVC_ROOT_ID)

    def cvc_issuer(self) -> cvc.CardVerifiableCertificate:
        """The card issuer's CVC, 9000023/001, signed by the root: MF GET DATA 7F21 (bare)."""
        keys = self._cvc()
        return cvc.issue(keys.issuer.public_key(), CVC_ISSUER_ID, keys.root, CVC_ROOT_ID)

    def municipality_cvc(self, municipality_code: str) -> cvc.CardVerifiableCertificate:
        """The CVC of the card-info signer as the municipality `municipality_code`'s key
        (13113 → 9131131/000), signed by the card issuer: EF 0004 of the Text and card-face
        APs. That key signs the Text AP's integrity record and the card-face records."""
        subject = municipality_key_id(municipality_code)
        signer = self.card_info_signer.public_key()
        return cvc.issue(signer, subject, self._cvc().issuer, CVC_ISSUER_ID)

    def _cvc(self) -> _CvcKeys:
        """The CVC keys; for a CA made before they existed, made now (once, under the CA's
        lock: another process may be making them too)."""
        with self._lock:
            if self._cvc_keys is None:
                with locked(self.directory):
                    self._cvc_keys = _CvcKeys(
                        root=_load_or_make_key(self.directory, CVC_ROOT_KEY_FILE),
                        issuer=_load_or_make_key(self.directory, CVC_ISSUER_KEY_FILE),
                    )
            return self._cvc_keys

    def close(self) -> None:
        """Close the connection to ca.sqlite (reopened if the object is used again)."""
        with self._lock:
            if self._database is not None:
                self._database.close()

    # --- writing the record ------------------------------------------------------------------

    def revoke(
        self,
        serial: int,
        reason: RevocationReason,
        *,
        when: datetime.datetime | None = None,
    ) -> IssuedCertificate:
        """Record that certificate `serial` is revoked for `reason` as of `when`.

        Returns the updated entry; refuses serials this CA did not issue and a second revocation.
        """
        when = _now(when)
        if when.utcoffset() is None:
            raise ValueError("the revocation time must be timezone-aware (use UTC)")
        # CRLs and OCSP responses carry whole seconds; record what they will say.
        revocation = Revocation(
            when.astimezone(datetime.UTC).replace(microsecond=0), RevocationReason(reason)
        )

        def revocable(entry: IssuedCertificate | None) -> IssuedCertificate:
            if entry is None:
                raise CAError(f"this test CA issued no certificate with serial {serial:#x}")
            if entry.revocation is not None:
                raise CAError(
                    f"certificate {serial:#x} is already revoked "
                    f"({entry.revocation.reason.value}, {entry.revocation.time.isoformat()})"
                )
            return entry

        # A refused revocation leaves a version-1 ca.json as it was (no migration).
        with self._writing(precheck=lambda legacy: revocable(legacy.find(serial))) as record:
            updated = dataclasses.replace(revocable(record.find(serial)), revocation=revocation)
            record.revoke(updated)
        return updated

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Record what the block issues and revokes in one transaction, synced once when the
        block ends. If the block raises, nothing of it is recorded, and the certificates it got
        must not be handed out. Other processes' writes wait for the block: keep it short."""
        with self._writing():
            yield

    def issue_signature_certificate(
        self,
        holder: Holder,
        public_key: rsa.RSAPublicKey,
        *,
        now: datetime.datetime | None = None,
        label: str | None = None,
        with_ocsp: bool = False,
        card_expiry: datetime.date | None = None,
    ) -> x509.Certificate:
        """Issue, record and return a signature certificate for the card key `public_key`
        (valid to the holder's fifth birthday, or `card_expiry` or the CA's end if earlier)."""
        authority = self.signature
        ocsp_url = self.ocsp_url if with_ocsp else None
        _require_unexpired(authority, _now(now))
        return self._issue(
            authority,
            holder,
            label,
            lambda serial: profile.build_signature_certificate(
                authority.certificate,
                authority.private_key,
                public_key,
                holder,
                serial=serial,
                now=_now(now),
                sequence=serial,
                crl_url=self.crl_url,
                ocsp_url=ocsp_url,
                card_expiry=card_expiry,
            ),
        )

    def issue_authentication_certificate(
        self,
        holder: Holder,
        public_key: rsa.RSAPublicKey,
        *,
        now: datetime.datetime | None = None,
        label: str | None = None,
        card_expiry: datetime.date | None = None,
    ) -> x509.Certificate:
        """Issue, record and return an authentication certificate for the card key (valid as
        a signature certificate would be)."""
        authority = self.authentication
        _require_unexpired(authority, _now(now))
        return self._issue(
            authority,
            holder,
            label,
            lambda serial: profile.build_authentication_certificate(
                authority.certificate,
                authority.private_key,
                public_key,
                holder,
                serial=serial,
                now=_now(now),
                ocsp_url=self.ocsp_url,
                crl_url=self.crl_url,
                card_expiry=card_expiry,
            ),
        )

    def _issue(
        self,
        authority: CertificateAuthority,
        holder: Holder,
        label: str | None,
        build: Callable[[int], x509.Certificate],
    ) -> x509.Certificate:
        """Take the next serial, build the certificate with it, and record it, in one write."""
        with self._writing() as record:
            serial = _available(record.next_serial())
            certificate = build(serial)
            record.add(_entry(authority, certificate, holder, label))
        return certificate

    @contextlib.contextmanager
    def _writing(
        self, precheck: Callable[[_LegacyState], object] | None = None
    ) -> Iterator[_Transaction]:
        """A write transaction on ca.sqlite, made from a version-1 ca.json first if need be
        (`precheck` then runs on the newest ca.json, and may refuse before anything changes).
        The record is only ever written in a transaction, so processes never lose each other's
        writes, and a certificate is returned only once its entry is committed."""
        with self._lock:
            if self._database is None or self._state_file_outdated:
                self._migrate(precheck)
            assert self._database is not None
            with self._database.writing() as record:
                yield record

    def _migrate(self, precheck: Callable[[_LegacyState], object] | None) -> None:
        """Under the CA lock, switch to the record in ca.sqlite: made now from the version-1
        ca.json, unless another process made it already; then ca.json becomes the settings."""
        path = self.directory / DATABASE_FILE
        with locked(self.directory):
            raw, state = _read_state_file(self.directory)
            if isinstance(state, _Settings):
                database = _Database.open(path)  # migrated meanwhile by another process
            else:
                digest = hashlib.sha256(raw).hexdigest()
                if os.path.lexists(path):  # made by a migration interrupted before ca.json
                    database = _open_migrated(path, digest, self.directory / STATE_FILE)
                else:
                    if precheck is not None:
                        precheck(state)
                    try:
                        database = _Database.write_new(
                            path, state.next_serial, state.issued, migrated_from=digest
                        )
                    except OSError as error:
                        raise CAError(f"cannot write {path}: {error.strerror}") from error
                try:
                    _replace(
                        self.directory,
                        STATE_FILE,
                        _dumps(state.settings.to_json()),
                        PRIVATE_FILE_MODE,
                    )
                except OSError as error:
                    raise CAError(
                        f"cannot rewrite {self.directory / STATE_FILE}: {error.strerror}"
                    ) from error
        if self._database is not None:
            self._database.close()
        self._database, self._legacy, self._state_file_outdated = database, None, False

    def _state(self, next_serial: int, issued: tuple[IssuedCertificate, ...]) -> dict[str, Any]:
        """The version-1 ca.json of this CA holding this record, as earlier versions wrote it:
        read back, it gives the same bytes (the reader loses nothing that migration copies)."""
        return {
            "format": STATE_FORMAT,
            "version": LEGACY_STATE_VERSION,
            "next_serial": _serial_text(next_serial),
            "ocsp_url": self.ocsp_url,
            "crl_url": self.crl_url,
            "production_dn": self.production_dn,
            "issued": [entry.to_json() for entry in issued],
        }

    # --- a new generation --------------------------------------------------------------------

    def rollover(self, *, now: datetime.datetime | None = None) -> Generation:
        """Make the next generation (new keys, the same DNs, valid ten years from `now`) and
        issue with it from now on; the older generations keep answering for what they issued.

        Under the CA lock: rollovers in several processes make one generation each, in turn.
        The generation is written whole or not at all (see the module docstring). Refused in a
        `batch`, and when `now` is before the current generation's start (generations follow
        the clock, so the newest one always ends last).
        """
        moment = profile.require_aware(_now(now))
        with self._lock:
            if self._database is not None and self._database.in_transaction:
                raise CAError("a CA rollover cannot be part of a batch")
            # The record first (outside the CA lock, which a migration takes): made from a
            # version-1 ca.json, or upgraded to name generations, if need be.
            with self._writing():
                pass
            database = self._database
            assert database is not None
            with locked(self.directory):
                self._generations = _with_later_generations(
                    self.directory, self._generations, self.production_dn
                )
                current = self.current
                started = current.signature.certificate.not_valid_before_utc
                if moment < started:
                    raise CAError(
                        f"the clock ({moment.replace(microsecond=0).isoformat()}) is before "
                        "the start of generation "
                        f"{current.number} ({started.isoformat()}): a new generation starts "
                        "after the current one"
                    )
                generation = self._write_generation(current.number + 1, moment, database)
                self._generations = (*self._generations, generation)
        return generation

    def _write_generation(
        self, number: int, moment: datetime.datetime, database: _Database
    ) -> Generation:
        """Generate generation `number` and write it (the caller holds the CA lock)."""
        keys = {kind: _generate_key() for kind in CertificateKind}
        with database.writing() as record:
            first_serial = record.reserve(len(keys))
        authorities = {
            kind: CertificateAuthority(
                kind,
                profile.build_ca_certificate(
                    kind, key, first_serial + offset, moment, self.production_dn
                ),
                key,
                number,
            )
            for offset, (kind, key) in enumerate(keys.items())
        }
        parent = self.directory / GENERATIONS_DIRECTORY
        final = parent / str(number)
        temporary = parent / f".{number}.{secrets.token_hex(4)}.tmp"
        try:
            if not parent.is_dir():
                make_private_directories(parent)
                sync_directory(self.directory)
            _remove_interrupted_generations(parent)
            os.mkdir(temporary, GENERATION_DIRECTORY_MODE)
            os.chmod(temporary, GENERATION_DIRECTORY_MODE)  # whatever the umask
            for authority in authorities.values():
                _write_authority(temporary, authority)
            # The commit point: the generation appears whole, or not at all.
            os.rename(temporary, final)
            sync_directory(parent)
        except OSError as error:
            shutil.rmtree(temporary, ignore_errors=True)
            raise CAError(
                f"cannot write generation {number} in {parent}: {error.strerror}"
            ) from error
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
        return Generation(
            number,
            authorities[CertificateKind.SIGNATURE],
            authorities[CertificateKind.AUTHENTICATION],
        )

    # --- creating and loading ----------------------------------------------------------------

    @classmethod
    def create(
        cls,
        directory: Path,
        *,
        production_dn: bool = False,
        now: datetime.datetime | None = None,
        ocsp_url: str = profile.DEFAULT_OCSP_URL,
        crl_url: str | None = None,
    ) -> TestCA:
        """Generate both CAs, the CVC root and card issuer keys and the card-info signer into
        `directory` (created 0700 if needed).

        Refuses (CAExistsError) when the directory holds any file of a CA: a new CA over old
        keys would make every card they issued untrusted.
        """
        directory = Path(directory)
        for url in (ocsp_url, crl_url):
            problem = None if url is None else url_problem(url)
            if problem is not None:
                raise BadValueError(problem)
        try:
            make_private_directories(directory)
        except OSError as error:
            raise CAError(f"cannot create {directory}: {error.strerror}") from error
        settings = _Settings(ocsp_url, crl_url, production_dn)
        with locked(directory):
            existing = existing_ca_files(directory)
            if existing:
                raise CAExistsError(
                    f"{directory} already holds a test CA ({', '.join(existing)}); "
                    "refusing to overwrite it"
                )
            serial = profile.SERIAL_MIN + secrets.randbelow(SERIAL_START_MAX - profile.SERIAL_MIN)
            authorities: dict[CertificateKind, CertificateAuthority] = {}
            for kind in CertificateKind:
                key = _generate_key()
                certificate = profile.build_ca_certificate(
                    kind, key, serial, _now(now), production_dn
                )
                serial += 1
                authorities[kind] = CertificateAuthority(kind, certificate, key)
            card_info_signer = _generate_key()
            cvc_keys = _CvcKeys(root=_generate_key(), issuer=_generate_key())
            # Keys and certificates first, ca.sqlite next, ca.json last: it marks a complete CA.
            try:
                for authority in authorities.values():
                    _write_authority(directory, authority)
                for name, key in (
                    (CARD_INFO_SIGNER_FILE, card_info_signer),
                    (CVC_ROOT_KEY_FILE, cvc_keys.root),
                    (CVC_ISSUER_KEY_FILE, cvc_keys.issuer),
                ):
                    _replace(directory, name, _private_pem(key), PRIVATE_FILE_MODE)
                database = _Database.write_new(directory / DATABASE_FILE, serial)
                _replace(directory, STATE_FILE, _dumps(settings.to_json()), PRIVATE_FILE_MODE)
            except OSError as error:
                raise CAError(
                    f"cannot write the test CA in {directory}: {error.strerror}"
                ) from error
        first = Generation(
            FIRST_GENERATION,
            authorities[CertificateKind.SIGNATURE],
            authorities[CertificateKind.AUTHENTICATION],
        )
        return cls(
            directory,
            (first,),
            card_info_signer=card_info_signer,
            settings=settings,
            cvc_keys=cvc_keys,
            database=database,
        )

    @classmethod
    def load(cls, directory: Path) -> TestCA:
        """Read a CA written by `create` (or by earlier versions); raises CAError naming what
        is missing or wrong. The record itself is read when asked for, not here."""
        directory = Path(directory)
        raw, state = _read_state_file(directory)
        settings = state if isinstance(state, _Settings) else state.settings
        first = _load_generation(directory, FIRST_GENERATION, settings.production_dn)
        card_info_signer = _load_card_info_signer(directory)
        cvc_keys = _load_cvc_keys(directory)
        path = directory / DATABASE_FILE
        database, legacy, outdated = None, None, False
        if isinstance(state, _Settings):
            database = _Database.open(path)
        elif os.path.lexists(path):
            database = _open_migrated(path, hashlib.sha256(raw).hexdigest(), directory / STATE_FILE)
            outdated = True
        else:
            legacy = state
        try:
            # The record before generations/: a generation is on disk before it issues.
            highest = FIRST_GENERATION if database is None else database.highest_generation()
            generations = _with_later_generations(directory, (first,), settings.production_dn)
            if highest > len(generations):
                raise CAError(
                    f"{path} records certificates of generation {highest}, but "
                    f"{generation_directory(directory, highest)} is missing"
                )
        except BaseException:
            if database is not None:
                database.close()
            raise
        return cls(
            directory,
            generations,
            card_info_signer=card_info_signer,
            settings=settings,
            cvc_keys=cvc_keys,
            database=database,
            legacy=legacy,
            state_file_outdated=outdated,
        )


def _require_unexpired(authority: CertificateAuthority, now: datetime.datetime) -> None:
    end = authority.certificate.not_valid_after_utc
    if end <= now:
        raise CAError(
            f"the test CA's {authority.kind.value} CA (generation {authority.generation}) expired "
            f"on {end:%Y-%m-%d}: start a new generation with `jpki ca rollover`"
        )


def _available(serial: int) -> int:
    if serial > profile.SERIAL_MAX:
        raise CAError("the test CA has used up its 4-byte serial numbers")
    return serial


def _entry(
    authority: CertificateAuthority,
    certificate: x509.Certificate,
    holder: Holder,
    label: str | None,
) -> IssuedCertificate:
    return IssuedCertificate(
        serial=certificate.serial_number,
        kind=authority.kind,
        subject=certificate.subject.rfc4514_string(),
        not_after=certificate.not_valid_after_utc,
        holder_name=holder.name,
        label=label,
        generation=authority.generation,
    )


def _open_migrated(path: Path, digest: str, state_path: Path) -> _Database:
    """The ca.sqlite beside a version-1 ca.json: accepted only if made from those very bytes."""
    database = _Database.open(path)
    if database.migrated_from() != digest:
        database.close()
        raise CAError(
            f"{path} was not made from {state_path}, which is still version "
            f"{LEGACY_STATE_VERSION}: one of them was replaced; move the wrong one away"
        )
    return database


def _file_identity(path: Path) -> tuple[int, ...]:
    try:
        status = path.stat()
    except OSError:
        return ()
    return (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)


def _write_authority(directory: Path, authority: CertificateAuthority) -> None:
    certificate_pem = authority.certificate.public_bytes(serialization.Encoding.PEM)
    _replace(
        directory, key_file(authority.kind), _private_pem(authority.private_key), PRIVATE_FILE_MODE
    )
    _replace(directory, certificate_file(authority.kind), certificate_pem, PUBLIC_FILE_MODE)


def _replace(directory: Path, name: str, data: bytes, mode: int) -> None:
    """Write one file of the CA; callers hold the CA lock, so no other writer's copy of it
    exists and the copies a crash left behind can go."""
    path = directory / name
    remove_leftovers(path)
    write_atomically(path, data, mode)


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold the CA lock of `directory`: one process at a time creates or migrates a CA."""
    lock_path = directory / LOCK_FILE
    try:
        descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
    except OSError as error:
        raise CAError(f"cannot lock {lock_path}: {error.strerror}") from error
    with open(descriptor, "rb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _read_state_file(directory: Path) -> tuple[bytes, _Settings | _LegacyState]:
    """ca.json's bytes and what they hold (version 2: the settings; version 1: the settings and
    the whole record), parsed and checked strictly; every problem is one CAError line."""
    path = directory / STATE_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CAError(_missing_state(directory)) from None
    except OSError as error:
        raise CAError(f"cannot read {path}: {error.strerror}") from error
    data = _parse_json(raw, path)
    if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
        raise CAError(f"{path} is not a {STATE_FORMAT} file")
    version = data.get("version")
    if type(version) is not int or version not in (LEGACY_STATE_VERSION, STATE_VERSION):
        shown = version if type(version) is int else _json_type(version)
        raise CAError(
            f"{path} has version {shown}; this program reads versions "
            f"{LEGACY_STATE_VERSION} and {STATE_VERSION}"
        )
    try:
        if version == STATE_VERSION:
            return raw, _Settings.from_json(data, SETTINGS_FIELDS)
        return raw, _LegacyState.from_json(data)
    except _Corrupt as error:
        raise CAError(f"{path} is corrupt: {error}") from None


def _missing_state(directory: Path) -> str:
    message = f"no test CA in {directory}: {STATE_FILE} is missing"
    others = existing_ca_files(directory)
    if not others:
        return message
    # Keys without ca.json: an interrupted create, or a lost file; a new CA would orphan cards.
    return (
        f"{message}, but {', '.join(others)} are there; restore {STATE_FILE} or move "
        "them away (a new CA would not verify the cards they issued)"
    )


def _generate_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=RSA_PUBLIC_EXPONENT, key_size=RSA_KEY_BITS)


def _private_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _numbers_agree(key: rsa.RSAPrivateKey) -> bool:
    """OpenSSL's RSA key check without its primality tests: the private numbers agree with one
    another and with the modulus. Microseconds, against ~27 ms for the full check."""
    numbers = key.private_numbers()
    p, q, d = numbers.p, numbers.q, numbers.d
    n, e = numbers.public_numbers.n, numbers.public_numbers.e
    return (
        1 < p < n
        and 1 < q < n
        and p * q == n
        and e > 1
        and d * e % math.lcm(p - 1, q - 1) == 1
        and numbers.dmp1 == d % (p - 1)
        and numbers.dmq1 == d % (q - 1)
        and numbers.iqmp * q % p == 1
    )


def _parse_private_key(key_pem: bytes, key_path: Path) -> rsa.RSAPrivateKey:
    """A key this CA generated (and checked then): OpenSSL's slow check is skipped, the cheap
    consistency check is not."""
    try:
        private_key = serialization.load_pem_private_key(
            key_pem, password=None, unsafe_skip_rsa_key_validation=True
        )
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:
        raise CAError(f"{key_path} is not an unencrypted PEM private key") from error
    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise CAError(f"{key_path} is not an RSA key")
    if private_key.key_size != RSA_KEY_BITS:
        raise CAError(f"{key_path} is not an RSA-{RSA_KEY_BITS} key")
    if not _numbers_agree(private_key):
        raise CAError(f"{key_path} is damaged: its private numbers do not agree")
    return private_key


def _load_card_info_signer(directory: Path) -> rsa.RSAPrivateKey:
    key_path = directory / CARD_INFO_SIGNER_FILE
    if not key_path.exists():
        raise CAError(
            f"{key_path} is missing: this test CA predates the card-info signer; "
            "create a new CA to issue cards with a card-info AP"
        )
    return _read_private_key(key_path)


def _read_private_key(key_path: Path) -> rsa.RSAPrivateKey:
    try:
        key_pem = key_path.read_bytes()
    except OSError as error:
        raise CAError(f"cannot read {error.filename}: {error.strerror}") from error
    return _parse_private_key(key_pem, key_path)


def _load_cvc_keys(directory: Path) -> _CvcKeys | None:
    """The CVC keys, or None when either is missing (a CA made before them: both are made, or
    the missing one, on first use)."""
    paths = [directory / CVC_ROOT_KEY_FILE, directory / CVC_ISSUER_KEY_FILE]
    if not all(os.path.lexists(path) for path in paths):
        return None
    root, issuer = (_read_private_key(path) for path in paths)
    return _CvcKeys(root=root, issuer=issuer)


def _load_or_make_key(directory: Path, name: str) -> rsa.RSAPrivateKey:
    """The key in `name`, generated and written (0600, atomically) if it is not there yet; the
    caller holds the CA lock."""
    path = directory / name
    if os.path.lexists(path):
        return _read_private_key(path)
    key = _generate_key()
    try:
        _replace(directory, name, _private_pem(key), PRIVATE_FILE_MODE)
    except OSError as error:
        raise CAError(f"cannot write {path}: {error.strerror}") from error
    return key


def _later_generations(directory: Path) -> list[int]:
    """The numbers of generations/N (2, 3, … without gaps) in `directory`; CAError for an entry
    this program would not have written there. An interrupted rollover's leftover is skipped."""
    parent = Path(directory) / GENERATIONS_DIRECTORY
    try:
        names = os.listdir(parent)
    except FileNotFoundError:
        return []
    except OSError as error:
        raise CAError(f"cannot read {parent}: {error.strerror}") from error
    numbers = []
    for name in names:
        if GENERATION_LEFTOVER_PATTERN.fullmatch(name):
            continue
        path = parent / name
        if not GENERATION_NAME_PATTERN.fullmatch(name) or int(name) <= FIRST_GENERATION:
            raise CAError(f"{path} is not a CA generation (generations/2, 3, …): move it away")
        try:
            is_directory = stat.S_ISDIR(os.lstat(path).st_mode)
        except OSError as error:
            raise CAError(f"cannot read {path}: {error.strerror}") from error
        if not is_directory:
            raise CAError(f"{path} is damaged: a CA generation is a directory")
        numbers.append(int(name))
    numbers.sort()
    for expected, number in enumerate(numbers, start=FIRST_GENERATION + 1):
        if number != expected:
            raise CAError(
                f"{parent / str(expected)} is missing, but {parent / str(number)} is there"
            )
    return numbers


def _with_later_generations(
    directory: Path, known: tuple[Generation, ...], production_dn: bool
) -> tuple[Generation, ...]:
    """`known` and the generations on disk after them, loaded; every key only once."""
    newer = [number for number in _later_generations(directory) if number > len(known)]
    generations = (
        *known,
        *(_load_generation(directory, number, production_dn) for number in newer),
    )
    seen: dict[bytes, int] = {}
    for generation in generations:
        for authority in generation.authorities:
            earlier = seen.setdefault(authority.key_id, generation.number)
            if earlier != generation.number:
                path = generation_directory(directory, generation.number)
                raise CAError(
                    f"{path / certificate_file(authority.kind)} has the key of generation "
                    f"{earlier}: a copied generation? move it away"
                )
    return generations


def _remove_interrupted_generations(parent: Path) -> None:
    """Delete what interrupted rollovers left in generations/ (the caller holds the CA lock)."""
    for name in os.listdir(parent):
        if GENERATION_LEFTOVER_PATTERN.fullmatch(name):
            shutil.rmtree(parent / name, ignore_errors=True)


def _load_generation(directory: Path, number: int, production_dn: bool) -> Generation:
    signature, authentication = (
        _load_authority(generation_directory(directory, number), kind, production_dn, number)
        for kind in CertificateKind
    )
    return Generation(number, signature, authentication)


def _load_authority(
    directory: Path,
    kind: CertificateKind,
    production_dn: bool,
    generation: int = FIRST_GENERATION,
) -> CertificateAuthority:
    certificate_path = directory / certificate_file(kind)
    key_path = directory / key_file(kind)
    certificate = _load_ca_certificate(certificate_path)
    try:
        key_pem = key_path.read_bytes()
    except OSError as error:
        raise CAError(f"cannot read {key_path}: {error.strerror}") from error
    private_key = _parse_private_key(key_pem, key_path)
    if not profile.key_matches(private_key, certificate):
        raise CAError(f"{key_path} does not match the certificate {certificate_path.name}")
    expected_name = profile.ca_name(kind, production_dn=production_dn)
    if certificate.subject != expected_name:
        raise CAError(
            f"{certificate_path} is not the {kind.value} CA of this directory "
            f"(subject {certificate.subject.rfc4514_string()})"
        )
    return CertificateAuthority(kind, certificate, private_key, generation)


def _load_ca_certificate(path: Path) -> x509.Certificate:
    """A CA certificate file, parsed whole and checked against its own signature."""
    try:
        pem = path.read_bytes()
    except OSError as error:
        raise CAError(f"cannot read {path}: {error.strerror}") from error
    try:
        certificate = x509.load_pem_x509_certificate(pem)
        parse_whole(certificate)
    except CERTIFICATE_ERRORS:
        raise CAError(f"{path} is damaged: not a readable PEM certificate") from None
    if not issued_by(certificate, certificate):
        raise CAError(f"{path} is damaged: its self-signature does not verify")
    return certificate
