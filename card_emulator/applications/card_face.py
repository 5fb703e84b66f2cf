"""The card-face AP (券面事項確認AP) as data: the face records and the three keys that open them.

Each key opens exactly what the real card's does (spec §5): the birth-date key the age record;
collation number B the face and EF 0006; collation number A those and the my-number image. Their
values come from the printed face, so no one can change them.
"""

from __future__ import annotations

from card_emulator.applications.model import (
    Always,
    Application,
    BinaryFile,
    KeyFile,
    KeyUse,
    Never,
    PinFile,
    PinVerified,
)
from card_emulator.vocabulary.identifiers import AID, CardFaceFile, CardInfoFile
from card_emulator.vocabulary.pins import Pin
from card_emulator.vocabulary.sw import SW

B_OR_A = PinVerified(CardFaceFile.COLLATION_NUMBER_B, CardFaceFile.COLLATION_NUMBER_A)

CARD_FACE = Application(
    name="card-face",
    aid=AID.CARD_FACE_CONFIRMATION.value,
    label="券面事項確認AP (card face)",
    files=(
        BinaryFile(CardFaceFile.AGE_RECORD, "age record", PinVerified(CardFaceFile.BIRTH_DATE_KEY)),
        BinaryFile(CardFaceFile.FACE, "card face", B_OR_A),
        BinaryFile(CardFaceFile.AP_BASIC_INFO, "AP basic info"),
        BinaryFile(CardFaceFile.AP_CERTIFICATE, "AP card-verifiable certificate"),
        BinaryFile(
            CardFaceFile.MY_NUMBER_IMAGE,
            "my-number image",
            PinVerified(CardFaceFile.COLLATION_NUMBER_A),
        ),
        BinaryFile(CardFaceFile.UNKNOWN, "unknown (16 × FF)", B_OR_A),
        PinFile.of(Pin.BIRTH_DATE, change=Never()),
        PinFile.of(
            Pin.FACE_B, change=Never(), shared_with=("card-info", CardInfoFile.COLLATION_NUMBER_B)
        ),
        PinFile.of(
            Pin.FACE_A, change=Never(), shared_with=("card-info", CardInfoFile.COLLATION_NUMBER_A)
        ),
        KeyFile(CardFaceFile.CARD_KEY, "card key", use=Always(), kind=KeyUse.CARD_KEY),
    ),
    session_key_refusal=SW.SESSION_KEY_NOT_SUPPORTED,
)
