"""`jpki pin status` and `jpki pin change`."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path
from typing import Any

import click

from card_emulator.vocabulary.pins import STORE, Pin
from cli.context import ask_secret, card_session, pin_value
from cli.options import card_option
from jpki.client.errors import ApduError
from jpki.client.session import APPLICATION_NAMES

# The card-face keys are numbers printed on the card, and the collation numbers of the
# card-info AP the same numbers: only the holder's own PINs change.
CHANGEABLE = [pin.key for pin in (Pin.AUTH, Pin.SIGN, Pin.CARD_INFO, Pin.JUKI, Pin.COMMON)]
APPLICATION_WIDTH = max(len(name) for name in APPLICATION_NAMES.values())
LABEL_WIDTH = 20
WIDE = ("W", "F")  # East Asian widths that take two columns in a terminal


def padded(text: str, width: int) -> str:
    """`text` padded to `width` terminal columns (住基 takes four, not two)."""
    columns = sum(2 if unicodedata.east_asian_width(c) in WIDE else 1 for c in text)
    return text + " " * max(width - columns, 0)


def lock_lines(pin: Pin) -> list[str]:
    """What a blocked key reference protects and each channel that unlocks it, with the
    command that does it: one line each, to be indented under the PIN's line."""
    lock, target = pin.lock, pin.target
    lines = [f"protects {lock.protects}"]
    for channel in lock.channels:
        if channel == STORE:
            proof = "--sign-pin" if pin is Pin.AUTH else "--auth-pin"
            how = f"jpki store reserve {proof} …, then jpki store reset-pin {pin.key}"
        elif lock.value_from_face:
            how = f"jpki window unblock {target} (its value is printed on the card)"
        else:
            how = f"jpki window unblock {target} (or reset-pin {target}: a new value)"
        lines.append(f"unlock at {channel}: {how}")
    return lines


@click.group()
def pin() -> None:
    """PIN tries left, and PIN change."""


@pin.command(epilog="Example: jpki pin status --json")
@card_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(card_file: Path | None, as_json: bool) -> None:
    """Tries left for each of the card's ten PINs and collation numbers (asking costs no
    try): JPKI, card info, card face, 住基 and the common AP."""
    rows: list[dict[str, Any]] = []
    with card_session(card_file) as session:
        for each in Pin:
            row: dict[str, Any] = {
                "application": APPLICATION_NAMES[each.application],
                "key": each.key,
                "label": each.label,
                "ef": f"{each.fid:04X}",
            }
            try:
                state = session.pin_status(each)
            except ApduError:  # e.g. no signature password under 15, or an older card file
                row.update(tries_left=None, max_tries=None, blocked=None, present=False)
            else:
                row.update(tries_left=state.tries_left, max_tries=state.max_tries,
                           blocked=state.blocked, present=True)  # fmt: skip
                if state.blocked:
                    row.update(protects=each.lock.protects, unlock=list(each.lock.channels))
            rows.append(row)
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    for row in rows:
        if not row["present"]:
            text = "not on this card"
        elif row["blocked"]:
            text = "BLOCKED"
        else:
            text = f"{row['tries_left']} of {row['max_tries']} tries left"
        application = padded(row["application"], APPLICATION_WIDTH)
        click.echo(f"{application}  {padded(row['label'], LABEL_WIDTH)} {text}")
        if row["blocked"]:
            for line in lock_lines(Pin.named(row["key"])):
                click.echo(f"{'':{APPLICATION_WIDTH}}    {line}")


@pin.command(epilog="Example: jpki pin change auth --pin 1234 --new-pin 4321")
@card_option
@click.argument("which", type=click.Choice(CHANGEABLE))
@click.option("--pin", "old", help="The current PIN (default: $JPKI_PIN, else a prompt).")
@click.option("--new-pin", help="The new PIN (default: asked twice, without echo).")
def change(card_file: Path | None, which: str, old: str | None, new_pin: str | None) -> None:
    """Change a PIN: the current one is verified first (a wrong one costs a try). The
    card-face keys and collation numbers are printed on the card and cannot change."""
    chosen = Pin.named(which)
    current = pin_value(old, f"current {chosen.label}")
    new = new_pin if new_pin is not None else ask_secret(f"new {chosen.label}", confirm=True)
    with card_session(card_file) as session:
        session.change_pin(chosen, current, new)
    click.echo(f"{chosen.label} changed")
