"""`jpki`: the command line. Parses, prompts, calls `jpki`/`card_emulator`, prints; nothing more."""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NoReturn

import click

from cli.exits import Exit
from cli.options import CliState, reader_option

# Subcommands load on first use, so `jpki --help` and `jpki pin status` pay only for their own.
COMMANDS = {
    "card": ("cli.card", "card", "Issue and inspect virtual cards."),
    "ca": ("cli.ca", "ca", "The built-in test CA in $JPKI_HOME/ca."),
    "apdu": ("cli.apdu", "apdu", "Send APDUs in hex to the card, all in one session."),
    "demo": ("cli.apdu", "demo", "Walk through reading, PIN checks and signing on a card."),
    "cert": ("cli.cert", "cert", "Certificates on the card."),
    "pin": ("cli.pin", "pin", "PIN tries left, and PIN change."),
    "text": ("cli.text", "text", "My number and the basic four attributes (券面事項入力補助AP)."),
    "face": ("cli.face", "face", "The card face as the chip holds it (券面事項確認AP)."),
    "sign": ("cli.documents", "sign", "Sign a file with the card (CMS, SHA-256)."),
    "verify": ("cli.documents", "verify", "Verify a CMS signature over a document."),
    "login": ("cli.documents", "login", "Log in as a relying party sees it."),
    "serve": ("cli.pcsc", "serve", "Serve cards in vpcd reader slots (PC/SC)."),
    "readers": ("cli.pcsc", "readers", "List PC/SC readers and whether each holds a card."),
    "control": ("cli.control", "control", "Drive a running `jpki serve --control`: cards, faults."),
    "window": ("cli.window", "window", "The municipal window: unblock or reset any PIN."),
    "store": ("cli.store", "store", "The convenience store: reset a JPKI PIN with the other."),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported when they are used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attribute, _ = COMMANDS[name]
        command: click.Command = getattr(importlib.import_module(module), attribute)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, help_text) for name, (_, _, help_text) in COMMANDS.items()])


def _exit_code(error: BaseException) -> Exit | None:
    """The exit code of a known failure (imported here: only failures pay for it)."""
    from card_emulator.errors import CardEmulatorError, CardPoweredOff, CardRemoved, PowerLost
    from jpki.client.errors import ApduError, CardConnectionError, PinError
    from jpki.errors import BadValueError, JpkiError
    from jpki.issuer.ca import CAError

    # Most specific first: the first class the error is an instance of decides.
    codes: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], Exit], ...] = (
        ((CardPoweredOff, CardRemoved, PowerLost), Exit.CARD),
        (CardEmulatorError, Exit.CARD_FILE),
        (CAError, Exit.CA),
        (BadValueError, Exit.BAD_VALUE),
        (PinError, Exit.PIN),
        ((CardConnectionError, ApduError), Exit.CARD),
        (JpkiError, Exit.FAILURE),
        (ValueError, Exit.BAD_VALUE),
    )
    return next((code for kinds, code in codes if isinstance(error, kinds)), None)


@click.group(
    cls=LazyGroup,
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
    "--at",
    "at",
    metavar="TIME",
    help="Run as if it were TIME (ISO 8601; default $JPKI_NOW, else now): card, CA and verifier "
    "share this clock, and a server keeps time from it.",
)
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="Trace APDUs on stderr, PINs redacted (-vv: also the virtual card's own log).",
)
@click.pass_context
def cli(ctx: click.Context, card_path: Path | None, at: str | None, verbose: int) -> None:
    """Work with a My Number card (virtual, or real in a reader) and the JPKI test CA.

    Shell completion: eval "$(_JPKI_COMPLETE=bash_source jpki)" (zsh_source, fish_source).
    """
    ctx.ensure_object(CliState).card_path = card_path
    if at is not None:
        from jpki import clock  # light: the standard library only

        try:
            clock.set_now(clock.parse_time(at, "--at"))
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="--at") from None
    if verbose:
        logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
        for name in ("jpki", "cli") + (("card_emulator",) if verbose > 1 else ()):
            logging.getLogger(name).setLevel(logging.DEBUG)


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
        code = _exit_code(exc)
        if code is not None:
            _fail(str(exc), code)
        if isinstance(exc, OSError):
            _fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "), Exit.FAILURE)
        raise
