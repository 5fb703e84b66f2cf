"""`jpki`: the command line. Parses, prompts, calls `jpki`/`card_emulator`, prints; nothing more."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NoReturn

import click

from card_emulator.errors import CardEmulatorError, CardPoweredOff
from cli import card as card_commands
from cli.apdu import apdu, demo
from cli.ca import ca
from cli.cert import cert
from cli.context import CliState, reader_option
from cli.documents import login, sign, verify
from cli.exits import Exit
from cli.pcsc import readers, serve
from cli.pin import pin
from jpki.client.errors import ApduError, CardConnectionError, PinError
from jpki.errors import BadValueError, JpkiError
from jpki.issuer.ca import CAError

# Most specific first: the first class an error is an instance of decides its exit code.
EXIT_CODES: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], Exit], ...] = (
    (CardPoweredOff, Exit.CARD),
    (CardEmulatorError, Exit.CARD_FILE),
    (CAError, Exit.CA),
    (BadValueError, Exit.BAD_VALUE),
    (PinError, Exit.PIN),
    ((CardConnectionError, ApduError), Exit.CARD),
    (JpkiError, Exit.FAILURE),
    (ValueError, Exit.BAD_VALUE),
)


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Example: jpki card create --auth-pin 1234 --sign-pin ABC123 && jpki pin status",
)
@click.version_option(package_name="jpki-emulator", prog_name="jpki")
@click.option(
    "--card",
    "card_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Card file (default: $JPKI_HOME/card.json).",
)
@reader_option
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="Trace APDUs on stderr, PINs redacted (-vv: also the virtual card's own log).",
)
@click.pass_context
def cli(ctx: click.Context, card_path: Path | None, verbose: int) -> None:
    """Work with a My Number card (virtual, or real in a reader) and the JPKI test CA.

    Shell completion: eval "$(_JPKI_COMPLETE=bash_source jpki)" (zsh_source, fish_source).
    """
    ctx.ensure_object(CliState).card_path = card_path
    if verbose:
        logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
        for name in ("jpki", "cli") + (("card_emulator",) if verbose > 1 else ()):
            logging.getLogger(name).setLevel(logging.DEBUG)


for command in (card_commands.card, ca, apdu, demo, cert, pin, sign, verify, login, serve, readers):
    cli.add_command(command)


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"jpki: error: {message}", err=True)
    sys.exit(code)


def main(argv: Iterable[str] | None = None) -> None:
    """Entry point: every known failure becomes one readable line and its own exit code."""
    args: Any = list(argv) if argv is not None else None
    try:
        cli.main(args=args, prog_name="jpki", standalone_mode=False)
    except click.exceptions.Abort:
        _fail("aborted", Exit.FAILURE)
    except click.UsageError as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", Exit.FAILURE)
    except Exception as exc:
        for kinds, code in EXIT_CODES:
            if isinstance(exc, kinds):
                _fail(str(exc), code)
        if isinstance(exc, OSError):
            _fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "), Exit.FAILURE)
        raise
