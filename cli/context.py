"""What the top-level `jpki` options leave for the subcommands, and how commands reach a card."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import click

from jpki.connection import VirtualCardConnection
from jpki.paths import ca_directory, default_card_path
from jpki.protocol import ApduProtocol
from jpki.session import JpkiSession
from jpki.verify import TrustStore

PIN_ENVIRONMENT_VARIABLE = "JPKI_PIN"


@dataclass
class CliState:
    card_path: Path | None = None


def card_path(own: Path | None = None) -> Path:
    """The card file: the subcommand's `--card`, else the top-level one, else the default."""
    if own is not None:
        return own
    state = click.get_current_context().find_object(CliState)
    if state is not None and state.card_path is not None:
        return state.card_path
    return default_card_path()


card_option = click.option(
    "--card",
    "card_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Card file (default: the top-level --card, else $JPKI_HOME/card.json).",
)
pin_option = click.option(
    "--pin", help=f"The PIN (default: ${PIN_ENVIRONMENT_VARIABLE}, else a hidden prompt)."
)


@contextmanager
def card_session(own: Path | None = None) -> Iterator[JpkiSession]:
    """A session with the chosen card, closed (and its file unlocked) afterwards."""
    with VirtualCardConnection.open(card_path(own)) as connection:
        yield JpkiSession(ApduProtocol(connection))


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
