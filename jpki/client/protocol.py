"""The APDU layer: formats commands, follows 61xx/6Cxx, reads whole EFs and records, fetches
card-level data objects, turns SWs into errors, and remembers which application is current."""

from __future__ import annotations

import logging

from card_emulator.vocabulary.apdu import (
    EXTENDED_MAX,
    INS,
    SHORT_MAX,
    CommandApdu,
    ResponseApdu,
    redacted_hex,
)
from card_emulator.vocabulary.identifiers import GLOBAL_PLATFORM_ISD
from card_emulator.vocabulary.sw import SW, describe
from jpki.client.connection import Connection
from jpki.client.errors import ApduError
from jpki.tlv import LENGTH_BYTES_MASK, TAG_CONTINUES, TAG_NUMBER_MASK

log = logging.getLogger(__name__)

GET_RESPONSE = 0xC0
SW1_MORE_DATA = 0x61  # T=0 cards and some readers: fetch the rest with GET RESPONSE
SW1_WRONG_LE = 0x6C  # resend with the Le the card names
DER_HEADER_LENGTH = 4  # 30 82 HH LL
# Enough for any header the card writes (a two-byte tag and `82 HH LL`); myna reads this many.
TLV_HEADER_READ = 7
READ_RECORD_CURRENT_EF = 0x04  # P2: record number in P1, the current EF
SFI_SHIFT = 3
MAX_SFI = 0x1E
LENGTH_LONG_FORM = 0x80
MAX_LENGTH_BYTES = 3


def tlv_size(header: bytes) -> int | None:
    """Total size (header and value) of the BER TLV that `header` starts, or None if the
    header is cut short or is no BER header."""
    position = 1
    if not header:
        return None
    if header[0] & TAG_NUMBER_MASK == TAG_NUMBER_MASK:
        while position < len(header) and header[position] & TAG_CONTINUES:
            position += 1
        position += 1
    if position >= len(header):
        return None
    first = header[position]
    position += 1
    if not first & LENGTH_LONG_FORM:
        return position + first
    count = first & LENGTH_BYTES_MASK
    if not 1 <= count <= MAX_LENGTH_BYTES or position + count > len(header):
        return None
    return position + count + int.from_bytes(header[position : position + count], "big")


class ApduProtocol:
    """Sends `CommandApdu`s over a connection; short APDUs unless a length needs extended ones."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        # The AID of the application the card has current, as far as this side knows (a reset
        # the card went through behind our back is found out by the sessions, see CardSession).
        self.selected: bytes | None = None

    def transmit(self, command: CommandApdu) -> ResponseApdu:
        """Send one command and return the response, whatever its status word."""
        raw = command.encode()
        response = ResponseApdu.parse(self.connection.transmit(raw))
        if response.sw >> 8 == SW1_WRONG_LE:
            retry = CommandApdu(command.cla, command.ins, command.p1, command.p2, command.data,
                                (response.sw & 0xFF) or SHORT_MAX)  # fmt: skip
            response = ResponseApdu.parse(self.connection.transmit(retry.encode()))
        data = response.data
        while response.sw >> 8 == SW1_MORE_DATA:
            more = CommandApdu(0x00, GET_RESPONSE, 0, 0, le=(response.sw & 0xFF) or SHORT_MAX)
            response = ResponseApdu.parse(self.connection.transmit(more.encode()))
            data += response.data
        log.debug("> %s", redacted_hex(raw))
        log.debug("< %d bytes %04X %s", len(data), response.sw, describe(response.sw))
        return ResponseApdu(data, response.sw)

    def send(self, command: CommandApdu, what: str = "") -> bytes:
        """Send one command; anything but 9000 raises ApduError."""
        response = self.transmit(command)
        if response.sw != SW.SUCCESS:
            raise ApduError(response.sw, what or f"INS {command.ins:02X}")
        return response.data

    def select_application(self, aid: bytes) -> None:
        self.selected = None
        self.send(CommandApdu(0x00, INS.SELECT, 0x04, 0x0C, aid), "SELECT application")
        self.selected = None if aid == GLOBAL_PLATFORM_ISD else aid

    def select_card_manager(self) -> None:
        """SELECT the GlobalPlatform ISD: the card goes back to its power-on state (no AP
        current, what was verified in the left AP forgotten), where it answers GET DATA."""
        self.select_application(GLOBAL_PLATFORM_ISD)

    def select_file(self, fid: int) -> None:
        self.send(CommandApdu(0x00, INS.SELECT, 0x02, 0x0C, fid.to_bytes(2, "big")),
                  f"SELECT EF {fid:04X}")  # fmt: skip

    def read_binary(self, offset: int, length: int) -> bytes:
        """Up to `length` bytes (at most 256) of the current EF from `offset`."""
        command = CommandApdu(0x00, INS.READ_BINARY, offset >> 8, offset & 0xFF, le=length)
        return self.send(command, f"READ BINARY at {offset}")

    def read_record(self, record: int, sfi: int | None = None) -> bytes:
        """One record (a whole simple TLV) of the current EF, or of the EF with short id `sfi`
        (which that makes current)."""
        if sfi is not None and not 1 <= sfi <= MAX_SFI:
            raise ValueError(f"a short EF identifier is 1 to {MAX_SFI}, not {sfi}")
        p2 = READ_RECORD_CURRENT_EF if sfi is None else sfi << SFI_SHIFT | READ_RECORD_CURRENT_EF
        command = CommandApdu(0x00, INS.READ_RECORD, record, p2, le=SHORT_MAX)
        return self.send(command, f"READ RECORD {record}")

    def get_data(self, tag: int) -> bytes:
        """A card-level data object. Short Le first; the card answers 6700 to it for objects
        over 256 bytes, which then come whole for an extended Le (`00 00 00`)."""
        what = f"GET DATA {tag:04X}"
        short = CommandApdu(0x00, INS.GET_DATA, tag >> 8, tag & 0xFF, le=SHORT_MAX)
        response = self.transmit(short)
        if response.sw == SW.WRONG_LENGTH:
            extended = CommandApdu(0x00, INS.GET_DATA, tag >> 8, tag & 0xFF, le=EXTENDED_MAX,
                                   extended=True)  # fmt: skip
            response = self.transmit(extended)
        if response.sw != SW.SUCCESS:
            raise ApduError(response.sw, what)
        return response.data

    def get_challenge(self, length: int) -> bytes:
        """`length` (1 to 256) random bytes from the card."""
        if not 1 <= length <= SHORT_MAX:
            raise ValueError(f"GET CHALLENGE asks for 1 to {SHORT_MAX} bytes, not {length}")
        return self.send(CommandApdu(0x00, INS.GET_CHALLENGE, 0, 0, le=length), "GET CHALLENGE")

    def read_ef(self, fid: int) -> bytes:
        """A whole transparent EF of unknown size: 256-byte reads until the card answers 6B00
        (offset past the end) or a read comes back short."""
        self.select_file(fid)
        data = b""
        while True:
            command = CommandApdu(0x00, INS.READ_BINARY, len(data) >> 8, len(data) & 0xFF,
                                  le=SHORT_MAX)  # fmt: skip
            response = self.transmit(command)
            if response.sw == SW.WRONG_P1_P2 and data:
                return data
            if response.sw != SW.SUCCESS:
                raise ApduError(response.sw, f"READ BINARY of EF {fid:04X} at {len(data)}")
            data += response.data
            if len(response.data) < SHORT_MAX:
                return data

    def read_tlv_ef(self, fid: int) -> bytes:
        """The BER TLV an EF holds, exactly (no filler after it): the header first
        (`00 B0 00 00 07`), then 256-byte reads of what its length says is left."""
        self.select_file(fid)
        data = self.read_binary(0, TLV_HEADER_READ)
        size = tlv_size(data)
        if size is None:
            raise ApduError(SW.NO_PRECISE_DIAGNOSIS, f"EF {fid:04X} does not start with a TLV")
        return self._read_up_to(data, size)

    def read_der(self, fid: int) -> bytes:
        """A DER object (a certificate) from an EF, in 256-byte reads like every client does."""
        self.select_file(fid)
        header = self.read_binary(0, DER_HEADER_LENGTH)
        if len(header) < DER_HEADER_LENGTH or header[0] != 0x30 or header[1] != 0x82:
            raise ApduError(SW.NO_PRECISE_DIAGNOSIS, f"EF {fid:04X} does not hold a DER object")
        return self._read_up_to(header, int.from_bytes(header[2:4], "big") + DER_HEADER_LENGTH)

    def _read_up_to(self, data: bytes, size: int) -> bytes:
        """The current EF's first `size` bytes, `data` being its first ones: the rest is read
        in 256-byte chunks, as every client does."""
        while len(data) < size:
            chunk = self.read_binary(len(data), min(SHORT_MAX, size - len(data)))
            if not chunk:
                break
            data += chunk
        return data[:size]
