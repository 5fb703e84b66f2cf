"""`jpki card …`: issue a virtual card, show what it holds, unblock a PIN as an office does."""

from __future__ import annotations

import dataclasses
import datetime
import json
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from card_emulator.errors import CardFileError, CardImageError
from card_emulator.state.image import CardImage, CardSettings
from card_emulator.state.store import FileStore, ImageChange, read_image
from card_emulator.vocabulary.identifiers import CardFaceFile
from card_emulator.vocabulary.pins import Pin
from cli.context import ask_secret
from cli.options import card_file_option, card_option, card_path
from cli.output import STDOUT, check_output, force_option, output_help, write_output
from cli.pin import LABEL_WIDTH, lock_lines, padded
from jpki import clock
from jpki.issuer.ca import CAExistsError, TestCA, existing_ca_files
from jpki.issuer.card_contents import DEFAULT_TOKEN_LABEL, TOKEN_LABELS
from jpki.issuer.holder import Holder, Sex, with_check_digit
from jpki.issuer.provision import (
    ATTRIBUTES_HEADERS,
    FORGERIES,
    SIGNATURE_CERTIFICATE_MIN_AGE,
    card_summary,
    check_pin,
    provision_card,
)
from jpki.paths import ca_directory

if TYPE_CHECKING:
    from jpki.issuer.face_images import CardFront


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


HOLDER_OPTIONS = (
    "name", "birth_date", "sex", "address", "my_number", "prefecture", "municipality",
    "municipality_code", "birth_era", "auth_pin", "sign_pin", "card_info_pin", "juki_pin",
    "common_pin", "security_code", "attributes_header", "token_label",
)  # fmt: skip


def _four_digits(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not (len(value) == 4 and value.isascii() and value.isdigit()):
        raise click.BadParameter("must be exactly 4 digits")
    return value


@card.command(
    epilog="\b\nExamples:\n"
    "  jpki card create --auth-pin 1234 --sign-pin ABC123 --security-code 2285\n"
    "  jpki card create --sample auth-locked --card locked.json   (see jpki card samples)"
)
@card_option
@click.option("--sample", help="Issue a named sample card (見本カード): `jpki card samples`.")
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
@click.option("--card-info-pin", callback=_four_digits, help="4 digits (default: the auth PIN).")
@click.option("--juki-pin", callback=_four_digits, help="住基 PIN, 4 digits (default: auth PIN).")
@click.option("--common-pin", callback=_four_digits, help="4 digits (default: the auth PIN).")
@click.option("--security-code", callback=_four_digits,
              help="The 4 digits printed on the face, in 照合番号B (default: random).")  # fmt: skip
@click.option(
    "--attributes-header",
    type=click.Choice(ATTRIBUTES_HEADERS),
    default="short",
    show_default=True,
    help="Card-info EF 0002 header: FF 20 LL, or FF 20 82 00 LL (cards from about 2023).",
)
@click.option("--token-label", type=click.Choice(TOKEN_LABELS), default=DEFAULT_TOKEN_LABEL,
              show_default=True, help="JPKI EF 0006 label: the card, or a phone's.")  # fmt: skip
@click.option("--forged", type=click.Choice(FORGERIES),
              help="A chip that `jpki face check` refuses (forgery tests).")  # fmt: skip
@click.option("--atr", "settings", callback=_settings,
              help="ATR in hex, 2 to 33 bytes (default: 3BE000FF8131FE4514).")  # fmt: skip
@click.option(
    "--production-dn",
    is_flag=True,
    help="Give a new CA the production DN (O=JPKI) instead of the test one.",
)
@click.pass_context
def create(
    ctx: click.Context,
    card_file: Path | None,
    sample: str | None,
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
    card_info_pin: str | None,
    juki_pin: str | None,
    common_pin: str | None,
    security_code: str | None,
    attributes_header: str,
    token_label: str,
    forged: str | None,
    settings: CardSettings,
    production_dn: bool,
) -> None:
    """Issue a card for a holder, with every application (creating the test CA on first use)."""
    path = card_path(card_file)
    if path.exists():
        raise CardFileError(f"{path} already exists; refusing to overwrite a card")
    if sample is not None:
        _create_sample(ctx, path, sample, settings, forged, production_dn)
        return
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
    needs_signature = holder.age_on(clock.today()) >= SIGNATURE_CERTIFICATE_MIN_AGE
    auth_pin = auth_pin if auth_pin is not None else _prompt_pin(Pin.AUTH)
    if needs_signature and sign_pin is None:
        sign_pin = _prompt_pin(Pin.SIGN)
    ca = load_or_create_ca(ca_directory(), production_dn)
    image = provision_card(
        ca,
        holder,
        auth_pin,
        sign_pin if needs_signature else None,
        settings=settings,
        card_info_pin=card_info_pin,
        juki_pin=juki_pin,
        common_pin=common_pin,
        security_code=security_code,
        attributes_header=attributes_header,
        token_label=token_label,
        forged=forged,
    )
    _create(path, image)
    click.echo(f"Created card {path} for {holder.name}")
    if not needs_signature:
        click.echo("Under 15: no signature key, certificate or password, as on a real card.")


def _create(path: Path, image: CardImage) -> None:
    """Write a new card and open its history with its issuance."""
    from jpki.issuer import history

    FileStore.create(path, image)
    marks: tuple[str, ...] = ("sample", "forged")
    details = {name: str(image.metadata[name]) for name in marks if name in image.metadata}
    issued = datetime.datetime.fromisoformat(str(image.metadata["issued"]))
    history.record(path, "issue", "window", at=issued, details=details or None)


def _create_sample(
    ctx: click.Context,
    path: Path,
    name: str,
    settings: CardSettings,
    forged: str | None,
    production_dn: bool,
) -> None:
    from jpki.issuer.samples import sample_named

    given = [
        f"--{option.replace('_', '-')}"
        for option in HOLDER_OPTIONS
        if ctx.get_parameter_source(option) is click.core.ParameterSource.COMMANDLINE
    ]
    if given:
        raise click.UsageError(f"--sample sets the holder and PINs: drop {', '.join(given)}")
    try:
        chosen = sample_named(name)
    except KeyError:
        raise click.BadParameter(
            f"no sample {name!r} (jpki card samples lists them)", param_hint="--sample"
        ) from None
    ca = load_or_create_ca(ca_directory(), production_dn)
    image = chosen.issue(ca, clock.now(), settings=settings, forged=forged)
    _create(path, image)
    click.echo(f"Created sample card {name!r} at {path}: {chosen.description}")


@card.command(epilog="Example: jpki card samples --json")
@click.option("--json", "as_json", is_flag=True, help="Print each sample's holder and state.")
def samples(as_json: bool) -> None:
    """List the sample cards `jpki card create --sample NAME` issues."""
    from jpki.issuer.samples import SAMPLES

    if as_json:
        today = clock.today()  # as `card create --sample` issues
        listed = [
            {
                "name": sample.name,
                "description": sample.description,
                "holder": sample.holder(today).to_json(),
                **sample.state(today),
            }
            for sample in SAMPLES
        ]
        click.echo(json.dumps(listed, ensure_ascii=False, indent=2))
        return
    width = max(len(sample.name) for sample in SAMPLES)
    for sample in SAMPLES:
        click.echo(f"{sample.name:<{width}}  {sample.description}")


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
    for label, key in (
        ("Sample", "sample"),
        ("Token serial", "token_serial_number"),
        ("Card serial", "card_serial_number"),
        ("Issued", "issued"),
        ("Card expiry", "card_expiry"),
        ("Security code", "security_code"),
        ("EF 0002 header", "attributes_header"),
        ("Forged", "forged"),
        ("SUSPENDED", "suspended"),
        ("REVOKED", "revoked"),
        ("Renewed", "certificates_renewed"),
    ):
        value = summary.get(key)
        if isinstance(value, dict):  # a revocation: when and why
            value = f"{value.get('reason')} on {value.get('time')}"
        if value is not None:
            lines.append(f"{label:<15}{value}")
    lines.append(f"{'ATR':<15}{summary['atr']}")
    lines.append("Certificates")
    for name, details in summary["certificates"].items():
        lines.append(f"  {name}")
        lines.append(f"    subject    {details['subject']}")
        lines.append(f"    serial     {details['serial']}")
        lines.append(f"    validity   {details['not_before']} .. {details['not_after']}")
    if not summary["certificates"]:
        lines.append("  none (the holder declined the JPKI certificates)")
    lines.append("PINs")
    for key, pin in summary["pins"].items():
        state = (
            "BLOCKED" if pin["blocked"] else f"{pin['tries_left']} of {pin['max_tries']} tries left"
        )
        lines.append(f"  {pin['application']:<10} {padded(pin['label'], LABEL_WIDTH)} {state}")
        if pin["blocked"]:
            lines.extend(f"    {line}" for line in lock_lines(Pin.named(key)))
    return "\n".join(lines)


@card.command()
@card_option
@click.argument("which", type=click.Choice([pin.key for pin in Pin]))
@click.option("--new-pin", help="Also set a new PIN value (as the office does after a lockout).")
def unblock(card_file: Path | None, which: str, new_pin: str | None) -> None:
    """Restore a PIN's tries, as a municipal office does for a locked card (the same as
    `jpki window unblock`, by key reference; recorded in the card's history)."""
    from jpki.issuer.window import unblock_key_reference

    unblock_key_reference(card_path(card_file), Pin.named(which), clock.now(), new_pin)
    click.echo(f"{Pin.named(which).label} unblocked")


def _setting(change: str) -> tuple[str, Any]:
    name, separator, text = change.partition("=")
    if not separator:
        raise click.BadParameter(f"{change!r}: write NAME=VALUE", param_hint="SETTINGS")
    name = name.strip()
    try:
        value = CardSettings.value_of(name, text)
    except ValueError as error:
        raise click.BadParameter(f"{change!r}: {error}", param_hint="SETTINGS") from None
    return name, value


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
                changed = dataclasses.replace(store.image.settings, **updates).checked()
            except ValueError as error:
                raise click.BadParameter(str(error), param_hint="SETTINGS") from None
            store.image.change_settings(changed)
            store.commit(ImageChange.OTHER)
        shown = store.image.settings.to_json()
    finally:
        store.close()
    for name, value in shown.items():
        click.echo(f"{name:<36} {json.dumps(value)}")


@card.command(
    "face-image",
    epilog="Example: jpki card face-image -o front.png && tesseract front.png - -l jpn",
)
@card_file_option
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help=output_help)  # fmt: skip
@force_option
@click.option("--forged", type=click.Choice(["mismatch"]),
              help="Print values that do not match the chip (a forged face).")  # fmt: skip
def face_image(card_file: Path | None, output: Path, force: bool, forged: str | None) -> None:
    """Draw the front of the card as people see it (PNG): name, address, birth date in 和暦,
    sex, expiry, photo and security code, so that OCR of it gives the chip's 照合番号B."""
    from jpki.card_face import parse_face
    from jpki.issuer.face_images import CardFront, card_front_image

    check_output(output, force)
    image = read_image(card_path(card_file))
    face_ef = image.contents("card-face").files.get(CardFaceFile.FACE)
    if face_ef is None or "holder" not in image.metadata:
        raise CardImageError("this card has no card-face AP (made by an older jpki?)")
    front = CardFront.of(
        Holder.from_json(image.metadata["holder"]),
        datetime.date.fromisoformat(image.metadata["card_expiry"]),
        image.metadata["security_code"],
    )
    if forged == "mismatch":
        front = _mismatched(front)
    write_output(output, card_front_image(front, parse_face(face_ef).photo_jp2))
    if output != STDOUT:
        note = " (forged: the printed values do not match the chip)" if forged else ""
        click.echo(f"Wrote {output}{note}")


def _mismatched(front: CardFront) -> CardFront:
    """A face printed with another birth day and security code than the chip holds."""
    other_day = front.birth_date + datetime.timedelta(days=1)
    other_code = f"{(int(front.security_code) + 5555) % 10000:04d}"
    return dataclasses.replace(front, birth_date=other_day, security_code=other_code)


from cli import lifecycle as lifecycle_commands  # noqa: E402  (the window's, in their own module)

card.add_command(lifecycle_commands.renew)
card.add_command(lifecycle_commands.change)
card.add_command(lifecycle_commands.suspend)
card.add_command(lifecycle_commands.revoke)
card.add_command(lifecycle_commands.history)
