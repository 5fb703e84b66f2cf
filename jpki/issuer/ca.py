"""The emulator's built-in test CA: two self-signed JPKI CAs (signature and authentication)
and the card-info signer, whose keys, certificates and issuance record live in one directory.

Layout of the directory:
    signature-ca.pem, signature-ca.key            sign CA certificate (0644) and PKCS#8 key (0600)
    authentication-ca.pem, authentication-ca.key  auth CA certificate (0644) and PKCS#8 key (0600)
    card-info-signer.key                          PKCS#8 key signing the Text AP record (0600)
    ca.json                                       next serial, settings and the issued list (0600:
                                                  it names the holders)
The directory is created 0700. Every file is written atomically under the CA's lock; ca.json is
written last, so it marks a complete CA, and a CA is never created over any of these files.
An issued entry gains a "revocation" object (time, reason) when it is revoked; entries without
one, as in files written before revocation existed, are not revoked.

ca.json is read strictly: an unknown, missing, duplicate or mistyped field, a value out of range
or not in the form this program writes it is refused with one line naming the file and the field,
so nothing is ever rewritten from a partial reading, and writing back what was read gives the
same bytes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import enum
import fcntl
import json
import os
import re
import secrets
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from jpki.certificates import CertificateKind, issued_by
from jpki.durable import make_private_directories, remove_leftovers, write_atomically
from jpki.errors import BadValueError, JpkiError
from jpki.issuer import profile
from jpki.issuer.holder import Holder

STATE_FILE = "ca.json"
LOCK_FILE = "ca.json.lock"
STATE_FORMAT = "jpki-emulator-ca"
STATE_VERSION = 1
# Signs the integrity record (EF 0003) of the card-info AP, as J-LIS does on real cards.
CARD_INFO_SIGNER_FILE = "card-info-signer.key"
RSA_PUBLIC_EXPONENT = 65537
RSA_KEY_BITS = 2048
PRIVATE_FILE_MODE = 0o600
PUBLIC_FILE_MODE = 0o644
SERIAL_HEX_DIGITS = 8
# New CAs start their serial counter at a random point in the lower half of the 4-byte range,
# so that re-created CAs (same DN) rarely repeat issuer + serial, which identifies a user.
SERIAL_START_MAX = 0x3FFFFFFF
SERIAL_PATTERN = re.compile(f"[0-9a-f]{{{SERIAL_HEX_DIGITS}}}")
STATE_FIELDS = (
    "format", "version", "next_serial", "ocsp_url", "crl_url", "production_dn", "issued",
)  # fmt: skip
ISSUED_FIELDS = ("serial", "kind", "subject", "not_after", "holder_name", "label")
ISSUED_OPTIONAL_FIELDS = ("revocation",)  # written only once revoked
REVOCATION_FIELDS = ("time", "reason")
# No field holds an integer longer than this; longer ones are refused before conversion.
MAX_INTEGER_DIGITS = 20
SHOWN_CHARACTERS = 40  # of a refused value, so that an error stays one readable line
TIME_EXAMPLE = "2031-02-17T14:59:59+00:00"  # how ca.json spells a time
URL_SCHEMES = ("http", "https")
# Parsing errors of a certificate that cryptography may raise lazily, on first use of a part.
CERTIFICATE_ERRORS = (ValueError, TypeError, UnsupportedAlgorithm)
E = TypeVar("E", bound=enum.Enum)


class CAError(JpkiError):
    """The test CA directory is missing, incomplete or corrupt, or the CA cannot issue."""


class CAExistsError(CAError):
    """The directory already holds files of a CA, which creating one would overwrite."""


class _Corrupt(ValueError):
    """A field of ca.json that is not as this program writes it; str() names the field."""

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
    *(name for kind in CertificateKind for name in (certificate_file(kind), key_file(kind))),
    CARD_INFO_SIGNER_FILE,
)


@dataclass(frozen=True)
class CertificateAuthority:
    """One of the two CAs: its self-signed certificate and its private key."""

    kind: CertificateKind
    certificate: x509.Certificate
    private_key: rsa.RSAPrivateKey


@dataclass(frozen=True)
class IssuedCertificate:
    """What ca.json remembers of an issued certificate, for revocation later."""

    serial: int
    kind: CertificateKind
    subject: str
    not_after: datetime.datetime
    holder_name: str
    label: str | None = None
    revocation: Revocation | None = None

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


@dataclass(frozen=True)
class _State:
    """What ca.json holds, checked field by field and for consistency."""

    next_serial: int
    ocsp_url: str
    crl_url: str | None
    production_dn: bool
    issued: tuple[IssuedCertificate, ...]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _State:
        fields = _object(data, "", STATE_FIELDS)
        production_dn = fields["production_dn"]
        if type(production_dn) is not bool:
            raise _Corrupt(
                "production_dn", f"must be true or false, not {_json_type(production_dn)}"
            )
        # One past the last serial means "used up", which issuing reports.
        next_serial = _serial(fields["next_serial"], "next_serial", profile.SERIAL_MAX + 1)
        crl_url = fields["crl_url"]
        return cls(
            next_serial=next_serial,
            ocsp_url=_url(fields["ocsp_url"], "ocsp_url"),
            crl_url=None if crl_url is None else _url(crl_url, "crl_url"),
            production_dn=production_dn,
            issued=_issued(fields["issued"], next_serial),
        )


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
    """ca.json's bytes: what `_State.from_json` reads back into the same state."""
    return (json.dumps(state, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def existing_ca_files(directory: Path) -> tuple[str, ...]:
    """The files of a CA that `directory` holds (none when it does not exist)."""
    return tuple(name for name in CA_FILES if os.path.lexists(Path(directory) / name))


def _now(now: datetime.datetime | None) -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC) if now is None else now


class TestCA:
    """The signature and authentication CAs, the card-info signer and the issuance state."""

    # Not a pytest test class despite the name.
    __test__: ClassVar[bool] = False

    def __init__(
        self,
        directory: Path,
        signature: CertificateAuthority,
        authentication: CertificateAuthority,
        *,
        card_info_signer: rsa.RSAPrivateKey,
        next_serial: int,
        ocsp_url: str,
        crl_url: str | None = None,
        production_dn: bool = False,
        issued: tuple[IssuedCertificate, ...] = (),
    ) -> None:
        self.directory = directory
        self.signature = signature
        self.authentication = authentication
        self.card_info_signer = card_info_signer
        self.ocsp_url = ocsp_url
        self.crl_url = crl_url
        self.production_dn = production_dn
        self._next_serial = next_serial
        self._issued = issued
        # Serial allocation and the ca.json rewrite must not interleave between threads.
        self._lock = threading.Lock()

    @property
    def next_serial(self) -> int:
        return self._next_serial

    @property
    def issued(self) -> tuple[IssuedCertificate, ...]:
        return self._issued

    def authority(self, kind: CertificateKind) -> CertificateAuthority:
        return self.signature if kind is CertificateKind.SIGNATURE else self.authentication

    def find_issued(self, serial: int) -> IssuedCertificate | None:
        return next((entry for entry in self._issued if entry.serial == serial), None)

    def revoked(self, kind: CertificateKind) -> tuple[IssuedCertificate, ...]:
        """The revoked certificates of one CA, in issuance order."""
        return tuple(entry for entry in self._issued if entry.kind is kind and entry.revoked)

    def revoke(
        self,
        serial: int,
        reason: RevocationReason,
        *,
        when: datetime.datetime | None = None,
    ) -> IssuedCertificate:
        """Record in ca.json that certificate `serial` is revoked for `reason` as of `when`.

        Returns the updated entry; refuses serials this CA did not issue and a second revocation.
        """
        when = _now(when)
        if when.utcoffset() is None:
            raise ValueError("the revocation time must be timezone-aware (use UTC)")
        # CRLs and OCSP responses carry whole seconds; record what they will say.
        revocation = Revocation(
            when.astimezone(datetime.UTC).replace(microsecond=0), RevocationReason(reason)
        )
        with self._updating():
            entry = self.find_issued(serial)
            if entry is None:
                raise CAError(f"this test CA issued no certificate with serial {serial:#x}")
            if entry.revocation is not None:
                raise CAError(
                    f"certificate {serial:#x} is already revoked "
                    f"({entry.revocation.reason.value}, {entry.revocation.time.isoformat()})"
                )
            updated = dataclasses.replace(entry, revocation=revocation)
            issued = tuple(updated if item is entry else item for item in self._issued)
            try:
                self._write_state(self._state(self._next_serial, issued))
            except OSError as error:
                raise CAError(f"cannot record the revocation: {error.strerror}") from error
            self._issued = issued
        return updated

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
        """Generate both CAs and the card-info signer into `directory` (created 0700 if needed).

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
        with _locked(directory):
            existing = existing_ca_files(directory)
            if existing:
                raise CAExistsError(
                    f"{directory} already holds a test CA ({', '.join(existing)}); "
                    "refusing to overwrite it"
                )
            test_ca = cls._generate(directory, _now(now), ocsp_url, crl_url, production_dn)
            try:
                test_ca._write_all()
            except OSError as error:
                raise CAError(
                    f"cannot write the test CA in {directory}: {error.strerror}"
                ) from error
        return test_ca

    @classmethod
    def _generate(
        cls,
        directory: Path,
        now: datetime.datetime,
        ocsp_url: str,
        crl_url: str | None,
        production_dn: bool,
    ) -> TestCA:
        """New keys and self-signed certificates, in memory only."""
        serial = profile.SERIAL_MIN + secrets.randbelow(SERIAL_START_MAX - profile.SERIAL_MIN)
        authorities: dict[CertificateKind, CertificateAuthority] = {}
        for kind in CertificateKind:
            key = _generate_key()
            certificate = profile.build_ca_certificate(kind, key, serial, now, production_dn)
            serial += 1
            authorities[kind] = CertificateAuthority(kind, certificate, key)
        return cls(
            directory,
            authorities[CertificateKind.SIGNATURE],
            authorities[CertificateKind.AUTHENTICATION],
            card_info_signer=_generate_key(),
            next_serial=serial,
            ocsp_url=ocsp_url,
            crl_url=crl_url,
            production_dn=production_dn,
        )

    def _write_all(self) -> None:
        """Keys and certificates first, ca.json last: it marks a complete CA."""
        for authority in (self.signature, self.authentication):
            self._write_authority(authority)
        self._write_card_info_signer()
        self._write_state(self._state(self._next_serial, ()))

    @classmethod
    def load(cls, directory: Path) -> TestCA:
        """Read a CA written by `create`; raises CAError naming what is missing or wrong."""
        directory = Path(directory)
        state = _read_state(directory)
        signature, authentication = (
            _load_authority(directory, kind, state.production_dn) for kind in CertificateKind
        )
        card_info_signer = _load_card_info_signer(directory)
        return cls(
            directory,
            signature,
            authentication,
            card_info_signer=card_info_signer,
            next_serial=state.next_serial,
            ocsp_url=state.ocsp_url,
            crl_url=state.crl_url,
            production_dn=state.production_dn,
            issued=state.issued,
        )

    def issue_signature_certificate(
        self,
        holder: Holder,
        public_key: rsa.RSAPublicKey,
        *,
        now: datetime.datetime | None = None,
        label: str | None = None,
        with_ocsp: bool = False,
    ) -> x509.Certificate:
        """Issue, record and return a signature certificate for the card key `public_key`."""
        authority = self.signature
        ocsp_url = self.ocsp_url if with_ocsp else None
        with self._updating():
            serial = self._allocate_serial()
            certificate = profile.build_signature_certificate(
                authority.certificate,
                authority.private_key,
                public_key,
                holder,
                serial=serial,
                now=_now(now),
                sequence=serial,
                crl_url=self.crl_url,
                ocsp_url=ocsp_url,
            )
            self._record(authority.kind, certificate, holder, label)
        return certificate

    def issue_authentication_certificate(
        self,
        holder: Holder,
        public_key: rsa.RSAPublicKey,
        *,
        now: datetime.datetime | None = None,
        label: str | None = None,
    ) -> x509.Certificate:
        """Issue, record and return an authentication certificate for the card key."""
        authority = self.authentication
        with self._updating():
            serial = self._allocate_serial()
            certificate = profile.build_authentication_certificate(
                authority.certificate,
                authority.private_key,
                public_key,
                holder,
                serial=serial,
                now=_now(now),
                ocsp_url=self.ocsp_url,
                crl_url=self.crl_url,
            )
            self._record(authority.kind, certificate, holder, label)
        return certificate

    @contextlib.contextmanager
    def _updating(self) -> Iterator[None]:
        """Exclusive across threads and processes, starting from the newest ca.json on disk, so
        two processes issuing or revoking at once never lose each other's changes."""
        with self._lock, _locked(self.directory):
            latest = TestCA.load(self.directory)
            self._next_serial, self._issued = latest._next_serial, latest._issued
            yield

    def _allocate_serial(self) -> int:
        if self._next_serial > profile.SERIAL_MAX:
            raise CAError("the test CA has used up its 4-byte serial numbers")
        return self._next_serial

    def _record(
        self,
        kind: CertificateKind,
        certificate: x509.Certificate,
        holder: Holder,
        label: str | None,
    ) -> None:
        entry = IssuedCertificate(
            serial=certificate.serial_number,
            kind=kind,
            subject=certificate.subject.rfc4514_string(),
            not_after=certificate.not_valid_after_utc,
            holder_name=holder.name,
            label=label,
        )
        next_serial = certificate.serial_number + 1
        issued = (*self._issued, entry)
        # Persist before updating memory: a certificate is only handed out once recorded.
        try:
            self._write_state(self._state(next_serial, issued))
        except OSError as error:
            raise CAError(f"cannot record the issued certificate: {error.strerror}") from error
        self._next_serial = next_serial
        self._issued = issued

    def _state(self, next_serial: int, issued: tuple[IssuedCertificate, ...]) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "next_serial": _serial_text(next_serial),
            "ocsp_url": self.ocsp_url,
            "crl_url": self.crl_url,
            "production_dn": self.production_dn,
            "issued": [entry.to_json() for entry in issued],
        }

    def _write_state(self, state: dict[str, Any]) -> None:
        # Private: it names every holder the CA issued to.
        self._replace(STATE_FILE, _dumps(state), PRIVATE_FILE_MODE)

    def _write_authority(self, authority: CertificateAuthority) -> None:
        certificate_pem = authority.certificate.public_bytes(serialization.Encoding.PEM)
        self._replace(
            key_file(authority.kind), _private_pem(authority.private_key), PRIVATE_FILE_MODE
        )
        self._replace(certificate_file(authority.kind), certificate_pem, PUBLIC_FILE_MODE)

    def _write_card_info_signer(self) -> None:
        self._replace(CARD_INFO_SIGNER_FILE, _private_pem(self.card_info_signer), PRIVATE_FILE_MODE)

    def _replace(self, name: str, data: bytes, mode: int) -> None:
        """Write one file of the CA; callers hold the CA lock, so no other writer's copy of it
        exists and the copies a crash left behind can go."""
        path = self.directory / name
        remove_leftovers(path)
        write_atomically(path, data, mode)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Hold the CA lock of `directory`: one process at a time creates, issues or revokes."""
    lock_path = directory / LOCK_FILE
    try:
        descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
    except OSError as error:
        raise CAError(f"cannot lock {lock_path}: {error.strerror}") from error
    with open(descriptor, "rb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _read_state(directory: Path) -> _State:
    """ca.json, parsed and checked strictly; every problem is one CAError line."""
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
    if type(version) is not int or version != STATE_VERSION:
        shown = version if type(version) is int else _json_type(version)
        raise CAError(f"{path} has version {shown}; this program reads version {STATE_VERSION}")
    try:
        return _State.from_json(data)
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


def _parse_private_key(key_pem: bytes, key_path: Path) -> rsa.RSAPrivateKey:
    try:
        private_key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:
        raise CAError(f"{key_path} is not an unencrypted PEM private key") from error
    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise CAError(f"{key_path} is not an RSA key")
    return private_key


def _load_card_info_signer(directory: Path) -> rsa.RSAPrivateKey:
    key_path = directory / CARD_INFO_SIGNER_FILE
    if not key_path.exists():
        raise CAError(
            f"{key_path} is missing: this test CA predates the card-info signer; "
            "create a new CA to issue cards with a card-info AP"
        )
    try:
        key_pem = key_path.read_bytes()
    except OSError as error:
        raise CAError(f"cannot read {error.filename}: {error.strerror}") from error
    private_key = _parse_private_key(key_pem, key_path)
    if private_key.key_size != RSA_KEY_BITS:
        raise CAError(f"{key_path} is not an RSA-{RSA_KEY_BITS} key")
    return private_key


def _load_authority(
    directory: Path, kind: CertificateKind, production_dn: bool
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
    return CertificateAuthority(kind, certificate, private_key)


def _load_ca_certificate(path: Path) -> x509.Certificate:
    """A CA certificate file, parsed whole and checked against its own signature."""
    try:
        pem = path.read_bytes()
    except OSError as error:
        raise CAError(f"cannot read {path}: {error.strerror}") from error
    try:
        certificate = x509.load_pem_x509_certificate(pem)
        _parse_whole(certificate)
    except CERTIFICATE_ERRORS:
        raise CAError(f"{path} is damaged: not a readable PEM certificate") from None
    if not issued_by(certificate, certificate):
        raise CAError(f"{path} is damaged: its self-signature does not verify")
    return certificate


def _parse_whole(certificate: x509.Certificate) -> None:
    """Parse every part now: cryptography parses some lazily, and would fail later, elsewhere."""
    certificate.public_key()
    for extension in certificate.extensions:
        _ = extension.value
    _ = (certificate.issuer, certificate.subject, certificate.signature_hash_algorithm)
    _ = (certificate.not_valid_before_utc, certificate.not_valid_after_utc)
