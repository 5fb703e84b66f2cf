"""`jpki apdu` (send raw APDUs, like `opensc-tool -s` or `scriptor`) and `jpki demo`."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import click

from card_emulator.vocabulary.apdu import redacted_hex
from cli.context import open_connection
from cli.demo import run_demo
from cli.exits import Exit
from cli.options import card_option

log = logging.getLogger(__name__)
RESET = "reset"  # warm reset: prints the ATR, keeps the security state like the card
POWER_CYCLE = "power-cycle"  # power off then on: clears the security state


def _parse_hex(text: str) -> bytes | None:
    try:
        return bytes.fromhex("".join(text.split())) or None
    except ValueError:
        return None


def _lines(arguments: tuple[str, ...]) -> Iterator[tuple[str, str]]:
    """(where, command) for each command: the arguments, else stdin one line at a time (read
    only once the previous answer is out, so a script can answer a challenge)."""
    if arguments:
        yield from ((f"argument {n}", text) for n, text in enumerate(arguments, start=1))
        return
    number = 0
    while line := sys.stdin.readline():
        number += 1
        text = line.split("#", 1)[0].strip()
        if text:
            yield f"line {number}", text


@click.command(epilog="Example: jpki apdu 00A4040C0AD392F000260100000001 00A4020C02000A 00B0000004")
@card_option
@click.argument("commands", nargs=-1)
def apdu(card_file: Path | None, commands: tuple[str, ...]) -> None:
    """Send APDUs in hex to the card, all in one session, printing each response (SW included).

    Commands come from the arguments, else one per line on stdin ('#' starts a comment; the
    words `reset` and `power-cycle` reset the card). A line that is not an APDU stops there
    (exit 5). Changes (PIN counters) are saved.
    """
    for text in commands:
        if _parse_hex(text) is None and text.lower() not in (RESET, POWER_CYCLE):
            raise click.BadParameter(f"not an APDU in hex: {text!r}", param_hint="COMMANDS")
    connection = open_connection(card_file)
    try:
        for where, text in _lines(commands):
            if text.lower() == RESET:
                click.echo(connection.reset().hex().upper())
                continue
            if text.lower() == POWER_CYCLE:
                click.echo(connection.power_cycle().hex().upper())
                continue
            raw = _parse_hex(text)
            if raw is None:
                click.echo(f"jpki: error: {where}: not an APDU in hex; stopped", err=True)
                sys.exit(Exit.BAD_VALUE)
            response = connection.transmit(raw)
            log.debug("> %s", redacted_hex(raw))
            log.debug("< %s", response.hex().upper())
            click.echo(response.hex().upper())
    finally:
        connection.close()


@click.command()
def demo() -> None:
    """Issue a throwaway card in memory and walk through reading, PIN checks and signing."""
    if not run_demo(click.echo):
        sys.exit(Exit.FAILURE)
