"""What the top-level `jpki` options leave for the subcommands, and how commands reach a card."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from jpki.connection import Connection, PcscConnection, VirtualCardConnection
from jpki.errors import CardConnectionError
from jpki.paths import ca_directory, default_card_path
from jpki.protocol import ApduProtocol
from jpki.session import JpkiSession
from jpki.verify import TrustStore

PIN_ENVIRONMENT_VARIABLE = "JPKI_PIN"
F = TypeVar("F", bound=Callable[..., Any])


READER_ENVIRONMENT_VARIABLE = "JPKI_READER"


@dataclass
class CliState:
    card_path: Path | None = None
    reader: str | None = None


def card_path(own: Path | None = None) -> Path:
    """The card file: the subcommand's `--card`, else the top-level one, else the default."""
    if own is not None:
        return own
    state = click.get_current_context().find_object(CliState)
    if state is not None and state.card_path is not None:
        return state.card_path
    return default_card_path()


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


def open_connection(own: Path | None = None) -> Connection:
    """A card file when one is named, a reader when one is named; else the default card file if
    it exists, else the only PC/SC reader holding a card."""
    state = click.get_current_context().find_object(CliState) or CliState()
    reader = state.reader or os.environ.get(READER_ENVIRONMENT_VARIABLE)
    named_file = own or state.card_path
    if reader and named_file is None:
        return PcscConnection(reader)
    if named_file is not None or default_card_path().exists():
        return VirtualCardConnection.open(card_path(own))
    try:
        return PcscConnection(None)
    except CardConnectionError as error:
        raise CardConnectionError(
            f"no card file at {default_card_path()} (jpki card create makes one), "
            f"and no card in a reader: {error}"
        ) from None


@contextmanager
def card_session(own: Path | None = None) -> Iterator[JpkiSession]:
    """A session with the chosen card, closed (and a card file unlocked) afterwards."""
    connection = open_connection(own)
    try:
        yield JpkiSession(ApduProtocol(connection))
    finally:
        connection.close()


def pin_value(given: str | None, label: str) -> str:
    """A PIN from --pin, else $JPKI_PIN, else asked for without echo. Never printed."""
    if given:
        return given
    from_environment = os.environ.get(PIN_ENVIRONMENT_VARIABLE)
    if from_environment:
        return from_environment
    value: str = click.prompt(label, hide_input=True)
    return value


def trust_store(ca_certificates: tuple[Path, ...]) -> TrustStore:
    """Pinned CA certificates: the --ca-cert files, else the test CA in $JPKI_HOME/ca."""
    if ca_certificates:
        return TrustStore.from_files(ca_certificates)
    directory = ca_directory()
    pinned = sorted(directory.glob("*-ca.pem"))
    if not pinned:
        raise click.UsageError(
            f"no CA certificates to trust: give --ca-cert, or create {directory}"
        )
    return TrustStore.from_files(pinned)
