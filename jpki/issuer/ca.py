"""The emulator's built-in test CA: two self-signed JPKI CAs (signature and authentication)
and the card-info signer, whose keys, certificates and issuance record live in one directory.

Layout of the directory:
    signature-ca.pem, signature-ca.key            sign CA certificate and PKCS#8 key (0600)
    authentication-ca.pem, authentication-ca.key  auth CA certificate and PKCS#8 key (0600)
    card-info-signer.key                          PKCS#8 key signing the Text AP record (0600)
    ca.json                                       next serial, settings and the issued list
Every file is written atomically; ca.json is written last, so it marks a complete CA.
An issued entry gains a "revocation" object (time, reason) when it is revoked; entries without
one, as in files written before revocation existed, are not revoked.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import enum
import fcntl
import json
import os
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from jpki.certificates import CertificateKind
from jpki.durable import write_atomically
from jpki.errors import JpkiError
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


class CAError(JpkiError):
    """The test CA directory is missing, incomplete or corrupt, or the CA cannot issue."""


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
    def from_json(cls, data: Any) -> Revocation:
        if not isinstance(data, dict):
            raise ValueError("a revocation is not an object")
        time = datetime.datetime.fromisoformat(_string(data, "time"))
        if time.tzinfo is None:
            raise ValueError("a revocation time has no time zone")
        return cls(time=time, reason=RevocationReason(_string(data, "reason")))


def certificate_file(kind: CertificateKind) -> str:
    return f"{kind.value}-ca.pem"


def key_file(kind: CertificateKind) -> str:
    return f"{kind.value}-ca.key"


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
    def from_json(cls, data: Any) -> IssuedCertificate:
        if not isinstance(data, dict):
            raise ValueError("an issued entry is not an object")
        not_after = datetime.datetime.fromisoformat(_string(data, "not_after"))
        if not_after.tzinfo is None:
            raise ValueError("an issued not_after has no time zone")
        label = data.get("label")
        if label is not None and not isinstance(label, str):
            raise ValueError("an issued label is not a string")
        revocation = data.get("revocation")
        return cls(
            serial=_parse_serial(_string(data, "serial")),
            kind=CertificateKind(_string(data, "kind")),
            subject=_string(data, "subject"),
            not_after=not_after,
            holder_name=_string(data, "holder_name"),
            label=label,
            revocation=None if revocation is None else Revocation.from_json(revocation),
        )


def _serial_text(serial: int) -> str:
    return f"{serial:0{SERIAL_HEX_DIGITS}x}"


def _parse_serial(text: str, maximum: int = profile.SERIAL_MAX) -> int:
    serial = int(text, 16)
    if not profile.SERIAL_MIN <= serial <= maximum:
        raise ValueError(f"serial {text} is outside the 4-byte range")
    return serial


def _string(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{key!r} is missing or not a string")
    return value


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
        """Generate both CAs and the card-info signer into `directory` (created if needed).

        Refuses to overwrite a CA.
        """
        directory = Path(directory)
        now = _now(now)
        if (directory / STATE_FILE).exists():
            raise CAError(f"{directory} already holds a test CA; refusing to overwrite it")
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise CAError(f"cannot create {directory}: {error.strerror}") from error
        serial = profile.SERIAL_MIN + secrets.randbelow(SERIAL_START_MAX - profile.SERIAL_MIN)
        authorities: dict[CertificateKind, CertificateAuthority] = {}
        for kind in CertificateKind:
            key = _generate_key()
            certificate = profile.build_ca_certificate(kind, key, serial, now, production_dn)
            serial += 1
            authorities[kind] = CertificateAuthority(kind, certificate, key)
        test_ca = cls(
            directory,
            authorities[CertificateKind.SIGNATURE],
            authorities[CertificateKind.AUTHENTICATION],
            card_info_signer=_generate_key(),
            next_serial=serial,
            ocsp_url=ocsp_url,
            crl_url=crl_url,
            production_dn=production_dn,
        )
        try:
            for authority in authorities.values():
                test_ca._write_authority(authority)
            test_ca._write_card_info_signer()
            test_ca._write_state(test_ca._state(serial, ()))
        except OSError as error:
            raise CAError(f"cannot write the test CA in {directory}: {error.strerror}") from error
        return test_ca

    @classmethod
    def load(cls, directory: Path) -> TestCA:
        """Read a CA written by `create`; raises CAError naming what is missing or wrong."""
        directory = Path(directory)
        state_path = directory / STATE_FILE
        if not state_path.is_file():
            raise CAError(f"no test CA in {directory}: {STATE_FILE} is missing")
        try:
            state = json.loads(state_path.read_text(encoding="utf-8"))
        except OSError as error:
            raise CAError(f"cannot read {state_path}: {error.strerror}") from error
        except UnicodeDecodeError as error:
            raise CAError(f"{state_path} is not UTF-8 text") from error
        except json.JSONDecodeError as error:
            raise CAError(
                f"{state_path} is not valid JSON ({error.msg} at line {error.lineno})"
            ) from error
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise CAError(f"{state_path} is not a {STATE_FORMAT} file")
        if state.get("version") != STATE_VERSION:
            raise CAError(
                f"{state_path} has version {state.get('version')!r}; "
                f"this program reads version {STATE_VERSION}"
            )
        try:
            # One past the last serial means "used up", which issuing reports.
            next_serial = _parse_serial(
                _string(state, "next_serial"), maximum=profile.SERIAL_MAX + 1
            )
            ocsp_url = _string(state, "ocsp_url")
            crl_url = state.get("crl_url")
            production_dn = state.get("production_dn")
            issued_list = state.get("issued")
            if crl_url is not None and not isinstance(crl_url, str):
                raise ValueError("'crl_url' is not a string")
            if not isinstance(production_dn, bool):
                raise ValueError("'production_dn' is missing or not true/false")
            if not isinstance(issued_list, list):
                raise ValueError("'issued' is missing or not a list")
            issued = tuple(IssuedCertificate.from_json(entry) for entry in issued_list)
        except ValueError as error:
            raise CAError(f"{state_path} is corrupt: {error}") from error
        signature, authentication = (
            _load_authority(directory, kind, production_dn) for kind in CertificateKind
        )
        card_info_signer = _load_card_info_signer(directory)
        return cls(
            directory,
            signature,
            authentication,
            card_info_signer=card_info_signer,
            next_serial=next_serial,
            ocsp_url=ocsp_url,
            crl_url=crl_url,
            production_dn=production_dn,
            issued=issued,
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
        lock_path = self.directory / LOCK_FILE
        with (
            self._lock,
            open(os.open(lock_path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE), "rb") as lock,
        ):
            fcntl.flock(lock, fcntl.LOCK_EX)
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
        text = json.dumps(state, ensure_ascii=False, indent=2) + "\n"
        write_atomically(self.directory / STATE_FILE, text.encode("utf-8"), PUBLIC_FILE_MODE)

    def _write_authority(self, authority: CertificateAuthority) -> None:
        certificate_pem = authority.certificate.public_bytes(serialization.Encoding.PEM)
        write_atomically(
            self.directory / key_file(authority.kind),
            _private_pem(authority.private_key),
            PRIVATE_FILE_MODE,
        )
        write_atomically(
            self.directory / certificate_file(authority.kind), certificate_pem, PUBLIC_FILE_MODE
        )

    def _write_card_info_signer(self) -> None:
        write_atomically(
            self.directory / CARD_INFO_SIGNER_FILE,
            _private_pem(self.card_info_signer),
            PRIVATE_FILE_MODE,
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
    except (ValueError, TypeError) as error:
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
    try:
        certificate_pem = certificate_path.read_bytes()
        key_pem = key_path.read_bytes()
    except OSError as error:
        raise CAError(f"cannot read {error.filename}: {error.strerror}") from error
    try:
        certificate = x509.load_pem_x509_certificate(certificate_pem)
    except ValueError as error:
        raise CAError(f"{certificate_path} is not a PEM certificate") from error
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
