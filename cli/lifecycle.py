"""`jpki card renew|change|suspend|revoke|history`: the municipal window's lifecycle operations
on a card file and the test CA, and the card's history. Each prints what it did (`--json` for
scripts); the work is `jpki.issuer.lifecycle`'s, imported when a command runs."""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cli.options import card_file_option, card_path

if TYPE_CHECKING:
    from jpki.issuer.lifecycle import LifecycleResult

# What `revoke` takes (jpki.issuer.lifecycle.REVOCATION_REASONS; spelled here so that `--help`
# loads no issuer).
REVOCATION_REASONS = ("keyCompromise", "cessationOfOperation", "unspecified")
SEXES = ("male", "female", "not-applicable")  # jpki.issuer.holder.Sex
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _run(operation: str, card_file: Path | None, as_json: bool, **arguments: Any) -> None:
    """Load the CA, run one lifecycle operation on the card at the clock's now, print it."""
    from jpki import clock
    from jpki.issuer import lifecycle
    from jpki.issuer.ca import TestCA
    from jpki.paths import ca_directory

    path = card_path(card_file)
    ca = TestCA.load(ca_directory())
    try:
        result = getattr(lifecycle, operation)(path, ca, at=clock.now(), **arguments)
    finally:
        ca.close()
    if as_json:
        click.echo(json.dumps({"card": str(path), **result.to_json()}, ensure_ascii=False))
        return
    click.echo(_described(path, result))


def _described(path: Path, result: LifecycleResult) -> str:
    title = {
        "renew": "Renewed the certificates of",
        "change": "Changed the attributes on",
        "suspend": "Suspended",
        "revoke": "Revoked the certificates of",
    }[result.operation.value]
    lines = [f"{title} {path} at {result.at.isoformat(timespec='seconds')}"]
    if result.changed:
        lines.append(f"  changed     {', '.join(result.changed)}")
    for kind in ("auth", "sign"):
        parts = []
        if kind in result.issued:
            parts.append(f"new {result.issued[kind]:X}")
        if kind in result.revoked:
            serial, reason = result.revoked[kind]
            parts.append(f"{serial:X} revoked ({reason.value})")
        elif kind in result.replaced:
            parts.append(f"replaces {result.replaced[kind]:X}")
        if kind in result.kept:
            parts.append(f"{result.kept[kind]:X} kept")
        if parts:
            lines.append(f"  {kind:<11} {'; '.join(parts)}")
    lines += [f"  note        {note}" for note in result.notes]
    return "\n".join(lines)


@click.command(
    epilog="\b\nExamples:\n"
    "  jpki --at 2030-01-10 card renew          (inside the window before a 2030-02-17 expiry)\n"
    "  jpki card renew --force --json           (before the window opens)"
)
@card_file_option
@click.option("--force", is_flag=True, help="Renew even before the renewal window opens.")
@click.option(
    "--sign-pin",
    help="A signature password for a card that has none (issued under 15) whose holder is now "
    "15 or more: the card then gets a signature certificate too.",
)
@json_option
def renew(card_file: Path | None, force: bool, sign_pin: str | None, as_json: bool) -> None:
    """Renew the card's certificates: new keys and certificates on the card, the old ones
    revoked (superseded). Opens 3 months before they expire (the day after that date); after a
    loss (`jpki card suspend`) this is how new certificates are issued, at any time. PINs are
    kept, their tries back to the maximum."""
    _run("renew", card_file, as_json, force=force, sign_pin=sign_pin)


@click.command(
    epilog="\b\nExamples:\n"
    "  jpki card change --address '東京都千代田区千代田１番１号'   (a move)\n"
    "  jpki card change --name '山田　花子' --reissue-sign --json   (a marriage)"
)
@card_file_option
@click.option("--name", help="Family and given name separated by U+3000 (ideographic space).")
@click.option("--address", help="The new address.")
@click.option("--birth-date", type=click.DateTime(["%Y-%m-%d"]), help="YYYY-MM-DD.")
@click.option("--sex", type=click.Choice(SEXES))
@click.option(
    "--reissue-sign",
    is_flag=True,
    help="Issue a new signature certificate with the new attributes (new key).",
)
@json_option
def change(
    card_file: Path | None,
    name: str | None,
    address: str | None,
    birth_date: datetime.datetime | None,
    sex: str | None,
    reissue_sign: bool,
    as_json: bool,
) -> None:
    """Change the holder's four attributes: the signature certificate is revoked
    (affiliationChanged) and reissued only with --reissue-sign; the card-info and card-face
    APs are rewritten; the authentication certificate is kept. A new birth date changes the
    birth-date key and 照合番号B."""
    if name is None and address is None and birth_date is None and sex is None:
        raise click.UsageError("give at least one of --name, --address, --birth-date, --sex")
    _run(
        "change",
        card_file,
        as_json,
        name=name,
        address=address,
        birth_date=None if birth_date is None else birth_date.date(),
        sex=sex,
        reissue_sign=reissue_sign,
    )


@click.command(epilog="Example: jpki card suspend --json   (the holder reported the card lost)")
@card_file_option
@json_option
def suspend(card_file: Path | None, as_json: bool) -> None:
    """Report the card lost: its certificates go on hold (certificateHold, never released) and
    the card is marked suspended. Found again: `jpki card renew` issues new certificates."""
    _run("suspend", card_file, as_json)


@click.command(epilog="Example: jpki card revoke --reason cessationOfOperation --yes")
@card_file_option
@click.option(
    "--reason",
    type=click.Choice(REVOCATION_REASONS),
    required=True,
    help="keyCompromise (the holder reports the key compromised), cessationOfOperation (no "
    "longer wanted; death), unspecified (destroyed before delivery).",
)
@click.option(
    "--yes", is_flag=True, help="Do not ask for confirmation (revoking cannot be undone)."
)
@json_option
def revoke(card_file: Path | None, reason: str, yes: bool, as_json: bool) -> None:
    """Revoke the card's certificates for good (those not revoked yet)."""
    if not yes:
        if not sys.stdin.isatty():
            raise click.UsageError("revoking cannot be undone: confirm with --yes")
        click.confirm(
            f"Revoke the certificates of {card_path(card_file)} ({reason})? This cannot be undone",
            abort=True,
        )
    _run("revoke", card_file, as_json, reason=reason)


@click.command(epilog="Example: jpki card history --json")
@card_file_option
@json_option
def history(card_file: Path | None, as_json: bool) -> None:
    """Show the card's history: every administrative operation (what, when, which channel;
    never a PIN), oldest first."""
    from jpki.issuer.history import entries

    found = entries(card_path(card_file))
    if as_json:
        click.echo(json.dumps([entry.to_json() for entry in found], ensure_ascii=False, indent=2))
        return
    if not found:
        click.echo("no administrative operations recorded")
    for entry in found:
        details = " ".join(f"{key}={value}" for key, value in entry.details.items())
        target = f" {entry.target}" if entry.target else ""
        click.echo(
            f"{entry.at.isoformat(timespec='seconds')}  {entry.channel:<6} {entry.what}{target}"
            + (f"  {details}" if details else "")
        )
