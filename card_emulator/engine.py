"""The generic ISO 7816-4 command engine: takes command APDU bytes, returns response APDU bytes.

It knows commands and the file model, not any particular application: those come as data
(`card_emulator.profiles`), their contents and PIN counters from the durable store.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TypeVar

from card_emulator.applications.model import (
    AccessRule,
    Always,
    Application,
    BinaryFile,
    CardFile,
    KeyFile,
    PinFile,
)
from card_emulator.applications.registry import APPLICATIONS, ApplicationRegistry
from card_emulator.errors import CardFileError, CardPoweredOff
from card_emulator.signing import SignatureScheme, accepts_length, sign
from card_emulator.state.image import ApplicationContents
from card_emulator.state.store import CardStore
from card_emulator.vocabulary.apdu import (
    INS,
    CommandApdu,
    MalformedApdu,
    ResponseApdu,
    redacted_hex,
)
from card_emulator.vocabulary.identifiers import SHORT_ID_FLAG
from card_emulator.vocabulary.sw import SW, describe, retries_left_sw

log = logging.getLogger(__name__)

CLA_PROPRIETARY = 0x80
CLA_FURTHER_INTERINDUSTRY = 0x40
CLA_CHAINING = 0x10
CLA_SECURE_MESSAGING = 0x0C
CLA_CHANNEL = 0x03
CLA_INVALID = 0xFF
CLA_TYPE = 0xE0  # what is left once channel, secure messaging and chaining bits are removed

SELECT_BY_FID = 0x00
SELECT_EF_UNDER_DF = 0x02
SELECT_BY_DF_NAME = 0x04
SELECT_NO_RESPONSE = 0x0C
SELECT_FCI = 0x00
MF_FID = b"\x3f\x00"
VERIFY_P1 = 0x00
CHANGE_NEW_DATA_ONLY = 0x01
CURRENT_EF = 0x80  # P2 of VERIFY/CHANGE/SIGN: the current EF, or 0x80|SFI

FileT = TypeVar("FileT", BinaryFile, PinFile, KeyFile)


class StatusError(Exception):
    """Ends a command with a status word."""

    def __init__(self, sw: int) -> None:
        super().__init__(describe(sw))
        self.sw = sw


class CardEngine:
    """One card: power, the current DF and EF, the volatile security state, and the commands."""

    def __init__(self, store: CardStore, applications: ApplicationRegistry = APPLICATIONS) -> None:
        self.store = store
        self.applications = applications
        self.powered = False
        self._current_df: Application | None = None
        self._current_ef: CardFile | None = None
        self._security_application: str | None = None  # whose PINs `_verified` refers to
        self._verified: set[int] = set()
        self._handlers: dict[int, Callable[[CommandApdu], bytes]] = {
            INS.SELECT: self._select,
            INS.READ_BINARY: self._read_binary,
            INS.VERIFY: self._verify,
            INS.CHANGE_REFERENCE_DATA: self._change_reference_data,
            INS.COMPUTE_DIGITAL_SIGNATURE: self._compute_digital_signature,
            INS.GET_CHALLENGE: self._get_challenge,
        }

    # Power ---------------------------------------------------------------------------------

    @property
    def atr(self) -> bytes:
        return self.store.image.settings.atr

    def power_on(self) -> bytes:
        if not self.powered:
            self._clear_security_state()
        self.powered = True
        self._current_df = self._current_ef = None
        return self.atr

    def power_off(self) -> None:
        self.powered = False
        self._current_df = self._current_ef = None
        self._clear_security_state()

    def reset(self) -> bytes:
        """Warm reset: back to the MF; the security state survives unless the settings say not."""
        self._current_df = self._current_ef = None
        if not self.powered or not self.store.image.settings.warm_reset_keeps_security_state:
            self._clear_security_state()
        self.powered = True
        return self.atr

    def _clear_security_state(self) -> None:
        self._security_application = None
        self._verified.clear()

    # Dispatch ------------------------------------------------------------------------------

    def transmit(self, raw: bytes) -> bytes:
        """Process one command APDU; every input gets a status word, none raises."""
        if not self.powered:
            raise CardPoweredOff("the card is not powered")
        try:
            command = CommandApdu.parse(raw)
        except MalformedApdu:
            response = ResponseApdu(b"", SW.WRONG_LENGTH)
        else:
            try:
                response = ResponseApdu(self._dispatch(command), SW.SUCCESS)
            except StatusError as status:
                response = ResponseApdu(b"", status.sw)
            except CardFileError:
                raise  # the card cannot keep a change: its user must hear it, not a status word
            except Exception:  # noqa: BLE001 - the card must answer, whatever went wrong inside
                log.exception("internal error processing %s", redacted_hex(raw))
                response = ResponseApdu(b"", SW.NO_PRECISE_DIAGNOSIS)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("C: %s  R: %d bytes %04X", redacted_hex(raw), len(response.data), response.sw)
        return response.encode()

    def _dispatch(self, command: CommandApdu) -> bytes:
        cla = command.cla
        if cla != CLA_INVALID and cla & 0xC0 == CLA_FURTHER_INTERINDUSTRY:
            raise StatusError(SW.LOGICAL_CHANNEL_NOT_SUPPORTED)  # channels 4 to 19
        if cla == CLA_INVALID or cla & CLA_TYPE not in (0x00, CLA_PROPRIETARY):
            raise StatusError(SW.CLA_NOT_SUPPORTED)
        if cla & CLA_CHANNEL:
            raise StatusError(SW.LOGICAL_CHANNEL_NOT_SUPPORTED)
        handler = self._handlers.get(command.ins)
        if handler is None:
            raise StatusError(SW.INS_NOT_SUPPORTED)
        if cla & CLA_SECURE_MESSAGING:
            if command.ins in (INS.READ_BINARY, INS.VERIFY):
                raise StatusError(SW.SM_DATA_OBJECTS_MISSING)
            raise StatusError(SW.SECURE_MESSAGING_NOT_SUPPORTED)
        if cla & CLA_CHAINING:
            raise StatusError(SW.COMMAND_CHAINING_NOT_SUPPORTED)
        return handler(command)

    # Files -------------------------------------------------------------------------------

    def _contents(self) -> ApplicationContents:
        assert self._current_df is not None
        return self.store.image.contents(self._current_df.name)

    def _present(self, file: CardFile | None) -> bool:
        if file is None or self._current_df is None:
            return False
        contents = self._contents()
        if isinstance(file, BinaryFile):
            return file.fid in contents.files
        if isinstance(file, KeyFile):
            return file.fid in contents.keys
        return file.fid in contents.pins

    def _select_application(self, application: Application) -> None:
        if application.name != self._security_application:
            self._clear_security_state()  # leaving an AP drops what was verified in it
            self._security_application = application.name
        self._current_df = application
        self._current_ef = None

    def _select_short_id(self, sfi: int, missing: int) -> CardFile:
        """Make the EF with this short identifier current (READ BINARY/VERIFY/SIGN by SFI)."""
        found = self._current_df.file_by_short_id(sfi) if self._current_df else None
        if not self._present(found):
            raise StatusError(missing)
        assert found is not None
        self._current_ef = found
        return found

    def _referenced(self, p2: int, kind: type[FileT]) -> FileT:
        """The EF named by P2 of VERIFY/CHANGE/SIGN: `80` current EF, `80|SFI` by short id."""
        if p2 == CURRENT_EF:
            file = self._current_ef
            if file is None:
                raise StatusError(SW.COMMAND_NOT_ALLOWED_NO_CURRENT_EF)
        elif p2 & ~0x1F == SHORT_ID_FLAG:
            file = self._select_short_id(p2 & 0x1F, SW.REFERENCE_DATA_NOT_FOUND)
        else:
            raise StatusError(SW.INCORRECT_P1_P2)
        if not isinstance(file, kind):
            raise StatusError(SW.INCOMPATIBLE_WITH_FILE_STRUCTURE)
        return file

    def _allowed(self, rule: AccessRule) -> bool:
        return isinstance(rule, Always) or not self._verified.isdisjoint(rule.pins)

    # Commands --------------------------------------------------------------------------

    def _select(self, command: CommandApdu) -> bytes:
        if command.p2 not in (SELECT_NO_RESPONSE, SELECT_FCI):
            raise StatusError(SW.INCORRECT_P1_P2)
        if command.p1 == SELECT_BY_DF_NAME:
            application = self.applications.by_aid(command.data)
            if application is None:
                raise StatusError(SW.FILE_NOT_FOUND)
            self._select_application(application)
            wants_fci = command.p2 == SELECT_FCI and command.le is not None
            return self.store.image.settings.select_fci if wants_fci else b""
        if command.p1 not in (SELECT_BY_FID, SELECT_EF_UNDER_DF):
            raise StatusError(SW.INCORRECT_P1_P2)
        if command.p1 == SELECT_BY_FID and command.data in (b"", MF_FID):
            # The MF cannot be selected until an AP has been; then it changes nothing.
            if self._current_df is None:
                raise StatusError(SW.INCORRECT_P1_P2)
            return b""
        if len(command.data) != 2:
            raise StatusError(SW.WRONG_LENGTH)
        found = (
            self._current_df.file(int.from_bytes(command.data, "big")) if self._current_df else None
        )
        if not self._present(found):
            raise StatusError(SW.FILE_NOT_FOUND)
        self._current_ef = found
        return b""

    def _read_binary(self, command: CommandApdu) -> bytes:
        if command.data or command.le is None:
            raise StatusError(SW.WRONG_LENGTH)
        if command.p1 & SHORT_ID_FLAG:
            if command.p1 & 0x60:
                raise StatusError(SW.INCORRECT_P1_P2)
            file: CardFile | None = self._select_short_id(command.p1 & 0x1F, SW.FILE_NOT_FOUND)
            offset = command.p2
        else:
            file = self._current_ef
            offset = command.p1 << 8 | command.p2
        if file is None:
            raise StatusError(SW.COMMAND_NOT_ALLOWED_NO_CURRENT_EF)
        if not isinstance(file, BinaryFile):
            raise StatusError(SW.INCOMPATIBLE_WITH_FILE_STRUCTURE)
        if not self._allowed(file.read):
            raise StatusError(SW.SECURITY_STATUS_NOT_SATISFIED)
        data = self._contents().files[file.fid]
        if offset >= len(data):
            raise StatusError(SW.WRONG_P1_P2)
        return data[offset : offset + command.le]

    def _verify(self, command: CommandApdu) -> bytes:
        if command.p1 != VERIFY_P1:
            raise StatusError(SW.INCORRECT_P1_P2)
        pin_file = self._referenced(command.p2, PinFile)
        if command.le is not None:
            raise StatusError(SW.WRONG_LENGTH)
        reference = self._contents().pins[pin_file.fid]
        if not command.data:  # the retry query: answers 63Cx even when already verified
            raise StatusError(retries_left_sw(reference.tries_left))
        if reference.blocked:
            raise StatusError(SW.AUTHENTICATION_METHOD_BLOCKED)
        settings = self.store.image.settings
        if not settings.wrong_length_pin_counts_as_attempt and not (
            pin_file.rule.min_length <= len(command.data) <= pin_file.rule.max_length
        ):
            raise StatusError(SW.WRONG_LENGTH)
        # The decrement is durable before the comparison, so cutting power never buys a free try.
        reference.tries_left -= 1
        self.store.commit_counters()
        if reference.matches(command.data):
            reference.tries_left = pin_file.rule.max_tries
            self.store.commit_counters(sync=False)
            self._verified.add(pin_file.fid)
            return b""
        self._verified.discard(pin_file.fid)
        raise StatusError(retries_left_sw(reference.tries_left))

    def _change_reference_data(self, command: CommandApdu) -> bytes:
        if command.p1 != CHANGE_NEW_DATA_ONLY:
            raise StatusError(SW.INCORRECT_P1_P2)
        pin_file = self._referenced(command.p2, PinFile)
        if not command.data or command.le is not None:
            raise StatusError(SW.WRONG_LENGTH)
        reference = self._contents().pins[pin_file.fid]
        if reference.blocked:
            raise StatusError(SW.AUTHENTICATION_METHOD_BLOCKED)
        if not self._allowed(pin_file.change):
            raise StatusError(SW.SECURITY_STATUS_NOT_SATISFIED)
        if not pin_file.rule.accepts(command.data):
            raise StatusError(SW.INCORRECT_DATA)
        reference.replace(command.data)
        self.store.commit()
        return b""

    def _compute_digital_signature(self, command: CommandApdu) -> bytes:
        try:
            scheme = SignatureScheme(command.p1)
        except ValueError:
            raise StatusError(SW.INCORRECT_P1_P2) from None
        key_file = self._referenced(command.p2, KeyFile)
        if not self._allowed(key_file.use):
            raise StatusError(SW.SECURITY_STATUS_NOT_SATISFIED)
        key = self._contents().keys[key_file.fid]
        if not accepts_length(scheme, len(command.data), key.key_size // 8):
            raise StatusError(SW.WRONG_LENGTH)
        return sign(key, scheme, command.data)

    def _get_challenge(self, command: CommandApdu) -> bytes:
        if command.p1 or command.p2:
            raise StatusError(SW.INCORRECT_P1_P2)
        if command.extended:
            raise StatusError(SW.CONDITIONS_OF_USE_NOT_SATISFIED)
        if command.data or command.le is None:
            raise StatusError(SW.WRONG_LENGTH)
        return os.urandom(command.le)
