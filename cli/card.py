"""`jpki card …`: issue a virtual card, show what it holds, unblock a PIN as an office does."""

from __future__ import annotations

import datetime
import json
import secrets
from pathlib import Path
from typing import Any

import click

from card_emulator.errors import CardFileError, CardImageError
from card_emulator.state.image import CardSettings
from card_emulator.state.store import FileStore, read_image
from card_emulator.vocabulary.pins import Pin
from cli.context import ask_secret
from cli.options import card_option, card_path
from jpki.issuer.ca import CAExistsError, TestCA, existing_ca_files
from jpki.issuer.holder import Holder, Sex, with_check_digit
from jpki.issuer.provision import card_summary, check_pin, provision_card, unblock_pin
from jpki.paths import ca_directory


def load_or_create_ca(directory: Path, production_dn: bool = False) -> TestCA:
    """The CA in `directory`, created on first use: only where none of a CA's files exist, since
    a new CA over old keys would leave every card they issued untrusted."""
    if not existing_ca_files(directory):
        click.echo(f"Creating the test CA in {directory}", err=True)
        try:
            return TestCA.create(directory, production_dn=production_dn)
        except CAExistsError:
            pass  # another process created it meanwhile: use theirs
    return TestCA.load(directory)


def _prompt_pin(pin: Pin) -> str:
    value = ask_secret(f"{pin.label} ({pin.rule.describe()})", confirm=True)
    check_pin(pin, value)
    return value


def _settings(ctx: click.Context, param: click.Parameter, atr: str | None) -> CardSettings:
    if atr is None:
        return CardSettings()
    try:
        raw = bytes.fromhex(atr)
    except ValueError:
        raise click.BadParameter(f"{atr!r} is not hex") from None
    try:
        return CardSettings(atr=raw).checked()
    except ValueError as error:
        raise click.BadParameter(f"{atr!r}: {error}") from None


@click.group()
def card() -> None:
    """Issue and inspect virtual cards."""


@card.command()
@card_option
@click.option(
    "--name",
    default="試験　太郎",
    show_default=True,
    help="Family and given name separated by U+3000 (ideographic space).",
)
@click.option(
    "--birth-date",
    default="1980-02-17",
    show_default=True,
    type=click.DateTime(["%Y-%m-%d"]),
    help="YYYY-MM-DD.",
)
@click.option(
    "--sex", type=click.Choice([s.value for s in Sex]), default=Sex.MALE.value, show_default=True
)
@click.option("--address", default="東京都渋谷区神南一丁目１番１号", show_default=True)
@click.option("--my-number", help="12 digits with a valid check digit (default: random).")
@click.option(
    "--prefecture", default="Tokyo-to", show_default=True, help="Romaji, for the certificates."
)
@click.option("--municipality", default="Shibuya-ku", show_default=True)
@click.option("--municipality-code", default="13113", show_default=True)
@click.option("--birth-era", type=click.IntRange(0, 5), help="Override the era code (0 = unknown).")
@click.option("--auth-pin", help="4 digits (prompted for when absent).")
@click.option("--sign-pin", help="6-16 of A-Z 0-9 (prompted for when absent; none under 15).")
@click.option("--atr", "settings", callback=_settings,
              help="ATR in hex, 2 to 33 bytes (default: 3BE000FF8131FE4514).")  # fmt: skip
@click.option(
    "--production-dn",
    is_flag=True,
    help="Give a new CA the production DN (O=JPKI) instead of the test one.",
)
def create(
    card_file: Path | None,
    name: str,
    birth_date: datetime.datetime,
    sex: str,
    address: str,
    my_number: str | None,
    prefecture: str,
    municipality: str,
    municipality_code: str,
    birth_era: int | None,
    auth_pin: str | None,
    sign_pin: str | None,
    settings: CardSettings,
    production_dn: bool,
) -> None:
    """Issue a card for a holder (creating the test CA on first use)."""
    path = card_path(card_file)
    if path.exists():
        raise CardFileError(f"{path} already exists; refusing to overwrite a card")
    holder = Holder(
        name=name,
        birth_date=birth_date.date(),
        sex=Sex(sex),
        address=address,
        my_number=my_number or with_check_digit(f"{secrets.randbelow(10**11):011d}"),
        prefecture=prefecture,
        municipality=municipality,
        municipality_code=municipality_code,
        birth_era=birth_era,
    )
    needs_signature = holder.age_on(datetime.date.today()) >= 15
    auth_pin = auth_pin if auth_pin is not None else _prompt_pin(Pin.AUTH)
    if needs_signature and sign_pin is None:
        sign_pin = _prompt_pin(Pin.SIGN)
    ca = load_or_create_ca(ca_directory(), production_dn)
    image = provision_card(
        ca, holder, auth_pin, sign_pin if needs_signature else None, settings=settings
    )
    FileStore.create(path, image)
    click.echo(f"Created card {path} for {holder.name}")
    if not needs_signature:
        click.echo("Under 15: no signature key, certificate or password, as on a real card.")


@card.command()
@card_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info(card_file: Path | None, as_json: bool) -> None:
    """Show the holder, certificates and PIN tries left (never a PIN or a key)."""
    summary = card_summary(read_image(card_path(card_file)))
    if as_json:
        click.echo(json.dumps(summary, ensure_ascii=False, indent=2))
        return
    click.echo(_format_summary(summary))


def _format_summary(summary: dict[str, Any]) -> str:
    lines = []
    holder = summary.get("holder") or {}
    if holder:
        lines.append("Holder")
        for key in ("name", "birth_date", "sex", "address", "my_number"):
            lines.append(f"  {key.replace('_', ' '):<12} {holder.get(key, '')}")
    lines.append(f"Token serial   {summary.get('token_serial_number')}")
    lines.append(f"Card expiry    {summary.get('card_expiry')}")
    lines.append(f"Security code  {summary.get('security_code')}")
    lines.append(f"ATR            {summary['atr']}")
    lines.append("Certificates")
    for name, details in summary["certificates"].items():
        lines.append(f"  {name}")
        lines.append(f"    subject    {details['subject']}")
        lines.append(f"    serial     {details['serial']}")
        lines.append(f"    validity   {details['not_before']} .. {details['not_after']}")
    lines.append("PINs")
    for pin in summary["pins"].values():
        state = (
            "BLOCKED" if pin["blocked"] else f"{pin['tries_left']} of {pin['max_tries']} tries left"
        )
        lines.append(f"  {pin['label']:<20} {state}")
    return "\n".join(lines)


@card.command()
@card_option
@click.argument("which", type=click.Choice([pin.key for pin in Pin]))
@click.option("--new-pin", help="Also set a new PIN value (as the office does after a lockout).")
def unblock(card_file: Path | None, which: str, new_pin: str | None) -> None:
    """Restore a PIN's tries, as a municipal office does for a locked card."""
    store = FileStore.open(card_path(card_file))
    try:
        unblock_pin(store.image, Pin.named(which), new_pin)
        store.commit()
    finally:
        store.close()
    click.echo(f"{Pin.named(which).label} unblocked")


def _setting(change: str) -> tuple[str, object]:
    name, separator, text = change.partition("=")
    if not separator:
        raise click.BadParameter(f"{change!r}: write NAME=VALUE", param_hint="SETTINGS")
    value = {"true": True, "false": False}.get(text.lower(), text)
    return name.strip(), value


@card.command(epilog="Example: jpki card settings warm_reset_keeps_security_state=false")
@card_option
@click.argument("changes", nargs=-1, metavar="[NAME=VALUE]...")
def settings(card_file: Path | None, changes: tuple[str, ...]) -> None:
    """Show the card's settings, or change them (the card file is checksummed: edit it here)."""
    updates = dict(_setting(change) for change in changes)
    store = FileStore.open(card_path(card_file))
    try:
        if updates:
            try:
                store.image.settings = CardSettings.from_json(
                    {**store.image.settings.to_json(), **updates}
                )
            except CardImageError as error:
                raise click.BadParameter(str(error), param_hint="SETTINGS") from None
            store.commit()
        shown = store.image.settings.to_json()
    finally:
        store.close()
    for name, value in shown.items():
        click.echo(f"{name:<36} {json.dumps(value)}")
