"""The generic ISO 7816-4 command engine: takes command APDU bytes, returns response APDU bytes.

It knows commands and the file model, not any particular application: those come as data
(`card_emulator.applications`), their contents and PIN counters from the durable store. It also
answers the emulator's administration APDUs (lifecycle.md §6), and warns on the logger
`card_emulator.trace` when a client burns tries (never showing a value).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
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
    ResetRule,
)
from card_emulator.applications.registry import (
    APPLICATIONS,
    CARD_LEVEL_NAME,
    ApplicationRegistry,
)
from card_emulator.errors import CardFileError, CardPoweredOff, PowerLost
from card_emulator.signing import SignatureScheme, accepts_length, sign
from card_emulator.state.image import ApplicationContents
from card_emulator.state.pin_reference import PinReference
from card_emulator.state.store import CardStore, ImageChange
from card_emulator.vocabulary.administration import CHALLENGE_LENGTH, PROOF_LENGTH, ResetMode
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
from card_emulator.vocabulary.pins import Pin, PinRule
from card_emulator.vocabulary.sw import SW, describe, retries_left_sw

log = logging.getLogger(__name__)
# Warnings for the APDU trace when a client burns tries (never a PIN value). The NullHandler
# keeps them off stderr until a program configures logging (`jpki -v`).
TRACE_LOGGER = "card_emulator.trace"
trace = logging.getLogger(TRACE_LOGGER)
trace.addHandler(logging.NullHandler())

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
# The administration APDUs (lifecycle.md §6): 6D00 when the card's `admin_apdus` setting is off.
ADMINISTRATION_INS = frozenset({INS.EXTERNAL_AUTHENTICATE, INS.RESET_RETRY_COUNTER})
ORDINALS = {2: "second", 3: "third", 4: "fourth", 5: "fifth"}

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
        self._challenge: bytes | None = None  # R: the last 16-byte GET CHALLENGE in this AP
        self._administrator = False  # a right EXTERNAL AUTHENTICATE in this AP
        # Wrong VERIFYs per (application, EF) in this power session, for the trace's warnings.
        self._wrong_verifies: Counter[tuple[str, int]] = Counter()
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
            INS.EXTERNAL_AUTHENTICATE: self._external_authenticate,
            INS.RESET_RETRY_COUNTER: self._reset_retry_counter,
        }

    # Power ---------------------------------------------------------------------------------

    @property
    def atr(self) -> bytes:
        return self.store.image.settings.atr

    def power_on(self) -> bytes:
        if not self.powered:
            self._clear_security_state()
            self._wrong_verifies.clear()
        self.powered = True
        self._current_df = self._current_ef = None
        return self.atr

    def power_off(self) -> None:
        self.powered = False
        self._current_df = self._current_ef = None
        self._clear_security_state()
        self._wrong_verifies.clear()

    def reset(self) -> bytes:
        """Warm reset: back to the MF; the verified PINs survive unless the settings say not, the
        challenge and the administrator state never do."""
        self._current_df = self._current_ef = None
        if not self.powered or not self.store.image.settings.warm_reset_keeps_security_state:
            self._clear_security_state()
        if not self.powered:
            self._wrong_verifies.clear()
        self._forget_administration()
        self.powered = True
        return self.atr

    # What the card stands on (for fault matchers and the control panel) -------------------

    @property
    def current_application(self) -> str | None:
        """The registry name of the current application; None before one is selected (MF)."""
        return self._current_df.name if self._current_df is not None else None

    @property
    def current_file(self) -> int | None:
        """The FID of the current EF, if any."""
        return self._current_ef.fid if self._current_ef is not None else None

    def addressed_file(self, raw: bytes) -> int | None:
        """The FID of the EF a command addresses: a SELECT's target, an EF named by its short
        id (READ BINARY P1, READ RECORD P2, `80|SFI` in P2), else the current EF. Changes
        nothing."""
        try:
            command = CommandApdu.parse(raw)
        except MalformedApdu:
            return self.current_file
        if command.ins == INS.SELECT and command.p1 in (SELECT_BY_FID, SELECT_EF_UNDER_DF):
            return int.from_bytes(command.data, "big") if len(command.data) == 2 else None
        sfi = _short_id_named(command)
        if sfi:
            found = self._current_df.file_by_short_id(sfi) if self._current_df else None
            return found.fid if found is not None else None
        return self.current_file

    def key_references(self) -> list[tuple[str, PinFile, PinReference]]:
        """Every PIN EF on this card by application name, with the reference data it answers
        with (another EF's where the settings share a counter)."""
        image = self.store.image
        return [
            (application.name, file, self._reference_in(application.name, file))
            for application in self.applications
            if application.name in image.applications
            for file in application.files
            if isinstance(file, PinFile) and file.fid in image.contents(application.name).pins
        ]

    def _clear_security_state(self) -> None:
        self._security_application = None
        self._verified.clear()
        self._forget_administration()

    def _forget_administration(self) -> None:
        self._challenge = None
        self._administrator = False

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
            except (CardFileError, PowerLost):
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
        if handler is None or (
            command.ins in ADMINISTRATION_INS and not self.store.image.settings.admin_apdus
        ):
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
        """The reference data of a PIN EF of the current AP."""
        assert self._current_df is not None
        return self._reference_in(self._current_df.name, pin_file)

    def _reference_in(self, application: str, pin_file: PinFile) -> PinReference:
        """The reference data of a PIN EF: its own, or the one it shares by the card's settings."""
        if pin_file.shared_with is not None and self.store.image.settings.shared_collation_counters:
            application, fid = pin_file.shared_with
            return self.store.image.contents(application).pins[fid]
        return self.store.image.contents(application).pins[pin_file.fid]

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
            self._wrong_verifies.pop(self._key_reference(pin_file), None)
            return b""
        self._verified.discard(pin_file.fid)
        self._trace_wrong_verify(pin_file, command.data, reference.tries_left)
        raise StatusError(retries_left_sw(reference.tries_left))

    def _key_reference(self, pin_file: PinFile) -> tuple[str, int]:
        assert self._current_df is not None
        return self._current_df.name, pin_file.fid

    def _trace_wrong_verify(self, pin_file: PinFile, value: bytes, tries_left: int) -> None:
        """Warn, one line each, when a client burns tries: a value shaped like another key
        reference's, or a repeated wrong value in this power session. Never the value itself."""
        assert self._current_df is not None
        where = f"VERIFY of the {pin_file.description} ({self._current_df.label})"
        shapes = _shaped_like_others(value, pin_file.rule)
        if shapes:
            trace.warning(
                "%s: the value is shaped like the %s, not like this key reference (%s); "
                "%d tries left",
                where,
                shapes,
                pin_file.rule.describe(),
                tries_left,
            )
        key = self._key_reference(pin_file)
        self._wrong_verifies[key] += 1
        count = self._wrong_verifies[key]
        if count >= 2:
            ordinal = ORDINALS.get(count, f"{count}th")
            trace.warning(
                "%s: the %s wrong value in this session; %d tries left", where, ordinal, tries_left
            )

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
        self.store.commit(ImageChange.PIN)
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
        challenge = os.urandom(command.le)
        # Only a challenge of exactly 16 bytes can be proved; any other length forgets R.
        self._challenge = challenge if command.le == CHALLENGE_LENGTH else None
        return challenge

    # Administration (lifecycle.md §6) ----------------------------------------------------

    def _external_authenticate(self, command: CommandApdu) -> bytes:
        """`00 82 00 00 10 <AES-CMAC(K, R ‖ AID)>`: the administrator proves the card's key for
        the last 16-byte challenge of this AP, which it consumes whatever the outcome."""
        challenge, self._challenge = self._challenge, None
        if command.p1 or command.p2:
            raise StatusError(SW.INCORRECT_P1_P2)
        if len(command.data) != PROOF_LENGTH or command.le is not None:
            raise StatusError(SW.WRONG_LENGTH)
        admin = self.store.image.admin
        if challenge is None or self._current_df is None or admin is None:
            raise StatusError(SW.CONDITIONS_OF_USE_NOT_SATISFIED)  # no usable R, or no key
        if admin.blocked:
            raise StatusError(SW.AUTHENTICATION_METHOD_BLOCKED)
        # As for a PIN: the decrement is durable before the comparison.
        admin.tries_left -= 1
        self.store.commit_counters()
        if admin.proves(challenge, self._current_df.aid, command.data):
            admin.restore()
            self.store.commit_counters(sync=False)
            self._administrator = True
            return b""
        self._administrator = False
        raise StatusError(retries_left_sw(admin.tries_left))

    def _reset_retry_counter(self, command: CommandApdu) -> bytes:
        """`00 2C 03 <key>` (unblock: counter to its maximum, value kept) or `00 2C 02 <key> Lc
        <new value>` (new value, counter to its maximum), after the administrator's proof. The
        key is not verified by it: the holder VERIFYs afterwards."""
        if not self._administrator:
            raise StatusError(SW.SECURITY_STATUS_NOT_SATISFIED)
        try:
            mode = ResetMode(command.p1)
        except ValueError:
            raise StatusError(SW.INCORRECT_P1_P2) from None
        if (mode is ResetMode.NEW_VALUE) != bool(command.data) or command.le is not None:
            raise StatusError(SW.WRONG_LENGTH)
        pin_file = self._referenced(command.p2, PinFile)
        if pin_file.reset is ResetRule.NEVER:
            raise StatusError(SW.CONDITIONS_OF_USE_NOT_SATISFIED)
        if mode is ResetMode.NEW_VALUE and pin_file.reset is not ResetRule.NEW_VALUE_OR_UNBLOCK:
            raise StatusError(SW.CONDITIONS_OF_USE_NOT_SATISFIED)  # printed on the card face
        if mode is ResetMode.NEW_VALUE and not pin_file.rule.accepts(command.data):
            raise StatusError(SW.INCORRECT_DATA)
        reference = self._reference(pin_file)
        reference.tries_left = self.store.image.settings.max_tries(pin_file.rule)
        self._verified.discard(pin_file.fid)
        self._wrong_verifies.pop(self._key_reference(pin_file), None)
        if mode is ResetMode.NEW_VALUE:
            reference.replace(command.data)
            self.store.commit(ImageChange.PIN)  # the image (new value) and then the counters
        else:
            self.store.commit_counters()  # acknowledged only once durable
        return b""


def _shaped_like_others(value: bytes, rule: PinRule) -> str:
    """The key references whose rule `value` follows when it breaks `rule`, e.g. `authentication
    PIN, card-info PIN, 住基 PIN or common AP PIN (exactly 4 digits)`; empty if none."""
    if rule.accepts(value):
        return ""
    by_rule: dict[PinRule, list[str]] = {}
    for pin in Pin:
        if pin.rule != rule and pin.rule.accepts(value):
            labels = by_rule.setdefault(pin.rule, [])
            if pin.label not in labels:
                labels.append(pin.label)
    return " or the ".join(
        f"{_alternatives(labels)} ({other.describe()})" for other, labels in by_rule.items()
    )


def _alternatives(labels: list[str]) -> str:
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " or " + labels[-1]


# Commands whose P2 may name an EF by short id (`80|SFI`; `80` alone is the current EF).
P2_NAMES_EF = frozenset(
    {
        INS.VERIFY,
        INS.CHANGE_REFERENCE_DATA,
        INS.CHANGE_KEY,
        INS.COMPUTE_DIGITAL_SIGNATURE,
        INS.INTERNAL_AUTHENTICATE,
        INS.RESET_RETRY_COUNTER,
    }
)


def _short_id_named(command: CommandApdu) -> int:
    """The short EF id a command names (0: none), as its handler reads it."""
    if command.ins == INS.READ_BINARY and command.p1 & SHORT_ID_FLAG:
        return command.p1 & 0x1F
    if command.ins == INS.READ_RECORD:
        return command.p2 >> SFI_SHIFT if command.p2 >> SFI_SHIFT != SFI_RESERVED else 0
    if command.ins in P2_NAMES_EF and command.p2 & ~0x1F == SHORT_ID_FLAG:
        return command.p2 & 0x1F
    return 0


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
