"""The municipal window and the convenience-store kiosk: the issuing side's PIN resets on
card files (lifecycle.md §2 and §6).

The window works on the card state directly: it unblocks any key reference (counter to its
maximum, value kept), sets a new value for the holder's own PINs, and restores the
administrator's counter. The store goes through the card, as a kiosk must: a reservation made
after a VERIFY of the other JPKI secret (standing for the phone app), then within 24 hours
VERIFY again, EXTERNAL AUTHENTICATE with the card's administrator key and RESET RETRY COUNTER.

Every operation holds the card's lock (waiting for another process to let go), commits the
card, and records the operation in the card's history before letting go. The issuer never
runs a card itself: the kiosk's callers hand it a `CardReader` that powers the locked card.
"""

from __future__ import annotations

import copy
import datetime
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from card_emulator.state.image import CardImage
from card_emulator.state.store import CardStore, ImageChange, read_image
from card_emulator.vocabulary.administration import (
    CHALLENGE_LENGTH,
    ResetMode,
    administrator_proof,
)
from card_emulator.vocabulary.apdu import INS, CommandApdu, ResponseApdu
from card_emulator.vocabulary.identifiers import AID, SHORT_ID_FLAG, short_id
from card_emulator.vocabulary.pins import TARGETS, Pin
from card_emulator.vocabulary.sw import SW, tries_left_in
from jpki.errors import JpkiError
from jpki.issuer import history
from jpki.issuer.provision import application_name, check_pin, locked_card, unblock_pin

WINDOW_CHANNEL = "window"
STORE_CHANNEL = "store"
ADMINISTRATOR = "admin"  # the target that names the administrator's own counter
RESERVATION_LIFETIME = datetime.timedelta(hours=24)
RESERVATIONS = "store_reservations"  # the image metadata that keeps them (issuing side)
# What the store resets, and the secret the holder proves to reset it.
PROVEN_BY = {"sign": "auth", "auth": "sign"}
OPTION = {"auth": "--auth-pin", "sign": "--sign-pin"}
VERIFY_P1 = 0x00
SELECT_BY_DF_NAME = 0x04
SELECT_NO_RESPONSE = 0x0C

Transmit = Callable[[bytes], bytes]  # one command APDU to the card, its response back
# Powers the card a locked store holds and gives the kiosk's slot (the issuer runs no card).
CardReader = Callable[[CardStore], Transmit]


class WindowRefusal(JpkiError):
    """An operation the rules do not allow (now, or on this card); nothing was changed."""


class SecretRefused(JpkiError):
    """The card refused the secret the holder proved (wrong: a try spent; or blocked)."""


@dataclass(frozen=True)
class Reservation:
    """A convenience-store reset reserved with the phone app (lifecycle.md §2)."""

    target: str  # "auth" or "sign": the secret to reset
    created: datetime.datetime
    expires: datetime.datetime
    used: datetime.datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "created": self.created.isoformat(timespec="seconds"),
            "expires": self.expires.isoformat(timespec="seconds"),
            "used": None if self.used is None else self.used.isoformat(timespec="seconds"),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Reservation:
        used = data.get("used")
        return cls(
            target=data["target"],
            created=datetime.datetime.fromisoformat(data["created"]),
            expires=datetime.datetime.fromisoformat(data["expires"]),
            used=None if used is None else datetime.datetime.fromisoformat(used),
        )


def label(target: str) -> str:
    """What people call a target: its first key reference's name."""
    if target == ADMINISTRATOR:
        return "administrator authentication"
    return _pins(target)[0].label


def _pins(target: str) -> tuple[Pin, ...]:
    pins = TARGETS.get(target)
    if pins is None:
        raise WindowRefusal(f"no PIN named {target!r} (one of {', '.join(TARGETS)})")
    return pins


def _references(image: CardImage, pins: tuple[Pin, ...]) -> str:
    return ", ".join(f"{application_name(pin)} {pin.fid:04X}" for pin in pins)


def _present(image: CardImage, target: str) -> tuple[Pin, ...]:
    """The target's key references this card has; refused when it has none."""
    present = tuple(
        pin for pin in _pins(target) if pin.fid in image.contents(application_name(pin)).pins
    )
    if not present:
        raise WindowRefusal(f"this card has no {label(target)}")
    return present


# The municipal window ----------------------------------------------------------------------


def unblock(card: Path, target: str, at: datetime.datetime) -> tuple[Pin, ...]:
    """The window unblocks a target, blocked or not: every key reference it names gets its
    counter back to the maximum, its value kept. `admin` restores the administrator's own
    counter (which no APDU can). Returns the key references unblocked."""
    if target == ADMINISTRATOR:
        _unblock_administrator(card, at)
        return ()
    _pins(target)
    with locked_card(card) as store:
        pins = _present(store.image, target)
        for pin in pins:
            unblock_pin(store.image, pin)
        store.commit(ImageChange.OTHER)
        history.record(card, "unblock", WINDOW_CHANNEL, at=at, target=target,
                       details={"references": _references(store.image, pins)})  # fmt: skip
    return pins


def reset_pin(card: Path, target: str, new_value: str, at: datetime.datetime) -> tuple[Pin, ...]:
    """The window sets a new value the holder chose, with the counter at its maximum.

    Refused for the collation numbers and the birth-date key, whose values are printed on the
    card (the window only unblocks them); a value of the wrong format is refused before
    anything changes. Returns the key references reset."""
    pins = check_resettable(target)
    for pin in pins:
        check_pin(pin, new_value)
    with locked_card(card) as store:
        present = _present(store.image, target)
        for pin in present:
            unblock_pin(store.image, pin, new_value)
        store.commit(ImageChange.PIN)
        history.record(card, "reset-pin", WINDOW_CHANNEL, at=at, target=target,
                       details={"references": _references(store.image, present)})  # fmt: skip
    return present


def check_resettable(target: str) -> tuple[Pin, ...]:
    """The target's key references, if the window can give them a new value; else refused
    (the collation numbers and the birth-date key are printed on the card)."""
    pins = _pins(target)
    if any(pin.lock.value_from_face for pin in pins):
        raise WindowRefusal(
            f"the {label(target)} is printed on the card: the window only unblocks it "
            f"(jpki window unblock {target})"
        )
    return pins


def unblock_key_reference(
    card: Path, pin: Pin, at: datetime.datetime, new_value: str | None = None
) -> None:
    """One key reference, as `jpki card unblock` has always named them (`face-a`, …):
    tries to the maximum, and a new value if one is given."""
    if new_value is not None:
        check_pin(pin, new_value)
    with locked_card(card) as store:
        unblock_pin(store.image, pin, new_value)
        store.commit(ImageChange.OTHER if new_value is None else ImageChange.PIN)
        what = "unblock" if new_value is None else "reset-pin"
        references = _references(store.image, (pin,))
        history.record(card, what, WINDOW_CHANNEL, at=at, target=pin.key,
                       details={"references": references})  # fmt: skip


def _unblock_administrator(card: Path, at: datetime.datetime) -> None:
    with locked_card(card) as store:
        administrator = store.image.admin
        if administrator is None:
            raise WindowRefusal("this card has no administrator key (made by an older jpki)")
        administrator.restore()
        store.commit(ImageChange.OTHER)
        history.record(card, "unblock", WINDOW_CHANNEL, at=at, target=ADMINISTRATOR)


def administrator_key(card: Path) -> bytes:
    """The card's administrator key K (AES-128), as the issuing side keeps it, for integrators
    who build a terminal (lifecycle.md §6)."""
    administrator = read_image(card).admin
    if administrator is None:
        raise WindowRefusal("this card has no administrator key (made by an older jpki)")
    key: bytes = administrator.key
    return key


# The convenience store ---------------------------------------------------------------------


def reservations(card: Path) -> list[Reservation]:
    """The store reservations the issuing side keeps for this card, one per target at most."""
    return list(_reservations(read_image(card)).values())


def _reservations(image: CardImage) -> dict[str, Reservation]:
    kept = image.metadata.get(RESERVATIONS) or {}
    return {target: Reservation.from_json(data) for target, data in kept.items()}


def _keep(image: CardImage, reservation: Reservation) -> None:
    kept = dict(image.metadata.get(RESERVATIONS) or {})
    kept[reservation.target] = reservation.to_json()
    image.metadata[RESERVATIONS] = kept


def proven_by(target: str) -> str:
    """The secret proven to reset `target` at a store; refused for what only the window does."""
    proven = PROVEN_BY.get(target)
    if proven is not None:
        return proven
    pins = _pins(target)
    how = "unblocks" if any(pin.lock.value_from_face for pin in pins) else "resets"
    command = "unblock" if how == "unblocks" else "reset-pin"
    raise WindowRefusal(
        f"a convenience store resets only the signature password and the authentication PIN; "
        f"the municipal window {how} the {label(target)} (jpki window {command} {target})"
    )


def reserve(
    card: Path,
    proven_pin: str,
    value: str,
    at: datetime.datetime,
    *,
    reader: CardReader,
    face_match: bool = True,
) -> Reservation:
    """The phone app's reservation: VERIFY `proven_pin` ("auth" or "sign") on the card, then
    reserve a store reset of the other secret for 24 hours. A wrong value costs a try and
    reserves nothing; a blocked one is refused; so is a face that does not match the chip's
    photo (`face_match`, which the app's camera decides). A new reservation replaces the
    target's earlier one."""
    target = next((t for t, proven in PROVEN_BY.items() if proven == proven_pin), None)
    if target is None:
        raise WindowRefusal("a reservation proves the authentication PIN or the signature password")
    proven = Pin.named(proven_pin)
    check_pin(proven, value)
    with locked_card(card) as store:
        _present(store.image, target)
        _present(store.image, proven_pin)
        if not face_match:
            raise WindowRefusal("the face did not match the chip's photo: nothing was reserved")
        transmit = reader(store)
        _select(transmit, proven.application)
        _verify(transmit, proven, value)
        reservation = Reservation(target, at, at + RESERVATION_LIFETIME)
        _keep(store.image, reservation)
        store.commit(ImageChange.OTHER)
        history.record(card, "reserve", STORE_CHANNEL, at=at, target=target, details={
            "proven": proven_pin, "expires": reservation.to_json()["expires"]})  # fmt: skip
    return reservation


def store_reset(
    card: Path,
    target: str,
    other_value: str,
    new_value: str,
    at: datetime.datetime,
    *,
    reader: CardReader,
) -> None:
    """The kiosk: with a reservation for `target` made less than 24 hours before `at` and not
    used, VERIFY the other secret, authenticate as the administrator and set `new_value`.

    Refused, with nothing changed, for a target the store cannot reset, without a reservation,
    after it expired or once it was used; a wrong other secret costs a try (the reservation
    stays), a blocked one is refused."""
    proven_pin = proven_by(target)
    reset, proven = Pin.named(target), Pin.named(proven_pin)
    check_pin(reset, new_value)
    check_pin(proven, other_value)
    with locked_card(card) as store:
        reservation = _usable(_reservations(store.image).get(target), target, proven_pin, at)
        _present(store.image, target)
        administrator = store.image.admin
        if administrator is None:
            raise WindowRefusal("this card has no administrator key (made by an older jpki)")
        transmit = reader(store)
        application = reset.application
        _select(transmit, application)
        _verify(transmit, proven, other_value)
        challenge = _send(transmit, CommandApdu(0x00, INS.GET_CHALLENGE, 0, 0, le=CHALLENGE_LENGTH),
                          "GET CHALLENGE")  # fmt: skip
        proof = administrator_proof(administrator.key, challenge, application.value)
        answer = _transmit(transmit, CommandApdu(0x00, INS.EXTERNAL_AUTHENTICATE, 0, 0, proof))
        if answer.sw == SW.INS_NOT_SUPPORTED:
            raise WindowRefusal(
                "this card answers no administration APDUs (card setting admin_apdus): only "
                f"the municipal window can reset its {reset.label}"
            )
        if answer.sw != SW.SUCCESS:
            raise WindowRefusal(
                f"the card refused the kiosk's administrator authentication ({answer.sw:04X}); "
                f"the municipal window can restore it (jpki window unblock {ADMINISTRATOR})"
            )
        # Marked used in the same commit as the new value: a crash leaves both or neither.
        metadata = copy.deepcopy(store.image.metadata)
        _keep(store.image, Reservation(target, reservation.created, reservation.expires, at))
        p2 = SHORT_ID_FLAG | short_id(reset.fid)
        command = CommandApdu(0x00, INS.RESET_RETRY_COUNTER, ResetMode.NEW_VALUE, p2,
                              new_value.encode())  # fmt: skip
        answer = _transmit(transmit, command)
        if answer.sw != SW.SUCCESS:
            store.image.metadata = metadata
            raise WindowRefusal(f"the card refused the new {reset.label} ({answer.sw:04X})")
        store.commit(ImageChange.PIN)
        history.record(card, "reset-pin", STORE_CHANNEL, at=at, target=target, details={
            "proven": proven_pin, "reservation": reservation.to_json()["created"]})  # fmt: skip


def _usable(
    reservation: Reservation | None, target: str, proven_pin: str, at: datetime.datetime
) -> Reservation:
    """The reservation, if the kiosk can use it at `at`; else refused, saying why."""
    again = f"make one with the phone app (jpki store reserve {OPTION[proven_pin]} …)"
    what = f"to reset the {label(target)}"
    if reservation is None:
        raise WindowRefusal(f"no reservation {what}: {again}, then come within 24 hours")
    if reservation.used is not None:
        raise WindowRefusal(
            f"the reservation {what} made at {reservation.to_json()['created']} was already "
            f"used at {reservation.to_json()['used']}: {again}"
        )
    if at >= reservation.expires:
        raise WindowRefusal(
            f"the reservation {what} expired at {reservation.to_json()['expires']} (24 hours "
            f"after it was made): {again}"
        )
    return reservation


def _transmit(transmit: Transmit, command: CommandApdu) -> ResponseApdu:
    return ResponseApdu.parse(transmit(command.encode()))


def _send(transmit: Transmit, command: CommandApdu, what: str) -> bytes:
    """The response data of a command the card must accept."""
    answer = _transmit(transmit, command)
    if answer.sw != SW.SUCCESS:
        raise WindowRefusal(f"the card answered {answer.sw:04X} to {what}")
    return answer.data


def _select(transmit: Transmit, application: AID) -> None:
    command = CommandApdu(
        0x00, INS.SELECT, SELECT_BY_DF_NAME, SELECT_NO_RESPONSE, application.value
    )
    _send(transmit, command, f"SELECT {application.name}")


def _verify(transmit: Transmit, pin: Pin, value: str) -> None:
    p2 = SHORT_ID_FLAG | short_id(pin.fid)
    answer = _transmit(transmit, CommandApdu(0x00, INS.VERIFY, VERIFY_P1, p2, value.encode()))
    if answer.sw == SW.SUCCESS:
        return
    left = tries_left_in(answer.sw)
    if left is not None:
        if left == 0:
            raise SecretRefused(f"wrong {pin.label}: it is now blocked")
        raise SecretRefused(f"wrong {pin.label}: {left} {'try' if left == 1 else 'tries'} left")
    if answer.sw == SW.AUTHENTICATION_METHOD_BLOCKED:
        raise SecretRefused(
            f"the {pin.label} is blocked; the municipal window can unblock it "
            f"(jpki window unblock {pin.key})"
        )
    raise WindowRefusal(f"the card answered {answer.sw:04X} to VERIFY {pin.label}")
