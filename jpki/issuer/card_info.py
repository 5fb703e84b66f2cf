"""Contents of the card-info input-support AP (券面事項入力補助AP, "Text AP"), byte for byte.

Pure functions that build the AP's elementary files as a real My Number card holds them
(EF 0001..0003 and 0005, /work/shared/spec/jpki-card.md §4; EF 0004 is the municipality's
card-verifiable certificate, `TestCA.municipality_cvc`), the birth-date key and collation
number B that open this AP and the card-face AP, and the card's own expiry date from which
that number is made. `verify_integrity` checks an integrity record the way a client does.
No file or card I/O here.
"""

from __future__ import annotations

import datetime
import hashlib
import re

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from jpki.attributes import (
    ADDRESS_TAG,
    ATTRIBUTES_TAG,
    BIRTH_DATE_TAG,
    MY_NUMBER_TAG,
    NAME_TAG,
    OFFSETS_TAG,
    SEX_TAG,
)
from jpki.issuer.holder import ERAS, UNKNOWN_ERA, Holder
from jpki.tlv import expect as _expect
from jpki.tlv import offsets_record
from jpki.tlv import tlv as _tlv

# Tags. The card writes them as two-byte BER tags even where one byte would do (those of EF
# 0001 and 0002 are the shared parser's, jpki.attributes).
INTEGRITY_TAG = b"\xff\x30"
MY_NUMBER_HASH_TAG = b"\xdf\x31"
ATTRIBUTES_HASH_TAG = b"\xdf\x32"
INTEGRITY_SIGNATURE_TAG = b"\xdf\x33"
BASIC_INFO_TAG = b"\xff\x40"
BASIC_INFO_VERSION_TAG = b"\xdf\x41"
BASIC_INFO_KEY_ID_TAG = b"\xdf\x42"
BASIC_INFO_UNKNOWN_TAG = b"\xdf\x43"

FILLER = b"\xff"
MY_NUMBER_DIGITS = 12
MY_NUMBER_EF_SIZE = 17
BIRTH_DATE_FORMAT = "%Y%m%d"
# 5 + 35 (DF31) + 35 (DF32) + 261 (DF33 has a 5-byte header): the spec's 01 4B and 336 agree.
INTEGRITY_EF_SIZE = 336
RSA_KEY_BITS = 2048
KEY_ID_SIZE = 16
BASIC_INFO_VERSION = bytes.fromhex("01030E01")
BASIC_INFO_UNKNOWN_SIZE = 0x80
BASIC_INFO_EF_SIZE = 256  # clients (myna) read 256 bytes

COLLATION_YEAR_MODULUS = 100  # two-digit years
BIRTH_DATE_KEY_DIGITS = 6
SECURITY_CODE_PATTERN = re.compile(r"[0-9]{4}")
CARD_EXPIRY_YEAR_MAX = 9999
ADULT_AGE = 18
ADULT_CARD_BIRTHDAYS = 10
MINOR_CARD_BIRTHDAYS = 5

ERA_START_YEARS = {code: start.year for start, code, _name in ERAS}


def _sign(key: rsa.RSAPrivateKey, data: bytes) -> bytes:
    return key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def _require_rsa_2048(key: rsa.RSAPrivateKey | rsa.RSAPublicKey, role: str) -> None:
    if key.key_size != RSA_KEY_BITS:
        raise ValueError(f"the {role} must be an RSA-{RSA_KEY_BITS} key, not {key.key_size} bits")


def _require_key_id(key_id: bytes, role: str) -> None:
    if len(key_id) != KEY_ID_SIZE:
        raise ValueError(f"the {role} must be {KEY_ID_SIZE} bytes, not {len(key_id)}")


# --- EF 0001 and 0002 ----------------------------------------------------------------------


def my_number_record(my_number: str) -> bytes:
    """EF 0001: `FF 10 0C` + the 12 ASCII digits + `FF FF` (17 bytes)."""
    if not re.fullmatch(f"[0-9]{{{MY_NUMBER_DIGITS}}}", my_number):
        raise ValueError(f"my number must be {MY_NUMBER_DIGITS} digits")
    record = _tlv(MY_NUMBER_TAG, my_number.encode("ascii"))
    return record.ljust(MY_NUMBER_EF_SIZE, FILLER)


def basic_attributes_record(holder: Holder, *, long_header: bool = False) -> bytes:
    """EF 0002: name, address, birth date and sex, preceded by DF21, the offsets of their TLVs.

    `long_header` writes the outer length as `82 HH LL` whatever its value, as cards issued
    from about 2023 do; otherwise it is the minimal BER length.
    """
    fields = [
        _tlv(NAME_TAG, holder.name.encode("utf-8")),
        _tlv(ADDRESS_TAG, holder.address.encode("utf-8")),
        _tlv(BIRTH_DATE_TAG, holder.birth_date.strftime(BIRTH_DATE_FORMAT).encode("ascii")),
        _tlv(SEX_TAG, holder.sex.card_info_code.encode("ascii")),
    ]
    return offsets_record(ATTRIBUTES_TAG, OFFSETS_TAG, fields, long_form=long_header)


def _hashed_attributes(attributes_ef: bytes) -> bytes:
    """EF 0002 from the DF22 TLV to the end of the outer TLV (filler after it excluded)."""
    start, end = _expect(attributes_ef, 0, ATTRIBUTES_TAG)
    _offsets_start, name_offset = _expect(attributes_ef, start, OFFSETS_TAG)
    _expect(attributes_ef, name_offset, NAME_TAG)
    return attributes_ef[name_offset:end]


# --- EF 0003 -------------------------------------------------------------------------------


def _integrity_hashes(my_number_ef: bytes, attributes_ef: bytes) -> bytes:
    """The DF31 and DF32 TLVs, which the integrity signature covers."""
    my_number_hash = hashlib.sha256(my_number_ef[:MY_NUMBER_EF_SIZE]).digest()
    attributes_hash = hashlib.sha256(_hashed_attributes(attributes_ef)).digest()
    return _tlv(MY_NUMBER_HASH_TAG, my_number_hash) + _tlv(ATTRIBUTES_HASH_TAG, attributes_hash)


def integrity_record(my_number_ef: bytes, attributes_ef: bytes, signer: rsa.RSAPrivateKey) -> bytes:
    """EF 0003: hashes of EF 0001 (its 17 bytes) and EF 0002, signed by `signer`; 336 bytes."""
    _require_rsa_2048(signer, "card-info signer")
    hashed = _integrity_hashes(my_number_ef, attributes_ef)
    content = hashed + _tlv(INTEGRITY_SIGNATURE_TAG, _sign(signer, hashed))
    record = _tlv(INTEGRITY_TAG, content, long_form=True)
    assert len(record) == INTEGRITY_EF_SIZE, f"integrity record is {len(record)} bytes"
    return record


def verify_integrity(
    record: bytes, my_number_ef: bytes, attributes_ef: bytes, public_key: rsa.RSAPublicKey
) -> bool:
    """What a client does with EF 0003: recompute both hashes and check the signature."""
    try:
        start, end = _expect(record, 0, INTEGRITY_TAG)
        _hash_start, my_number_end = _expect(record, start, MY_NUMBER_HASH_TAG)
        _hash_start, hashes_end = _expect(record, my_number_end, ATTRIBUTES_HASH_TAG)
        signature_start, signature_end = _expect(record, hashes_end, INTEGRITY_SIGNATURE_TAG)
        if signature_end != end:
            return False
        hashed = record[start:hashes_end]
        if hashed != _integrity_hashes(my_number_ef, attributes_ef):
            return False
        public_key.verify(
            record[signature_start:signature_end], hashed, padding.PKCS1v15(), hashes.SHA256()
        )
    except (ValueError, InvalidSignature):
        return False
    return True


# --- EF 0005 -------------------------------------------------------------------------------


def basic_info(key_id: bytes) -> bytes:
    """EF 0005: the AP's basic info, padded with FF to the 256 bytes clients read.

    DF43's 128-byte content is unknown and left zero.
    """
    _require_key_id(key_id, "key id")
    content = (
        _tlv(BASIC_INFO_VERSION_TAG, BASIC_INFO_VERSION)
        + _tlv(BASIC_INFO_KEY_ID_TAG, key_id)
        # The spec's `DF43 80` would be an indefinite BER length; read as 0x80 bytes: `81 80`.
        + _tlv(BASIC_INFO_UNKNOWN_TAG, bytes(BASIC_INFO_UNKNOWN_SIZE))
    )
    return _tlv(BASIC_INFO_TAG, content).ljust(BASIC_INFO_EF_SIZE, FILLER)


# --- collation number B and the card's expiry ----------------------------------------------


def _era_year(holder: Holder) -> int:
    """Year of the birth date within the holder's era; the Gregorian year for an unknown era."""
    year = holder.birth_date.year
    if holder.era == UNKNOWN_ERA:
        return year % COLLATION_YEAR_MODULUS
    era_year = year - ERA_START_YEARS[holder.era] + 1
    if not 1 <= era_year < COLLATION_YEAR_MODULUS:
        raise ValueError(f"birth year {year} does not fall in era {holder.era}")
    return era_year


def birth_date_key(holder: Holder) -> str:
    """The birth-date key, 6 digits: the birth date as Japanese-era YYMMDD (1980-02-17, Showa
    55 → `550217`); Gregorian YYMMDD for a holder whose era is unknown (code 0). It opens the
    card-face AP's age record and begins collation number B."""
    key = f"{_era_year(holder):02d}{holder.birth_date:%m%d}"
    assert len(key) == BIRTH_DATE_KEY_DIGITS
    return key


def collation_number_b(holder: Holder, card_expiry_year: int, security_code: str) -> str:
    """照合番号B, 14 digits: the birth-date key, card expiry YYYY, security code."""
    if not SECURITY_CODE_PATTERN.fullmatch(security_code):
        raise ValueError("the security code must be 4 digits")
    if not 0 <= card_expiry_year <= CARD_EXPIRY_YEAR_MAX:
        raise ValueError("the card expiry year must have 4 digits")
    return f"{birth_date_key(holder)}{card_expiry_year:04d}{security_code}"


def _birthday_in(birth_date: datetime.date, year: int) -> datetime.date:
    try:
        return birth_date.replace(year=year)
    except ValueError:
        # Only February 29 fails; it falls on February 28 in common years.
        return birth_date.replace(year=year, day=28)


def card_expiry(holder: Holder, issued: datetime.date) -> datetime.date:
    """The card's own expiry (not its certificates'): the holder's 10th birthday after
    issuance for holders aged 18 or more on the issuance date, else the 5th.

    A birthday on the issuance date does not count.
    """
    if holder.birth_date > issued:
        raise ValueError("the holder is born after the issuance date")
    birthdays = ADULT_CARD_BIRTHDAYS if holder.age_on(issued) >= ADULT_AGE else MINOR_CARD_BIRTHDAYS
    first_year = issued.year
    if _birthday_in(holder.birth_date, first_year) <= issued:
        first_year += 1
    return _birthday_in(holder.birth_date, first_year + birthdays - 1)
