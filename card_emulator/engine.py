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
    KeyUse,
    Never,
    PinFile,
    RecordFile,
)
from card_emulator.applications.registry import (
    APPLICATIONS,
    CARD_LEVEL_NAME,
    ApplicationRegistry,
)
from card_emulator.errors import CardFileError, CardPoweredOff
from card_emulator.signing import SignatureScheme, accepts_length, sign
from card_emulator.state.image import ApplicationContents
from card_emulator.state.pin_reference import PinReference
from card_emulator.state.store import CardStore
from card_emulator.vocabulary.apdu import (
    INS,
    CommandApdu,
    MalformedApdu,
    ResponseApdu,
    redacted_hex,
)
from card_emulator.vocabulary.identifiers import (
    GLOBAL_PLATFORM_ISD,
    SHORT_ID_FLAG,
    CardData,
    CardFaceFile,
)
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
OWN_KEY = 0x00  # P2 of COMPUTE DIGITAL SIGNATURE / INTERNAL AUTHENTICATE: the AP's own key
CHANGE_KEY_P1 = 0x00
# READ RECORD P2: SFI << 3 | mode; mode 4 reads record number P1, 5 and 6 read several.
RECORD_MODE_MASK = 0x07
RECORD_BY_NUMBER = 0x04
RECORD_MULTIPLE = (0x05, 0x06)
SFI_SHIFT = 3
SFI_RESERVED = 0x1F
SIMPLE_TLV_LONG_LENGTH = 0xFF  # a simple-TLV length of FF is followed by two bytes
SHORT_LE_MAX = 256
INTERNAL_AUTHENTICATE_MAX = 255

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
            INS.READ_RECORD: self._read_record,
            INS.INTERNAL_AUTHENTICATE: self._internal_authenticate,
            INS.GET_DATA: self._get_data,
            INS.SET_SESSION_KEY: self._set_session_key,
            INS.CHANGE_KEY: self._change_reference_data,
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
        if isinstance(file, (BinaryFile, RecordFile)):
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
        """The EF named by P2 of VERIFY/CHANGE/SIGN: `80` current EF, `80|SFI` by short id,
        and for keys `00`, the AP's own key (the card-face AP has one)."""
        if p2 == OWN_KEY and kind is KeyFile:
            own = self._current_df.file(CardFaceFile.CARD_KEY) if self._current_df else None
            if not (
                isinstance(own, KeyFile) and own.kind is KeyUse.CARD_KEY and self._present(own)
            ):
                raise StatusError(SW.REFERENCE_DATA_NOT_FOUND)
            return own  # type: ignore[return-value]
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
        if isinstance(rule, Never):
            return False
        return isinstance(rule, Always) or not self._verified.isdisjoint(rule.pins)

    def _reference(self, pin_file: PinFile) -> PinReference:
        """The reference data of a PIN EF: its own, or the one it shares by the card's settings."""
        if pin_file.shared_with is not None and self.store.image.settings.shared_collation_counters:
            application, fid = pin_file.shared_with
            return self.store.image.contents(application).pins[fid]
        return self._contents().pins[pin_file.fid]

    # Commands --------------------------------------------------------------------------

    def _select(self, command: CommandApdu) -> bytes:
        if command.p2 not in (SELECT_NO_RESPONSE, SELECT_FCI):
            raise StatusError(SW.INCORRECT_P1_P2)
        if command.p1 == SELECT_BY_DF_NAME:
            settings = self.store.image.settings
            if command.data == GLOBAL_PLATFORM_ISD and settings.global_platform_isd_selectable:
                # Back to the power-on state: no AP current, the left AP's security state gone.
                self._current_df = self._current_ef = None
                self._clear_security_state()
                return b""
            application = self.applications.by_aid(command.data)
            if application is None and settings.select_by_aid_prefix and command.p2 == SELECT_FCI:
                application = self.applications.by_aid_prefix(command.data)
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
        if not self._present(found) or (isinstance(found, KeyFile) and found.fid == OWN_KEY):
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
        reference = self._reference(pin_file)
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
            reference.tries_left = settings.max_tries(pin_file.rule)
            self.store.commit_counters(sync=False)
            self._verified.add(pin_file.fid)
            return b""
        self._verified.discard(pin_file.fid)
        raise StatusError(retries_left_sw(reference.tries_left))

    def _change_reference_data(self, command: CommandApdu) -> bytes:
        """CHANGE REFERENCE DATA (`00 24 01`), or CHANGE KEY (`80 32 00`) where the AP uses it."""
        if self._current_df is None or command.ins != self._current_df.pin_change:
            raise StatusError(SW.CONDITIONS_OF_USE_NOT_SATISFIED)
        expected_p1 = CHANGE_NEW_DATA_ONLY if command.ins == INS.CHANGE_REFERENCE_DATA else 0
        if command.p1 != expected_p1:
            raise StatusError(SW.INCORRECT_P1_P2)
        pin_file = self._referenced(command.p2, PinFile)
        if not command.data or command.le is not None:
            raise StatusError(SW.WRONG_LENGTH)
        reference = self._reference(pin_file)
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
        if key_file.kind is KeyUse.INTERNAL_AUTHENTICATION:
            raise StatusError(SW.CONDITIONS_OF_USE_NOT_SATISFIED)
        if key_file.kind is KeyUse.CARD_KEY:
            if scheme is not SignatureScheme.PKCS1_RAW:
                raise StatusError(SW.INCORRECT_P1_P2)
            if (
                self.store.image.settings.card_face_sign_requires == "birth_date"
                and CardFaceFile.BIRTH_DATE_KEY not in self._verified
            ):
                raise StatusError(SW.SECURITY_STATUS_NOT_SATISFIED)
        if not self._allowed(key_file.use):
            raise StatusError(SW.SECURITY_STATUS_NOT_SATISFIED)
        key = self._contents().keys[key_file.fid]
        if not accepts_length(scheme, len(command.data), key.key_size // 8):
            raise StatusError(SW.WRONG_LENGTH)
        return sign(key, scheme, command.data)

    def _internal_authenticate(self, command: CommandApdu) -> bytes:
        """`00 88 00 <key> Lc <challenge> 00`: only the common AP's key answers (PKCS#1 v1.5
        over SHA-256 of the challenge); JPKI keys 6982, the card-face key 6985."""
        if command.p1 != 0:
            raise StatusError(SW.INCORRECT_P1_P2)
        key_file = self._referenced(command.p2, KeyFile)
        if key_file.kind is KeyUse.SIGNATURE:
            raise StatusError(SW.SECURITY_STATUS_NOT_SATISFIED)
        if key_file.kind is KeyUse.CARD_KEY:
            raise StatusError(SW.CONDITIONS_OF_USE_NOT_SATISFIED)
        if not 1 <= len(command.data) <= INTERNAL_AUTHENTICATE_MAX:
            raise StatusError(SW.WRONG_LENGTH)
        key = self._contents().keys[key_file.fid]
        return sign(key, SignatureScheme.PKCS1_SHA256_MESSAGE, command.data)

    def _read_record(self, command: CommandApdu) -> bytes:
        """`00 B2 <record> 04` (current EF) or `00 B2 <record> <SFI << 3 | 4>`: one record."""
        if command.data or command.le is None:
            raise StatusError(SW.WRONG_LENGTH)
        mode, sfi = command.p2 & RECORD_MODE_MASK, command.p2 >> SFI_SHIFT
        if mode in RECORD_MULTIPLE:
            raise StatusError(SW.FUNCTION_NOT_SUPPORTED)
        if mode != RECORD_BY_NUMBER or sfi == SFI_RESERVED:
            raise StatusError(SW.INCORRECT_P1_P2)
        file = self._select_short_id(sfi, SW.FILE_NOT_FOUND) if sfi else self._current_ef
        if file is None:
            raise StatusError(SW.COMMAND_NOT_ALLOWED_NO_CURRENT_EF)
        if not isinstance(file, RecordFile):
            raise StatusError(SW.INCOMPATIBLE_WITH_FILE_STRUCTURE)
        if not self._allowed(file.read):
            raise StatusError(SW.SECURITY_STATUS_NOT_SATISFIED)
        records = _simple_tlv_records(self._contents().files[file.fid])
        if not 1 <= command.p1 <= len(records):
            raise StatusError(SW.RECORD_NOT_FOUND)
        return records[command.p1 - 1][: command.le]

    def _get_data(self, command: CommandApdu) -> bytes:
        """Card-level data objects, in the power-on state only; P1P2 is the tag."""
        tag = command.p1 << 8 | command.p2
        settings = self.store.image.settings
        is_atr = tag == CardData.ATR_INFORMATION
        if self._current_df is not None and not (
            is_atr and settings.atr_information_with_application
        ):
            raise StatusError(SW.REFERENCE_DATA_NOT_FOUND)
        if is_atr:
            value: bytes | None = settings.atr[1:]  # without TS
        elif tag == CardData.SECOND_CVC and not settings.second_cvc_present:
            value = None
        else:
            value = self.store.image.contents(CARD_LEVEL_NAME).files.get(tag)
        if value is None:
            raise StatusError(SW.REFERENCE_DATA_NOT_FOUND)
        # Whole or nothing: a short Le (00 = 256) fits objects up to 256 bytes, larger ones
        # need an extended Le; a smaller Le, or none, is 6700 (no 6Cxx).
        if command.data or command.le is None or command.le < len(value):
            raise StatusError(SW.WRONG_LENGTH)
        return value

    def _set_session_key(self, command: CommandApdu) -> bytes:
        """Secure messaging is off: every AP refuses, the card-info AP with 6A80 once its PIN
        is verified (the answer of a key it cannot use)."""
        application = self._current_df
        if application is None:
            raise StatusError(SW.SECURITY_STATUS_NOT_SATISFIED)
        if application.session_key_after is not None and self._allowed(
            application.session_key_after
        ):
            raise StatusError(SW.INCORRECT_DATA)
        raise StatusError(application.session_key_refusal)

    def _get_challenge(self, command: CommandApdu) -> bytes:
        if command.p1 or command.p2:
            raise StatusError(SW.INCORRECT_P1_P2)
        if command.extended:
            raise StatusError(SW.CONDITIONS_OF_USE_NOT_SATISFIED)
        if command.data or command.le is None:
            raise StatusError(SW.WRONG_LENGTH)
        return os.urandom(command.le)


def _simple_tlv_records(data: bytes) -> list[bytes]:
    """The records of a record EF, each a whole simple TLV (tag, length, value)."""
    records, position = [], 0
    while position + 2 <= len(data):
        size, header = data[position + 1], 2
        if size == SIMPLE_TLV_LONG_LENGTH:
            size, header = int.from_bytes(data[position + 2 : position + 4], "big"), 4
        end = position + header + size
        records.append(data[position:end])
        position = end
    return records
