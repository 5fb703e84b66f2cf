"""The card holder: the four basic attributes, my number, and the residence data of certificates."""

from __future__ import annotations

import datetime
import enum
import json
import re
from dataclasses import asdict, dataclass
from typing import Any

# Start dates of the Japanese eras, newest first, with the JPKI era codes.
ERAS: tuple[tuple[datetime.date, int, str], ...] = (
    (datetime.date(2019, 5, 1), 5, "令和"),
    (datetime.date(1989, 1, 8), 4, "平成"),
    (datetime.date(1926, 12, 25), 3, "昭和"),
    (datetime.date(1912, 7, 30), 2, "大正"),
    (datetime.date(1868, 1, 25), 1, "明治"),
)
UNKNOWN_ERA = 0


class Sex(enum.Enum):
    """Sex as the basic attributes record it (the certificate and card-info codes differ)."""

    MALE = "male"
    FEMALE = "female"
    NOT_APPLICABLE = "not-applicable"

    @property
    def certificate_code(self) -> str:
        """Code in the signature certificate's SAN: 1 male, 2 female, 3 unknown."""
        return {Sex.MALE: "1", Sex.FEMALE: "2", Sex.NOT_APPLICABLE: "3"}[self]

    @property
    def card_info_code(self) -> str:
        """Code in the card-info AP (ISO 5218): 1 male, 2 female, 9 not applicable."""
        return {Sex.MALE: "1", Sex.FEMALE: "2", Sex.NOT_APPLICABLE: "9"}[self]


def era_code(day: datetime.date) -> int:
    """JPKI era code of a Gregorian date (0 before Meiji)."""
    for start, code, _name in ERAS:
        if day >= start:
            return code
    return UNKNOWN_ERA


def check_my_number(number: str) -> bool:
    """True when `number` is 12 digits whose last one is the check digit of the other eleven."""
    if not re.fullmatch(r"[0-9]{12}", number):
        return False
    digits = [int(c) for c in number[:11]][::-1]
    total = sum(d * (n + 1 if n <= 6 else n - 5) for n, d in enumerate(digits, start=1))
    remainder = total % 11
    check = 0 if remainder <= 1 else 11 - remainder
    return check == int(number[11])


def with_check_digit(first_eleven: str) -> str:
    """Complete an 11-digit prefix into a valid 12-digit my number."""
    for last in "0123456789":
        if check_my_number(first_eleven + last):
            return first_eleven + last
    raise ValueError("no check digit fits")  # unreachable for 11 digits


@dataclass(frozen=True)
class Holder:
    """A card holder. `name` is family + U+3000 + given name, as the card stores it."""

    name: str
    birth_date: datetime.date
    sex: Sex
    address: str
    my_number: str
    prefecture: str = "Tokyo-to"  # romaji, as in certificate subjects and CRL partitions
    municipality: str = "Shibuya-ku"
    municipality_code: str = "13113"
    birth_era: int | None = None  # None: derived from the birth date; 0 records an unknown era

    def __post_init__(self) -> None:
        if not check_my_number(self.my_number):
            raise ValueError(
                f"my number must be 12 digits with a valid check digit: {self.my_number!r}"
            )
        if not re.fullmatch(r"[0-9]{5}", self.municipality_code):
            raise ValueError("municipality code must be 5 digits")
        if self.birth_era is not None and not 0 <= self.birth_era <= 5:
            raise ValueError("birth era code must be 0..5")
        if not self.name or not self.address:
            raise ValueError("name and address must not be empty")

    @property
    def era(self) -> int:
        return era_code(self.birth_date) if self.birth_era is None else self.birth_era

    @property
    def certificate_birth_date(self) -> str:
        """Nine ASCII digits: era code + YYYYMMDD, as in the signature certificate."""
        return f"{self.era}{self.birth_date:%Y%m%d}"

    def age_on(self, day: datetime.date) -> int:
        years = day.year - self.birth_date.year
        if (day.month, day.day) < (self.birth_date.month, self.birth_date.day):
            years -= 1
        return years

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["birth_date"] = self.birth_date.isoformat()
        data["sex"] = self.sex.value
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Holder:
        values = dict(data)
        values["birth_date"] = datetime.date.fromisoformat(values["birth_date"])
        values["sex"] = Sex(values["sex"])
        return cls(**values)

    def dumps(self) -> str:
        return json.dumps(self.to_json(), ensure_ascii=False)
