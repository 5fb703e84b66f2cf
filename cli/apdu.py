"""`jpki apdu` (send raw APDUs, like `opensc-tool -s` or `scriptor`) and `jpki demo`."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from pathlib import Path

import click

from card_emulator.apdu import redacted_hex
from card_emulator.card import VirtualCard
from cli.context import card_option, card_path
from jpki.demo import run_demo

log = logging.getLogger(__name__)
RESET_WORDS = {"reset"}  # warm reset: prints the ATR, keeps the security state like the card
POWER_CYCLE_WORDS = {"power-cycle"}  # power off then on: clears the security state
EXIT_BAD_LINE = 5


def _commands(arguments: tuple[str, ...]) -> Iterable[tuple[str, str]]:
    """(where, text) for each command: the arguments, else the lines of stdin."""
    if arguments:
        return ((f"argument {n}", text) for n, text in enumerate(arguments, start=1))
    return ((f"line {n}", line) for n, line in enumerate(sys.stdin, start=1))


def _parse_hex(text: str) -> bytes | None:
    try:
        return bytes.fromhex("".join(text.split()))
    except ValueError:
        return None


@click.command()
@card_option
@click.argument("commands", nargs=-1)
def apdu(card_file: Path | None, commands: tuple[str, ...]) -> None:
    """Send APDUs in hex to the card, all in one session, printing each response (SW included).

    Commands come from the arguments, else one per line on stdin ('#' starts a comment; the
    words `reset` and `power-cycle` reset the card). Changes (PIN counters) are saved.
    """
    bad = [
        text
        for text in commands
        if _parse_hex(text) is None and text.lower() not in RESET_WORDS | POWER_CYCLE_WORDS
    ]
    if bad:
        raise click.BadParameter(f"not an APDU in hex: {bad[0]!r}", param_hint="COMMANDS")
    failed = False
    with VirtualCard.open(card_path(card_file)) as card:
        for where, line in _commands(commands):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            if text.lower() in RESET_WORDS:
                click.echo(card.reset().hex().upper())
                continue
            if text.lower() in POWER_CYCLE_WORDS:
                card.power_off()
                click.echo(card.power_on().hex().upper())
                continue
            raw = _parse_hex(text)
            if raw is None or not raw:
                click.echo(f"jpki: error: {where}: not an APDU in hex", err=True)
                failed = True
                continue
            response = card.transmit(raw)
            log.debug("> %s", redacted_hex(raw))
            log.debug("< %s", response.hex().upper())
            click.echo(response.hex().upper())
    if failed:
        sys.exit(EXIT_BAD_LINE)


@click.command()
def demo() -> None:
    """Issue a throwaway card in memory and walk through reading, PIN checks and signing."""
    if not run_demo(click.echo):
        sys.exit(1)
