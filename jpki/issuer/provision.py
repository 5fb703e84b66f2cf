"""Issuing a card: keys, certificates from the test CA, PINs, and the card image that holds them."""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from card_emulator.applications.card_face import CARD_FACE
from card_emulator.applications.card_info import CARD_INFO
from card_emulator.applications.card_level import CARD_LEVEL
from card_emulator.applications.jpki import JPKI
from card_emulator.applications.registry import APPLICATIONS
from card_emulator.applications.resident_registry import COMMON, RESIDENT_REGISTRY
from card_emulator.errors import CardFileError
from card_emulator.state.administrator import AdministratorKey
from card_emulator.state.image import RSA_KEY_BITS, ApplicationContents, CardImage, CardSettings
from card_emulator.state.pin_reference import DEFAULT_ITERATIONS, PinReference
from card_emulator.state.store import FileStore
from card_emulator.vocabulary.identifiers import CardFaceFile, CardInfoFile, CommonFile, JpkiFile
from card_emulator.vocabulary.keys import Certificate
from card_emulator.vocabulary.pins import Pin
from jpki import certificates, clock
from jpki.errors import BadValueError
from jpki.issuer import card_face, card_info, card_level, face_images
from jpki.issuer.ca import TestCA
from jpki.issuer.card_contents import DEFAULT_TOKEN_LABEL, certificate_availability, token_info
from jpki.issuer.holder import Holder

SIGNATURE_CERTIFICATE_MIN_AGE = 15  # younger holders get no signature certificate
RSA_PUBLIC_EXPONENT = 65537
CARD_LOCK_WAIT_SECONDS = 60.0  # how long an administrative change waits for a card in use
FORGERIES = ("face-signature", "cvc")  # chips that a card-face check must refuse
ATTRIBUTES_HEADERS = ("short", "long")  # FF 20 LL (the spec's default) or FF 20 82 HH LL


class ProvisioningError(BadValueError):
    """The card cannot be issued as asked; the message is one readable line."""


def check_pin(pin: Pin, value: str) -> None:
    """Refuse a PIN value the card would not accept for this PIN."""
    refusal = pin.refusal(value)
    if refusal is not None:
        raise ProvisioningError(refusal)


def _der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


def provision_card(
    ca: TestCA,
    holder: Holder,
    auth_pin: str,
    sign_pin: str | None,
    *,
    now: datetime.datetime | None = None,
    settings: CardSettings | None = None,
    token_label: str = DEFAULT_TOKEN_LABEL,
    pin_iterations: int = DEFAULT_ITERATIONS,
    card_info_pin: str | None = None,
    juki_pin: str | None = None,
    common_pin: str | None = None,
    security_code: str | None = None,
    attributes_header: str = "short",
    with_certificates: bool = True,
    forged: str | None = None,
    photo_jp2: bytes | None = None,
) -> CardImage:
    """A new card image for `holder`: every application, with certificates from `ca`.

    Holders under 15 get no signature key, certificate or password (as on real cards), whatever
    `sign_pin` says; otherwise `sign_pin` is required. The card-info, 住基 and common APs' PINs
    default to the authentication PIN (most holders set one 4-digit PIN for all); the security
    code printed on the face is random unless given. `attributes_header` "long" writes the
    `FF 20 82 00 LL` header of cards issued from about 2023; `with_certificates=False` makes a
    card whose holder declined the JPKI certificates; `forged` makes a chip that a card-face
    check refuses ("face-signature": the face record's signature does not verify; "cvc": the
    records are signed by a key the card-verifiable certificate does not certify).
    """
    now = now or clock.now()
    with_signature = with_certificates and (
        holder.age_on(now.date()) >= SIGNATURE_CERTIFICATE_MIN_AGE
    )
    if with_signature and sign_pin is None:
        raise ProvisioningError("a holder aged 15 or more needs a signature password")
    sign_pin = sign_pin if with_signature else None
    pins = {
        Pin.AUTH: auth_pin,
        Pin.CARD_INFO: card_info_pin or auth_pin,
        Pin.JUKI: juki_pin or auth_pin,
        Pin.COMMON: common_pin or auth_pin,
    }
    if sign_pin is not None:
        pins[Pin.SIGN] = sign_pin
    for pin, value in pins.items():
        check_pin(pin, value)
    if forged is not None and forged not in FORGERIES:
        raise ProvisioningError(f"--forged must be one of {', '.join(FORGERIES)}")
    if attributes_header not in ATTRIBUTES_HEADERS:
        raise ProvisioningError(f"the attributes header is one of {', '.join(ATTRIBUTES_HEADERS)}")
    security_code = security_code or f"{secrets.randbelow(10**4):04d}"
    if not card_info.SECURITY_CODE_PATTERN.fullmatch(security_code):
        raise ProvisioningError("the security code must be 4 digits")

    image = CardImage(settings=settings or CardSettings(), admin=AdministratorKey.create())

    def reference(value: str, tries: int) -> PinReference:
        return PinReference.create(value.encode(), tries, pin_iterations)

    serial_number = f"{secrets.randbelow(10**16):016d}"
    card_expiry = card_info.card_expiry(holder, now.date())
    _provision_jpki(
        image.contents(JPKI.name), ca, holder, now, card_expiry, with_certificates, sign_pin
    )
    contents = image.contents(JPKI.name)
    contents.files[JpkiFile.TOKEN_INFO] = token_info(serial_number, label=token_label)
    for pin in (Pin.AUTH, Pin.SIGN):
        if pin in pins:
            contents.pins[pin.fid] = reference(pins[pin], pin.max_tries)
    collation_b = card_info.collation_number_b(holder, card_expiry.year, security_code)
    _provision_card_info(
        image.contents(CARD_INFO.name),
        ca,
        holder,
        attributes_header == "long",
        {
            CardInfoFile.PIN: reference(pins[Pin.CARD_INFO], Pin.CARD_INFO.max_tries),
            # Ships blocked on real cards: no value ever opens it.
            CardInfoFile.BLOCKED_REFERENCE: reference(f"{secrets.randbelow(10**4):04d}", 0),
            CardInfoFile.COLLATION_NUMBER_A: reference(holder.my_number, Pin.CARD_INFO_A.max_tries),
            CardInfoFile.COLLATION_NUMBER_B: reference(collation_b, Pin.CARD_INFO_B.max_tries),
        },
    )
    face = image.contents(CARD_FACE.name)
    card_key = _generate_key()
    face.keys[CardFaceFile.CARD_KEY] = card_key
    face.files.update(
        card_face.card_face_files(
            holder,
            card_key=card_key.public_key(),
            signer=ca.card_info_signer,
            signer_cvc=ca.municipality_cvc(holder.municipality_code).encode(),
            card_expiry=card_expiry,
            security_code=security_code,
            name_png=face_images.name_image(holder.name),
            address_png=face_images.address_image(holder.address),
            photo_jp2=photo_jp2 or face_images.synthetic_photo(holder.my_number),
            security_code_png=face_images.security_code_image(security_code),
            my_number_png=face_images.my_number_image(holder.my_number),
            municipality_code=holder.municipality_code,
            forged=forged,
        )
    )
    face.pins[CardFaceFile.BIRTH_DATE_KEY] = reference(
        card_info.birth_date_key(holder), Pin.BIRTH_DATE.max_tries
    )
    face.pins[CardFaceFile.COLLATION_NUMBER_B] = reference(collation_b, Pin.FACE_B.max_tries)
    face.pins[CardFaceFile.COLLATION_NUMBER_A] = reference(holder.my_number, Pin.FACE_A.max_tries)
    card_serial = card_level.card_serial()
    key_reference = card_level.key_reference()
    juki = image.contents(RESIDENT_REGISTRY.name)
    juki.files.update(card_level.resident_registry_files(key_reference))
    juki.pins[Pin.JUKI.fid] = reference(pins[Pin.JUKI], Pin.JUKI.max_tries)
    common = image.contents(COMMON.name)
    common.files.update(
        card_level.common_files(card_serial, holder.municipality_code, card_expiry, key_reference)
    )
    common.keys[CommonFile.AUTHENTICATION_KEY] = _generate_key()
    common.pins[Pin.COMMON.fid] = reference(pins[Pin.COMMON], Pin.COMMON.max_tries)
    image.contents(CARD_LEVEL.name).files.update(
        card_level.card_data_objects(
            serial=card_serial,
            municipality_code=holder.municipality_code,
            card_expiry=card_expiry,
            root=ca.cvc_root(),
            issuer=ca.cvc_issuer(),
            issuer_identification=key_reference,
        )
    )
    image.metadata = {
        "holder": holder.to_json(),
        "token_serial_number": serial_number,
        "card_serial_number": card_serial,
        "issued": now.isoformat(timespec="seconds"),
        "card_expiry": card_expiry.isoformat(),
        "security_code": security_code,  # printed on the card face, part of collation number B
        "attributes_header": attributes_header,
        **({"forged": forged} if forged else {}),
    }
    return image


def _generate_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(RSA_PUBLIC_EXPONENT, RSA_KEY_BITS)


def _provision_jpki(
    contents: ApplicationContents,
    ca: TestCA,
    holder: Holder,
    now: datetime.datetime,
    card_expiry: datetime.date,
    with_certificates: bool,
    sign_pin: str | None,
) -> None:
    """The JPKI AP's keys and certificates (none for a holder who declined them); the
    certificates end by the card's expiry at the latest."""
    contents.files[JpkiFile.AUTHENTICATION_CA_CERTIFICATE] = _der(ca.authentication.certificate)
    contents.files[JpkiFile.SIGNATURE_CA_CERTIFICATE] = _der(ca.signature.certificate)
    contents.files[JpkiFile.CERTIFICATE_AVAILABILITY] = certificate_availability(
        signature=sign_pin is not None, authentication=with_certificates
    )
    if not with_certificates:
        return
    auth_key = _generate_key()
    sign_key = None if sign_pin is None else _generate_key()
    # Both certificates in one transaction of the CA's record: one disk sync, both or neither.
    with ca.batch():
        auth_certificate = ca.issue_authentication_certificate(
            holder, auth_key.public_key(), now=now, card_expiry=card_expiry
        )
        if sign_key is not None:
            sign_certificate = ca.issue_signature_certificate(
                holder, sign_key.public_key(), now=now, card_expiry=card_expiry
            )
            contents.keys[JpkiFile.SIGNATURE_KEY] = sign_key
            contents.files[JpkiFile.SIGNATURE_CERTIFICATE] = _der(sign_certificate)
    contents.keys[JpkiFile.AUTHENTICATION_KEY] = auth_key
    contents.files[JpkiFile.AUTHENTICATION_CERTIFICATE] = _der(auth_certificate)


def _provision_card_info(
    contents: ApplicationContents,
    ca: TestCA,
    holder: Holder,
    long_attributes_header: bool,
    pins: dict[int, PinReference],
) -> None:
    """The card-info input-support AP: my number, the four attributes, and their integrity."""
    my_number = card_info.my_number_record(holder.my_number)
    attributes = card_info.basic_attributes_record(holder, long_header=long_attributes_header)
    signer = ca.card_info_signer
    contents.files[CardInfoFile.MY_NUMBER] = my_number
    contents.files[CardInfoFile.BASIC_ATTRIBUTES] = attributes
    contents.files[CardInfoFile.INTEGRITY_RECORD] = card_info.integrity_record(
        my_number, attributes, signer
    )
    contents.files[CardInfoFile.AP_CERTIFICATE] = ca.municipality_cvc(
        holder.municipality_code
    ).encode()
    contents.files[CardInfoFile.AP_BASIC_INFO] = card_info.basic_info(
        ca.municipality_cvc(holder.municipality_code).subject.encode()
    )
    contents.pins.update(pins)


@contextmanager
def locked_card(card: Path) -> Iterator[FileStore]:
    """A card file for an administrative change: locked (waiting a while for another process
    to put it down, so two operations at once both happen), and refused before anything
    changes if it cannot be written."""
    store = FileStore.open(Path(card), wait=CARD_LOCK_WAIT_SECONDS)
    try:
        if store.read_only is not None:
            raise CardFileError(f"{card} cannot be changed ({store.read_only})")
        yield store
    finally:
        store.close()


def application_name(pin: Pin) -> str:
    """The name of the application a PIN belongs to, as card images store it."""
    return APPLICATIONS.of(pin).name


def unblock_pin(image: CardImage, pin: Pin, new_pin: str | None = None) -> None:
    """What a municipal office does: restore a PIN's tries (to this card's limit for it),
    optionally setting a new value. `jpki.issuer.window` does it on card files, with history."""
    reference = image.contents(application_name(pin)).pins.get(pin.fid)
    if reference is None:
        raise ProvisioningError(f"this card has no {pin.label}")
    if new_pin is not None:
        check_pin(pin, new_pin)
        reference.replace(new_pin.encode())
    reference.tries_left = image.settings.max_tries(pin.rule)


def card_summary(image: CardImage) -> dict[str, object]:
    """Holder, certificates and retry counters of a card: never a PIN or a key."""
    contents = image.contents(JPKI.name)
    described: dict[str, object] = {}
    for certificate in Certificate:
        der = contents.files.get(certificate.fid)
        if der is not None:
            der_certificate = x509.load_der_x509_certificate(der)
            described[certificate.key] = certificates.describe(der_certificate)
    pins = {}
    for pin in Pin:
        application = application_name(pin)
        reference = image.contents(application).pins.get(pin.fid)
        if reference is not None:
            pins[pin.key] = {
                "application": application,
                "label": pin.label,
                "tries_left": reference.tries_left,
                "max_tries": image.settings.max_tries(pin.rule),
                "blocked": reference.blocked,
            }
            if reference.blocked:  # which lock this is, and who can open it (lifecycle.md §2)
                pins[pin.key] |= {"protects": pin.lock.protects, "unlock": list(pin.lock.channels)}
    metadata = image.metadata
    return {
        "holder": metadata.get("holder"),
        "sample": metadata.get("sample"),
        "token_serial_number": metadata.get("token_serial_number"),
        "card_serial_number": metadata.get("card_serial_number"),
        "issued": metadata.get("issued"),
        "card_expiry": metadata.get("card_expiry"),
        "security_code": metadata.get("security_code"),
        "attributes_header": metadata.get("attributes_header"),
        "forged": metadata.get("forged"),
        # The window's marks (jpki.issuer.lifecycle): loss reported, revoked, last renewal.
        "suspended": metadata.get("suspended"),
        "revoked": metadata.get("revoked"),
        "certificates_renewed": metadata.get("certificates_renewed"),
        "atr": image.settings.atr.hex().upper(),
        "certificates": described,
        "pins": pins,
    }
