"""Tests of the card-info AP's file contents, parsed back byte by byte as a client reads them."""

from __future__ import annotations

import datetime
import hashlib
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from jpki.cvc import KeyId
from jpki.issuer import card_info
from jpki.issuer.holder import Holder, Sex, with_check_digit

MY_NUMBER = "123456789018"
OTHER_MY_NUMBER = with_check_digit("12345678902")
NAME = "山田\u3000太郎"
SHORT_ADDRESS = "東京都渋谷区神南一丁目１９番１１号"
LONG_ADDRESS = "東" * 200  # the longest address: 600 bytes of UTF-8
SHOWA_55 = datetime.date(1980, 2, 17)
ISSUED = datetime.date(2024, 4, 1)


def make_holder(**changes: Any) -> Holder:
    values: dict[str, Any] = {
        "name": NAME,
        "birth_date": SHOWA_55,
        "sex": Sex.FEMALE,
        "address": SHORT_ADDRESS,
        "my_number": MY_NUMBER,
    }
    values.update(changes)
    return Holder(**values)


@pytest.fixture(scope="module")
def signer() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def tlv(data: bytes, offset: int) -> tuple[bytes, int, int]:
    """(tag, start of value, end of value) at `offset`; tags of one or two bytes."""
    tag_size = 2 if data[offset] & 0x1F == 0x1F else 1
    tag = data[offset : offset + tag_size]
    position = offset + tag_size
    first = data[position]
    if first < 0x80:
        return tag, position + 1, position + 1 + first
    count = first - 0x80
    length = int.from_bytes(data[position + 1 : position + 1 + count], "big")
    start = position + 1 + count
    return tag, start, start + length


def children(data: bytes, start: int, end: int) -> list[tuple[int, bytes, bytes]]:
    """(offset, tag, value) of each TLV in data[start:end]."""
    found = []
    while start < end:
        tag, value_start, value_end = tlv(data, start)
        found.append((start, tag, data[value_start:value_end]))
        start = value_end
    assert start == end
    return found


# --- EF 0001 ---------------------------------------------------------------------------------


def test_my_number_record_bytes() -> None:
    assert card_info.my_number_record(MY_NUMBER) == (
        bytes.fromhex("FF100C") + b"123456789018" + bytes.fromhex("FFFF")
    )


def test_my_number_record_refuses_non_digits() -> None:
    with pytest.raises(ValueError):
        card_info.my_number_record("12345678901X")


# --- EF 0002 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "long_header", "header_size"),
    [
        (SHORT_ADDRESS, False, 3),  # FF 20 LL
        (SHORT_ADDRESS, True, 5),  # FF 20 82 00 LL
        (LONG_ADDRESS, False, 5),  # over 255 bytes: 82 HH LL is the minimal form
        (LONG_ADDRESS, True, 5),
    ],
)
def test_basic_attributes_parse_back(address: str, long_header: bool, header_size: int) -> None:
    holder = make_holder(address=address)
    record = card_info.basic_attributes_record(holder, long_header=long_header)

    tag, start, end = tlv(record, 0)
    assert tag == bytes.fromhex("FF20")
    assert (start, end) == (header_size, len(record))
    if header_size == 5:
        assert record[2] == 0x82 and int.from_bytes(record[3:5], "big") == len(record) - 5
    else:
        assert record[2] == len(record) - 3

    fields = children(record, start, end)
    assert [field_tag.hex().upper() for _offset, field_tag, _value in fields] == [
        "DF21",
        "DF22",
        "DF23",
        "DF24",
        "DF25",
    ]
    offsets_value = fields[0][2]
    assert len(offsets_value) == 8
    offsets = [int.from_bytes(offsets_value[i : i + 2], "big") for i in range(0, 8, 2)]
    assert offsets == [offset for offset, _tag, _value in fields[1:]]
    values = {field_tag.hex().upper(): value for _offset, field_tag, value in fields}
    assert values["DF22"].decode("utf-8") == NAME
    assert values["DF23"].decode("utf-8") == address
    assert values["DF24"] == b"19800217"
    assert values["DF25"] == b"2"


def test_long_address_length_is_multi_byte() -> None:
    record = card_info.basic_attributes_record(make_holder(address=LONG_ADDRESS))
    address_at = record.index(bytes.fromhex("DF23"))
    assert record[address_at : address_at + 5] == bytes.fromhex("DF23820258")


def test_sex_codes_follow_iso_5218() -> None:
    record = card_info.basic_attributes_record(make_holder(sex=Sex.NOT_APPLICABLE))
    assert record.endswith(bytes.fromhex("DF250139"))


# --- EF 0003 ---------------------------------------------------------------------------------


def test_integrity_record_verifies(signer: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey) -> None:
    my_number_ef = card_info.my_number_record(MY_NUMBER)
    attributes_ef = card_info.basic_attributes_record(make_holder(), long_header=True)
    record = card_info.integrity_record(my_number_ef, attributes_ef, signer)

    assert len(record) == 336
    assert record[:5] == bytes.fromhex("FF3082014B")  # 331 bytes of content, no filler
    assert record[5:8] == bytes.fromhex("DF3120")
    assert record[8:40] == hashlib.sha256(my_number_ef).digest()
    assert record[40:43] == bytes.fromhex("DF3220")
    name_at = int.from_bytes(attributes_ef[8:10], "big")  # FF20 82LLLL DF2108 <name offset>
    assert record[43:75] == hashlib.sha256(attributes_ef[name_at:]).digest()
    assert record[75:80] == bytes.fromhex("DF33820100")
    signed = record[5:75]
    signer.public_key().verify(record[80:], signed, padding.PKCS1v15(), hashes.SHA256())

    public_key = signer.public_key()
    assert card_info.verify_integrity(record, my_number_ef, attributes_ef, public_key)
    # Filler after the outer TLV, as a client reading the whole EF gets, is not hashed.
    padded = attributes_ef + b"\xff" * 16
    assert card_info.verify_integrity(record, my_number_ef, padded, public_key)
    assert not card_info.verify_integrity(
        record, my_number_ef, attributes_ef, other_key.public_key()
    )


def test_integrity_fails_after_changing_the_address(signer: rsa.RSAPrivateKey) -> None:
    my_number_ef = card_info.my_number_record(MY_NUMBER)
    attributes_ef = card_info.basic_attributes_record(make_holder())
    record = card_info.integrity_record(my_number_ef, attributes_ef, signer)

    address_offset = int.from_bytes(attributes_ef[8:10], "big")  # FF20 LL DF2108 <name> <addr>
    tag, start, _end = tlv(attributes_ef, address_offset)
    assert tag == bytes.fromhex("DF23")
    changed = bytearray(attributes_ef)
    changed[start + 1] ^= 0x01
    assert not card_info.verify_integrity(record, my_number_ef, bytes(changed), signer.public_key())
    changed_number = card_info.my_number_record(OTHER_MY_NUMBER)
    assert not card_info.verify_integrity(
        record, changed_number, attributes_ef, signer.public_key()
    )


# --- EF 0005 (EF 0004 is the municipality's CVC: tests/jpki/test_ca.py) --------------------


def test_basic_info() -> None:
    key_id = KeyId("9131131", "000").encode()
    info = card_info.basic_info(key_id)

    assert len(info) == 256
    tag, start, end = tlv(info, 0)
    assert tag == bytes.fromhex("FF40")
    assert [
        (field_tag.hex().upper(), value) for _at, field_tag, value in children(info, start, end)
    ] == [
        ("DF41", bytes.fromhex("01030E01")),
        ("DF42", key_id),
        ("DF43", bytes(128)),
    ]
    assert info[info.index(bytes.fromhex("DF43")) :][:4] == bytes.fromhex("DF438180")
    assert set(info[end:]) == {0xFF}


# --- collation number B and the card's expiry ------------------------------------------------


@pytest.mark.parametrize(
    ("birth", "era", "expected"),
    [
        (SHOWA_55, None, "550217"),
        (datetime.date(1989, 1, 7), None, "640107"),  # last day of Showa
        (datetime.date(1989, 1, 8), None, "010108"),  # Heisei 1
        (datetime.date(2019, 5, 1), None, "010501"),  # Reiwa 1
        (SHOWA_55, 0, "800217"),  # unknown era: Gregorian YY
        (datetime.date(2005, 3, 9), 0, "050309"),
        (datetime.date(2024, 12, 31), None, "061231"),  # Reiwa 6
    ],
)
def test_birth_date_key_and_collation_number_b(
    birth: datetime.date, era: int | None, expected: str
) -> None:
    holder = make_holder(birth_date=birth, birth_era=era)
    assert card_info.birth_date_key(holder) == expected
    assert card_info.collation_number_b(holder, 2034, "0123") == f"{expected}20340123"


def test_birth_date_key_refuses_a_date_outside_the_era() -> None:
    with pytest.raises(ValueError, match="does not fall in era"):
        card_info.birth_date_key(make_holder(birth_date=SHOWA_55, birth_era=5))


def test_collation_number_b_refuses_bad_security_code() -> None:
    with pytest.raises(ValueError):
        card_info.collation_number_b(make_holder(), 2034, "12A4")


@pytest.mark.parametrize(
    ("birth", "expected"),
    [
        (SHOWA_55, datetime.date(2034, 2, 17)),  # adult: 10th birthday
        (datetime.date(2006, 4, 1), datetime.date(2034, 4, 1)),  # 18 today; today doesn't count
        (datetime.date(2000, 2, 29), datetime.date(2034, 2, 28)),  # Feb 29 → Feb 28
        (datetime.date(2014, 6, 1), datetime.date(2028, 6, 1)),  # 10 years old: 5th birthday
    ],
)
def test_card_expiry(birth: datetime.date, expected: datetime.date) -> None:
    assert card_info.card_expiry(make_holder(birth_date=birth), ISSUED) == expected
