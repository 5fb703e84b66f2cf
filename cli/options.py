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
