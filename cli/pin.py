"""`jpki pin status` and `jpki pin change`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cli.context import card_option, card_session, pin_value
from jpki.errors import ApduError
from jpki.session import Pin

CHANGEABLE = [Pin.AUTH.key, Pin.SIGN.key, Pin.CARD_INFO.key]


@click.group()
def pin() -> None:
    """PIN tries left, and PIN change."""


@pin.command()
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
                rows[each.key] = {"present": False}  # e.g. no signature password under 15
                continue
            rows[each.key] = {
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


@pin.command()
@card_option
@click.argument("which", type=click.Choice(CHANGEABLE))
@click.option("--pin", "old", help="The current PIN (default: $JPKI_PIN, else a prompt).")
@click.option("--new-pin", help="The new PIN (default: asked twice, without echo).")
def change(card_file: Path | None, which: str, old: str | None, new_pin: str | None) -> None:
    """Change a PIN: the current one is verified first (a wrong one costs a try)."""
    chosen = Pin.named(which)
    current = pin_value(old, f"Current {chosen.label}")
    new = new_pin or click.prompt(f"New {chosen.label}", hide_input=True, confirmation_prompt=True)
    with card_session(card_file) as session:
        session.change_pin(chosen, current, new)
    click.echo(f"{chosen.label} changed")
