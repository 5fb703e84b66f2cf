"""The card-info AP's text records as any client reads them: the my number (EF 0001) and the
basic four attributes (EF 0002), in both outer-header forms cards are issued with.

EF 0001  FF 10 0C <12 ASCII digits> FF FF
EF 0002  FF 20 LL | FF 20 81 LL | FF 20 82 HH LL {
           DF21 08 <four u16 offsets of DF22..DF25 from the file's first byte>,
           DF22 <name, UTF-8>, DF23 <address, UTF-8>, DF24 08 <YYYYMMDD>, DF25 01 <sex> }
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Literal

from jpki.tlv import LENGTH_TWO_BYTES, children, read_tlv

MY_NUMBER_TAG = b"\xff\x10"
ATTRIBUTES_TAG = b"\xff\x20"
OFFSETS_TAG = b"\xdf\x21"
NAME_TAG = b"\xdf\x22"
ADDRESS_TAG = b"\xdf\x23"
BIRTH_DATE_TAG = b"\xdf\x24"
SEX_TAG = b"\xdf\x25"
FIELD_TAGS = (NAME_TAG, ADDRESS_TAG, BIRTH_DATE_TAG, SEX_TAG)
OFFSET_SIZE = 2
MY_NUMBER_DIGITS = 12
BIRTH_DATE_FORMAT = "%Y%m%d"
# ISO 5218, as the card writes it; the card issues 1, 2 and 9.
SEX_LABELS = {"0": "not known", "1": "male", "2": "female", "9": "not applicable"}
# Where the outer length starts: after the two tag bytes.
OUTER_LENGTH_AT = len(ATTRIBUTES_TAG)

HeaderForm = Literal["short", "long"]


class MalformedRecordError(ValueError):
    """A card-info record that is not what the card writes; the message says what is wrong."""


@dataclass(frozen=True)
class BasicAttributes:
    """The basic four attributes (基本4情報) as the card-info AP holds them."""

    name: str  # family and given name separated by U+3000
    address: str
    birth_date: datetime.date
    sex: str  # ISO 5218 code: "1" male, "2" female, "9" not applicable
    header_form: HeaderForm  # "long": the outer length written `82 HH LL`; "short": `LL`/`81 LL`

    @property
    def sex_label(self) -> str:
        return SEX_LABELS[self.sex]

    def to_json(self) -> dict[str, str]:
        return {
            "name": self.name,
            "address": self.address,
            "birth_date": self.birth_date.isoformat(),
            "sex": self.sex,
            "sex_label": self.sex_label,
            "header_form": self.header_form,
        }


def _record(data: bytes, tag: bytes, what: str) -> tuple[int, int]:
    """(start, end) of the value of the record's outer TLV, which must have `tag`."""
    try:
        found, start, end = read_tlv(data, 0)
    except ValueError as error:
        raise MalformedRecordError(f"{what}: {error}") from None
    if found != tag:
        raise MalformedRecordError(
            f"{what}: expected tag {tag.hex().upper()}, found {found.hex().upper()}"
        )
    return start, end


def _text(value: bytes, what: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedRecordError(f"the {what} is not UTF-8") from None


def parse_my_number(data: bytes) -> str:
    """The 12 digits of EF 0001 (filler after the TLV, as a whole-EF read returns, is ignored)."""
    start, end = _record(data, MY_NUMBER_TAG, "my number record")
    digits = data[start:end]
    if len(digits) != MY_NUMBER_DIGITS or not digits.isdigit():
        raise MalformedRecordError(f"my number record: not {MY_NUMBER_DIGITS} ASCII digits")
    return digits.decode("ascii")


def parse_basic_attributes(data: bytes) -> BasicAttributes:
    """EF 0002, in either header form; the DF21 offsets must point at the four fields."""
    start, end = _record(data, ATTRIBUTES_TAG, "basic attributes record")
    header_form: HeaderForm = "long" if data[OUTER_LENGTH_AT] == LENGTH_TWO_BYTES else "short"
    try:
        fields = list(children(data, start, end))
    except ValueError as error:
        raise MalformedRecordError(f"basic attributes record: {error}") from None
    tags = [field_tag for field_tag, _at, _start, _end in fields]
    if tags != [OFFSETS_TAG, *FIELD_TAGS]:
        shown = " ".join(field_tag.hex().upper() for field_tag in tags)
        raise MalformedRecordError(
            f"basic attributes record: expected DF21 DF22 DF23 DF24 DF25, found {shown}"
        )
    offsets = data[fields[0][2] : fields[0][3]]
    if len(offsets) != OFFSET_SIZE * len(FIELD_TAGS):
        raise MalformedRecordError("basic attributes record: DF21 is not four offsets")
    pointed = [int.from_bytes(offsets[i : i + OFFSET_SIZE], "big") for i in range(0, 8, 2)]
    if pointed != [at for _tag, at, _start, _end in fields[1:]]:
        raise MalformedRecordError("basic attributes record: DF21 offsets do not match the fields")
    name, address, birth, sex = (data[value_start:value_end]
                                 for _tag, _at, value_start, value_end in fields[1:])  # fmt: skip
    try:
        if len(birth) != len("YYYYMMDD") or not birth.isdigit():
            raise ValueError
        birth_date = datetime.datetime.strptime(birth.decode("ascii"), BIRTH_DATE_FORMAT).date()
    except ValueError:
        raise MalformedRecordError("basic attributes record: birth date is not YYYYMMDD") from None
    sex_code = sex.decode("ascii", errors="replace")
    if sex_code not in SEX_LABELS:
        raise MalformedRecordError(f"basic attributes record: unknown sex code {sex.hex()}")
    return BasicAttributes(
        name=_text(name, "name"),
        address=_text(address, "address"),
        birth_date=birth_date,
        sex=sex_code,
        header_form=header_form,
    )
