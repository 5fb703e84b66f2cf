"""BER TLVs as the My Number card writes them: two-byte tags even where one would do, and
lengths in the short form or `81 LL` / `82 HH LL` (or always `82 HH LL`, as some headers are)."""

from __future__ import annotations

from collections.abc import Iterator

SHORT_LENGTH_MAX = 0x7F
LENGTH_ONE_BYTE = 0x81
LENGTH_TWO_BYTES = 0x82
ONE_BYTE_MAX = 0xFF
TWO_BYTES_MAX = 0xFFFF
LENGTH_BYTES_MASK = 0x7F  # in a long-form first length byte: how many length bytes follow
# A tag byte whose low five bits are all set continues in the next byte, and so on while
# the continuation byte has its top bit set.
TAG_NUMBER_MASK = 0x1F
TAG_CONTINUES = 0x80


def length(size: int, *, long_form: bool = False) -> bytes:
    """BER length of `size`: minimal, or always `82 HH LL` when `long_form`."""
    if size > TWO_BYTES_MAX:
        raise ValueError(f"a value of {size} bytes is too long for this card")
    if long_form:
        return bytes([LENGTH_TWO_BYTES]) + size.to_bytes(2, "big")
    if size <= SHORT_LENGTH_MAX:
        return bytes([size])
    if size <= ONE_BYTE_MAX:
        return bytes([LENGTH_ONE_BYTE, size])
    return bytes([LENGTH_TWO_BYTES]) + size.to_bytes(2, "big")


def tlv(tag: bytes, value: bytes, *, long_form: bool = False) -> bytes:
    return tag + length(len(value), long_form=long_form) + value


OFFSET_SIZE = 2  # offsets tables (DF21) hold big-endian u16s


def offsets_record(
    tag: bytes, offsets_tag: bytes, objects: list[bytes], *, long_form: bool = False
) -> bytes:
    """`tag { offsets_tag <u16 offset of each object from the record's first byte>, objects }`:
    the card's records whose first object says where each of the others starts."""
    offsets_size = len(tlv(offsets_tag, bytes(OFFSET_SIZE * len(objects))))
    content_size = offsets_size + sum(len(part) for part in objects)
    position = len(tag) + len(length(content_size, long_form=long_form)) + offsets_size
    offsets = bytearray()
    for part in objects:
        offsets += position.to_bytes(OFFSET_SIZE, "big")
        position += len(part)
    return tlv(tag, tlv(offsets_tag, bytes(offsets)) + b"".join(objects), long_form=long_form)


def read_tlv(data: bytes, offset: int = 0) -> tuple[bytes, int, int]:
    """(tag, start of value, end of value) of the BER TLV at `offset`; ValueError if cut short."""
    position = offset
    if position >= len(data):
        raise ValueError(f"no TLV at offset {offset}")
    first = data[position]
    position += 1
    if first & TAG_NUMBER_MASK == TAG_NUMBER_MASK:
        while True:
            if position >= len(data):
                raise ValueError(f"tag at offset {offset} is cut short")
            more = data[position] & TAG_CONTINUES
            position += 1
            if not more:
                break
    tag = data[offset:position]
    if position >= len(data):
        raise ValueError(f"TLV at offset {offset} has no length")
    size = data[position]
    position += 1
    if size in (LENGTH_ONE_BYTE, LENGTH_TWO_BYTES):
        count = size & LENGTH_BYTES_MASK
        if position + count > len(data):
            raise ValueError(f"length at offset {offset} is cut short")
        size = int.from_bytes(data[position : position + count], "big")
        position += count
    elif size > SHORT_LENGTH_MAX:
        raise ValueError(f"unsupported BER length byte {size:#04x} at offset {offset}")
    end = position + size
    if end > len(data):
        raise ValueError(f"TLV at offset {offset} runs past the end of the data")
    return tag, position, end


def expect(data: bytes, offset: int, tag: bytes) -> tuple[int, int]:
    """(start, end) of the value of the TLV at `offset`, which must have `tag`."""
    found, start, end = read_tlv(data, offset)
    if found != tag:
        raise ValueError(f"expected tag {tag.hex()} at offset {offset}, found {found.hex()}")
    return start, end


def children(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int, int]]:
    """(tag, TLV start, value start, value end) of each TLV from `start` to `end`."""
    position = start
    while position < end:
        tag, value_start, value_end = read_tlv(data[:end], position)
        yield tag, position, value_start, value_end
        position = value_end


# Simple-TLV (ISO 7816-4 §5.2.1), the records of the 住基 and 共通 APs: a one-byte tag, a
# one-byte length (`FF` would announce a three-byte one, which no record here needs), the value.
SIMPLE_LENGTH_MAX = 0xFE
SIMPLE_TAG_INVALID = (0x00, 0xFF)


def simple_tlv(tag: int, value: bytes) -> bytes:
    """One simple-TLV record: tag, length byte, value."""
    if tag in SIMPLE_TAG_INVALID or not 0 <= tag <= ONE_BYTE_MAX:
        raise ValueError(f"{tag:#x} is not a simple-TLV tag")
    if len(value) > SIMPLE_LENGTH_MAX:
        raise ValueError(f"a record of {len(value)} bytes needs a three-byte length")
    return bytes([tag, len(value)]) + value


def simple_tlv_records(data: bytes) -> list[bytes]:
    """The whole records (tag, length, value) of a record EF stored as their concatenation."""
    found = []
    position = 0
    while position < len(data):
        if position + 2 > len(data):
            raise ValueError(f"record at offset {position} has no length")
        tag, size = data[position], data[position + 1]
        if tag in SIMPLE_TAG_INVALID or size > SIMPLE_LENGTH_MAX:
            raise ValueError(f"no simple-TLV record at offset {position}")
        end = position + 2 + size
        if end > len(data):
            raise ValueError(f"record at offset {position} runs past the end of the data")
        found.append(data[position:end])
        position = end
    return found
