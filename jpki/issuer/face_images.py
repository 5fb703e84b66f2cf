"""Images of the card-face AP (券面事項確認AP) and a drawing of the card's front.

Pure functions returning image bytes (/work/shared/spec/jpki-card.md §5): the name, address,
security-code and my-number PNGs (1-bit), a synthetic greyscale JPEG 2000 photo, and a PNG of
the card's front as people see it, drawn so that OCR reads back what the chip holds. The only
file read is the Japanese font (Debian package `fonts-ipaexfont-gothic`).
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from jpki.errors import BadValueError
from jpki.issuer.holder import ERAS, UNKNOWN_ERA, Holder

FONT_PACKAGE = "fonts-ipaexfont-gothic"
# Where Debian puts a Japanese gothic (sans-serif) font; the first one found is used.
FONT_PATHS = (
    Path("/usr/share/fonts/opentype/ipaexfont-gothic/ipaexg.ttf"),
    Path("/usr/share/fonts/truetype/fonts-japanese-gothic.ttf"),
    Path("/usr/share/fonts/opentype/ipafont-gothic/ipag.ttf"),
    Path("/usr/share/fonts/truetype/takao-gothic/TakaoGothic.ttf"),
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
)

BLACK = 0
WHITE = 255
ONE_BIT = "1"
GREYSCALE = "L"
COLOUR = "RGB"
PNG = "PNG"

# The chip's text images: one line of the name, the address wrapped at a fixed width.
NAME_FONT_SIZE = 32
ADDRESS_FONT_SIZE = 28
ADDRESS_WIDTH = 28 * ADDRESS_FONT_SIZE  # 28 full-width characters a line
TEXT_MARGIN = 4
LINE_SPACING = 6

# The chip's digit images: one 6×12 cell a digit.
DIGIT_CELL = (6, 12)
DIGIT_FONT_SIZE = 10  # at 10 px the 1-bit digits stay apart in their cells
SECURITY_CODE_DIGITS = 4
MY_NUMBER_DIGITS = 12

# The synthetic photo: small, because every card file holds it.
PHOTO_SIZE = (120, 160)
PHOTO_COMPRESSION_RATE = 6  # JPEG 2000 rate: raw size / coded size, about 3 kB
# The seed picks one of each: the ground's shade, the figure's shade, the stripes' spacing.
PHOTO_BACKGROUND_SHADES = range(170, 230)
PHOTO_FIGURE_SHADES = range(60, 120)
PHOTO_STRIPE_GAPS = range(8, 20)
PHOTO_STRIPE_CONTRAST = 12
SAMPLE_MARK = "見本"
SAMPLE_WORD = "SAMPLE"

# The front of the card: ID-1 (85.60 × 53.98 mm) at 508 dpi, 20 pixels a millimetre. Positions
# are (left, baseline) of each line; the text is big and dark on a plain ground for OCR.
FRONT_SIZE = (1712, 1080)
FRONT_MARGIN = 64
FRONT_WHITE = (255, 255, 255)
FRONT_BACKGROUND = (250, 251, 247)
FRONT_BORDER = (150, 170, 190)
FRONT_BORDER_WIDTH = 6
FRONT_CORNER_RADIUS = 64  # 3.18 mm
FRONT_INK = (0, 0, 0)
FRONT_LABEL_INK = (60, 60, 60)
FRONT_PHOTO_BOX = (1216, 150, 1216 + 420, 150 + 560)  # about 21 × 28 mm
FRONT_VALUE_LEFT = 200  # where the name and address start, right of their labels
TITLE_BASELINE = 110
NAME_BASELINE = 250
ADDRESS_BOX = (FRONT_VALUE_LEFT, 300, 1150, 680)  # left, top, right, bottom
BIRTH_BASELINE = 790  # below the photo, so that no line of text runs into it
SEX_GAP = 80
EXPIRY_BASELINE = 900
CODE_BASELINE = 1000  # right-aligned, under the photo
TITLE_SIZE = 60
LABEL_SIZE = 36
NAME_SIZES = (72, 60, 48, 40, 32, 24)  # the first at which the name fits left of the photo
ADDRESS_SIZES = (48, 44, 40, 36, 32, 28, 24, 20)  # the first that fits the address box
DATE_SIZE = 60
CODE_SIZE = 52  # label and digits alike: OCR reads digits beside smaller katakana as katakana
LABEL_GAP = 24

SEX_MARKS = {"male": "男", "female": "女", "not-applicable": "-"}
CARD_TITLE = "個人番号カード"
NAME_LABEL = "氏名"
ADDRESS_LABEL = "住所"
SEX_LABEL = "性別"
BIRTH_SUFFIX = "生"
EXPIRY_SUFFIX = "まで有効"
SECURITY_CODE_LABEL = "セキュリティコード"
FIRST_ERA_YEAR = "元"


class FontMissingError(BadValueError):
    """No Japanese font is installed, so the card's face cannot be drawn."""


@functools.cache
def japanese_font(size: int) -> ImageFont.FreeTypeFont:
    """The Japanese gothic font at `size` pixels; FontMissingError if none is installed."""
    for path in FONT_PATHS:
        if path.is_file():
            return ImageFont.truetype(str(path), size)
    raise FontMissingError(
        f"no Japanese font found: install the Debian package {FONT_PACKAGE} "
        f"(apt-get install {FONT_PACKAGE}, or run scripts/install-system-packages as root)"
    )


def wareki(day: datetime.date, era: int) -> str:
    """`day` in the Japanese era `era` as printed on the card (`昭和55年2月17日`, first year
    `元年`); the Gregorian `1965年7月4日` for the unknown era of foreign residents."""
    if era == UNKNOWN_ERA:
        return f"{day.year}年{day.month}月{day.day}日"
    for start, code, name in ERAS:
        if code == era:
            if day < start:
                raise BadValueError(f"{day.isoformat()} is before the era {name} began")
            year = day.year - start.year + 1
            year_text = FIRST_ERA_YEAR if year == 1 else str(year)
            return f"{name}{year_text}年{day.month}月{day.day}日"
    raise BadValueError(f"unknown era code {era}")


def _png(image: Image.Image, *, smallest: bool = True) -> bytes:
    """`image` as PNG; `smallest` spends time to save bytes (worth it for what cards store)."""
    out = io.BytesIO()
    image.save(out, PNG, optimize=smallest)
    return out.getvalue()


def _text_width(text: str, font: ImageFont.FreeTypeFont) -> int:
    return round(font.getlength(text))


def _line_height(font: ImageFont.FreeTypeFont) -> int:
    ascent, descent = font.getmetrics()
    return ascent + descent


def _text_lines_image(lines: list[str], font: ImageFont.FreeTypeFont, width: int) -> bytes:
    """A 1-bit PNG of `lines`, black on white, `width` wide plus margins."""
    line_height = _line_height(font)
    height = len(lines) * line_height + (len(lines) - 1) * LINE_SPACING + 2 * TEXT_MARGIN
    image = Image.new(ONE_BIT, (width + 2 * TEXT_MARGIN, height), WHITE)
    draw = ImageDraw.Draw(image)
    for index, line in enumerate(lines):
        top = TEXT_MARGIN + index * (line_height + LINE_SPACING)
        draw.text((TEXT_MARGIN, top), line, font=font, fill=BLACK)
    return _png(image)


def _wrap(text: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    """`text` cut into lines no wider than `width` (Japanese has no spaces to break at)."""
    lines: list[str] = []
    line = ""
    for character in text:
        if line and _text_width(line + character, font) > width:
            lines.append(line)
            line = ""
        line += character
    lines.append(line)
    return lines


def name_image(name: str) -> bytes:
    """The name as printed on the card: a 1-bit PNG of one line."""
    font = japanese_font(NAME_FONT_SIZE)
    return _text_lines_image([name], font, max(1, _text_width(name, font)))


def address_image(address: str) -> bytes:
    """The address as printed on the card: a 1-bit PNG, wrapped onto as many lines as needed."""
    font = japanese_font(ADDRESS_FONT_SIZE)
    return _text_lines_image(_wrap(address, font, ADDRESS_WIDTH), font, ADDRESS_WIDTH)


def _digits_image(digits: str, count: int, what: str) -> bytes:
    """A 1-bit PNG of `count` digits, each centred in its own 6×12 cell."""
    if len(digits) != count or not digits.isascii() or not digits.isdigit():
        raise BadValueError(f"the {what} must be {count} digits")
    cell_width, cell_height = DIGIT_CELL
    font = japanese_font(DIGIT_FONT_SIZE)
    image = Image.new(ONE_BIT, (cell_width * count, cell_height), WHITE)
    draw = ImageDraw.Draw(image)
    for index, digit in enumerate(digits):
        centre = (index * cell_width + cell_width / 2, cell_height / 2)
        draw.text(centre, digit, font=font, fill=BLACK, anchor="mm")
    return _png(image)


def security_code_image(code: str) -> bytes:
    """The 4-digit security code as the chip holds it: a 1-bit PNG of 24×12 pixels."""
    return _digits_image(code, SECURITY_CODE_DIGITS, "security code")


def my_number_image(my_number: str) -> bytes:
    """The 12-digit my number as the chip holds it: a 1-bit PNG of 72×12 pixels."""
    return _digits_image(my_number, MY_NUMBER_DIGITS, "my number")


def synthetic_photo(seed: str) -> bytes:
    """A plainly synthetic portrait (a silhouette marked 見本 and SAMPLE) as a greyscale JPEG 2000
    in a JP2 box, a few kB. The same seed always gives the same bytes; the seed picks the shades
    and the background stripes."""
    noise = hashlib.sha256(seed.encode()).digest()
    background = PHOTO_BACKGROUND_SHADES[noise[0] % len(PHOTO_BACKGROUND_SHADES)]
    figure = PHOTO_FIGURE_SHADES[noise[1] % len(PHOTO_FIGURE_SHADES)]
    stripe_gap = PHOTO_STRIPE_GAPS[noise[2] % len(PHOTO_STRIPE_GAPS)]
    stripe_shade = background - PHOTO_STRIPE_CONTRAST
    width, height = PHOTO_SIZE
    image = Image.new(GREYSCALE, PHOTO_SIZE, background)
    draw = ImageDraw.Draw(image)
    for offset in range(-height, width, stripe_gap):
        draw.line([(offset, height), (offset + height, 0)], fill=stripe_shade, width=2)
    draw.ellipse((width // 2 - 26, 22, width // 2 + 26, 86), fill=figure)  # head
    draw.rounded_rectangle((14, 96, width - 14, height + 40), radius=40, fill=figure)  # shoulders
    draw.text((width // 2, 128), SAMPLE_MARK, font=japanese_font(28), fill=WHITE, anchor="mm")
    draw.text((width // 2, 150), SAMPLE_WORD, font=japanese_font(14), fill=WHITE, anchor="mm")
    out = io.BytesIO()
    image.save(
        out,
        "JPEG2000",
        irreversible=True,
        quality_mode="rates",
        quality_layers=[PHOTO_COMPRESSION_RATE],
    )
    return out.getvalue()


def photo_png(jp2: bytes) -> bytes:
    """The JPEG 2000 photo as a PNG, for viewing."""
    with Image.open(io.BytesIO(jp2)) as image:
        return _png(image)


@dataclass(frozen=True)
class CardFront:
    """What the front of a card shows besides the photo."""

    name: str
    address: str
    birth_date: datetime.date
    era: int
    sex: str  # "male", "female" or "not-applicable"
    card_expiry: datetime.date
    security_code: str

    @classmethod
    def of(cls, holder: Holder, card_expiry: datetime.date, security_code: str) -> CardFront:
        """The front of `holder`'s card."""
        return cls(
            name=holder.name,
            address=holder.address,
            birth_date=holder.birth_date,
            era=holder.era,
            sex=holder.sex.value,
            card_expiry=card_expiry,
            security_code=security_code,
        )

    def __post_init__(self) -> None:
        if self.sex not in SEX_MARKS:
            raise BadValueError(f"sex must be one of {', '.join(SEX_MARKS)}: {self.sex!r}")
        code = self.security_code
        if len(code) != SECURITY_CODE_DIGITS or not code.isascii() or not code.isdigit():
            raise BadValueError("the security code must be 4 digits")


def _fit_name(name: str) -> int:
    """The largest font size at which `name` fits on one line left of the photo."""
    room = FRONT_PHOTO_BOX[0] - FRONT_VALUE_LEFT - FRONT_MARGIN
    for size in NAME_SIZES:
        if _text_width(name, japanese_font(size)) <= room:
            return size
    return NAME_SIZES[-1]  # longer than any real name: it runs into the photo


def _fit_address(address: str) -> tuple[ImageFont.FreeTypeFont, list[str]]:
    """The largest font size at which `address` fits the address box, with its lines."""
    left, top, right, bottom = ADDRESS_BOX
    for size in ADDRESS_SIZES:
        font = japanese_font(size)
        lines = _wrap(address, font, right - left)
        if len(lines) * (_line_height(font) + LINE_SPACING) <= bottom - top:
            return font, lines
    return font, lines  # the smallest size; a longer address than any real one overflows


def _open_photo(photo_jp2: bytes, size: tuple[int, int]) -> Image.Image:
    """The photo scaled to `size`, in colour to paste on the card."""
    try:
        with Image.open(io.BytesIO(photo_jp2)) as photo:
            return photo.convert(COLOUR).resize(size, Image.Resampling.LANCZOS)
    except OSError as error:  # Pillow's UnidentifiedImageError and truncated files
        raise BadValueError(f"the photo is not a readable image: {error}") from error


def _text(
    draw: ImageDraw.ImageDraw,
    position: tuple[int, int],
    text: str,
    size: int,
    ink: tuple[int, int, int] = FRONT_INK,
) -> int:
    """Draws `text` with its baseline's left end at `position`; returns where it ends."""
    font = japanese_font(size)
    draw.text(position, text, font=font, fill=ink, anchor="ls")
    return position[0] + _text_width(text, font)


def card_front_image(front: CardFront, photo_jp2: bytes) -> bytes:
    """A PNG of the front of the card as people see it, 1712×1080 (ID-1 at 508 dpi)."""
    card = Image.new(COLOUR, FRONT_SIZE, FRONT_WHITE)
    draw = ImageDraw.Draw(card)
    width, height = FRONT_SIZE
    draw.rounded_rectangle(
        (0, 0, width - 1, height - 1),
        radius=FRONT_CORNER_RADIUS,
        fill=FRONT_BACKGROUND,
        outline=FRONT_BORDER,
        width=FRONT_BORDER_WIDTH,
    )
    left = FRONT_MARGIN
    _text(draw, (left, TITLE_BASELINE), CARD_TITLE, TITLE_SIZE)

    _text(draw, (left, NAME_BASELINE), NAME_LABEL, LABEL_SIZE, FRONT_LABEL_INK)
    _text(draw, (FRONT_VALUE_LEFT, NAME_BASELINE), front.name, _fit_name(front.name))

    box_left, box_top = ADDRESS_BOX[:2]
    address_font, address_lines = _fit_address(front.address)
    ascent = address_font.getmetrics()[0]
    _text(draw, (left, box_top + ascent), ADDRESS_LABEL, LABEL_SIZE, FRONT_LABEL_INK)
    for index, line in enumerate(address_lines):
        top = box_top + index * (_line_height(address_font) + LINE_SPACING)
        draw.text((box_left, top), line, font=address_font, fill=FRONT_INK)

    birth = wareki(front.birth_date, front.era) + BIRTH_SUFFIX
    end = _text(draw, (left, BIRTH_BASELINE), birth, DATE_SIZE)
    end = _text(draw, (end + SEX_GAP, BIRTH_BASELINE), SEX_LABEL, LABEL_SIZE, FRONT_LABEL_INK)
    _text(draw, (end + LABEL_GAP, BIRTH_BASELINE), SEX_MARKS[front.sex], DATE_SIZE)

    expiry = front.card_expiry
    expiry_text = f"{expiry.year}年{expiry.month}月{expiry.day}日{EXPIRY_SUFFIX}"
    _text(draw, (left, EXPIRY_BASELINE), expiry_text, DATE_SIZE)

    photo_left, photo_top, photo_right, photo_bottom = FRONT_PHOTO_BOX
    portrait = _open_photo(photo_jp2, (photo_right - photo_left, photo_bottom - photo_top))
    card.paste(portrait, (photo_left, photo_top))

    code_line = f"{SECURITY_CODE_LABEL} {front.security_code}"
    code_left = width - FRONT_MARGIN - _text_width(code_line, japanese_font(CODE_SIZE))
    _text(draw, (code_left, CODE_BASELINE), code_line, CODE_SIZE)
    return _png(card, smallest=False)  # optimising saves 3 % for four times the time
