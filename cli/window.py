"""`jpki window …`: the municipal window, for a holder at the counter with the card."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from card_emulator.vocabulary.administration import MAX_TRIES
from card_emulator.vocabulary.pins import TARGETS, Pin
from cli.context import ask_secret
from cli.exits import Exit
from cli.options import card_file_option, card_path
from jpki import clock
from jpki.issuer import window as office
from jpki.issuer.provision import application_name
from jpki.issuer.window import ADMINISTRATOR, SecretRefused, WindowRefusal


class Refused(click.ClickException):
    """A refusal by the rules (main prints it as one line)."""

    exit_code = Exit.REFUSED


class SecretWrong(click.ClickException):
    """The card refused the secret proven to it: wrong (a try spent) or blocked."""

    exit_code = Exit.PIN


@contextmanager
def refusals() -> Iterator[None]:
    """The window's and the store's refusals as exit codes: the rules' (9) and a PIN's (6)."""
    try:
        yield
    except WindowRefusal as error:
        raise Refused(str(error)) from None
    except SecretRefused as error:
        raise SecretWrong(str(error)) from None


def where(pins: tuple[Pin, ...]) -> str:
    """`in the card-info and card-face APs` for a target that lives in more than one AP."""
    if len(pins) == 1:
        return ""
    names = [application_name(pin) for pin in pins]
    return f" in the {' and '.join(names)} APs"


@click.group()
def window() -> None:
    """The municipal window: unblock or reset any PIN (the holder at the counter)."""


@window.command(epilog="Example: jpki window unblock collation-b")
@card_file_option
@click.argument("target", type=click.Choice([*TARGETS, ADMINISTRATOR]), metavar="TARGET")
def unblock(card_file: Path | None, target: str) -> None:
    """Unblock a PIN or collation number: all its tries back, its value kept.

    Blocked or not, as the window does. A collation number is unblocked in both its APs, juki
    with the common AP's PIN; `admin` restores the administrator authentication's counter.

    TARGET is one of auth, sign, card-info, collation-a, collation-b, birth-date, juki,
    common, admin."""
    path = card_path(card_file)
    with refusals():
        pins = office.unblock(path, target, clock.now())
    if target == ADMINISTRATOR:
        click.echo(f"{office.label(target)} unblocked: {MAX_TRIES} tries")
        return
    click.echo(f"{office.label(target)} unblocked{where(pins)}: {_tries(path, pins[0])} tries")


@window.command("reset-pin", epilog="Example: jpki window reset-pin auth --new-pin 4321")
@card_file_option
@click.argument("target", type=click.Choice(list(TARGETS)), metavar="TARGET")
@click.option("--new-pin", help="The new value (default: asked twice, without echo).")
def reset_pin(card_file: Path | None, target: str, new_pin: str | None) -> None:
    """Set a new value the holder chooses, with all its tries.

    juki also sets the common AP's PIN. Refused for the collation numbers and the birth-date
    key: their values are printed on the card.

    TARGET is one of auth, sign, card-info, juki, common (collation-a, collation-b and
    birth-date are refused)."""
    path = card_path(card_file)
    pins = TARGETS[target]
    with refusals():
        office.check_resettable(target)  # before asking for a value it would refuse
        new = new_pin if new_pin is not None else ask_secret(f"new {pins[0].label}", confirm=True)
        reset = office.reset_pin(path, target, new, clock.now())
    click.echo(f"{office.label(target)} reset{where(reset)}: {_tries(path, reset[0])} tries")


@window.command("admin-key", epilog="Example: jpki window admin-key > card.key")
@card_file_option
def admin_key(card_file: Path | None) -> None:
    """Print the card's administrator key K (32 hex digits), for building a terminal.

    EXTERNAL AUTHENTICATE takes AES-CMAC(K, challenge ‖ AID); then RESET RETRY COUNTER
    unblocks or resets a PIN of that AP (see the spec's administration interface)."""
    with refusals():
        key = office.administrator_key(card_path(card_file))
    click.echo(key.hex().upper())


def _tries(path: Path, pin: Pin) -> int:
    from card_emulator.state.store import read_image

    image = read_image(path)
    return image.settings.max_tries(pin.rule)
