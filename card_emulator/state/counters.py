"""Retry counters kept beside the card image and rewritten in place, so that a VERIFY costs one
small write and one sync instead of a rewrite of the whole image.

`card.json.counters` holds, for every PIN reference of the image in a fixed order, its tries left
and their complement, then a CRC-32 of all that: a torn or flipped byte is detected. It is always
the same few dozen bytes at offset 0, well inside one disk sector.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from card_emulator.applications.model import PinFile
from card_emulator.applications.registry import APPLICATIONS
from card_emulator.errors import CardImageError
from card_emulator.state.image import CardImage

MAGIC = b"JPKICTR1"
SLOT = struct.Struct(">16sHBB")  # application name, PIN EF, tries left, ~tries left
CRC = struct.Struct(">I")
SUFFIX = ".counters"


def counters_path(card: Path) -> Path:
    return card.with_name(card.name + SUFFIX)


def _slots(image: CardImage) -> list[tuple[str, int]]:
    return sorted(
        (name, fid) for name, contents in image.applications.items() for fid in contents.pins
    )


def encode(image: CardImage) -> bytes:
    """The counters record of `image`'s current tries."""
    body = MAGIC + bytes([len(_slots(image))])
    for name, fid in _slots(image):
        tries = image.applications[name].pins[fid].tries_left
        body += SLOT.pack(name.encode(), fid, tries, tries ^ 0xFF)
    return body + CRC.pack(zlib.crc32(body))


def apply(image: CardImage, raw: bytes) -> None:
    """Set `image`'s tries from a counters record; CardImageError if it is damaged, is not this
    image's, or gives a PIN more tries than its maximum."""
    slots = _slots(image)
    expected = len(MAGIC) + 1 + SLOT.size * len(slots) + CRC.size
    if len(raw) != expected or not raw.startswith(MAGIC) or raw[len(MAGIC)] != len(slots):
        raise CardImageError("not this card's retry counters")
    body, (crc,) = raw[: -CRC.size], CRC.unpack(raw[-CRC.size :])
    if zlib.crc32(body) != crc:
        raise CardImageError("checksum mismatch (damaged)")
    offset = len(MAGIC) + 1
    for name, fid in slots:
        stored_name, stored_fid, tries, complement = SLOT.unpack_from(body, offset)
        offset += SLOT.size
        if (stored_name.rstrip(b"\0").decode(errors="replace"), stored_fid) != (name, fid):
            raise CardImageError("not this card's retry counters")
        if tries ^ complement != 0xFF:
            raise CardImageError(f"{name} PIN {fid:04X} is damaged")
        spec = APPLICATIONS.by_name(name)
        pin_file = spec.file(fid) if spec else None
        if not isinstance(pin_file, PinFile) or tries > image.settings.max_tries(pin_file.rule):
            raise CardImageError(f"{name} PIN {fid:04X} has more tries than it may")
        image.applications[name].pins[fid].tries_left = tries
