"""Tests of the card-face AP's files (spec §5 "Data"): built by the issuer, parsed back byte by
byte, and checked the way a verifier does (the CVC chain, the face signature, the chip)."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
from collections.abc import Callable

import pytest
from asn1crypto import algos
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

from card_emulator.vocabulary.identifiers import CardFaceFile
from jpki import cvc
from jpki.card_face import (
    CardFaceFormatError,
    face_signature_valid,
    parse_age_record,
    parse_face,
    parse_my_number_image,
    record_signature_valid,
)
from jpki.cvc import CardVerifiableCertificate, KeyId
from jpki.issuer import card_face
from jpki.issuer.holder import Holder, Sex
from jpki.relying_party.card_face import FaceCheck, check_card_face
from jpki.tlv import children, read_tlv

ROOT_ID = KeyId("9000020", "001")
ISSUER_ID = KeyId("9000023", "001")
MUNICIPALITY_ID = KeyId("9131131", "000")
HOLDER = Holder(
    "番号\u3000太郎", datetime.date(1980, 2, 17), Sex.MALE, "東京都渋谷区１番", "123456789018"
)
EXPIRY = datetime.date(2034, 2, 17)
SECURITY_CODE = "2285"
# Stand-ins for the images, of sizes that take each BER length form: the records only carry them.
NAME_PNG = b"\x89PNG name" + bytes(291)  # 300 bytes: 82 01 2C
ADDRESS_PNG = b"\x89PNG address" + bytes(188)  # 200: 81 C8
PHOTO_JP2 = bytes.fromhex("0000000C6A502020") + bytes(3992)  # 4000: 82 0F A0
SECURITY_CODE_PNG = b"\x89PNG code" + bytes(91)  # 100: 64
MY_NUMBER_PNG = b"\x89PNG my number" + bytes(136)  # 150: 81 96
DIGEST_INFO_HEADER = bytes.fromhex("3071300D060960864801650304020105000460")
CHALLENGE = bytes(range(16))


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclasses.dataclass(frozen=True)
class Hierarchy:
    root: CardVerifiableCertificate
    issuer: CardVerifiableCertificate
    municipality: CardVerifiableCertificate
    root_key: rsa.RSAPrivateKey
    issuer_key: rsa.RSAPrivateKey
    signer: rsa.RSAPrivateKey


@pytest.fixture(scope="module")
def hierarchy() -> Hierarchy:
    root_key, issuer_key, signer = new_key(), new_key(), new_key()
    return Hierarchy(
        root=cvc.issue(root_key.public_key(), ROOT_ID, root_key, ROOT_ID),
        issuer=cvc.issue(issuer_key.public_key(), ISSUER_ID, root_key, ROOT_ID),
        municipality=cvc.issue(signer.public_key(), MUNICIPALITY_ID, issuer_key, ISSUER_ID),
        root_key=root_key,
        issuer_key=issuer_key,
        signer=signer,
    )


@pytest.fixture(scope="module")
def card_key() -> rsa.RSAPrivateKey:
    return new_key()


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return new_key()


def build(
    hierarchy: Hierarchy,
    card_key: rsa.RSAPrivateKey,
    forged: str | None = None,
    *,
    signer: rsa.RSAPrivateKey | None = None,
    signer_cvc: bytes | None = None,
) -> dict[int, bytes]:
    return card_face.card_face_files(
        HOLDER,
        card_key=card_key.public_key(),
        signer=signer or hierarchy.signer,
        signer_cvc=hierarchy.municipality.encode() if signer_cvc is None else signer_cvc,
        card_expiry=EXPIRY,
        security_code=SECURITY_CODE,
        name_png=NAME_PNG,
        address_png=ADDRESS_PNG,
        photo_jp2=PHOTO_JP2,
        security_code_png=SECURITY_CODE_PNG,
        my_number_png=MY_NUMBER_PNG,
        municipality_code="13113",
        forged=forged,
    )


@pytest.fixture(scope="module")
def files(hierarchy: Hierarchy, card_key: rsa.RSAPrivateKey) -> dict[int, bytes]:
    return build(hierarchy, card_key)


def objects(record: bytes) -> list[tuple[int, str, bytes]]:
    """(offset, tag, value) of each object inside the record's outer TLV."""
    _tag, start, end = read_tlv(record, 0)
    assert end == len(record)  # no filler
    return [(at, tag.hex().upper(), record[s:e]) for tag, at, s, e in children(record, start, end)]


def card_key_form(key: rsa.RSAPrivateKey) -> bytes:
    return bytes.fromhex("900301000191820100") + key.public_key().public_numbers().n.to_bytes(
        256, "big"
    )


# --- the files, byte by byte -----------------------------------------------------------------


def test_the_ap_has_its_six_files(files: dict[int, bytes], hierarchy: Hierarchy) -> None:
    assert sorted(files) == [1, 2, 3, 4, 5, 6]
    assert files[CardFaceFile.AP_CERTIFICATE] == hierarchy.municipality.encode()
    assert len(files[CardFaceFile.AP_CERTIFICATE]) == 568
    assert files[CardFaceFile.UNKNOWN] == b"\xff" * 16


def test_age_record_layout(
    files: dict[int, bytes], hierarchy: Hierarchy, card_key: rsa.RSAPrivateKey
) -> None:
    record = files[CardFaceFile.AGE_RECORD]
    assert len(record) == 547
    assert record[:5] == bytes.fromhex("FF1082021E")
    assert record[5:16] == bytes.fromhex("DF1108") + b"19800217"
    assert record[16:21] == bytes.fromhex("DF12820109")
    assert record[21:286] == card_key_form(card_key)
    assert record[286:291] == bytes.fromhex("DF13820100")
    signer = hierarchy.signer.public_key()
    signer.verify(record[291:], record[5:286], padding.PKCS1v15(), hashes.SHA256())

    parsed = parse_age_record(record)
    assert parsed.birth_date == "19800217"
    assert parsed.card_key.public_numbers() == card_key.public_key().public_numbers()
    assert record_signature_valid(parsed, signer)
    assert not record_signature_valid(parsed, card_key.public_key())


def test_face_layout_and_offsets(files: dict[int, bytes], card_key: rsa.RSAPrivateKey) -> None:
    face = files[CardFaceFile.FACE]
    assert face[:3] == bytes.fromhex("FF2082")
    assert int.from_bytes(face[3:5], "big") == len(face) - 5
    found = objects(face)
    assert [tag for _at, tag, _value in found] == [f"DF{n:X}" for n in range(0x21, 0x2B)]
    offsets_at, _tag, offsets = found[0]
    assert (offsets_at, face[5:7], len(offsets)) == (5, bytes.fromhex("DF21"), 18)
    pointed = [int.from_bytes(offsets[i : i + 2], "big") for i in range(0, 18, 2)]
    assert pointed[0] == 0x1A
    assert pointed == [at for at, _tag, _value in found[1:]]

    values = {tag: value for _at, tag, value in found}
    assert values["DF22"] == b"19800217"
    assert values["DF23"] == b"1"
    assert values["DF24"] == card_key_form(card_key)
    assert (values["DF25"], values["DF26"], values["DF27"]) == (NAME_PNG, ADDRESS_PNG, PHOTO_JP2)
    assert len(values["DF28"]) == 256
    assert values["DF29"] == b"20340217"
    assert values["DF2A"] == SECURITY_CODE_PNG
    # Each BER length form, as written by the card.
    assert face[pointed[2] : pointed[2] + 5] == bytes.fromhex("DF24820109")
    assert face[pointed[3] : pointed[3] + 5] == bytes.fromhex("DF2582012C")
    assert face[pointed[4] : pointed[4] + 4] == bytes.fromhex("DF2681C8")
    assert face[pointed[6] : pointed[6] + 5] == bytes.fromhex("DF28820100")
    assert face[pointed[8] : pointed[8] + 3] == bytes.fromhex("DF2A64")


def test_face_signature_covers_three_groups(files: dict[int, bytes], hierarchy: Hierarchy) -> None:
    face = files[CardFaceFile.FACE]
    found = objects(face)
    at = [offset for offset, _tag, _value in found] + [len(face)]
    g1, g2, g3 = face[at[1] : at[4]], face[at[4] : at[6]], face[at[6] : at[7]]
    signature = found[7][2]

    recovered = hierarchy.signer.public_key().recover_data_from_signature(
        signature, padding.PKCS1v15(), utils.NoDigestInfo()
    )
    digests = b"".join(hashlib.sha256(group).digest() for group in (g1, g2, g3))
    assert recovered == DIGEST_INFO_HEADER + digests
    # A SHA-256 DigestInfo whose digest declares 96 bytes.
    info = algos.DigestInfo.load(recovered)
    assert info["digest_algorithm"]["algorithm"].native == "sha256"
    assert len(info["digest"].native) == 96 and recovered[17:19] == bytes.fromhex("0460")

    parsed = parse_face(face)
    assert parsed.signed_digest_info == recovered
    assert face_signature_valid(parsed, hierarchy.signer.public_key())
    assert not face_signature_valid(parsed, hierarchy.issuer_key.public_key())


def test_face_parses_back(files: dict[int, bytes], card_key: rsa.RSAPrivateKey) -> None:
    face = parse_face(files[CardFaceFile.FACE] + b"\xff" * 32)  # filler after it is read past
    assert (face.birth_date, face.sex, face.expiry) == ("19800217", "1", "20340217")
    assert (face.name_png, face.address_png, face.photo_jp2) == (NAME_PNG, ADDRESS_PNG, PHOTO_JP2)
    assert face.security_code_png == SECURITY_CODE_PNG
    assert face.card_key.public_numbers() == card_key.public_key().public_numbers()


def test_basic_info_layout(files: dict[int, bytes]) -> None:
    info = files[CardFaceFile.AP_BASIC_INFO]
    assert len(info) == 320
    assert info[:64] == (
        bytes.fromhex("FF3082013BDF310406030E01DF3210")
        + b"9000024\x08\x05001\x00\x00\x00\x00"
        + bytes.fromhex("DF330100DF3405")
        + b"13113"
        + bytes.fromhex("DF35820110")
        + b"9000025\x08\x05001\x00\x00\x00\x00"
    )
    # DF35's 256 bytes are random: another card has others.
    assert card_face.ap_basic_info("13113")[64:] != info[64:]


def test_my_number_image_layout(
    files: dict[int, bytes], hierarchy: Hierarchy, card_key: rsa.RSAPrivateKey
) -> None:
    record = files[CardFaceFile.MY_NUMBER_IMAGE]
    assert record[:3] == bytes.fromhex("FF4082")
    assert int.from_bytes(record[3:5], "big") == len(record) - 5
    assert [(tag, value[:4]) for _at, tag, value in objects(record)][:2] == [
        ("DF41", MY_NUMBER_PNG[:4]),
        ("DF42", bytes.fromhex("90030100")),
    ]
    assert record[5:8] == bytes.fromhex("DF4181") and len(record) == 5 + 154 + 270 + 261

    parsed = parse_my_number_image(record)
    assert parsed.png == MY_NUMBER_PNG
    assert parsed.signed == record[5 : 5 + 154 + 270]
    assert record_signature_valid(parsed, hierarchy.signer.public_key())
    assert not record_signature_valid(parsed, card_key.public_key())


def test_the_card_key_is_the_same_in_the_three_records(
    files: dict[int, bytes], card_key: rsa.RSAPrivateKey
) -> None:
    keys = [
        parse_age_record(files[CardFaceFile.AGE_RECORD]).card_key,
        parse_face(files[CardFaceFile.FACE]).card_key,
        parse_my_number_image(files[CardFaceFile.MY_NUMBER_IMAGE]).card_key,
    ]
    assert {key.public_numbers() for key in keys} == {card_key.public_key().public_numbers()}


def test_the_keys_that_open_the_ap() -> None:
    assert card_face.card_face_keys(HOLDER, card_expiry=EXPIRY, security_code="2285") == {
        CardFaceFile.BIRTH_DATE_KEY: "550217",
        CardFaceFile.COLLATION_NUMBER_B: "55021720342285",
        CardFaceFile.COLLATION_NUMBER_A: "123456789018",
    }


# --- what the builder refuses -----------------------------------------------------------------


def test_the_cvc_must_certify_the_signer(
    hierarchy: Hierarchy, card_key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey
) -> None:
    with pytest.raises(ValueError, match="does not certify the signer"):
        build(hierarchy, card_key, signer=other_key)
    with pytest.raises(ValueError, match="7F21 wrapper"):
        build(hierarchy, card_key, signer_cvc=hierarchy.municipality.encode(bare=True))
    with pytest.raises(ValueError, match="signer_cvc: not a card-verifiable certificate"):
        build(hierarchy, card_key, signer_cvc=b"\x7f\x21\x00")


def test_unknown_forgeries_are_refused(hierarchy: Hierarchy, card_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(ValueError, match="forged is one of"):
        build(hierarchy, card_key, forged="photo")


# --- parsing refuses what is not a card-face record -------------------------------------------


def _replace_at(data: bytes, offset: int, new: bytes) -> bytes:
    return data[:offset] + new + data[offset + len(new) :]


FACE_DAMAGE: list[tuple[str, Callable[[bytes], bytes], str]] = [
    ("other tag", lambda face: _replace_at(face, 1, b"\x21"), "starts with tag FF21"),
    ("truncated", lambda face: face[:-1], "runs past the end"),
    ("garbage after", lambda face: face + b"\x00", "other than filler"),
    ("offset moved", lambda face: _replace_at(face, 11, b"\x26"), "puts DF23 at offset 38,"),
    ("object renamed", lambda face: _replace_at(face, 0x1A + 1, b"\x2b"), "not DF21, DF22"),
    ("birth date", lambda face: _replace_at(face, 0x1A + 3, b"1980021X"), "not 8 ASCII digits"),
    ("no such day", lambda face: _replace_at(face, 0x1A + 3, b"19800230"), "not a date"),
    ("key tag", lambda face: _replace_at(face, 0x1A + 11 + 4 + 5, b"\x92"), "card key \\(DF24\\)"),
]


@pytest.mark.parametrize(("damage", "message"), [(d, m) for _n, d, m in FACE_DAMAGE],
                         ids=[name for name, _d, _m in FACE_DAMAGE])  # fmt: skip
def test_malformed_faces_are_refused_in_words(
    files: dict[int, bytes], damage: Callable[[bytes], bytes], message: str
) -> None:
    with pytest.raises(CardFaceFormatError, match=message) as raised:
        parse_face(damage(files[CardFaceFile.FACE]))
    assert str(raised.value).startswith("EF 0002")


def test_malformed_records_are_refused(files: dict[int, bytes]) -> None:
    age = files[CardFaceFile.AGE_RECORD]
    with pytest.raises(CardFaceFormatError, match="EF 0001 holds DF11, DF12, DF14"):
        parse_age_record(_replace_at(age, 286, b"\xdf\x14"))
    with pytest.raises(CardFaceFormatError, match="EF 0001 starts with tag FF40"):
        parse_age_record(files[CardFaceFile.MY_NUMBER_IMAGE])
    with pytest.raises(CardFaceFormatError, match="EF 0005"):
        parse_my_number_image(files[CardFaceFile.MY_NUMBER_IMAGE][:-10])


# --- the verifier's check ------------------------------------------------------------------------


def check(
    hierarchy: Hierarchy,
    files: dict[int, bytes],
    chip_key: rsa.RSAPrivateKey,
    *,
    root: CardVerifiableCertificate | None = None,
    issuer_cvc: bytes | None = None,
) -> FaceCheck:
    return check_card_face(
        root=root or hierarchy.root,
        issuer_cvc=hierarchy.issuer.encode(bare=True) if issuer_cvc is None else issuer_cvc,
        ap_cvc=files[CardFaceFile.AP_CERTIFICATE],
        face=files[CardFaceFile.FACE],
        challenge=CHALLENGE,
        challenge_signature=chip_key.sign(CHALLENGE, padding.PKCS1v15(), hashes.SHA256()),
    )


def test_a_genuine_card_passes(
    hierarchy: Hierarchy, files: dict[int, bytes], card_key: rsa.RSAPrivateKey
) -> None:
    result = check(hierarchy, files, card_key)
    assert result.ok and result.failures == []
    assert result.chain.reason == (
        "EF 0004 certifies 9131131/000, issued by 9000023/001, issued by the pinned root "
        "9000020/001"
    )
    assert result.face is not None and result.face.birth_date == "19800217"


def test_a_copied_chip_fails_the_challenge(
    hierarchy: Hierarchy,
    files: dict[int, bytes],
    other_key: rsa.RSAPrivateKey,
) -> None:
    result = check(hierarchy, files, other_key)
    assert result.chain.passed and result.face_signature.passed
    assert result.failures == [
        "the chip did not sign the challenge with the key in its face record (copied chip?)"
    ]


def test_a_forged_face_signature_fails_step_2(
    hierarchy: Hierarchy, card_key: rsa.RSAPrivateKey
) -> None:
    forged = build(hierarchy, card_key, forged="face-signature")
    result = check(hierarchy, forged, card_key)
    assert result.chain.passed and result.chip.passed
    assert result.failures == ["the card-face signature does not verify"]
    # Only DF28 is forged: the other records are the municipality's.
    signer = hierarchy.signer.public_key()
    assert record_signature_valid(parse_age_record(forged[CardFaceFile.AGE_RECORD]), signer)


def test_records_signed_by_a_forger_whose_cvc_the_issuer_did_not_sign_fail_step_1(
    hierarchy: Hierarchy, card_key: rsa.RSAPrivateKey
) -> None:
    forged = build(hierarchy, card_key, forged="cvc")
    forged_cvc = cvc.CardVerifiableCertificate.parse(forged[CardFaceFile.AP_CERTIFICATE])
    genuine = hierarchy.municipality
    assert (forged_cvc.issuer, forged_cvc.subject) == (genuine.issuer, genuine.subject)
    result = check(hierarchy, forged, card_key)
    assert result.face_signature.passed and result.chip.passed  # under the forger's own CVC
    assert not result.chain.passed and "EF 0004" in result.chain.reason
    signer = hierarchy.signer.public_key()
    assert not record_signature_valid(parse_age_record(forged[CardFaceFile.AGE_RECORD]), signer)
    image = parse_my_number_image(forged[CardFaceFile.MY_NUMBER_IMAGE])
    assert not record_signature_valid(image, signer)


def test_another_root_fails_step_1(
    hierarchy: Hierarchy,
    files: dict[int, bytes],
    card_key: rsa.RSAPrivateKey,
    other_key: rsa.RSAPrivateKey,
) -> None:
    impostor = cvc.issue(other_key.public_key(), ROOT_ID, other_key, ROOT_ID)
    result = check(hierarchy, files, card_key, root=impostor)
    assert result.failures == [
        "the card-verifiable certificate in MF 7F21 is not signed by 9000020/001"
    ]
    # The other steps are still checked and reported.
    assert result.face_signature.passed and result.chip.passed


def test_an_ap_cvc_from_another_issuer_fails_step_1(
    hierarchy: Hierarchy,
    files: dict[int, bytes],
    card_key: rsa.RSAPrivateKey,
    other_key: rsa.RSAPrivateKey,
) -> None:
    # A second "9000023/001", certified by the root, but not the key that signed EF 0004.
    other_issuer = cvc.issue(other_key.public_key(), ISSUER_ID, hierarchy.root_key, ROOT_ID)
    result = check(hierarchy, files, card_key, issuer_cvc=other_issuer.encode(bare=True))
    assert result.failures == [
        "the card-verifiable certificate in EF 0004 is not signed by 9000023/001"
    ]


def test_an_issuer_cvc_naming_another_root_fails_step_1(
    hierarchy: Hierarchy, files: dict[int, bytes], card_key: rsa.RSAPrivateKey
) -> None:
    renamed = cvc.issue(
        hierarchy.issuer_key.public_key(), ISSUER_ID, hierarchy.root_key, KeyId("6000020", "001")
    )
    result = check(hierarchy, files, card_key, issuer_cvc=renamed.encode(bare=True))
    assert result.failures == [
        "the card-verifiable certificate in MF 7F21 names 6000020/001 as its issuer, "
        "not 9000020/001"
    ]


def test_an_unreadable_face_fails_steps_2_and_3(
    hierarchy: Hierarchy, files: dict[int, bytes], card_key: rsa.RSAPrivateKey
) -> None:
    broken = dict(files)
    broken[CardFaceFile.FACE] = files[CardFaceFile.FACE][:100]
    result = check(hierarchy, broken, card_key)
    assert result.chain.passed and not result.ok and result.face is None
    assert result.face_signature.reason.startswith("EF 0002 is not a card-face record: ")
    assert result.chip.reason.startswith("the chip was not checked: EF 0002")
