"""Tests of the card-face AP's images and of the drawing of the card's front, read back with
Pillow and, for the front, with tesseract OCR as a person or a terminal reads the printed card."""

from __future__ import annotations

import datetime
import io
import re
import subprocess
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from jpki.errors import BadValueError
from jpki.issuer import card_info, face_images
from jpki.issuer.face_images import CardFront
from jpki.issuer.holder import UNKNOWN_ERA, Holder, Sex, era_code, with_check_digit

JP2_SIGNATURE = bytes.fromhex("0000000C6A502020")  # the JP2 signature box (spec §5, DF27)
NAME = "山田\u3000太郎"
SHORT_ADDRESS = "東京都渋谷区神南一丁目１９番１１号"
LONG_ADDRESS = "東京都千代田区霞が関一丁目二番三号" + "東" * 183  # the longest: 200 characters
SHOWA_55 = datetime.date(1980, 2, 17)
EXPIRY = datetime.date(2035, 2, 17)
PHOTO_BYTES_LIMIT = 8_000
OCR_TIMEOUT_SECONDS = 120


def open_image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def make_front(**changes: object) -> CardFront:
    values: dict[str, object] = {
        "name": NAME,
        "address": SHORT_ADDRESS,
        "birth_date": SHOWA_55,
        "era": 3,
        "sex": "male",
        "card_expiry": EXPIRY,
        "security_code": "2285",
    }
    values.update(changes)
    return CardFront(**values)  # type: ignore[arg-type]


# --- wareki -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (datetime.date(1980, 2, 17), "昭和55年2月17日"),
        (datetime.date(1989, 1, 7), "昭和64年1月7日"),
        (datetime.date(1989, 1, 8), "平成元年1月8日"),
        (datetime.date(1992, 2, 29), "平成4年2月29日"),
        (datetime.date(2019, 4, 30), "平成31年4月30日"),
        (datetime.date(2019, 5, 1), "令和元年5月1日"),
        (datetime.date(2025, 12, 31), "令和7年12月31日"),
        (datetime.date(1926, 12, 25), "昭和元年12月25日"),
    ],
)
def test_wareki_in_the_era_of_the_date(day: datetime.date, expected: str) -> None:
    assert face_images.wareki(day, era_code(day)) == expected


def test_wareki_keeps_the_era_given() -> None:
    # A holder recorded in Heisei keeps it even when the date is in a later era.
    assert face_images.wareki(datetime.date(2019, 5, 1), 4) == "平成31年5月1日"


def test_wareki_of_the_unknown_era_is_gregorian() -> None:
    assert face_images.wareki(datetime.date(1965, 7, 4), UNKNOWN_ERA) == "1965年7月4日"


@pytest.mark.parametrize(("day", "era"), [(datetime.date(1989, 1, 7), 4), (SHOWA_55, 9)])
def test_wareki_refuses_an_era_that_cannot_hold_the_date(day: datetime.date, era: int) -> None:
    with pytest.raises(BadValueError):
        face_images.wareki(day, era)


# --- the chip's images ----------------------------------------------------------------------


def test_name_image_is_one_line_of_1_bit() -> None:
    short = open_image(face_images.name_image(NAME))
    longer = open_image(face_images.name_image("長谷川\u3000健太郎左衛門"))
    assert short.format == "PNG" and short.mode == "1"
    assert longer.height == short.height  # one line, however long
    assert longer.width > short.width


def test_name_image_has_ink() -> None:
    image = open_image(face_images.name_image(NAME)).convert("L")
    assert image.getextrema() == (0, 255)


def test_address_image_wraps_a_long_address() -> None:
    short = open_image(face_images.address_image(SHORT_ADDRESS))
    long = open_image(face_images.address_image(LONG_ADDRESS))
    assert short.format == long.format == "PNG"
    assert short.mode == long.mode == "1"
    assert long.width == short.width  # wrapped, not widened
    assert long.height > 4 * short.height


@pytest.mark.parametrize(
    ("draw", "value", "size"),
    [
        (face_images.security_code_image, "2285", (24, 12)),
        (face_images.my_number_image, "123456789018", (72, 12)),
    ],
)
def test_digit_images_have_the_card_size(
    draw: Callable[[str], bytes], value: str, size: tuple[int, int]
) -> None:
    image = open_image(draw(value))
    assert image.format == "PNG"
    assert image.mode == "1"
    assert image.size == size
    assert image.convert("L").getextrema() == (0, 255)


def test_digit_images_differ_by_value() -> None:
    assert face_images.security_code_image("2285") != face_images.security_code_image("2286")
    assert face_images.my_number_image("123456789018") != face_images.my_number_image(
        with_check_digit("12345678902")
    )


@pytest.mark.parametrize("code", ["228", "22855", "22a5", "２２８５"])
def test_security_code_image_refuses_other_than_4_digits(code: str) -> None:
    with pytest.raises(BadValueError):
        face_images.security_code_image(code)


# --- the photo ------------------------------------------------------------------------------


def test_synthetic_photo_is_a_small_greyscale_jp2() -> None:
    photo = face_images.synthetic_photo("taro")
    assert photo.startswith(JP2_SIGNATURE)
    assert len(photo) < PHOTO_BYTES_LIMIT
    image = open_image(photo)
    assert image.format == "JPEG2000"
    assert image.mode == "L"
    assert image.size == face_images.PHOTO_SIZE


def test_synthetic_photo_is_deterministic_per_seed() -> None:
    assert face_images.synthetic_photo("taro") == face_images.synthetic_photo("taro")
    assert face_images.synthetic_photo("taro") != face_images.synthetic_photo("hanako")


def test_photo_png_shows_the_photo() -> None:
    photo = face_images.synthetic_photo("taro")
    image = open_image(face_images.photo_png(photo))
    assert image.format == "PNG"
    assert image.size == face_images.PHOTO_SIZE
    assert image.mode == "L"
    shades = image.tobytes()
    assert max(shades) - min(shades) > 100  # a figure on a ground, not a blank


# --- the front of the card ------------------------------------------------------------------


def test_card_front_is_an_id1_sized_png() -> None:
    image = open_image(
        face_images.card_front_image(make_front(), face_images.synthetic_photo("taro"))
    )
    assert image.format == "PNG"
    assert image.size == (1712, 1080)
    assert image.mode == "RGB"


def test_card_front_shows_the_photo() -> None:
    left, top, right, bottom = face_images.FRONT_PHOTO_BOX
    fronts = [
        open_image(face_images.card_front_image(make_front(), face_images.synthetic_photo(seed)))
        for seed in ("taro", "hanako")
    ]
    photo_areas = [front.crop((left, top, right, bottom)).tobytes() for front in fronts]
    assert photo_areas[0] != photo_areas[1]


def test_card_front_draws_the_longest_address() -> None:
    front = make_front(address=LONG_ADDRESS, sex="not-applicable", era=UNKNOWN_ERA)
    image = open_image(face_images.card_front_image(front, face_images.synthetic_photo("x")))
    assert image.size == (1712, 1080)


@pytest.mark.parametrize(
    "changes", [{"sex": "unknown"}, {"security_code": "123"}, {"security_code": "12a4"}]
)
def test_card_front_refuses_bad_values(changes: dict[str, object]) -> None:
    with pytest.raises(BadValueError):
        make_front(**changes)


def test_card_front_refuses_a_photo_that_is_not_an_image() -> None:
    with pytest.raises(BadValueError, match="photo"):
        face_images.card_front_image(make_front(), b"not a photo")


def test_missing_font_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(face_images, "FONT_PATHS", (Path("/nonexistent/font.ttf"),))
    face_images.japanese_font.cache_clear()
    try:
        with pytest.raises(face_images.FontMissingError) as raised:
            face_images.name_image(NAME)
    finally:
        face_images.japanese_font.cache_clear()
    message = str(raised.value)
    assert "\n" not in message
    assert "fonts-ipaexfont-gothic" in message
    assert "scripts/install-system-packages" in message


# --- OCR of the front gives the chip's collation number B ----------------------------------


@dataclass(frozen=True)
class ReadFront:
    """What OCR read off the front of a card."""

    birth_era_year: int  # the two digits of the birth year that collation number B uses
    birth_month: int
    birth_day: int
    expiry: datetime.date
    security_code: str

    @property
    def collation_number_b(self) -> str:
        """照合番号B as a terminal makes it from the printed face."""
        return (
            f"{self.birth_era_year:02d}{self.birth_month:02d}{self.birth_day:02d}"
            f"{self.expiry.year:04d}{self.security_code}"
        )


BIRTH_PATTERN = re.compile(r"(?:昭和|平成|令和)?(元|\d{1,4})年(\d{1,2})月(\d{1,2})日生")
EXPIRY_PATTERN = re.compile(r"(\d{4})年(\d{1,2})月(\d{1,2})日まで有効")
SECURITY_CODE_PATTERN = re.compile(r"セキュリティコード(\d{4})(?!\d)")


def read_front(text: str) -> ReadFront:
    """Parses tesseract's text of a card front; AssertionError when a field is not found."""
    flat = re.sub(r"\s+", "", unicodedata.normalize("NFKC", text))  # tesseract spaces out CJK
    birth = BIRTH_PATTERN.search(flat)
    expiry = EXPIRY_PATTERN.search(flat)
    code = SECURITY_CODE_PATTERN.search(flat)
    assert birth and expiry and code, f"OCR text lacks a field: {text!r}"
    year = 1 if birth.group(1) == "元" else int(birth.group(1)) % 100
    return ReadFront(
        birth_era_year=year,
        birth_month=int(birth.group(2)),
        birth_day=int(birth.group(3)),
        expiry=datetime.date(*(int(part) for part in expiry.groups())),
        security_code=code.group(1),
    )


def ocr(png: bytes) -> str:
    """The text tesseract reads in `png`, with its Japanese model; psm 11: sparse text."""
    result = subprocess.run(
        ["tesseract", "stdin", "stdout", "-l", "jpn", "--psm", "11"],
        input=png,
        capture_output=True,
        check=True,
        timeout=OCR_TIMEOUT_SECONDS,
    )
    return result.stdout.decode()


OCR_HOLDERS = [
    # name, birth date, era, sex, card expiry, security code
    ("山田\u3000太郎", datetime.date(1980, 2, 17), 3, Sex.MALE, datetime.date(2035, 2, 17), "2285"),
    (
        "佐藤\u3000花子",
        datetime.date(1992, 2, 29),
        4,
        Sex.FEMALE,
        datetime.date(2033, 2, 28),
        "0917",
    ),
    ("鈴木\u3000一郎", datetime.date(2019, 6, 1), 5, Sex.MALE, datetime.date(2029, 6, 1), "4630"),
    (
        "高橋\u3000元",
        datetime.date(1989, 1, 8),
        4,
        Sex.NOT_APPLICABLE,
        datetime.date(2034, 1, 8),
        "1108",
    ),
    (
        "SMITH\u3000JOHN",
        datetime.date(1965, 7, 4),
        UNKNOWN_ERA,
        Sex.MALE,
        datetime.date(2031, 7, 4),
        "7001",
    ),
]


@pytest.mark.tesseract
@pytest.mark.parametrize(
    ("name", "birth_date", "era", "sex", "expiry", "code"),
    OCR_HOLDERS,
    ids=[holder[1].isoformat() for holder in OCR_HOLDERS],
)
def test_ocr_of_the_front_gives_the_chips_collation_number_b(
    name: str, birth_date: datetime.date, era: int, sex: Sex, expiry: datetime.date, code: str
) -> None:
    holder = Holder(
        name=name,
        birth_date=birth_date,
        sex=sex,
        address=SHORT_ADDRESS,
        my_number="123456789018",
        birth_era=era,
    )
    front = CardFront.of(holder, expiry, code)
    png = face_images.card_front_image(front, face_images.synthetic_photo(name))

    read = read_front(ocr(png))

    assert read.expiry == expiry
    assert read.security_code == code
    assert read.collation_number_b == card_info.collation_number_b(holder, expiry.year, code)
