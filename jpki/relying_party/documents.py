"""Signed documents as a relying party checks them: the CMS signature, its signing time, then its
signer's certificate as of a time — now, a time asked for, or the signing time itself.

The signing time comes from an RFC 3161 timestamp when the signature carries one (checked against
the pinned time-stamping authorities), else from the CMS signingTime attribute, which is only the
signer's claim. A certificate revoked or expired *after* that time leaves a signature that was
valid when it was made (lifecycle.md §4, "valid at signing time"): `verify_document` then raises
`RevokedOrExpired` holding the document as verified at the signing time, and with
`at=SIGNING_TIME` it returns it. A revocation that puts the key itself in doubt (keyCompromise,
a hold, ...) never yields a valid result: the times are reported and the judgement is the
relying party's.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509

from jpki import clock, cms
from jpki.certificates import CertificateKind
from jpki.relying_party.revocation import (
    RevocationCheckError,
    RevocationStatus,
    check_crl,
    check_ocsp,
)
from jpki.relying_party.timestamps import verify_timestamp
from jpki.relying_party.verify import (
    NO_REVOCATION_CHECK,
    Revocation,
    TrustStore,
    VerificationError,
    VerifiedCertificate,
    verify_certificate,
)

# Revocations after which a signature made before them stays good evidence: the key itself was
# never in doubt (renewal, changed attributes, no longer needed).
KEY_KEPT_SAFE = frozenset({"superseded", "affiliationChanged", "cessationOfOperation"})
# Why the others leave a signature made before them in doubt, by RFC 5280 reason name.
DOUBTS = {
    "keyCompromise": "the key was reported compromised",
    "cACompromise": "the CA's key was reported compromised",
    "aACompromise": "the attribute authority's key was reported compromised",
    "certificateHold": "the certificate was put on hold (the card reported lost)",
}
TIME_FORMAT = "%Y-%m-%d %H:%M:%SZ"


class AsOf(enum.Enum):
    """A moment to validate at that is not a clock time."""

    SIGNING_TIME = "signing-time"


SIGNING_TIME = AsOf.SIGNING_TIME


def format_time(moment: datetime.datetime) -> str:
    """A time as messages show it: UTC, to the second."""
    return moment.astimezone(datetime.UTC).strftime(TIME_FORMAT)


class EventKind(enum.StrEnum):
    """What ended a certificate; the value is the VerificationError reason it gives."""

    REVOKED = "revoked"
    EXPIRED = "expired"


EXPIRED = EventKind.EXPIRED
REVOKED = EventKind.REVOKED


class SigningTimeSource(enum.StrEnum):
    SIGNER = "signer"  # the CMS signingTime signed attribute: what the signer claims
    TIMESTAMP = "timestamp"  # an RFC 3161 timestamp of a pinned time-stamping authority


@dataclass(frozen=True)
class SigningTime:
    time: datetime.datetime
    source: SigningTimeSource
    authority: str | None = None  # the time-stamping authority, for a timestamp

    @property
    def description(self) -> str:
        """Where the time comes from, as a reader needs to weigh it."""
        if self.source is SigningTimeSource.TIMESTAMP:
            return f"timestamp by {self.authority}"
        return "claimed by the signer"

    def __str__(self) -> str:
        return f"{format_time(self.time)} ({self.description})"


@dataclass(frozen=True)
class CertificateEvent:
    """What ended the signer's certificate: a revocation (with its RFC 5280 reason) or the end
    of its validity, or of its issuing CA's."""

    kind: EventKind
    time: datetime.datetime
    reason: str | None = None  # of a revocation
    of_issuer: bool = False

    @property
    def key_in_doubt(self) -> bool:
        """Whether a signature made before it is in doubt too (not for renewal and the like)."""
        return self.kind == REVOKED and self.reason not in KEY_KEPT_SAFE

    @property
    def doubt(self) -> str:
        """Why the key is in doubt, in words."""
        return DOUBTS.get(
            self.reason or "", f"the revocation ({self.reason}) does not say the key stayed safe"
        )

    @property
    def description(self) -> str:
        """e.g. "certificate was revoked on 2031-04-02 03:00:00Z (superseded)"."""
        when = format_time(self.time)
        if self.kind == EXPIRED:
            what = "the issuing CA certificate" if self.of_issuer else "certificate"
            return f"{what} expired on {when}"
        return f"certificate was revoked on {when} ({self.reason})"


@dataclass(frozen=True)
class VerifiedDocument:
    """A signature valid `as_of` a moment: now, a time asked for, or the signing time.

    `event` is what befell the certificate after that moment (before now), if anything.
    """

    signer: VerifiedCertificate
    signing_time: SigningTime | None
    as_of: datetime.datetime
    at_signing_time: bool = False
    event: CertificateEvent | None = None


class RevokedOrExpired(VerificationError):
    """The signer's certificate is revoked or expired as of the moment asked (reason "revoked"
    or "expired"). `event` says when and why, `signing_time` when the signature was made.

    When the signature was valid at its signing time and `event` does not put the key in doubt,
    `document` is the signature as verified at the signing time and `valid_at_signing_time` is
    true; otherwise `document` is None.
    """

    def __init__(
        self,
        message: str,
        event: CertificateEvent,
        signing_time: SigningTime | None,
        document: VerifiedDocument | None = None,
    ) -> None:
        super().__init__(event.kind, message)
        self.event = event
        self.signing_time = signing_time
        self.document = document

    @property
    def valid_at_signing_time(self) -> bool:
        return self.document is not None


def verify_document(
    data: bytes | None,
    signature: bytes,
    trust: TrustStore,
    *,
    purpose: CertificateKind = CertificateKind.SIGNATURE,
    at: datetime.datetime | AsOf | None = None,
    revocation: Revocation = NO_REVOCATION_CHECK,
    timestamp_authorities: Sequence[x509.Certificate] = (),
) -> VerifiedDocument:
    """The signature, its timestamps, then its signer's certificate as of `at` (default now;
    SIGNING_TIME: as of the signing time). Revocation is asked of the CRL or OCSP responder now
    and judged by its revocation time.

    Raises VerificationError saying what failed; RevokedOrExpired when the certificate is
    revoked or expired as of `at` (its `document` is set when the signature was valid at its
    signing time); reason "bad-timestamp" or "untrusted-timestamp" for a timestamp that does
    not verify or whose TSA is not in `timestamp_authorities`.
    """
    now = clock.now()
    try:
        document = cms.verify_signed_data(signature, data)
    except cms.CmsError as error:
        raise VerificationError("bad-signature", str(error)) from None
    signing = _signing_time(document, timestamp_authorities)
    if at is SIGNING_TIME:
        if signing is None:
            raise VerificationError(
                "no-signing-time",
                "the signature has no signing time to validate at (no signingTime, no timestamp)",
            )
        as_of = signing.time
    else:
        as_of = now if at is None else at
    certificate = document.certificate

    # 1. Chain, validity and purpose as of `as_of`; expired by then, as of the signing time.
    expired = None
    try:
        signer = verify_certificate(certificate, purpose, trust, at=as_of)
    except VerificationError as error:
        if error.reason != EXPIRED:
            raise
        expired = _expiry(certificate, trust.issuer_of(certificate), as_of)
        when_signed = None
        if signing is not None and signing.time <= expired.time:
            when_signed = _verified_at(certificate, purpose, trust, signing.time)
        if when_signed is None:
            raise RevokedOrExpired(str(error), expired, signing) from None
        signer = when_signed

    # 2. Revocation, as the CRL or OCSP responder tells it now, judged by its time.
    status = _revocation_status(signer, revocation, max(now, as_of))
    if status is not None:
        signer = dataclasses.replace(signer, revocation_checked=str(status.source))
    revoked = None if status is None else _revocation_event(status)
    if revoked is not None:
        _check_revocation(revoked, signing, as_of)

    # 3. Valid as of `as_of`, or only when it was signed.
    ended = [e for e in (revoked, expired) if e is not None and e.time <= as_of]
    if ended:
        event = min(ended, key=_event_time)
        # expired: step 1 verified the certificate at the signing time; revoked: verify it now
        then = signer if expired is not None else None
        if then is None and signing is not None:
            then = _verified_at(certificate, purpose, trust, signing.time)
        if then is None or signing is None:
            raise RevokedOrExpired(event.description, event, signing)
        valid_then = VerifiedDocument(
            dataclasses.replace(then, revocation_checked=signer.revocation_checked),
            signing,
            signing.time,
            at_signing_time=True,
            event=event,
        )
        moment = f"as of {format_time(as_of)}" if at is not None else "now"
        raise RevokedOrExpired(
            f"valid at signing time {signing}, not {moment}: {event.description}",
            event,
            signing,
            valid_then,
        )
    later = [e for e in (revoked, *_expiries(signer, as_of, now)) if e is not None]
    return VerifiedDocument(
        signer,
        signing,
        as_of,
        at_signing_time=at is SIGNING_TIME,
        event=min(later, key=_event_time) if later else None,
    )


def _signing_time(
    document: cms.SignedDocument, authorities: Sequence[x509.Certificate]
) -> SigningTime | None:
    """The earliest timestamp's time (every token must verify), else the signer's claim."""
    if document.timestamp_tokens:
        stamps = [
            verify_timestamp(token, document.signature, authorities)
            for token in document.timestamp_tokens
        ]
        earliest = min(stamps, key=lambda stamp: stamp.time)
        return SigningTime(earliest.time, SigningTimeSource.TIMESTAMP, earliest.authority)
    if document.signing_time is not None:
        return SigningTime(document.signing_time, SigningTimeSource.SIGNER)
    return None


def _verified_at(
    certificate: x509.Certificate,
    purpose: CertificateKind,
    trust: TrustStore,
    moment: datetime.datetime,
) -> VerifiedCertificate | None:
    try:
        return verify_certificate(certificate, purpose, trust, at=moment)
    except VerificationError:
        return None


def _expiry(
    certificate: x509.Certificate, issuer: x509.Certificate | None, moment: datetime.datetime
) -> CertificateEvent:
    """The first end of validity, of the certificate or its issuing CA, before `moment`."""
    ends = [CertificateEvent(EXPIRED, certificate.not_valid_after_utc)]
    if issuer is not None:
        ends.append(CertificateEvent(EXPIRED, issuer.not_valid_after_utc, of_issuer=True))
    passed = [end for end in ends if end.time < moment]
    return min(passed or ends, key=_event_time)


def _expiries(
    signer: VerifiedCertificate, since: datetime.datetime, until: datetime.datetime
) -> list[CertificateEvent]:
    ends = [
        CertificateEvent(EXPIRED, signer.certificate.not_valid_after_utc),
        CertificateEvent(EXPIRED, signer.issuer.not_valid_after_utc, of_issuer=True),
    ]
    return [end for end in ends if since <= end.time < until]


def _event_time(event: CertificateEvent) -> datetime.datetime:
    return event.time


def _revocation_status(
    signer: VerifiedCertificate, revocation: Revocation, at: datetime.datetime
) -> RevocationStatus | None:
    """The status from the CRL or OCSP responder (verified, fresh at `at`), or None unchecked."""
    try:
        if revocation.crl is not None:
            return check_crl(signer.certificate, signer.issuer, revocation.crl, at=at)
        if revocation.ocsp_url is not None:
            return check_ocsp(signer.certificate, signer.issuer, revocation.ocsp_url, at=at)
    except RevocationCheckError as error:
        raise VerificationError("revocation-unknown", f"revocation check failed: {error}") from None
    return None


def _revocation_event(status: RevocationStatus) -> CertificateEvent | None:
    if not status.revoked:
        return None
    if status.revocation_time is None:
        # without its time, a revocation cannot be placed after anything
        raise VerificationError(REVOKED, f"certificate was revoked ({status.reason})")
    return CertificateEvent(REVOKED, status.revocation_time, status.reason)


def _check_revocation(
    revoked: CertificateEvent, signing: SigningTime | None, as_of: datetime.datetime
) -> None:
    """Raise unless the revocation came after the signature, for a reason that leaves the key
    above doubt (or after `as_of`, for a signature without a signing time)."""
    if signing is not None and revoked.time <= signing.time:
        # both are whole seconds: the same second cannot be ordered, so it counts as before
        relation = "before" if revoked.time < signing.time else "at"
        raise RevokedOrExpired(
            f"{revoked.description}, {relation} the signing time {signing}", revoked, signing
        )
    if signing is None and revoked.time <= as_of:
        raise RevokedOrExpired(revoked.description, revoked, signing)
    if revoked.key_in_doubt:
        after = f"the signing time {signing}" if signing else format_time(as_of)
        raise RevokedOrExpired(
            f"{revoked.description}, after {after}, but {revoked.doubt}: whether the signature "
            "was made before that is the relying party's judgement",
            revoked,
            signing,
        )
