"""A card image: everything a card keeps between power cycles, and its versioned JSON format.

Format `jpki-emulator-card` version 1 (see docs/CARD_FORMAT.md): settings, free-form holder
metadata, and per application the EF contents (base64), private keys (PKCS#8 PEM) and PIN
references (salted hashes with retry counters).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from card_emulator.applications.model import BinaryFile, KeyFile, PinFile
from card_emulator.applications.registry import APPLICATIONS
from card_emulator.errors import CardImageError
from card_emulator.state.pin_reference import PinReference

FORMAT_NAME = "jpki-emulator-card"
FORMAT_VERSION = 1
DEFAULT_ATR = bytes.fromhex("3BE000FF8131FE4514")
MAX_ATR_BYTES = 33
ATR_INITIAL_CHARACTERS = (0x3B, 0x3F)  # TS
RSA_KEY_BITS = 2048  # OpenSC hard-codes the key size of the JPKI AP


@dataclass
class CardSettings:
    """Behaviour that differs between real cards, or that the spec could only guess."""

    atr: bytes = DEFAULT_ATR
    warm_reset_keeps_security_state: bool = True  # as the real card does
    wrong_length_pin_counts_as_attempt: bool = True  # else 6700 without a decrement
    select_fci: bytes = b""  # answer to SELECT by DF name with P2=00

    def to_json(self) -> dict[str, Any]:
        return {
            "atr": self.atr.hex().upper(),
            "warm_reset_keeps_security_state": self.warm_reset_keeps_security_state,
            "wrong_length_pin_counts_as_attempt": self.wrong_length_pin_counts_as_attempt,
            "select_fci": self.select_fci.hex().upper(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CardSettings:
        settings = cls(
            atr=bytes.fromhex(data.get("atr", DEFAULT_ATR.hex())),
            warm_reset_keeps_security_state=bool(data.get("warm_reset_keeps_security_state", True)),
            wrong_length_pin_counts_as_attempt=bool(
                data.get("wrong_length_pin_counts_as_attempt", True)
            ),
            select_fci=bytes.fromhex(data.get("select_fci", "")),
        )
        return settings.checked()

    def checked(self) -> CardSettings:
        """These settings, if a card can have them; else ValueError saying why."""
        if not 2 <= len(self.atr) <= MAX_ATR_BYTES:
            raise ValueError(f"an ATR has 2 to {MAX_ATR_BYTES} bytes")
        if self.atr[0] not in ATR_INITIAL_CHARACTERS:
            raise ValueError("an ATR starts with 3B (direct convention) or 3F (inverse)")
        return self


@dataclass
class ApplicationContents:
    """The contents of one application's files."""

    files: dict[int, bytes] = field(default_factory=dict)
    keys: dict[int, rsa.RSAPrivateKey] = field(default_factory=dict)
    pins: dict[int, PinReference] = field(default_factory=dict)


@dataclass
class CardImage:
    """The durable state of one card."""

    settings: CardSettings = field(default_factory=CardSettings)
    metadata: dict[str, Any] = field(default_factory=dict)
    applications: dict[str, ApplicationContents] = field(default_factory=dict)

    def contents(self, application: str) -> ApplicationContents:
        return self.applications.setdefault(application, ApplicationContents())

    def to_json(self) -> dict[str, Any]:
        apps: dict[str, Any] = {}
        for name, contents in self.applications.items():
            apps[name] = {
                "files": {
                    f"{fid:04X}": base64.b64encode(data).decode()
                    for fid, data in sorted(contents.files.items())
                },
                "keys": {f"{fid:04X}": _key_pem(key) for fid, key in sorted(contents.keys.items())},
                "pins": {f"{fid:04X}": pin.to_json() for fid, pin in sorted(contents.pins.items())},
            }
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "settings": self.settings.to_json(),
            "metadata": self.metadata,
            "applications": apps,
        }

    def dumps(self) -> bytes:
        return json.dumps(self.to_json(), ensure_ascii=False, indent=1).encode() + b"\n"

    @classmethod
    def loads(cls, raw: bytes) -> CardImage:
        """Parse and check a card image; any defect raises CardImageError with one readable line."""
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CardImageError(f"not a card image (invalid JSON: {exc})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise CardImageError(f"not a card image (format is not {FORMAT_NAME!r})")
        if data.get("version") != FORMAT_VERSION:
            raise CardImageError(
                f"card image version {data.get('version')!r} is not supported "
                f"(this emulator reads version {FORMAT_VERSION})"
            )
        try:
            return cls._from_json(data)
        except CardImageError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CardImageError(f"corrupt card image: {type(exc).__name__}: {exc}") from None

    @classmethod
    def _from_json(cls, data: dict[str, Any]) -> CardImage:
        image = cls(
            settings=CardSettings.from_json(data.get("settings", {})),
            metadata=dict(data.get("metadata", {})),
        )
        for name, app_data in data["applications"].items():
            profile = APPLICATIONS.by_name(name)
            if profile is None:
                raise CardImageError(f"card image has unknown application {name!r}")
            contents = image.contents(name)
            for section in ("files", "keys", "pins"):
                for fid_text, value in app_data.get(section, {}).items():
                    fid = int(fid_text, 16)
                    spec = profile.file(fid)
                    expected = {"files": BinaryFile, "keys": KeyFile, "pins": PinFile}[section]
                    if not isinstance(spec, expected):
                        raise CardImageError(f"{name}: EF {fid_text} is not one of its {section}")
                    if isinstance(spec, BinaryFile):
                        contents.files[fid] = base64.b64decode(value, validate=True)
                    elif isinstance(spec, KeyFile):
                        contents.keys[fid] = _load_key(value, f"{name}: key {fid_text}")
                    elif isinstance(spec, PinFile):
                        pin = PinReference.from_json(value)
                        if pin.tries_left > spec.rule.max_tries:
                            raise CardImageError(
                                f"{name}: PIN {fid_text} has more tries left than its maximum"
                            )
                        contents.pins[fid] = pin
        return image


def _key_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _load_key(pem: str, where: str) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except ValueError as exc:
        raise CardImageError(f"{where} is not a readable private key ({exc})") from None
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size != RSA_KEY_BITS:
        raise CardImageError(f"{where} must be an RSA-{RSA_KEY_BITS} key")
    return key
