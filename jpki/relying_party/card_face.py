"""Checking a My Number card's face: the verifier's half (/work/shared/spec/jpki-card.md §5).

A terminal reads the card issuer's CVC (MF GET DATA 7F21), the card-face AP's CVC (EF 0004) and
face record (EF 0002), has the card key sign a challenge, and `check_card_face` checks:
(1) the CVC chain: 7F21 signed by the pinned root and naming it, EF 0004 signed by 7F21's key
and naming it; (2) the face record's signature (DF28) under EF 0004's key; (3) the challenge
signature under the card key inside that face record (DF24). A copied chip passes (1) and (2)
and fails (3). Step (4), comparing the birth date, expiry and images with the printed card,
is the caller's: `FaceCheck.face` holds them. Every step is checked and reported, so that the
outcome says all that is wrong, not only the first thing.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from jpki.card_face import CardFaceFormatError, Face, face_signature_valid, parse_face
from jpki.cvc import CardVerifiableCertificate, CvcError


@dataclass(frozen=True)
class StepOutcome:
    """One step of the check: whether it passed, and why, in words."""

    passed: bool
    reason: str


@dataclass(frozen=True)
class FaceCheck:
    """The outcome of the three steps, and the face record for the fourth."""

    chain: StepOutcome  # (1) the CVCs in MF 7F21 and EF 0004 chain to the pinned root
    face_signature: StepOutcome  # (2) EF 0002 is signed by the key EF 0004 certifies
    chip: StepOutcome  # (3) the chip holds the key in its face record
    face: Face | None  # the parsed EF 0002, None when it could not be read

    @property
    def steps(self) -> tuple[StepOutcome, StepOutcome, StepOutcome]:
        return (self.chain, self.face_signature, self.chip)

    @property
    def ok(self) -> bool:
        return all(step.passed for step in self.steps)

    @property
    def failures(self) -> list[str]:
        return [step.reason for step in self.steps if not step.passed]


def _parse_cvc(data: bytes, where: str) -> CardVerifiableCertificate | str:
    try:
        return CardVerifiableCertificate.parse(data)
    except CvcError as error:
        return f"{where} is not a card-verifiable certificate: {error}"


def _signed(
    certificate: CardVerifiableCertificate, issuer: CardVerifiableCertificate, where: str
) -> str | None:
    """Why `certificate` (read from `where`) is not issued by `issuer`, or None."""
    if certificate.issuer != issuer.subject:
        return (
            f"the card-verifiable certificate in {where} names {certificate.issuer} as its "
            f"issuer, not {issuer.subject}"
        )
    if not certificate.signed_by(issuer.public_key):
        return f"the card-verifiable certificate in {where} is not signed by {issuer.subject}"
    return None


def _check_chain(
    root: CardVerifiableCertificate,
    issuer: CardVerifiableCertificate | str,
    ap: CardVerifiableCertificate | str,
) -> StepOutcome:
    if isinstance(issuer, str):
        return StepOutcome(False, issuer)
    problem = _signed(issuer, root, "MF 7F21")
    if problem is not None:
        return StepOutcome(False, problem)
    if isinstance(ap, str):
        return StepOutcome(False, ap)
    problem = _signed(ap, issuer, "EF 0004")
    if problem is not None:
        return StepOutcome(False, problem)
    return StepOutcome(
        True,
        f"EF 0004 certifies {ap.subject}, issued by {issuer.subject}, "
        f"issued by the pinned root {root.subject}",
    )


CHIP_SIGNED = "the chip signed the challenge with the key in its face record"
CHIP_NOT_SIGNED = (
    "the chip did not sign the challenge with the key in its face record (copied chip?)"
)


def _check_face_signature(record: Face | str, ap: CardVerifiableCertificate | str) -> StepOutcome:
    if isinstance(record, str):
        return StepOutcome(False, record)
    if isinstance(ap, str):
        return StepOutcome(False, f"the card-face signature was not checked: {ap}")
    if not face_signature_valid(record, ap.public_key):
        return StepOutcome(False, "the card-face signature does not verify")
    return StepOutcome(True, f"the card-face signature verifies under {ap.subject}")


def _check_chip(record: Face | str, challenge: bytes, signature: bytes) -> StepOutcome:
    if isinstance(record, str):
        return StepOutcome(False, f"the chip was not checked: {record}")
    try:
        record.card_key.verify(signature, challenge, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return StepOutcome(False, CHIP_NOT_SIGNED)
    return StepOutcome(True, CHIP_SIGNED)


def check_card_face(
    *,
    root: CardVerifiableCertificate,
    issuer_cvc: bytes,
    ap_cvc: bytes,
    face: bytes,
    challenge: bytes,
    challenge_signature: bytes,
) -> FaceCheck:
    """Check a card's face record against the pinned root CVC `root` (the CA's published file,
    never one read off the card). `issuer_cvc` is MF GET DATA 7F21, `ap_cvc` the card-face AP's
    EF 0004, `face` its EF 0002, and `challenge_signature` the card key's answer to
    `80 2A 00 00` with the SHA-256 DigestInfo of `challenge` (sha256WithRSAEncryption)."""
    issuer = _parse_cvc(issuer_cvc, "MF 7F21")
    ap = _parse_cvc(ap_cvc, "EF 0004")
    record: Face | str
    try:
        record = parse_face(face)
    except CardFaceFormatError as error:
        record = f"EF 0002 is not a card-face record: {error}"
    return FaceCheck(
        chain=_check_chain(root, issuer, ap),
        face_signature=_check_face_signature(record, ap),
        chip=_check_chip(record, challenge, challenge_signature),
        face=None if isinstance(record, str) else record,
    )
