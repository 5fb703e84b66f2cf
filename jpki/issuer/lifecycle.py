"""What the municipal window does to a card over its life (lifecycle.md §1, §3): renew its
certificates, change the holder's four attributes, suspend it when it is reported lost, revoke
its certificates for good.

Each operation holds the card file's lock from start to end, changes the CA's record and the
card together, and records itself in the card's history:
  1. checks and slow work (new key pairs, images) first, while nothing has changed;
  2. one transaction of the CA's record (`TestCA.batch`) issuing and revoking, inside which the
     card file is replaced atomically; if the record then fails to commit, the card is put back
     as it was, so the card never holds a certificate the CA's record lacks, nor the reverse;
  3. an entry in the card's history (never a PIN or 照合番号 value).
Verifiers see the outcome at once: OCSP answers from the record, CRLs are made from it.

Expiry is not an operation: certificates expire by date, on the one clock (`jpki.clock`).
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime
import enum
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from card_emulator.applications.card_face import CARD_FACE
from card_emulator.applications.card_info import CARD_INFO
from card_emulator.applications.jpki import JPKI
from card_emulator.errors import CardImageError
from card_emulator.state.image import RSA_KEY_BITS, CardImage
from card_emulator.state.pin_reference import PinReference
from card_emulator.state.store import FileStore, ImageChange
from card_emulator.vocabulary.identifiers import CardFaceFile, CardInfoFile, JpkiFile
from card_emulator.vocabulary.pins import Pin
from jpki.card_face import CardFaceFormatError, parse_face
from jpki.certificates import CertificateKind
from jpki.errors import BadValueError, JpkiError
from jpki.issuer import card_face, card_info, face_images, history
from jpki.issuer.ca import IssuedCertificate, RevocationReason, TestCA
from jpki.issuer.card_contents import certificate_availability
from jpki.issuer.holder import UNKNOWN_ERA, Holder, Sex
from jpki.issuer.profile import JST, MAX_ADDRESS_LENGTH, require_aware
from jpki.issuer.provision import locked_card

CHANNEL = "window"  # every operation here is the municipal window's
RENEWAL_WINDOW_MONTHS = 3  # lifecycle.md §1: from the day after the date 3 months before expiry
SIGNATURE_CERTIFICATE_MIN_AGE = 15  # as at issuance (provision.py)
RSA_PUBLIC_EXPONENT = 65537
# How long an operation waits for another process to put the card down before refusing.
# What `revoke` takes; affiliationChanged and superseded are `change`'s and `renew`'s, and
# certificateHold is `suspend`'s.
REVOCATION_REASONS = (
    RevocationReason.KEY_COMPROMISE,
    RevocationReason.CESSATION_OF_OPERATION,
    RevocationReason.UNSPECIFIED,
)
ATTRIBUTES = ("name", "address", "birth_date", "sex")
# Card metadata written here.
# The window's marks in the card's metadata (`card_summary` shows them).
SUSPENDED = "suspended"  # since when (ISO 8601): loss reported
REVOKED = "revoked"  # {"time", "reason"}: the certificates revoked for good
RENEWED = "certificates_renewed"  # when the certificates were last renewed


class LifecycleError(JpkiError):
    """The window refuses the operation on this card (one readable line saying why)."""


class Operation(enum.Enum):
    """The window's lifecycle operations, as the card's history names them."""

    RENEW = "renew"
    CHANGE = "change"
    SUSPEND = "suspend"
    REVOKE = "revoke"


@dataclass(frozen=True)
class LifecycleResult:
    """What an operation did: certificates issued, revoked and kept, by kind ("auth", "sign")."""

    operation: Operation
    at: datetime.datetime
    issued: dict[str, int] = dataclasses.field(default_factory=dict)
    revoked: dict[str, tuple[int, RevocationReason]] = dataclasses.field(default_factory=dict)
    kept: dict[str, int] = dataclasses.field(default_factory=dict)
    changed: tuple[str, ...] = ()  # the attributes a change rewrote
    notes: tuple[str, ...] = ()
    replaced: dict[str, int] = dataclasses.field(default_factory=dict)  # old certificates

    def to_json(self) -> dict[str, Any]:
        return {
            "operation": self.operation.value,
            "at": _iso(self.at),
            "issued": {kind: _serial(serial) for kind, serial in self.issued.items()},
            "revoked": {
                kind: {"serial": _serial(serial), "reason": reason.value}
                for kind, (serial, reason) in self.revoked.items()
            },
            "kept": {kind: _serial(serial) for kind, serial in self.kept.items()},
            "replaced": {kind: _serial(serial) for kind, serial in self.replaced.items()},
            "changed": list(self.changed),
            "notes": list(self.notes),
        }

    def history_details(self) -> dict[str, str]:
        """Serials and reasons, for the card's history: no attribute values, no secrets."""
        details = {f"issued_{kind}": _serial(serial) for kind, serial in self.issued.items()}
        for kind, (serial, reason) in self.revoked.items():
            details[f"revoked_{kind}"] = f"{_serial(serial)} {reason.value}"
        details.update({f"kept_{kind}": _serial(serial) for kind, serial in self.kept.items()})
        details.update(
            {f"replaced_{kind}": _serial(serial) for kind, serial in self.replaced.items()}
        )
        if self.changed:
            details["changed"] = ",".join(self.changed)
        return details


@dataclass(frozen=True)
class _OnCard:
    """A certificate the card holds, and what the CA's record says of it."""

    kind: CertificateKind
    certificate: x509.Certificate
    entry: IssuedCertificate

    @property
    def key(self) -> str:
        return self.kind.key

    @property
    def serial(self) -> int:
        return self.certificate.serial_number

    def good(self, at: datetime.datetime) -> bool:
        """Neither revoked nor expired at `at`."""
        return self.entry.revocation is None and at <= self.certificate.not_valid_after_utc


# The JPKI AP's EFs of each kind of certificate: certificate, private key, PIN, CA certificate.
_EFS = {
    CertificateKind.AUTHENTICATION: (
        JpkiFile.AUTHENTICATION_CERTIFICATE,
        JpkiFile.AUTHENTICATION_KEY,
        Pin.AUTH,
        JpkiFile.AUTHENTICATION_CA_CERTIFICATE,
    ),
    CertificateKind.SIGNATURE: (
        JpkiFile.SIGNATURE_CERTIFICATE,
        JpkiFile.SIGNATURE_KEY,
        Pin.SIGN,
        JpkiFile.SIGNATURE_CA_CERTIFICATE,
    ),
}


# --- the operations ---------------------------------------------------------------------------


def renew(
    card: Path,
    ca: TestCA,
    *,
    at: datetime.datetime,
    force: bool = False,
    sign_pin: str | None = None,
) -> LifecycleResult:
    """Certificate renewal (lifecycle.md §1, §3): new key pairs on the card, new certificates
    from the CA's current generation in EF 000A/0001 (and its CA certificates in 000B/0002),
    the old certificates revoked `superseded` (those already revoked stay as they are).

    Refused before the renewal window opens (the day after the date 3 months before the
    certificates' expiry, Japan time) unless `force`; always allowed once a certificate is
    revoked or on hold (a card reported lost and found: this is how the window issues new
    certificates, and it lifts the suspension). Refused once the card itself has expired.
    PIN values are kept and the JPKI PINs' counters go back to their maximum. A holder under 15
    on `at` gets no signature certificate; a card that has none (issued under 15) gets one only
    with `sign_pin`, the new signature password the holder chooses.
    """
    at = _moment(at)
    with locked_card(card) as store:
        image = store.image
        holder = _holder(image)
        on_card = _certificates(image, ca)
        if not on_card:
            raise LifecycleError(
                f"{card} holds no certificates (the holder declined them): nothing to renew"
            )
        with_signature = _signature_allowed(image, holder, at, sign_pin)
        card_expiry = _card_expiry(image)
        if card_expiry is not None and _japanese_date(at) > card_expiry:
            raise LifecycleError(
                f"the card itself expired on {card_expiry.isoformat()}: a new card is issued, "
                "not new certificates"
            )
        expiry = min(held.certificate.not_valid_after_utc for held in on_card.values())
        opens = renewal_window_opens(expiry)
        # The window applies while every certificate is good; one revoked, on hold or expired:
        # new certificates are issued at once.
        early = at < opens and all(held.good(at) for held in on_card.values())
        if early and not force:
            raise LifecycleError(
                f"outside the renewal window: the certificates expire on "
                f"{_japanese_date(expiry).isoformat()} and renewal opens on "
                f"{_japanese_date(opens).isoformat()} (give --force to renew anyway)"
            )
        jpki = image.contents(JPKI.name)
        kinds = [CertificateKind.AUTHENTICATION]
        if with_signature:
            kinds.append(CertificateKind.SIGNATURE)
        keys = {kind: _generate_key() for kind in kinds}  # before the CA's record is locked
        issued: dict[str, int] = {}
        revoked: dict[str, tuple[int, RevocationReason]] = {}
        notes = []
        if holder.age_on(_japanese_date(at)) < SIGNATURE_CERTIFICATE_MIN_AGE:
            notes.append("under 15: no signature certificate, as on a real card")
        if early:
            notes.append(f"forced before the renewal window (opens {_iso(opens)})")
        suspended_since = image.metadata.get(SUSPENDED)
        if suspended_since is not None:
            notes.append(f"suspension since {suspended_since} lifted")

        def step(ca: TestCA) -> None:
            for kind in kinds:
                certificate_ef, key_ef, _pin, ca_ef = _EFS[kind]
                key = keys[kind]
                certificate = _issue(ca, kind, holder, key.public_key(), at, _card_expiry(image))
                jpki.keys[key_ef] = key
                jpki.files[certificate_ef] = _der(certificate)
                jpki.files[ca_ef] = _der(ca.authority(kind).certificate)
                issued[kind.key] = certificate.serial_number
            for held in on_card.values():
                if held.good(at):
                    ca.revoke(held.serial, RevocationReason.SUPERSEDED, when=at)
                    revoked[held.key] = (held.serial, RevocationReason.SUPERSEDED)
            if sign_pin is not None:
                jpki.pins[Pin.SIGN.fid] = _new_reference(image, Pin.SIGN, sign_pin)
            jpki.files[JpkiFile.CERTIFICATE_AVAILABILITY] = certificate_availability(
                signature=JpkiFile.SIGNATURE_CERTIFICATE in jpki.files, authentication=True
            )
            for pin in (Pin.AUTH, Pin.SIGN):
                reference = jpki.pins.get(pin.fid)
                if reference is not None:
                    reference.tries_left = image.settings.max_tries(pin.rule)
            image.metadata.pop(SUSPENDED, None)
            image.metadata.pop(REVOKED, None)
            image.metadata[RENEWED] = _iso(at)

        _apply(store, ca, step, ImageChange.CERTIFICATES)
        replaced = {held.key: held.serial for held in on_card.values()}
        result = LifecycleResult(
            Operation.RENEW, at, issued, revoked, notes=tuple(notes), replaced=replaced
        )
        _record(card, result, forced=early, suspended_since=suspended_since)
    return result


def change(
    card: Path,
    ca: TestCA,
    *,
    at: datetime.datetime,
    name: str | None = None,
    address: str | None = None,
    birth_date: datetime.date | None = None,
    sex: Sex | str | None = None,
    reissue_sign: bool = False,
) -> LifecycleResult:
    """A change of the four attributes (a move, a marriage; lifecycle.md §3): the signature
    certificate revoked `affiliationChanged` and, with `reissue_sign`, a new one issued for the
    new attributes on a new key; the card-info AP's EF 0002/0003 and the card-face AP's EF
    0001/0002 rewritten and signed again (the images drawn anew, the photo kept); the
    authentication certificate kept. A new birth date gives a new birth-date key and 照合番号B
    (both APs), their counters at the maximum. Refused on a suspended card (renew it first)."""
    at = _moment(at)
    with locked_card(card) as store:
        image = store.image
        _refuse_if_suspended(image, "changed")
        if image.metadata.get("forged"):
            raise LifecycleError("a forged card is not changed at the window")
        holder = _holder(image)
        new_holder, changed = _changed_holder(holder, name, address, birth_date, sex, at)
        on_card = _certificates(image, ca)
        jpki = image.contents(JPKI.name)
        if reissue_sign and not _signature_allowed(image, new_holder, at, None):
            raise LifecycleError(
                "no signature certificate can be issued on this card (a holder under 15 "
                "at issuance has no signature password; renew with a new one)"
            )
        # Everything slow, before the CA's record is locked.
        sign_key = _generate_key() if reissue_sign else None
        files = _attribute_files(image, ca, new_holder)
        birth_date_changed = "birth_date" in changed
        issued: dict[str, int] = {}
        revoked: dict[str, tuple[int, RevocationReason]] = {}
        kept = {
            held.key: held.serial
            for held in on_card.values()
            if held.kind is CertificateKind.AUTHENTICATION
        }
        signature = on_card.get(CertificateKind.SIGNATURE)

        def step(ca: TestCA) -> None:
            if signature is not None and signature.good(at):
                ca.revoke(signature.serial, RevocationReason.AFFILIATION_CHANGED, when=at)
                revoked[signature.key] = (signature.serial, RevocationReason.AFFILIATION_CHANGED)
            if sign_key is not None:
                certificate = _issue(
                    ca,
                    CertificateKind.SIGNATURE,
                    new_holder,
                    sign_key.public_key(),
                    at,
                    _card_expiry(image),
                )
                jpki.keys[JpkiFile.SIGNATURE_KEY] = sign_key
                jpki.files[JpkiFile.SIGNATURE_CERTIFICATE] = _der(certificate)
                jpki.files[JpkiFile.SIGNATURE_CA_CERTIFICATE] = _der(ca.signature.certificate)
                jpki.files[JpkiFile.CERTIFICATE_AVAILABILITY] = certificate_availability(
                    signature=True,
                    authentication=JpkiFile.AUTHENTICATION_CERTIFICATE in jpki.files,
                )
                issued[CertificateKind.SIGNATURE.key] = certificate.serial_number
            for application, fid, data in files:
                image.contents(application).files[fid] = data
            if birth_date_changed:
                _rekey_birth_date(image, new_holder)
            image.metadata["holder"] = new_holder.to_json()

        carries = ImageChange.OTHER  # what the write carries, for an injected power cut
        if birth_date_changed:
            carries = ImageChange.PIN  # a new birth-date key
        if sign_key is not None:
            carries = ImageChange.CERTIFICATES
        _apply(store, ca, step, carries)
        notes = () if signature is not None or sign_key else ("no signature certificate",)
        result = LifecycleResult(
            Operation.CHANGE, at, issued, revoked, kept, changed=changed, notes=notes
        )
        _record(card, result)
    return result


def suspend(card: Path, ca: TestCA, *, at: datetime.datetime) -> LifecycleResult:
    """A loss reported (lifecycle.md §3): the card's certificates put on hold
    (`certificateHold`, never released) and the card marked suspended since `at`."""
    at = _moment(at)
    with locked_card(card) as store:
        image = store.image
        since = image.metadata.get(SUSPENDED)
        if since is not None:
            raise LifecycleError(f"this card is already suspended (loss reported {since})")
        on_card = _certificates(image, ca)
        revoked: dict[str, tuple[int, RevocationReason]] = {}

        def step(ca: TestCA) -> None:
            for held in on_card.values():
                if held.good(at):
                    ca.revoke(held.serial, RevocationReason.CERTIFICATE_HOLD, when=at)
                    revoked[held.key] = (held.serial, RevocationReason.CERTIFICATE_HOLD)
            image.metadata[SUSPENDED] = _iso(at)

        _apply(store, ca, step, ImageChange.OTHER)
        notes = () if revoked else ("no certificate left to put on hold",)
        result = LifecycleResult(Operation.SUSPEND, at, revoked=revoked, notes=notes)
        _record(card, result)
    return result


def revoke(
    card: Path, ca: TestCA, *, at: datetime.datetime, reason: RevocationReason | str
) -> LifecycleResult:
    """Revocation for good of the card's certificates that are not revoked yet (lifecycle.md
    §3): `keyCompromise`, `cessationOfOperation` (the holder no longer wants them; death) or
    `unspecified` (destroyed before delivery). Refused when none is left to revoke."""
    at = _moment(at)
    chosen = _revocation_reason(reason)
    with locked_card(card) as store:
        image = store.image
        on_card = _certificates(image, ca)
        live = [held for held in on_card.values() if held.good(at)]
        if not live:
            gone = "; ".join(_describe_revoked(held) for held in on_card.values())
            raise LifecycleError(
                f"nothing to revoke: {gone}" if gone else f"{card} holds no certificates"
            )
        revoked: dict[str, tuple[int, RevocationReason]] = {}

        def step(ca: TestCA) -> None:
            for held in live:
                ca.revoke(held.serial, chosen, when=at)
                revoked[held.key] = (held.serial, chosen)
            image.metadata[REVOKED] = {"time": _iso(at), "reason": chosen.value}

        _apply(store, ca, step, ImageChange.OTHER)
        result = LifecycleResult(Operation.REVOKE, at, revoked=revoked)
        _record(card, result, reason=chosen.value)
    return result


# --- rules ------------------------------------------------------------------------------------


def renewal_window_opens(expiry: datetime.datetime) -> datetime.datetime:
    """When renewal of certificates expiring at `expiry` opens: 00:00 Japan time on the day
    after the date 3 months before the expiry date (a day missing in that month: its last)."""
    day = _japanese_date(require_aware(expiry))
    month = day.month - RENEWAL_WINDOW_MONTHS
    year = day.year + (month - 1) // 12
    month = (month - 1) % 12 + 1
    earlier = day.replace(year=year, month=month, day=min(day.day, _days_in(year, month)))
    opens = earlier + datetime.timedelta(days=1)
    return datetime.datetime.combine(opens, datetime.time(0, tzinfo=JST))


# --- helpers ----------------------------------------------------------------------------------


def _apply(
    store: FileStore, ca: TestCA, step: Callable[[TestCA], None], change: ImageChange
) -> None:
    """Run `step(ca)` and write the card (carrying `change`) inside one transaction of the
    CA's record: if the record cannot commit, the card file is put back as it was."""
    before = store.image.dumps()
    card_written = False
    try:
        with ca.batch():
            step(ca)
            store.commit(change)
            card_written = True
    except BaseException:
        if card_written:
            store.image = CardImage.loads(before)
            store.commit(change)
        raise


def _record(card: Path, result: LifecycleResult, **extra: object) -> None:
    details = result.history_details()
    for name, value in extra.items():
        if value:
            details[name] = "true" if value is True else str(value)
    history.record(
        Path(card), result.operation.value, CHANNEL, at=result.at, target=None, details=details
    )


def _moment(at: datetime.datetime) -> datetime.datetime:
    try:
        return require_aware(at)
    except ValueError as error:
        raise BadValueError(str(error)) from None


def _holder(image: CardImage) -> Holder:
    data = image.metadata.get("holder")
    if not isinstance(data, dict):
        raise CardImageError("this card records no holder (made by an older jpki?)")
    try:
        return Holder.from_json(data)
    except (KeyError, TypeError, ValueError) as error:
        raise CardImageError(f"metadata.holder: {error}") from None


def _card_expiry(image: CardImage) -> datetime.date | None:
    text = image.metadata.get("card_expiry")
    return datetime.date.fromisoformat(text) if isinstance(text, str) else None


def _certificates(image: CardImage, ca: TestCA) -> dict[CertificateKind, _OnCard]:
    """The card's auth and sign certificates, each with the CA's record of it."""
    found = {}
    jpki = image.contents(JPKI.name)
    for kind, (certificate_ef, _key, _pin, _ca) in _EFS.items():
        der = jpki.files.get(certificate_ef)
        if der is None:
            continue
        certificate = x509.load_der_x509_certificate(der)
        entry = ca.find_issued(certificate.serial_number)
        if entry is None or entry.kind is not kind:
            raise LifecycleError(
                f"the card's {kind.key} certificate {_serial(certificate.serial_number)} was "
                "not issued by this test CA"
            )
        found[kind] = _OnCard(kind, certificate, entry)
    return found


def _signature_allowed(
    image: CardImage, holder: Holder, at: datetime.datetime, sign_pin: str | None
) -> bool:
    """Whether the card gets a signature certificate now: the holder is 15 or more, and the
    card has a signature password (or `sign_pin` gives it one)."""
    old_enough = holder.age_on(_japanese_date(at)) >= SIGNATURE_CERTIFICATE_MIN_AGE
    has_password = Pin.SIGN.fid in image.contents(JPKI.name).pins
    if sign_pin is not None:
        if has_password:
            raise LifecycleError("the card has a signature password, which renewal keeps")
        if not old_enough:
            raise LifecycleError("a holder under 15 gets no signature password or certificate")
        refusal = Pin.SIGN.refusal(sign_pin)
        if refusal is not None:
            raise BadValueError(refusal)
        return True
    return old_enough and has_password


def _changed_holder(
    holder: Holder,
    name: str | None,
    address: str | None,
    birth_date: datetime.date | None,
    sex: Sex | str | None,
    at: datetime.datetime,
) -> tuple[Holder, tuple[str, ...]]:
    """The holder with the new attributes, and the names of those that differ."""
    values: dict[str, Any] = {}
    if name is not None:
        values["name"] = name
    if address is not None:
        if len(address) > MAX_ADDRESS_LENGTH:
            raise BadValueError(f"the address is longer than {MAX_ADDRESS_LENGTH} characters")
        values["address"] = address
    if sex is not None:
        try:
            values["sex"] = Sex(sex)
        except ValueError:
            raise BadValueError(
                f"sex is one of {', '.join(s.value for s in Sex)}, not {sex!r}"
            ) from None
    if birth_date is not None:
        if birth_date > _japanese_date(at):
            raise BadValueError(f"the birth date {birth_date.isoformat()} is after {_iso(at)}")
        values["birth_date"] = birth_date
        if birth_date != holder.birth_date and holder.birth_era != UNKNOWN_ERA:
            values["birth_era"] = None  # the era follows the new date
    changed = tuple(
        attribute
        for attribute in ATTRIBUTES
        if attribute in values and values[attribute] != getattr(holder, attribute)
    )
    if not changed:
        raise BadValueError(
            "nothing to change: give --name, --address, --birth-date or --sex with a new value"
        )
    try:
        new_holder = dataclasses.replace(holder, **values)
        card_info.birth_date_key(new_holder)  # a date its era cannot express
    except ValueError as error:
        raise BadValueError(str(error)) from None
    return new_holder, changed


def _attribute_files(image: CardImage, ca: TestCA, holder: Holder) -> list[tuple[str, int, bytes]]:
    """The card-info and card-face EFs that carry the four attributes, made anew for `holder`:
    (application, EF, content)."""
    card_info_files = image.contents(CARD_INFO.name).files
    my_number = card_info_files.get(CardInfoFile.MY_NUMBER)
    face_files = image.contents(CARD_FACE.name).files
    face_ef = face_files.get(CardFaceFile.FACE)
    card_expiry = _card_expiry(image)
    security_code = image.metadata.get("security_code")
    if my_number is None or face_ef is None or card_expiry is None or security_code is None:
        raise CardImageError("this card has no card-info or card-face AP (made by an older jpki?)")
    try:
        face = parse_face(face_ef)
    except CardFaceFormatError as error:
        raise CardImageError(f"card-face EF 0002: {error}") from None
    attributes = card_info.basic_attributes_record(
        holder, long_header=image.metadata.get("attributes_header") == "long"
    )
    signer = ca.card_info_signer
    card_key = image.contents(CARD_FACE.name).keys[CardFaceFile.CARD_KEY].public_key()
    face_record = card_face.face_record(
        holder,
        card_key=card_key,
        signer=signer,
        card_expiry=card_expiry,
        name_png=face_images.name_image(holder.name),
        address_png=face_images.address_image(holder.address),
        photo_jp2=face.photo_jp2,
        security_code_png=face.security_code_png,
    )
    return [
        (CARD_INFO.name, CardInfoFile.BASIC_ATTRIBUTES, attributes),
        (
            CARD_INFO.name,
            CardInfoFile.INTEGRITY_RECORD,
            card_info.integrity_record(my_number, attributes, signer),
        ),
        (
            CARD_FACE.name,
            CardFaceFile.AGE_RECORD,
            card_face.age_record(holder.birth_date, card_key, signer),
        ),
        (CARD_FACE.name, CardFaceFile.FACE, face_record),
    ]


def _rekey_birth_date(image: CardImage, holder: Holder) -> None:
    """The birth-date key and 照合番号B made from a new birth date, counters at the maximum."""
    card_expiry = _card_expiry(image)
    assert card_expiry is not None  # _attribute_files checked it
    collation_b = card_info.collation_number_b(
        holder, card_expiry.year, str(image.metadata["security_code"])
    )
    for pin, value in (
        (Pin.BIRTH_DATE, card_info.birth_date_key(holder)),
        (Pin.FACE_B, collation_b),
        (Pin.CARD_INFO_B, collation_b),
    ):
        contents = image.contents(CARD_FACE.name if pin is not Pin.CARD_INFO_B else CARD_INFO.name)
        contents.pins[pin.fid] = _new_reference(image, pin, value)


def _new_reference(image: CardImage, pin: Pin, value: str) -> PinReference:
    return PinReference.create(value.encode(), image.settings.max_tries(pin.rule))


def _refuse_if_suspended(image: CardImage, what: str) -> None:
    since = image.metadata.get(SUSPENDED)
    if since is not None:
        raise LifecycleError(
            f"this card is suspended (loss reported {since}): it is not {what} until its "
            "certificates are renewed (`jpki card renew`)"
        )


def _revocation_reason(reason: RevocationReason | str) -> RevocationReason:
    try:
        chosen = RevocationReason(reason)
    except ValueError:
        chosen = None
    if chosen not in REVOCATION_REASONS:
        others = {
            RevocationReason.SUPERSEDED: "renewal gives it (jpki card renew)",
            RevocationReason.AFFILIATION_CHANGED: "a change gives it (jpki card change)",
            RevocationReason.CERTIFICATE_HOLD: "a loss gives it (jpki card suspend)",
        }
        hint = others.get(chosen) if chosen is not None else None
        allowed = ", ".join(r.value for r in REVOCATION_REASONS)
        raise BadValueError(
            f"the reason is one of {allowed}, not {getattr(reason, 'value', reason)!r}"
            + (f" ({hint})" if hint else "")
        )
    return chosen


def _describe_revoked(held: _OnCard) -> str:
    """Why a certificate is no longer good: revoked (when, why), or expired."""
    revocation = held.entry.revocation
    if revocation is None:
        return (
            f"{held.key} certificate {_serial(held.serial)} expired on "
            f"{held.certificate.not_valid_after_utc.isoformat()}"
        )
    return (
        f"{held.key} certificate {_serial(held.serial)} revoked {revocation.reason.value} "
        f"on {revocation.time.isoformat()}"
    )


def _issue(
    ca: TestCA,
    kind: CertificateKind,
    holder: Holder,
    public_key: rsa.RSAPublicKey,
    at: datetime.datetime,
    card_expiry: datetime.date | None,
) -> x509.Certificate:
    """A new certificate, ending by the card's expiry at the latest."""
    if kind is CertificateKind.SIGNATURE:
        return ca.issue_signature_certificate(holder, public_key, now=at, card_expiry=card_expiry)
    return ca.issue_authentication_certificate(holder, public_key, now=at, card_expiry=card_expiry)


def _generate_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(RSA_PUBLIC_EXPONENT, RSA_KEY_BITS)


def _der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


def _japanese_date(moment: datetime.datetime) -> datetime.date:
    return moment.astimezone(JST).date()


def _days_in(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


def _iso(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).isoformat(timespec="seconds")


def _serial(serial: int) -> str:
    return f"{serial:X}"
