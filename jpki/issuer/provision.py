"""Issuing a card: keys, certificates from the test CA, PINs, and the card image that holds them."""

from __future__ import annotations

import datetime
import secrets

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from card_emulator.applications.card_info import CARD_INFO
from card_emulator.applications.jpki import JPKI
from card_emulator.applications.registry import APPLICATIONS
from card_emulator.state.image import RSA_KEY_BITS, ApplicationContents, CardImage, CardSettings
from card_emulator.state.pin_reference import DEFAULT_ITERATIONS, PinReference
from card_emulator.vocabulary.identifiers import CardInfoFile, JpkiFile
from card_emulator.vocabulary.keys import Certificate
from card_emulator.vocabulary.pins import Pin
from jpki import certificates
from jpki.errors import BadValueError
from jpki.issuer import card_info
from jpki.issuer.ca import TestCA
from jpki.issuer.card_contents import DEFAULT_TOKEN_LABEL, certificate_availability, token_info
from jpki.issuer.holder import Holder

SIGNATURE_CERTIFICATE_MIN_AGE = 15  # younger holders get no signature certificate
RSA_PUBLIC_EXPONENT = 65537


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
    long_attributes_header: bool = True,
) -> CardImage:
    """A new card image for `holder`, with certificates from `ca`.

    Holders under 15 get no signature key, certificate or password (as on real cards), whatever
    `sign_pin` says; otherwise `sign_pin` is required. The card-info AP's PIN defaults to the
    authentication PIN (most holders set one 4-digit PIN for both); `long_attributes_header`
    picks the `FF 20 82 00 LL` header of cards issued from about 2023.
    """
    now = now or datetime.datetime.now(datetime.UTC)
    with_signature = holder.age_on(now.date()) >= SIGNATURE_CERTIFICATE_MIN_AGE
    if with_signature and sign_pin is None:
        raise ProvisioningError("a holder aged 15 or more needs a signature password")
    sign_pin = sign_pin if with_signature else None
    check_pin(Pin.AUTH, auth_pin)
    card_info_pin = card_info_pin or auth_pin
    check_pin(Pin.CARD_INFO, card_info_pin)
    if sign_pin is not None:
        check_pin(Pin.SIGN, sign_pin)

    image = CardImage(settings=settings or CardSettings())
    contents = image.contents(JPKI.name)
    auth_key = rsa.generate_private_key(RSA_PUBLIC_EXPONENT, RSA_KEY_BITS)
    sign_key = (
        None if sign_pin is None else rsa.generate_private_key(RSA_PUBLIC_EXPONENT, RSA_KEY_BITS)
    )
    # Both certificates in one transaction of the CA's record: one disk sync, both or neither.
    with ca.batch():
        auth_certificate = ca.issue_authentication_certificate(
            holder, auth_key.public_key(), now=now
        )
        sign_certificate = (
            None
            if sign_key is None
            else ca.issue_signature_certificate(holder, sign_key.public_key(), now=now)
        )
    contents.keys[JpkiFile.AUTHENTICATION_KEY] = auth_key
    contents.files[JpkiFile.AUTHENTICATION_CERTIFICATE] = _der(auth_certificate)
    contents.files[JpkiFile.AUTHENTICATION_CA_CERTIFICATE] = _der(ca.authentication.certificate)
    contents.files[JpkiFile.SIGNATURE_CA_CERTIFICATE] = _der(ca.signature.certificate)
    contents.pins[JpkiFile.AUTHENTICATION_PIN] = PinReference.create(
        auth_pin.encode(), Pin.AUTH.max_tries, pin_iterations
    )
    if sign_pin is not None and sign_key is not None and sign_certificate is not None:
        contents.keys[JpkiFile.SIGNATURE_KEY] = sign_key
        contents.files[JpkiFile.SIGNATURE_CERTIFICATE] = _der(sign_certificate)
        contents.pins[JpkiFile.SIGNATURE_PIN] = PinReference.create(
            sign_pin.encode(), Pin.SIGN.max_tries, pin_iterations
        )
    contents.files[JpkiFile.CERTIFICATE_AVAILABILITY] = certificate_availability(
        signature=sign_pin is not None, authentication=True
    )
    serial_number = f"{secrets.randbelow(10**16):016d}"
    contents.files[JpkiFile.TOKEN_INFO] = token_info(serial_number, label=token_label)
    card_expiry = card_info.card_expiry(holder, now.date())
    security_code = f"{secrets.randbelow(10**4):04d}"
    _provision_card_info(
        image.contents(CARD_INFO.name),
        ca,
        holder,
        card_info_pin,
        card_info.collation_number_b(holder, card_expiry.year, security_code),
        long_attributes_header,
        pin_iterations,
    )
    image.metadata = {
        "holder": holder.to_json(),
        "token_serial_number": serial_number,
        "issued": now.isoformat(timespec="seconds"),
        "card_expiry": card_expiry.isoformat(),
        "security_code": security_code,  # printed on the card face, part of collation number B
    }
    return image


def _provision_card_info(
    contents: ApplicationContents,
    ca: TestCA,
    holder: Holder,
    pin: str,
    collation_number_b: str,
    long_attributes_header: bool,
    pin_iterations: int,
) -> None:
    """The card-info input-support AP: my number, the four attributes, and their integrity."""
    my_number = card_info.my_number_record(holder.my_number)
    attributes = card_info.basic_attributes_record(holder, long_header=long_attributes_header)
    signer = ca.card_info_signer
    key_id = card_info.key_identifier(signer.public_key())
    contents.files[CardInfoFile.MY_NUMBER] = my_number
    contents.files[CardInfoFile.BASIC_ATTRIBUTES] = attributes
    contents.files[CardInfoFile.INTEGRITY_RECORD] = card_info.integrity_record(
        my_number, attributes, signer
    )
    contents.files[CardInfoFile.AP_CERTIFICATE] = card_info.card_verifiable_certificate(
        signer.public_key(), signer, key_id, key_id
    )
    contents.files[CardInfoFile.AP_BASIC_INFO] = card_info.basic_info(key_id)
    references = {
        CardInfoFile.PIN: (pin, Pin.CARD_INFO.max_tries),
        # Ships blocked on real cards: no value ever opens it.
        CardInfoFile.BLOCKED_REFERENCE: (f"{secrets.randbelow(10**4):04d}", 0),
        CardInfoFile.COLLATION_NUMBER_A: (holder.my_number, Pin.CARD_INFO_A.max_tries),
        CardInfoFile.COLLATION_NUMBER_B: (collation_number_b, Pin.CARD_INFO_B.max_tries),
    }
    for fid, (value, tries) in references.items():
        contents.pins[fid] = PinReference.create(value.encode(), tries, pin_iterations)


def _application_name(pin: Pin) -> str:
    application = APPLICATIONS.by_aid(pin.application.value)
    assert application is not None
    return application.name


def unblock_pin(image: CardImage, pin: Pin, new_pin: str | None = None) -> None:
    """What a municipal office does: restore a PIN's tries, optionally setting a new value."""
    reference = image.contents(_application_name(pin)).pins.get(pin.fid)
    if reference is None:
        raise ProvisioningError(f"this card has no {pin.label}")
    if new_pin is not None:
        check_pin(pin, new_pin)
        reference.replace(new_pin.encode())
    reference.tries_left = pin.max_tries


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
        reference = image.contents(_application_name(pin)).pins.get(pin.fid)
        if reference is not None:
            pins[pin.key] = {
                "label": pin.label,
                "tries_left": reference.tries_left,
                "max_tries": pin.max_tries,
                "blocked": reference.blocked,
            }
    return {
        "holder": image.metadata.get("holder"),
        "token_serial_number": image.metadata.get("token_serial_number"),
        "card_expiry": image.metadata.get("card_expiry"),
        "security_code": image.metadata.get("security_code"),
        "atr": image.settings.atr.hex().upper(),
        "certificates": described,
        "pins": pins,
    }
