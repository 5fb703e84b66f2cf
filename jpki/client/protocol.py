"""The APDU layer: formats commands, follows 61xx/6Cxx, reads whole EFs, turns SWs into errors."""

from __future__ import annotations

import logging

from card_emulator.vocabulary.apdu import INS, SHORT_MAX, CommandApdu, ResponseApdu, redacted_hex
from card_emulator.vocabulary.sw import SW, describe
from jpki.client.connection import Connection
from jpki.client.errors import ApduError

log = logging.getLogger(__name__)

GET_RESPONSE = 0xC0
SW1_MORE_DATA = 0x61  # T=0 cards and some readers: fetch the rest with GET RESPONSE
SW1_WRONG_LE = 0x6C  # resend with the Le the card names
DER_HEADER_LENGTH = 4  # 30 82 HH LL


class ApduProtocol:
    """Sends `CommandApdu`s over a connection; short APDUs unless a length needs extended ones."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

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
        self.send(CommandApdu(0x00, INS.SELECT, 0x04, 0x0C, aid), "SELECT application")

    def select_file(self, fid: int) -> None:
        self.send(CommandApdu(0x00, INS.SELECT, 0x02, 0x0C, fid.to_bytes(2, "big")),
                  f"SELECT EF {fid:04X}")  # fmt: skip

    def read_binary(self, offset: int, length: int) -> bytes:
        """Up to `length` bytes (at most 256) of the current EF from `offset`."""
        command = CommandApdu(0x00, INS.READ_BINARY, offset >> 8, offset & 0xFF, le=length)
        return self.send(command, f"READ BINARY at {offset}")

    def read_der(self, fid: int) -> bytes:
        """A DER object (a certificate) from an EF, in 256-byte reads like every client does."""
        self.select_file(fid)
        header = self.read_binary(0, DER_HEADER_LENGTH)
        if len(header) < DER_HEADER_LENGTH or header[0] != 0x30 or header[1] != 0x82:
            raise ApduError(SW.NO_PRECISE_DIAGNOSIS, f"EF {fid:04X} does not hold a DER object")
        size = int.from_bytes(header[2:4], "big") + DER_HEADER_LENGTH
        data = header
        while len(data) < size:
            chunk = self.read_binary(len(data), min(SHORT_MAX, size - len(data)))
            if not chunk:
                break
            data += chunk
        return data[:size]
