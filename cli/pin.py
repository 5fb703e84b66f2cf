"""`jpki pin status` and `jpki pin change`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from card_emulator.vocabulary.pins import Pin
from cli.context import ask_secret, card_session, pin_value
from cli.options import card_option
from jpki.client.errors import ApduError

CHANGEABLE = [Pin.AUTH.key, Pin.SIGN.key, Pin.CARD_INFO.key]


@click.group()
def pin() -> None:
    """PIN tries left, and PIN change."""


@pin.command(epilog="Example: jpki pin status --json")
@card_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(card_file: Path | None, as_json: bool) -> None:
    """Tries left for every PIN of the card (asking costs no try)."""
    rows: dict[str, dict[str, object]] = {}
    with card_session(card_file) as session:
        for each in Pin:
            try:
                state = session.pin_status(each)
            except ApduError:
                rows[each.key] = {"label": each.label, "present": False}  # e.g. none under 15
                continue
            rows[each.key] = {
                "label": each.label,
                "present": True,
                "tries_left": state.tries_left,
                "max_tries": state.max_tries,
                "blocked": state.blocked,
            }
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for each in Pin:
        row = rows[each.key]
        if not row["present"]:
            text = "not on this card"
        elif row["blocked"]:
            text = "BLOCKED (a municipal office can unblock it)"
        else:
            text = f"{row['tries_left']} of {row['max_tries']} tries left"
        click.echo(f"{each.label:<20} {text}")


@pin.command(epilog="Example: jpki pin change auth --pin 1234 --new-pin 4321")
@card_option
@click.argument("which", type=click.Choice(CHANGEABLE))
@click.option("--pin", "old", help="The current PIN (default: $JPKI_PIN, else a prompt).")
@click.option("--new-pin", help="The new PIN (default: asked twice, without echo).")
def change(card_file: Path | None, which: str, old: str | None, new_pin: str | None) -> None:
    """Change a PIN: the current one is verified first (a wrong one costs a try)."""
    chosen = Pin.named(which)
    current = pin_value(old, f"current {chosen.label}")
    new = new_pin if new_pin is not None else ask_secret(f"new {chosen.label}", confirm=True)
    with card_session(card_file) as session:
        session.change_pin(chosen, current, new)
    click.echo(f"{chosen.label} changed")
