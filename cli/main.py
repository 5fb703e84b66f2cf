"""`jpki`: the command line. Parses, prompts, calls `jpki`/`card_emulator`, prints; nothing more."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NoReturn

import click

from card_emulator.image import CardImageError
from card_emulator.store import CardFileError
from cli import card as card_commands
from cli.apdu import apdu, demo
from cli.ca import ca
from cli.cert import cert
from cli.context import CliState, reader_option
from cli.documents import login, sign, verify
from cli.pcsc import readers, serve
from cli.pin import pin
from jpki.ca import CAError
from jpki.errors import ApduError, CardConnectionError, JpkiError, PinError
from jpki.provision import ProvisioningError

# Exit codes, one per kind of failure, so scripts can tell them apart.
EXIT_FAILURE = 1  # 2, usage errors, is click's own
EXIT_CARD_FILE = 3
EXIT_CA = 4
EXIT_BAD_VALUE = 5
EXIT_PIN = 6
EXIT_CARD = 7


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
    """Work with a My Number card (virtual, or real in a reader) and the JPKI test CA."""
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
        _fail("aborted", EXIT_FAILURE)
    except click.UsageError as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except (CardFileError, CardImageError) as exc:
        _fail(str(exc), EXIT_CARD_FILE)
    except CAError as exc:
        _fail(str(exc), EXIT_CA)
    except PinError as exc:
        _fail(str(exc), EXIT_PIN)
    except (CardConnectionError, ApduError) as exc:
        _fail(str(exc), EXIT_CARD)
    except JpkiError as exc:
        _fail(str(exc), EXIT_FAILURE)
    except (ProvisioningError, ValueError) as exc:
        _fail(str(exc), EXIT_BAD_VALUE)
    except OSError as exc:
        _fail(f"{exc.filename or ''}: {exc.strerror}".lstrip(": "), EXIT_FAILURE)
    except KeyboardInterrupt:
        _fail("interrupted", EXIT_FAILURE)
