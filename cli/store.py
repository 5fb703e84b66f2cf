"""`jpki store …`: the convenience-store reset of a JPKI secret, after a reservation made by
proving the other one (the phone app), within 24 hours."""

from __future__ import annotations

from pathlib import Path

import click

from card_emulator.state.store import CardStore
from card_emulator.transports.memory import VirtualCard
from card_emulator.vocabulary.pins import TARGETS, Pin
from cli.context import ask_secret
from cli.options import card_file_option, card_path
from cli.window import refusals
from jpki import clock
from jpki.issuer import window as office
from jpki.issuer.window import Transmit


def kiosk_slot(store: CardStore) -> Transmit:
    """The kiosk's (or the phone's) reader, holding the card the issuing side has locked."""
    return VirtualCard(store).transmit


@click.group()
def store() -> None:
    """The convenience store: reset the signature password with the auth PIN, or the reverse."""


@store.command(epilog="Example: jpki store reserve --auth-pin 1234")
@card_file_option
@click.option("--auth-pin", help="Prove the authentication PIN: reserves a reset of the "
              "signature password.")  # fmt: skip
@click.option("--sign-pin", help="Prove the signature password: reserves a reset of the "
              "authentication PIN.")  # fmt: skip
@click.option("--face-mismatch", is_flag=True,
              help="The app's camera sees another face than the chip's photo.")  # fmt: skip
def reserve(
    card_file: Path | None, auth_pin: str | None, sign_pin: str | None, face_mismatch: bool
) -> None:
    """Reserve a store reset of one JPKI secret by proving the other, as the phone app does.

    The card VERIFYs the secret proven (a wrong one costs a try and reserves nothing); the
    other one can then be reset at a store within 24 hours."""
    if (auth_pin is None) == (sign_pin is None):
        raise click.UsageError(
            "give --auth-pin (to reset the signature password) or --sign-pin (to reset the "
            "authentication PIN)"
        )
    proven, value = ("auth", auth_pin) if auth_pin is not None else ("sign", sign_pin)
    assert value is not None
    with refusals():
        reservation = office.reserve(card_path(card_file), proven, value, clock.now(),
                                     reader=kiosk_slot, face_match=not face_mismatch)  # fmt: skip
    expires = reservation.to_json()["expires"]
    click.echo(f"Reserved a store reset of the {office.label(reservation.target)} until {expires}")


@store.command("reset-pin", epilog="Example: jpki store reset-pin sign --auth-pin 1234 "
               "--new-pin NEWPASS1")  # fmt: skip
@card_file_option
@click.argument("target", type=click.Choice(list(TARGETS)), metavar="TARGET")
@click.option("--auth-pin", help="The authentication PIN, to reset the signature password.")
@click.option("--sign-pin", help="The signature password, to reset the authentication PIN.")
@click.option("--new-pin", help="The new value (default: asked twice, without echo).")
def reset_pin(
    card_file: Path | None,
    target: str,
    auth_pin: str | None,
    sign_pin: str | None,
    new_pin: str | None,
) -> None:
    """Reset a JPKI secret at the kiosk, within 24 hours of `jpki store reserve`.

    Prove the other secret and choose a new value. TARGET is sign (with --auth-pin) or auth
    (with --sign-pin); the store resets nothing else."""
    with refusals():
        proven = office.proven_by(target)
    given = {"auth": auth_pin, "sign": sign_pin}
    wrong = next((name for name, value in given.items() if name != proven and value), None)
    if wrong is not None:
        raise click.UsageError(
            f"resetting the {office.label(target)} proves the {Pin.named(proven).label}: "
            f"give {office.OPTION[proven]}, not {office.OPTION[wrong]}"
        )
    other = given[proven]
    if other is None:
        other = ask_secret(Pin.named(proven).label)
    if new_pin is None:
        new_pin = ask_secret(f"new {office.label(target)}", confirm=True)
    with refusals():
        office.store_reset(card_path(card_file), target, other, new_pin, clock.now(),
                           reader=kiosk_slot)  # fmt: skip
    click.echo(f"{office.label(target)} reset at the store")
