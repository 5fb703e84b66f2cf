"""The options every command shares (--card, --reader, --pin) and what the top level leaves
for the subcommands. Light on purpose: `jpki --help` imports only this."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from jpki.paths import default_card_path

PIN_ENVIRONMENT_VARIABLE = "JPKI_PIN"
READER_ENVIRONMENT_VARIABLE = "JPKI_READER"
F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class CliState:
    card_path: Path | None = None
    reader: str | None = None


def state() -> CliState:
    return click.get_current_context().find_object(CliState) or CliState()


def card_path(own: Path | None = None) -> Path:
    """The card file: the subcommand's `--card`, else the top-level one, else the default."""
    return own or state().card_path or default_card_path()


def _remember_reader(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.ensure_object(CliState).reader = value


reader_option = click.option(
    "--reader",
    help="PC/SC reader name or a unique part of it (default: $JPKI_READER; with neither a "
    "reader nor a card file, the only reader holding a card).",
    expose_value=False,
    callback=_remember_reader,
)
card_file_option = click.option(
    "--card",
    "card_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Card file (default: the top-level --card, else $JPKI_HOME/card.json).",
)


def card_option(command: F) -> F:
    """--card (a virtual card file) and --reader (a card in a PC/SC reader)."""
    return card_file_option(reader_option(command))


pin_option = click.option(
    "--pin", help=f"The PIN (default: ${PIN_ENVIRONMENT_VARIABLE}, else a hidden prompt)."
)


# Credentials other than a PIN: the numbers printed on the card. Like --pin, each is checked
# for its shape before it reaches the card, and never printed.
collation_a_option = click.option(
    "--collation-a",
    metavar="MYNUMBER",
    help="Collation number A instead of a PIN: the 12-digit my number.",
)
collation_b_option = click.option(
    "--collation-b",
    metavar="YYMMDDYYYYNNNN",
    help="Collation number B instead of a PIN: the birth date as Japanese-era YYMMDD, the card "
    "expiry year and the 4-digit security code printed on the card (14 digits).",
)
birth_date_key_option = click.option(
    "--birth-date-key",
    metavar="YYMMDD",
    help="The birth date as Japanese-era YYMMDD (1980-02-17 is Showa 55: 550217).",
)
