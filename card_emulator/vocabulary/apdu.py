"""The APDU codec: command APDUs of the four ISO 7816-4 cases, short and extended, both ways."""

from __future__ import annotations

import enum
from typing import NamedTuple

SHORT_MAX = 256
EXTENDED_MAX = 65536


class INS(enum.IntEnum):
    """Instruction bytes the card implements."""

    SELECT = 0xA4
    READ_BINARY = 0xB0
    VERIFY = 0x20
    CHANGE_REFERENCE_DATA = 0x24
    RESET_RETRY_COUNTER = 0x2C
    EXTERNAL_AUTHENTICATE = 0x82  # the administrator's proof (lifecycle.md §6)
    COMPUTE_DIGITAL_SIGNATURE = 0x2A
    GET_CHALLENGE = 0x84
    READ_RECORD = 0xB2
    INTERNAL_AUTHENTICATE = 0x88
    GET_DATA = 0xCA
    CHANGE_KEY = 0x32  # proprietary (CLA 80): the 住基 and common APs' PIN change
    SET_SESSION_KEY = 0xAE  # proprietary (CLA 80)


# Commands whose data field is a PIN (also in their odd-INS forms): never print or log it.
SECRET_DATA_INS = frozenset(
    {INS.VERIFY, INS.CHANGE_REFERENCE_DATA, INS.RESET_RETRY_COUNTER, INS.CHANGE_KEY}
    | {
        ins | 1
        for ins in (INS.VERIFY, INS.CHANGE_REFERENCE_DATA, INS.RESET_RETRY_COUNTER, INS.CHANGE_KEY)
    }
)


class MalformedApdu(ValueError):
    """The bytes are not a well-formed command APDU (the card answers `6700`)."""


class CommandApdu(NamedTuple):
    """A command APDU. `le` is Ne, the number of bytes expected (None when absent).

    A named tuple, not a dataclass: the card parses one per APDU, and a tuple is made 4× faster."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None
    extended: bool = False

    @property
    def case(self) -> int:
        """ISO case: 1 no data no Le, 2 Le only, 3 data only, 4 both."""
        return (3 if self.data else 1) + (1 if self.le is not None else 0)

    @classmethod
    def parse(cls, raw: bytes) -> CommandApdu:
        """Decode the bytes of a command APDU, short or extended."""
        if len(raw) < 4:
            raise MalformedApdu("an APDU has at least 4 bytes")
        cla, ins, p1, p2 = raw[:4]
        body = raw[4:]
        if not body:
            return cls(cla, ins, p1, p2)
        if len(body) == 1:
            return cls(cla, ins, p1, p2, le=body[0] or SHORT_MAX)
        if body[0] != 0:
            lc = body[0]
            if len(body) == 1 + lc:
                return cls(cla, ins, p1, p2, body[1:])
            if len(body) == 2 + lc:
                return cls(cla, ins, p1, p2, body[1 : 1 + lc], body[-1] or SHORT_MAX)
            raise MalformedApdu(f"Lc={lc} does not match {len(body) - 1} bytes of body")
        # Extended: a 00 byte, then 2-byte Lc or Le.
        if len(body) == 3:
            value = int.from_bytes(body[1:3], "big")
            return cls(cla, ins, p1, p2, le=value or EXTENDED_MAX, extended=True)
        if len(body) < 3:
            raise MalformedApdu("truncated extended length")
        lc = int.from_bytes(body[1:3], "big")
        if lc == 0:
            raise MalformedApdu("extended Lc of zero")
        rest = body[3:]
        if len(rest) == lc:
            return cls(cla, ins, p1, p2, rest, extended=True)
        if len(rest) == lc + 2:
            value = int.from_bytes(rest[lc:], "big")
            return cls(cla, ins, p1, p2, rest[:lc], value or EXTENDED_MAX, extended=True)
        raise MalformedApdu(f"extended Lc={lc} does not match {len(rest)} bytes of body")

    def encode(self) -> bytes:
        """Encode, choosing the extended form when a length does not fit the short one."""
        header = bytes([self.cla, self.ins, self.p1, self.p2])
        extended = (
            self.extended or len(self.data) > 255 or (self.le is not None and self.le > SHORT_MAX)
        )
        if len(self.data) > 65535 or (self.le is not None and not 0 < self.le <= EXTENDED_MAX):
            raise ValueError("data or Le out of range")
        if not extended:
            body = b""
            if self.data:
                body += bytes([len(self.data)]) + self.data
            if self.le is not None:
                body += bytes([self.le % SHORT_MAX])
            return header + body
        body = b"\x00"
        if self.data:
            body += len(self.data).to_bytes(2, "big") + self.data
        if self.le is not None:
            body += (self.le % EXTENDED_MAX).to_bytes(2, "big")
        return header + body


class ResponseApdu(NamedTuple):
    """A response APDU: data and the status word."""

    data: bytes
    sw: int

    @classmethod
    def parse(cls, raw: bytes) -> ResponseApdu:
        if len(raw) < 2:
            raise MalformedApdu("a response has at least the 2 status bytes")
        return cls(raw[:-2], int.from_bytes(raw[-2:], "big"))

    def encode(self) -> bytes:
        return self.data + self.sw.to_bytes(2, "big")


def redacted_hex(raw: bytes) -> str:
    """Hex of a command APDU for traces, with the data of PIN-carrying commands masked."""
    try:
        command = CommandApdu.parse(raw)
    except MalformedApdu:
        return raw[:4].hex().upper() + (" <malformed, body hidden>" if len(raw) > 4 else "")
    if command.ins not in SECRET_DATA_INS or not command.data:
        return raw.hex().upper()
    header_end = (
        len(raw) - len(command.data) - (0 if command.le is None else 2 if command.extended else 1)
    )
    masked = raw[:header_end].hex().upper() + "**" * len(command.data)
    return masked + raw[header_end + len(command.data) :].hex().upper()
