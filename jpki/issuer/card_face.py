"""Contents of the card-face AP (券面事項確認AP), byte for byte.

Pure functions that build the AP's elementary files as a real My Number card holds them
(EF 0001..0006, /work/shared/spec/jpki-card.md §5 "Data"), and the values of the three keys that
open them. The records carry the card key (the AP's own key, which signs challenges) and are
signed by the issuing municipality's key, which the CVC in EF 0004 certifies. The formats are
those `jpki.card_face` parses. No file or card I/O here.
"""

from __future__ import annotations

import datetime
import secrets

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

from card_emulator.vocabulary.identifiers import CardFaceFile
from jpki.card_face import (
    AGE_BIRTH_DATE_TAG,
    AGE_CARD_KEY_TAG,
    AGE_RECORD_TAG,
    AGE_SIGNATURE_TAG,
    BASIC_INFO_FORMAT_TAG,
    BASIC_INFO_KEY_ID_TAG,
    BASIC_INFO_MUNICIPALITY_TAG,
    BASIC_INFO_OPAQUE_TAG,
    BASIC_INFO_TAG,
    BASIC_INFO_VERSION_TAG,
    DATE_FORMAT,
    FACE_ADDRESS_IMAGE_TAG,
    FACE_BIRTH_DATE_TAG,
    FACE_CARD_KEY_TAG,
    FACE_EXPIRY_TAG,
    FACE_NAME_IMAGE_TAG,
    FACE_OBJECT_TAGS,
    FACE_OFFSETS_TAG,
    FACE_PHOTO_TAG,
    FACE_SECURITY_CODE_IMAGE_TAG,
    FACE_SEX_TAG,
    FACE_SIGNATURE_TAG,
    FACE_TAG,
    MY_NUMBER_CARD_KEY_TAG,
    MY_NUMBER_IMAGE_TAG,
    MY_NUMBER_PNG_TAG,
    MY_NUMBER_SIGNATURE_TAG,
    face_digest_info,
)
from jpki.cvc import (
    KEY_BITS,
    CardVerifiableCertificate,
    CvcError,
    KeyId,
    encode_public_key,
    issue,
)
from jpki.issuer.card_info import SECURITY_CODE_PATTERN, birth_date_key, collation_number_b
from jpki.issuer.card_level import MUNICIPALITY_CODE_PATTERN
from jpki.issuer.holder import Holder
from jpki.tlv import offsets_record, tlv

AGE_RECORD_SIZE = 547
BASIC_INFO_SIZE = 320  # FF 30 82 01 3B: 5 + 315, no filler
CVC_SIZE = 568
UNKNOWN_EF = b"\xff" * 16  # EF 0006 on real cards; purpose unknown
BASIC_INFO_VERSION = bytes.fromhex("06030E01")  # differs from the Text AP's 01 03 0E 01
# DF32 names a key that is not the one EF 0004 certifies (J-LIS test card: 6000024/001).
BASIC_INFO_KEY_ID = KeyId("9000024", "001")
BASIC_INFO_FORMAT = b"\x00"  # DF33, the version
# DF35 is unknown: a key id (test card 5900025/001) and 256 opaque bytes. Ours: this id and
# random bytes.
BASIC_INFO_OPAQUE_KEY_ID = KeyId("9000025", "001")
BASIC_INFO_OPAQUE_SIZE = 256
# What `forged` may ask for: a face signature that does not verify, or records signed by a key
# the CVC in EF 0004 does not certify.
FORGED_FACE_SIGNATURE = "face-signature"
FORGED_CVC = "cvc"
FORGERIES = (FORGED_FACE_SIGNATURE, FORGED_CVC)


def _sign(signer: rsa.RSAPrivateKey, data: bytes) -> bytes:
    return signer.sign(data, padding.PKCS1v15(), hashes.SHA256())


def _date(day: datetime.date) -> bytes:
    return day.strftime(DATE_FORMAT).encode("ascii")


def _require_rsa_2048(key: rsa.RSAPrivateKey | rsa.RSAPublicKey, role: str) -> None:
    if key.key_size != KEY_BITS:
        raise ValueError(f"the {role} must be an RSA-{KEY_BITS} key, not {key.key_size} bits")


# --- EF 0001 and 0005: two TLVs and a signature over them -----------------------------------


def age_record(
    birth_date: datetime.date, card_key: rsa.RSAPublicKey, signer: rsa.RSAPrivateKey
) -> bytes:
    """EF 0001, 547 bytes: `FF 10 82 02 1E { DF11 birth date YYYYMMDD, DF12 card key, DF13
    signature over the DF11 and DF12 TLVs }`."""
    _require_rsa_2048(signer, "signer")
    signed = tlv(AGE_BIRTH_DATE_TAG, _date(birth_date)) + tlv(
        AGE_CARD_KEY_TAG, encode_public_key(card_key)
    )
    record = tlv(AGE_RECORD_TAG, signed + tlv(AGE_SIGNATURE_TAG, _sign(signer, signed)))
    assert len(record) == AGE_RECORD_SIZE, f"age record is {len(record)} bytes"
    return record


def my_number_image_record(
    my_number_png: bytes, card_key: rsa.RSAPublicKey, signer: rsa.RSAPrivateKey
) -> bytes:
    """EF 0005: `FF 40 82 HH LL { DF41 image, DF42 card key, DF43 signature over the DF41 and
    DF42 TLVs }`."""
    _require_rsa_2048(signer, "signer")
    signed = tlv(MY_NUMBER_PNG_TAG, my_number_png) + tlv(
        MY_NUMBER_CARD_KEY_TAG, encode_public_key(card_key)
    )
    content = signed + tlv(MY_NUMBER_SIGNATURE_TAG, _sign(signer, signed))
    return tlv(MY_NUMBER_IMAGE_TAG, content, long_form=True)


# --- EF 0002 ---------------------------------------------------------------------------------


def face_record(
    holder: Holder,
    *,
    card_key: rsa.RSAPublicKey,
    signer: rsa.RSAPrivateKey,
    card_expiry: datetime.date,
    name_png: bytes,
    address_png: bytes,
    photo_jp2: bytes,
    security_code_png: bytes,
    forge_signature: bool = False,
) -> bytes:
    """EF 0002: `FF 20 82 HH LL { DF21 offsets, DF22 … DF2A }`.

    DF21 holds nine u16 offsets from the file's first byte to DF22…DF2A (the first is `00 1A`).
    DF28 is PKCS#1 v1.5 over a SHA-256 DigestInfo declaring 96 bytes: the SHA-256 of DF22‖DF23‖
    DF24, of DF25‖DF26 and of DF27; DF29 (expiry) and DF2A (security code) are not covered.
    `forge_signature` signs other bytes instead, so that DF28 does not verify.
    """
    _require_rsa_2048(signer, "signer")
    covered = [
        tlv(FACE_BIRTH_DATE_TAG, _date(holder.birth_date)),
        tlv(FACE_SEX_TAG, holder.sex.card_info_code.encode("ascii")),
        tlv(FACE_CARD_KEY_TAG, encode_public_key(card_key)),
        tlv(FACE_NAME_IMAGE_TAG, name_png),
        tlv(FACE_ADDRESS_IMAGE_TAG, address_png),
        tlv(FACE_PHOTO_TAG, photo_jp2),
    ]
    groups = [b"".join(covered[0:3]), b"".join(covered[3:5]), covered[5]]
    if forge_signature:
        groups[2] += b"\x00"  # the signature of a face whose photo was changed afterwards
    signature = signer.sign(face_digest_info(groups), padding.PKCS1v15(), utils.NoDigestInfo())
    objects = [
        *covered,
        tlv(FACE_SIGNATURE_TAG, signature),
        tlv(FACE_EXPIRY_TAG, _date(card_expiry)),
        tlv(FACE_SECURITY_CODE_IMAGE_TAG, security_code_png),
    ]
    assert len(objects) == len(FACE_OBJECT_TAGS)
    # Always `82 HH LL`, as on the card: DF21's first offset is 00 1A whatever the size.
    return offsets_record(FACE_TAG, FACE_OFFSETS_TAG, objects, long_form=True)


# --- EF 0003, 0004 and 0006 ------------------------------------------------------------------


def ap_basic_info(municipality_code: str) -> bytes:
    """EF 0003, 320 bytes: `FF 30 82 01 3B { DF31 06 03 0E 01, DF32 key id, DF33 00, DF34
    municipality code, DF35 82 01 10 key id ‖ 256 bytes }`; DF35's bytes are random (OURS)."""
    if not MUNICIPALITY_CODE_PATTERN.fullmatch(municipality_code):
        raise ValueError(f"a municipality code is 5 digits, not {municipality_code!r}")
    opaque = BASIC_INFO_OPAQUE_KEY_ID.encode() + secrets.token_bytes(BASIC_INFO_OPAQUE_SIZE)
    content = (
        tlv(BASIC_INFO_VERSION_TAG, BASIC_INFO_VERSION)
        + tlv(BASIC_INFO_KEY_ID_TAG, BASIC_INFO_KEY_ID.encode())
        + tlv(BASIC_INFO_FORMAT_TAG, BASIC_INFO_FORMAT)
        + tlv(BASIC_INFO_MUNICIPALITY_TAG, municipality_code.encode("ascii"))
        + tlv(BASIC_INFO_OPAQUE_TAG, opaque)
    )
    record = tlv(BASIC_INFO_TAG, content, long_form=True)
    assert len(record) == BASIC_INFO_SIZE, f"basic info is {len(record)} bytes"
    return record


def _check_signer_cvc(signer_cvc: bytes, signer: rsa.RSAPrivateKey) -> None:
    """EF 0004 must be a wrapped CVC (568 bytes) certifying `signer`."""
    try:
        certificate = CardVerifiableCertificate.parse(signer_cvc)
    except CvcError as error:
        raise ValueError(f"signer_cvc: {error}") from None
    if certificate.encode() != signer_cvc:
        raise ValueError(f"EF 0004 holds the CVC in its 7F21 wrapper ({CVC_SIZE} bytes)")
    if certificate.public_key.public_numbers() != signer.public_key().public_numbers():
        raise ValueError(f"signer_cvc ({certificate.subject}) does not certify the signer")


# --- the AP ----------------------------------------------------------------------------------


def card_face_files(
    holder: Holder,
    *,
    card_key: rsa.RSAPublicKey,
    signer: rsa.RSAPrivateKey,
    signer_cvc: bytes,
    card_expiry: datetime.date,
    security_code: str,
    name_png: bytes,
    address_png: bytes,
    photo_jp2: bytes,
    security_code_png: bytes,
    my_number_png: bytes,
    municipality_code: str,
    forged: str | None = None,
) -> dict[int, bytes]:
    """The AP's EFs, by FID: the age record, the face, the basic info, `signer_cvc` (the CVC
    certifying `signer`, wrapped), the my-number image and the unknown 16 × FF.

    `security_code` is the one `security_code_png` shows (4 digits; it ends collation number
    B, `card_face_keys`). `forged` makes a card a verifier must refuse: "face-signature", a DF28
    that does not verify; "cvc", records signed by a forger's key, with an EF 0004 that names
    that key and the genuine issuer but is signed by the forger (the chain does not verify).
    """
    if forged is not None and forged not in FORGERIES:
        raise ValueError(f"forged is one of {', '.join(FORGERIES)}, not {forged!r}")
    if not SECURITY_CODE_PATTERN.fullmatch(security_code):
        raise ValueError("the security code must be 4 digits")
    _require_rsa_2048(card_key, "card key")
    _require_rsa_2048(signer, "signer")
    _check_signer_cvc(signer_cvc, signer)
    if forged == FORGED_CVC:
        genuine = CardVerifiableCertificate.parse(signer_cvc)
        signer = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
        signer_cvc = issue(signer.public_key(), genuine.subject, signer, genuine.issuer).encode()
    return {
        CardFaceFile.AGE_RECORD: age_record(holder.birth_date, card_key, signer),
        CardFaceFile.FACE: face_record(
            holder,
            card_key=card_key,
            signer=signer,
            card_expiry=card_expiry,
            name_png=name_png,
            address_png=address_png,
            photo_jp2=photo_jp2,
            security_code_png=security_code_png,
            forge_signature=forged == FORGED_FACE_SIGNATURE,
        ),
        CardFaceFile.AP_BASIC_INFO: ap_basic_info(municipality_code),
        CardFaceFile.AP_CERTIFICATE: signer_cvc,
        CardFaceFile.MY_NUMBER_IMAGE: my_number_image_record(my_number_png, card_key, signer),
        CardFaceFile.UNKNOWN: UNKNOWN_EF,
    }


def card_face_keys(
    holder: Holder, *, card_expiry: datetime.date, security_code: str
) -> dict[int, str]:
    """The values of the AP's three keys, by FID: the birth-date key (era YYMMDD), collation
    number B (birth-date key ‖ expiry year ‖ security code) and collation number A (the my
    number)."""
    return {
        CardFaceFile.BIRTH_DATE_KEY: birth_date_key(holder),
        CardFaceFile.COLLATION_NUMBER_B: collation_number_b(
            holder, card_expiry.year, security_code
        ),
        CardFaceFile.COLLATION_NUMBER_A: holder.my_number,
    }
