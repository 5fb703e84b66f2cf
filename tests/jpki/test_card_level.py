"""Tests of the 住基AP and 共通カードAP records and of the MF's GET DATA objects (spec §6, §7)."""

from __future__ import annotations

import datetime

import pytest
from asn1crypto.core import ObjectIdentifier
from cryptography.hazmat.primitives.asymmetric import rsa

from card_emulator.vocabulary.identifiers import CardData, CommonFile, ResidentRegistryFile
from jpki import cvc
from jpki.cvc import CardVerifiableCertificate, KeyId
from jpki.issuer import card_level
from jpki.tlv import children, read_tlv, simple_tlv, simple_tlv_records

SERIAL = "400000012719843"  # the J-LIS test card's
EXPIRY = datetime.date(2035, 2, 17)
REFERENCE = bytes(range(16))
ROOT_ID = KeyId("9000020", "001")
ISSUER_ID = KeyId("9000023", "001")


Hierarchy = tuple[CardVerifiableCertificate, CardVerifiableCertificate]


@pytest.fixture(scope="module")
def issuer_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


@pytest.fixture(scope="module")
def hierarchy(issuer_key: rsa.RSAPrivateKey) -> Hierarchy:
    root_key = rsa.generate_private_key(65537, 2048)
    root = cvc.issue(root_key.public_key(), ROOT_ID, root_key, ROOT_ID)
    return root, cvc.issue(issuer_key.public_key(), ISSUER_ID, root_key, ROOT_ID)


# --- record EFs ------------------------------------------------------------------------------


def test_common_card_identification_is_the_test_cards_record() -> None:
    files = card_level.common_files(SERIAL, "13221", EXPIRY, REFERENCE)
    assert files[CommonFile.CARD_IDENTIFICATION] == (
        bytes.fromhex("011C") + b"400000012719843" + b"13221" + b"20350217"
    )
    assert files[CommonFile.KEY_REFERENCE] == bytes.fromhex("0110") + REFERENCE
    assert sorted(files) == [CommonFile.CARD_IDENTIFICATION, CommonFile.KEY_REFERENCE]


def test_both_aps_hold_the_same_key_reference() -> None:
    resident = card_level.resident_registry_files(REFERENCE)
    common = card_level.common_files(SERIAL, "13221", EXPIRY, REFERENCE)
    assert list(resident) == [ResidentRegistryFile.KEY_REFERENCE]
    assert resident[ResidentRegistryFile.KEY_REFERENCE] == common[CommonFile.KEY_REFERENCE]
    assert len(resident[ResidentRegistryFile.KEY_REFERENCE]) == 18


@pytest.mark.parametrize(
    ("serial", "code", "reference"),
    [
        ("40000001271984", "13221", REFERENCE),  # 14 digits
        ("40000001271984X", "13221", REFERENCE),
        (SERIAL, "1322", REFERENCE),
        (SERIAL, "13221", REFERENCE[:15]),
    ],
)
def test_common_files_refuse_malformed_values(serial: str, code: str, reference: bytes) -> None:
    with pytest.raises(ValueError):
        card_level.common_files(serial, code, EXPIRY, reference)


def test_new_serials_and_key_references() -> None:
    serials = {card_level.card_serial() for _ in range(20)}
    assert all(len(serial) == 15 and serial.isdigit() for serial in serials)
    assert len(serials) == 20
    references = {card_level.key_reference() for _ in range(20)}
    assert all(len(reference) == 16 for reference in references) and len(references) == 20


def test_records_split_back() -> None:
    stored = simple_tlv(0x01, b"one") + simple_tlv(0x02, b"") + simple_tlv(0x03, bytes(254))
    assert simple_tlv_records(stored) == [b"\x01\x03one", b"\x02\x00", b"\x03\xfe" + bytes(254)]
    for broken in (stored[:-1], stored + b"\x01", b"\x00\x00", b"\x01\xff"):
        with pytest.raises(ValueError):
            simple_tlv_records(broken)
    with pytest.raises(ValueError):
        simple_tlv(0x01, bytes(255))


# --- GET DATA at the MF ----------------------------------------------------------------------


def objects(
    hierarchy: Hierarchy,
) -> dict[int, bytes]:
    root, issuer = hierarchy
    return card_level.card_data_objects(
        serial=SERIAL,
        municipality_code="13221",
        card_expiry=EXPIRY,
        root=root,
        issuer=issuer,
        issuer_identification=REFERENCE,
    )


def test_card_data_objects(
    hierarchy: Hierarchy,
) -> None:
    root, issuer = hierarchy
    found = objects(hierarchy)
    assert sorted(found) == sorted(
        tag for tag in CardData if tag is not CardData.ATR_INFORMATION
    )  # 5F51 comes from the card's ATR
    assert found[CardData.ISSUER_IDENTIFICATION] == REFERENCE
    assert found[CardData.CARD_IDENTIFICATION_NUMBER] == b"400000012719843"
    assert found[CardData.MUNICIPALITY_CODE] == b"13221"
    assert found[CardData.CARD_EXPIRY] == b"20350217"
    assert found[CardData.CVC_SIGNER_KEY_ID] == b"9000020\x08\x05001\x00\x00\x00\x00"


def test_the_cvcs_are_bare_and_chain(
    hierarchy: Hierarchy,
) -> None:
    found = objects(hierarchy)
    root_bytes, second_bytes = found[CardData.ROOT_CVC], found[CardData.SECOND_CVC]
    assert len(root_bytes) == len(second_bytes) == 563
    assert root_bytes[:5] == second_bytes[:5] == bytes.fromhex("5F4E820129")
    root = CardVerifiableCertificate.parse(root_bytes)
    second = CardVerifiableCertificate.parse(second_bytes)
    assert (root.issuer, root.subject) == (ROOT_ID, ROOT_ID) and root.signed_by(root.public_key)
    assert (second.issuer, second.subject) == (ROOT_ID, ISSUER_ID)
    assert second.signed_by(root.public_key)
    # 00F7 names the key that signs 7F21: the one 00F8 certifies.
    assert found[CardData.CVC_SIGNER_KEY_ID] == root.subject.encode() == second.body[:16]


def test_card_data_objects_refuse_a_broken_chain(
    hierarchy: Hierarchy, issuer_key: rsa.RSAPrivateKey
) -> None:
    root, issuer = hierarchy
    # Names the root as its issuer, but the issuer signed it itself.
    forged = cvc.issue(issuer_key.public_key(), ISSUER_ID, issuer_key, ROOT_ID)
    with pytest.raises(ValueError, match="not issued by the root"):
        objects((root, forged))
    with pytest.raises(ValueError, match="not self-signed"):
        objects((issuer, issuer))


def test_card_recognition_data(
    hierarchy: Hierarchy,
) -> None:
    data = objects(hierarchy)[CardData.CARD_RECOGNITION_DATA]
    tag, start, end = read_tlv(data, 0)
    assert (tag, end) == (b"\x66", len(data))
    inner_tag, inner_start, inner_end = read_tlv(data, start)
    assert (inner_tag, inner_end) == (b"\x73", end)
    found = [(tag, data[s:e]) for tag, _at, s, e in children(data, inner_start, inner_end)]
    assert [tag for tag, _value in found] == [b"\x06", b"\x60", b"\x63", b"\x64"]
    assert found[0][1] == ObjectIdentifier("1.2.840.114283.1").contents  # card recognition data
    assert ObjectIdentifier.load(found[1][1]).dotted == "1.2.840.114283.2.2.1.1"  # GP 2.1.1
    for _tag, value in found[2:]:
        assert ObjectIdentifier.load(value).dotted.startswith("1.2.840.114283.")
