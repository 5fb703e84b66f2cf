"""A card image: everything a card keeps between power cycles, and its versioned JSON format.

Format `jpki-emulator-card` version 4 (see docs/CARD_FORMAT.md): settings, free-form holder
metadata, the administrator key with its retry counter, and per application the EF contents
(base64), private keys (PKCS#8 PEM) and PIN references (salted hashes with retry counters).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import re
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from card_emulator.applications.model import BinaryFile, KeyFile, PinFile, RecordFile
from card_emulator.applications.registry import APPLICATIONS
from card_emulator.errors import CardImageError
from card_emulator.state.administrator import AdministratorKey
from card_emulator.state.pin_reference import (
    DIGEST_LENGTH,
    KDF_NAME,
    MAX_ITERATIONS,
    SALT_LENGTH,
    PinReference,
)
from card_emulator.vocabulary.administration import KEY_LENGTH as ADMIN_KEY_LENGTH
from card_emulator.vocabulary.administration import MAX_TRIES as ADMIN_MAX_TRIES
from card_emulator.vocabulary.pins import PinRule

FORMAT_NAME = "jpki-emulator-card"
FORMAT_VERSION = 4
CHECKSUM_VERSION = 2  # version 1 files (no checksum) still open, and are written as version 4
ADMIN_VERSION = 4  # older files have no administrator key: they open without one
READABLE_VERSIONS = (1, 2, 3, 4)
TOP_FIELDS = ("format", "version", "settings", "metadata", "applications")
TOP_FIELDS_WITH_ADMIN = ("format", "version", "settings", "metadata", "admin", "applications")
ADMIN_FIELDS = ("key", "tries_left")
PIN_FIELDS = ("kdf", "iterations", "salt", "hash", "tries_left")
DEFAULT_ATR = bytes.fromhex("3BE000FF8131FE4514")
MAX_ATR_BYTES = 33
ATR_INITIAL_CHARACTERS = (0x3B, 0x3F)  # TS
RSA_KEY_BITS = 2048  # OpenSC hard-codes the key size of the JPKI AP
MAX_TRIES_SETTING = 15  # 63Cx can say no more
CARD_FACE_SIGN_REQUIRES = ("none", "birth_date")


@dataclass
class CardSettings:
    """Behaviour that differs between real cards, or that the spec could only guess (its §10).

    Settings added after format version 2 take their defaults when an older file is read.
    """

    atr: bytes = DEFAULT_ATR
    warm_reset_keeps_security_state: bool = True  # as the real card does
    wrong_length_pin_counts_as_attempt: bool = True  # else 6700 without a decrement
    select_fci: bytes = b""  # answer to SELECT by DF name with P2=00
    collation_a_tries: int = 10  # card-info 0014 and card-face 0013
    collation_b_tries: int = 10  # card-info 0015 and card-face 0012
    birth_date_key_tries: int = 10  # card-face 0011
    shared_collation_counters: bool = False  # card-face A/B spend the card-info AP's counters
    card_face_sign_requires: str = "none"  # or "birth_date": the card key after 0011
    second_cvc_present: bool = True  # GET DATA 7F21 (absent on older cards: 6A88)
    atr_information_with_application: bool = False  # GET DATA 5F51 with an AP current
    global_platform_isd_selectable: bool = True  # SELECT A0 00 00 01 51 00 00 → power-on state
    select_by_aid_prefix: bool = False  # 00 A4 04 00 <prefix> 00: off keeps OpenSC's probes safe
    admin_apdus: bool = True  # EXTERNAL AUTHENTICATE, RESET RETRY COUNTER (else 6D00)

    def to_json(self) -> dict[str, Any]:
        names = (field.name for field in dataclasses.fields(self))
        return {name: _setting_json(getattr(self, name)) for name in names}

    @classmethod
    def from_json(
        cls, data: Any, where: str = "settings", *, complete: bool = True
    ) -> CardSettings:
        """Settings from a file; `complete=False` lets missing ones take their defaults."""
        defaults = cls()
        names = tuple(field.name for field in dataclasses.fields(cls))
        values = _object(data, where, names if complete else None)
        unknown = next((name for name in values if name not in names), None)
        if unknown is not None:
            raise CardImageError(f"{where}: unknown field {unknown!r}")
        settings = cls(
            **{
                name: _setting(value, getattr(defaults, name), f"{where}.{name}")
                for name, value in values.items()
            }
        )
        try:
            return settings.checked()
        except ValueError as error:
            raise CardImageError(f"{where}: {error}") from None

    def checked(self) -> CardSettings:
        """These settings, if a card can have them; else ValueError saying why."""
        if not 2 <= len(self.atr) <= MAX_ATR_BYTES:
            raise ValueError(f"atr: an ATR has 2 to {MAX_ATR_BYTES} bytes")
        if self.atr[0] not in ATR_INITIAL_CHARACTERS:
            raise ValueError("atr: an ATR starts with 3B (direct convention) or 3F (inverse)")
        for name in ("collation_a_tries", "collation_b_tries", "birth_date_key_tries"):
            if not 1 <= getattr(self, name) <= MAX_TRIES_SETTING:
                raise ValueError(f"{name} must be from 1 to {MAX_TRIES_SETTING}")
        if self.card_face_sign_requires not in CARD_FACE_SIGN_REQUIRES:
            raise ValueError(
                f"card_face_sign_requires must be one of {', '.join(CARD_FACE_SIGN_REQUIRES)}"
            )
        return self

    @classmethod
    def value_of(cls, name: str, text: str) -> object:
        """A setting's value from how people write it (`true`, `3`, hex for bytes, a word);
        ValueError for a name that is not a setting or text that is not such a value."""
        default = {field.name: field.default for field in dataclasses.fields(cls)}.get(name)
        if default is None:
            raise ValueError(f"no card setting {name!r}")
        if isinstance(default, bool):
            if text.lower() not in ("true", "false"):
                raise ValueError(f"{name} is true or false")
            return text.lower() == "true"
        try:
            if isinstance(default, bytes):
                return bytes.fromhex(text)
            if isinstance(default, int):
                return int(text)
        except ValueError:
            kind = "hex digits" if isinstance(default, bytes) else "a whole number"
            raise ValueError(f"{name} is {kind}, not {text!r}") from None
        return text

    def max_tries(self, rule: PinRule) -> int:
        """The retry limit of a PIN on this card: the rule's, or the setting that overrides it."""
        return rule.max_tries if rule.tries_setting is None else getattr(self, rule.tries_setting)


def _setting_json(value: object) -> object:
    return value.hex().upper() if isinstance(value, bytes) else value


def _setting(value: Any, default: object, where: str) -> Any:
    """A setting's value from JSON, of the type its default has."""
    if isinstance(default, bool):
        return _boolean(value, where)
    if isinstance(default, bytes):
        return _hex(value, where)
    if isinstance(default, int):
        return _integer(value, where, 1, MAX_TRIES_SETTING)
    if not isinstance(value, str):
        raise CardImageError(f"{where} must be a string")
    return value


class PrivateKeys(MutableMapping[int, rsa.RSAPrivateKey]):
    """Private keys by EF. Keys read from a checksummed file stay PEM text until a command uses
    them, so commands that sign nothing never parse a key."""

    def __init__(self) -> None:
        self._keys: dict[int, rsa.RSAPrivateKey] = {}
        self._unparsed: dict[int, tuple[str, str]] = {}  # EF -> (PEM, where it was read)

    def add_pem(self, fid: int, pem: str, where: str) -> None:
        self._keys.pop(fid, None)
        self._unparsed[fid] = (pem, where)

    def pem(self, fid: int) -> str:
        """The key as the file holds it (PKCS#8 PEM), parsed or not."""
        if fid in self._unparsed:
            return self._unparsed[fid][0]
        return _key_pem(self._keys[fid])

    def __getitem__(self, fid: int) -> rsa.RSAPrivateKey:
        if fid not in self._keys:
            pem, where = self._unparsed.pop(fid)  # KeyError for a key the card lacks
            self._keys[fid] = _load_key(pem, where, True)  # checksummed: no slow check
        return self._keys[fid]

    def __setitem__(self, fid: int, key: rsa.RSAPrivateKey) -> None:
        self._unparsed.pop(fid, None)
        self._keys[fid] = key

    def __delitem__(self, fid: int) -> None:
        if self._unparsed.pop(fid, None) is None:
            del self._keys[fid]

    def __iter__(self) -> Iterator[int]:
        return iter(sorted({*self._keys, *self._unparsed}))

    def __len__(self) -> int:
        return len({*self._keys, *self._unparsed})

    def __contains__(self, fid: object) -> bool:
        return fid in self._keys or fid in self._unparsed


@dataclass
class ApplicationContents:
    """The contents of one application's files."""

    files: dict[int, bytes] = field(default_factory=dict)
    keys: PrivateKeys = field(default_factory=PrivateKeys)
    pins: dict[int, PinReference] = field(default_factory=dict)


@dataclass
class CardImage:
    """The durable state of one card. `admin` is None on a card without an administrator key
    (one written before format version 4): the administration APDUs then find no usable key."""

    settings: CardSettings = field(default_factory=CardSettings)
    metadata: dict[str, Any] = field(default_factory=dict)
    applications: dict[str, ApplicationContents] = field(default_factory=dict)
    admin: AdministratorKey | None = None

    def contents(self, application: str) -> ApplicationContents:
        contents = self.applications.get(application)  # not setdefault: once per APDU, twice
        if contents is None:
            contents = self.applications[application] = ApplicationContents()
        return contents

    def change_settings(self, settings: CardSettings) -> None:
        """New settings; a PIN whose retry limit they change keeps its counter within it (one
        at its old limit moves to the new one: an unused PIN stays unused)."""
        for name, contents in self.applications.items():
            profile = APPLICATIONS.by_name(name)
            for fid, reference in contents.pins.items():
                pin_file = profile.file(fid) if profile else None
                if not isinstance(pin_file, PinFile):
                    continue
                old, new = self.settings.max_tries(pin_file.rule), settings.max_tries(pin_file.rule)
                if reference.tries_left == old or reference.tries_left > new:
                    reference.tries_left = new
        self.settings = settings

    def to_json(self) -> dict[str, Any]:
        """Everything but the checksum, in the order the file shows it."""
        apps: dict[str, Any] = {}
        for name, contents in self.applications.items():
            apps[name] = {
                "files": {
                    f"{fid:04X}": base64.b64encode(data).decode()
                    for fid, data in sorted(contents.files.items())
                },
                "keys": {f"{fid:04X}": contents.keys.pem(fid) for fid in contents.keys},
                "pins": {f"{fid:04X}": pin.to_json() for fid, pin in sorted(contents.pins.items())},
            }
        admin = self.admin
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "settings": self.settings.to_json(),
            "metadata": self.metadata,
            "admin": None
            if admin is None
            else {"key": admin.key.hex(), "tries_left": admin.tries_left},
            "applications": apps,
        }

    def dumps(self) -> bytes:
        """The file's bytes: the content, then a checksum over it, so any change is detected."""
        content = self.to_json()
        document = {**content, "checksum": _checksum(content)}
        return json.dumps(document, ensure_ascii=False, indent=1).encode() + b"\n"

    @classmethod
    def loads(cls, raw: bytes) -> CardImage:
        """Parse and check a card image strictly: unknown, missing, duplicate or mistyped fields,
        values out of range, a wrong checksum or bytes not as this emulator writes them are
        refused with one line naming the field. Nothing is loaded from a partial reading."""
        data = _parse(raw)
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise CardImageError(f"not a card image (format is not {FORMAT_NAME!r})")
        version = data.get("version")
        if version not in READABLE_VERSIONS or type(version) is not int:
            raise CardImageError(
                f"card image version {version!r} is not supported "
                f"(this emulator reads versions {', '.join(map(str, READABLE_VERSIONS))})"
            )
        with_checksum = ("checksum",) if version >= CHECKSUM_VERSION else ()
        top = TOP_FIELDS_WITH_ADMIN if version >= ADMIN_VERSION else TOP_FIELDS
        fields = _object(data, "card image", (*top, *with_checksum))
        content = {name: value for name, value in data.items() if name != "checksum"}
        checksum = _checksum(content)  # also refuses text that could not be written back
        if with_checksum and fields["checksum"] != checksum:
            raise CardImageError(
                "checksum mismatch: the file was changed outside jpki or is damaged "
                "(change settings with `jpki card settings`)"
            )
        image = cls._from_json(fields, checksummed=bool(with_checksum))
        if version == FORMAT_VERSION and image.dumps() != raw:
            raise CardImageError("not in the form jpki writes (edited by hand?)")
        return image

    @classmethod
    def _from_json(cls, data: dict[str, Any], *, checksummed: bool) -> CardImage:
        metadata = data["metadata"]
        if not isinstance(metadata, dict):
            raise CardImageError("metadata must be an object")
        complete = data["version"] == FORMAT_VERSION
        settings = CardSettings.from_json(data["settings"], complete=complete)
        image = cls(settings=settings, metadata=metadata, admin=_administrator(data.get("admin")))
        applications = data["applications"]
        if not isinstance(applications, dict):
            raise CardImageError("applications must be an object")
        for name, app_data in applications.items():
            profile = APPLICATIONS.by_name(name)
            if profile is None:
                raise CardImageError(f"applications: unknown application {name!r}")
            sections = _object(app_data, f"applications.{name}", ("files", "keys", "pins"))
            contents = image.contents(name)
            sections_kinds: tuple[tuple[str, tuple[type, ...]], ...] = (
                ("files", (BinaryFile, RecordFile)),
                ("keys", (KeyFile,)),
                ("pins", (PinFile,)),
            )
            for section, kind in sections_kinds:
                entries = _object(sections[section], f"applications.{name}.{section}", ())
                for fid_text, value in entries.items():
                    where = f"applications.{name}.{section}.{fid_text}"
                    spec = profile.file(_fid(fid_text, where))
                    if not isinstance(spec, kind):
                        raise CardImageError(f"{where}: not one of the {section} of {name}")
                    if isinstance(spec, (BinaryFile, RecordFile)):
                        contents.files[spec.fid] = _base64(value, where)
                    elif isinstance(spec, KeyFile):
                        if checksummed and isinstance(value, str):
                            contents.keys.add_pem(spec.fid, value, where)  # parsed when used
                        else:
                            contents.keys[spec.fid] = _load_key(value, where, checksummed)
                    elif isinstance(spec, PinFile):
                        limit = settings.max_tries(spec.rule)
                        contents.pins[spec.fid] = _pin_reference(value, where, limit)
        return image


def _parse(raw: bytes) -> Any:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        names = [name for name, _ in pairs]
        duplicate = next((name for name in names if names.count(name) > 1), None)
        if duplicate is not None:
            raise CardImageError(f"field {duplicate!r} appears twice")
        return dict(pairs)

    try:
        return json.loads(raw, object_pairs_hook=no_duplicates)
    except CardImageError:
        raise
    except (ValueError, UnicodeDecodeError) as exc:  # JSON errors, integers too long to read
        raise CardImageError(f"not a card image (invalid JSON: {exc})") from None
    except RecursionError:
        raise CardImageError("not a card image (nested too deeply)") from None


def _checksum(content: dict[str, Any]) -> str:
    canonical = json.dumps(content, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    try:
        encoded = canonical.encode()
    except UnicodeEncodeError:  # a `\uD800`-style escape: JSON allows it, UTF-8 does not
        raise CardImageError("not a card image (a string holds a lone surrogate)") from None
    return "sha256:" + hashlib.sha256(encoded).hexdigest()


def _object(value: Any, where: str, required: tuple[str, ...] | None) -> dict[str, Any]:
    """`value` as an object with exactly the `required` fields (any names when empty)."""
    if not isinstance(value, dict):
        raise CardImageError(f"{where} must be an object")
    if required:
        unknown = next((name for name in value if name not in required), None)
        if unknown is not None:
            raise CardImageError(f"{where}: unknown field {unknown!r}")
        missing = next((name for name in required if name not in value), None)
        if missing is not None:
            raise CardImageError(f"{where}: missing field {missing!r}")
    return value


def _boolean(value: Any, where: str) -> bool:
    if type(value) is not bool:
        raise CardImageError(f"{where} must be true or false, not {value!r}")
    return value


def _integer(value: Any, where: str, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise CardImageError(f"{where} must be an integer from {low} to {high}")
    return value


def _hex(value: Any, where: str, size: int | None = None) -> bytes:
    if not isinstance(value, str) or not re.fullmatch(r"(?:[0-9A-Fa-f]{2})*", value):
        raise CardImageError(f"{where} must be hex digits")
    data = bytes.fromhex(value)
    if size is not None and len(data) != size:
        raise CardImageError(f"{where} must be {size} bytes")
    return data


def _base64(value: Any, where: str) -> bytes:
    try:
        if not isinstance(value, str):
            raise ValueError
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise CardImageError(f"{where} must be base64") from None


def _fid(text: str, where: str) -> int:
    if not re.fullmatch(r"[0-9A-F]{4}", text):
        raise CardImageError(f"{where}: a file id is 4 upper-case hex digits")
    return int(text, 16)


def _pin_reference(value: Any, where: str, max_tries: int) -> PinReference:
    fields = _object(value, where, PIN_FIELDS)
    if fields["kdf"] != KDF_NAME:
        raise CardImageError(f"{where}.kdf: unsupported PIN hash {fields['kdf']!r}")
    return PinReference(
        salt=_hex(fields["salt"], f"{where}.salt", SALT_LENGTH),
        digest=_hex(fields["hash"], f"{where}.hash", DIGEST_LENGTH),
        iterations=_integer(fields["iterations"], f"{where}.iterations", 1, MAX_ITERATIONS),
        tries_left=_integer(fields["tries_left"], f"{where}.tries_left", 0, max_tries),
    )


def _administrator(value: Any) -> AdministratorKey | None:
    if value is None:  # no administrator key (a card converted from an older file)
        return None
    fields = _object(value, "admin", ADMIN_FIELDS)
    return AdministratorKey(
        key=_hex(fields["key"], "admin.key", ADMIN_KEY_LENGTH),
        tries_left=_integer(fields["tries_left"], "admin.tries_left", 0, ADMIN_MAX_TRIES),
    )


def _key_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _load_key(pem: Any, where: str, checksummed: bool) -> rsa.RSAPrivateKey:
    try:
        if not isinstance(pem, str):
            raise ValueError("not a string")
        # OpenSSL's full key check costs ~27 ms a key; a checksummed file's keys are as written.
        key = serialization.load_pem_private_key(
            pem.encode(), password=None, unsafe_skip_rsa_key_validation=checksummed
        )
    except (ValueError, TypeError) as exc:
        raise CardImageError(f"{where} is not a readable private key ({exc})") from None
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size != RSA_KEY_BITS:
        raise CardImageError(f"{where} must be an RSA-{RSA_KEY_BITS} key")
    return key
