"""How commands reach a card, ask for a PIN, and pick the CAs they trust."""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager as ContextManager
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from card_emulator.errors import CardFileError
from card_emulator.transports.memory import VirtualCard
from cli.options import PIN_ENVIRONMENT_VARIABLE, READER_ENVIRONMENT_VARIABLE, state
from jpki.client.connection import InProcessConnection, PcscConnection
from jpki.client.errors import CardConnectionError
from jpki.client.protocol import ApduProtocol
from jpki.client.session import CardSession, JpkiSession
from jpki.paths import ca_directory, default_card_path

if TYPE_CHECKING:
    from jpki.relying_party.verify import TrustStore

CardConnection = InProcessConnection | PcscConnection
S = TypeVar("S", bound=CardSession)


def open_connection(own: Path | None = None) -> CardConnection:
    """The card to talk to: `--reader` or `--card` (not both); else $JPKI_READER; else the
    default card file if it exists; else the only PC/SC reader holding a card."""
    chosen = state()
    named_file = own or chosen.card_path
    if chosen.reader and named_file is not None:
        raise click.UsageError("give --card or --reader, not both")
    if chosen.reader:
        return PcscConnection(chosen.reader)
    if named_file is not None:
        return InProcessConnection(VirtualCard.open(named_file))
    reader = os.environ.get(READER_ENVIRONMENT_VARIABLE)
    if reader:
        return PcscConnection(reader)
    default = default_card_path()
    if default.exists():
        return InProcessConnection(VirtualCard.open(default))
    try:
        return PcscConnection(None)
    except CardConnectionError as error:
        raise CardFileError(
            f"no card: no card file at {default} (`jpki card create` makes one), and {error}"
        ) from None


@contextmanager
def application_session(kind: type[S], own: Path | None = None) -> Iterator[S]:
    """A session of `kind` (one application's) with the chosen card, closed (and a card file
    unlocked) afterwards. Other applications' sessions can share its protocol."""
    connection = open_connection(own)
    try:
        yield kind(ApduProtocol(connection))
    finally:
        connection.close()


def card_session(own: Path | None = None) -> ContextManager[JpkiSession]:
    """A JPKI session with the chosen card (see `application_session`)."""
    return application_session(JpkiSession, own)


def ask_secret(label: str, *, confirm: bool = False) -> str:
    """Ask for a PIN without echo; without a terminal, say how to give it instead."""
    if not sys.stdin.isatty():
        raise click.UsageError(
            f"no terminal to ask for the {label}: give it with --pin (or --new-pin) "
            f"or ${PIN_ENVIRONMENT_VARIABLE}"
        )
    value: str = click.prompt(label.capitalize(), hide_input=True, confirmation_prompt=confirm)
    return value


def pin_value(given: str | None, label: str) -> str:
    """A PIN from --pin (even an empty one), else $JPKI_PIN, else asked for. Never printed."""
    if given is not None:
        return given
    from_environment = os.environ.get(PIN_ENVIRONMENT_VARIABLE)
    if from_environment:
        return from_environment
    return ask_secret(label)


def trusted_ca_directory() -> Path:
    """$JPKI_HOME/ca, whose anchors are trusted by default; refused (a test CA error, exit 4)
    when others could replace them (a group- or world-writable directory, its own or a CA
    generation's)."""
    from jpki.issuer.ca import GENERATIONS_DIRECTORY, CAError

    directory = ca_directory()
    generations = directory / GENERATIONS_DIRECTORY
    checked = [directory, generations]
    with contextlib.suppress(OSError):
        checked.extend(sorted(path for path in generations.iterdir() if path.is_dir()))
    for path in checked:
        if path.is_dir() and path.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise CAError(
                f"{path} is group- or world-writable: anyone could put their own anchors "
                f"among the trusted ones (chmod go-w {path})"
            )
    return directory


def trust_store(ca_certificates: tuple[Path, ...]) -> TrustStore:
    """Pinned CA certificates: the --ca-cert files, else the test CA in $JPKI_HOME/ca, every
    generation of it (the `*-ca.pem` files there and in generations/N/).

    A damaged anchor, or one that others could have replaced (in a group- or world-writable
    file or directory), is refused as a test CA error (exit 4), naming the file.
    """
    # Here: commands that trust nothing never load the issuer nor the verifier.
    from jpki.issuer.ca import CAError, generation_certificate_files
    from jpki.relying_party.verify import TrustAnchorError, TrustStore

    try:
        if ca_certificates:
            return TrustStore.from_files(ca_certificates)
        directory = trusted_ca_directory()
        pinned = sorted(directory.glob("*-ca.pem"))
        if not pinned:
            raise click.UsageError(
                f"no CA certificates to trust: give --ca-cert, or create {directory}"
            )
        later = [
            path
            for path in generation_certificate_files(directory)
            if path.parent != directory  # generation 1: the `*-ca.pem` files above
        ]
        return TrustStore.from_files([*pinned, *later])
    except TrustAnchorError as error:
        raise CAError(str(error)) from None
