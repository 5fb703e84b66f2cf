"""Retry counters kept beside the card image and rewritten in place, so that a VERIFY costs one
small write and one sync instead of a rewrite of the whole image.

`card.json.counters` holds, for every PIN reference of the image in a fixed order, its tries left
and their complement, then (`JPKICTR2`, cards with an administrator key) the administrator's
tries left and their complement, then a CRC-32 of all that: a torn or flipped byte is detected.
It is always the same few dozen bytes at offset 0, well inside one disk sector.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from card_emulator.applications.model import PinFile
from card_emulator.applications.registry import APPLICATIONS
from card_emulator.errors import CardImageError
from card_emulator.state.image import CardImage
from card_emulator.vocabulary.administration import MAX_TRIES as ADMIN_MAX_TRIES

MAGIC = b"JPKICTR1"  # PIN counters only: cards without an administrator key, and older files
MAGIC_WITH_ADMIN = b"JPKICTR2"  # PIN counters, then the administrator's
SLOT = struct.Struct(">16sHBB")  # application name, PIN EF, tries left, ~tries left
ADMIN_SLOT = struct.Struct(">BB")  # administrator tries left, ~tries left
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
    admin = image.admin
    body = (MAGIC if admin is None else MAGIC_WITH_ADMIN) + bytes([len(_slots(image))])
    for name, fid in _slots(image):
        tries = image.applications[name].pins[fid].tries_left
        body += SLOT.pack(name.encode(), fid, tries, tries ^ 0xFF)
    if admin is not None:
        body += ADMIN_SLOT.pack(admin.tries_left, admin.tries_left ^ 0xFF)
    return body + CRC.pack(zlib.crc32(body))


def apply(image: CardImage, raw: bytes) -> None:
    """Set `image`'s tries from a counters record; CardImageError if it is damaged, is not this
    image's, or gives a PIN or the administrator more tries than the maximum.

    A `JPKICTR1` record (written before the card had an administrator key, or by an older
    emulator) sets the PINs only: the administrator's counter is then the image's."""
    slots = _slots(image)
    with_admin = raw.startswith(MAGIC_WITH_ADMIN)
    if with_admin and image.admin is None:
        raise CardImageError("not this card's retry counters (an administrator counter)")
    magic = MAGIC_WITH_ADMIN if with_admin else MAGIC
    size = len(magic) + 1 + SLOT.size * len(slots) + (ADMIN_SLOT.size if with_admin else 0)
    if len(raw) != size + CRC.size or not raw.startswith(magic) or raw[len(magic)] != len(slots):
        raise CardImageError("not this card's retry counters")
    body, (crc,) = raw[: -CRC.size], CRC.unpack(raw[-CRC.size :])
    if zlib.crc32(body) != crc:
        raise CardImageError("checksum mismatch (damaged)")
    offset = len(magic) + 1
    tries_by_slot = []
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
        tries_by_slot.append(tries)
    admin_tries = None
    if with_admin:
        admin_tries, complement = ADMIN_SLOT.unpack_from(body, offset)
        if admin_tries ^ complement != 0xFF:
            raise CardImageError("the administrator's counter is damaged")
        if admin_tries > ADMIN_MAX_TRIES:
            raise CardImageError("the administrator has more tries than it may")
    # Nothing is set from a record that is refused further on.
    for (name, fid), tries in zip(slots, tries_by_slot, strict=True):
        image.applications[name].pins[fid].tries_left = tries
    if admin_tries is not None and image.admin is not None:
        image.admin.tries_left = admin_tries
