"""`jpki text …`: the card-info input-support AP (券面事項入力補助AP): the my number and the
basic four attributes, opened by the card-info PIN or one of the collation numbers."""

from __future__ import annotations

import json
from pathlib import Path

import click

from card_emulator.vocabulary.pins import Pin
from cli.context import application_session, pin_value
from cli.options import card_option, collation_a_option, collation_b_option
from jpki.client.applications import CardInfoSession

card_info_pin_option = click.option(
    "--pin",
    help="The card-info PIN, 4 digits (default: $JPKI_PIN, else a hidden prompt).",
)


def credential(
    pin: str | None, collation: str | None, collation_option: str, collation_pin: Pin
) -> tuple[Pin, str]:
    """The key reference to verify and its value: the collation number when given, else the
    card-info PIN from --pin, $JPKI_PIN or a prompt."""
    if pin is not None and collation is not None:
        raise click.UsageError(f"give --pin or {collation_option}, not both")
    if collation is not None:
        return collation_pin, collation
    return Pin.CARD_INFO, pin_value(pin, Pin.CARD_INFO.label)


@click.group()
def text() -> None:
    """My number and the basic four attributes (券面事項入力補助AP)."""


@text.command(epilog="Example: jpki text mynumber --collation-a 123456789018")
@card_option
@card_info_pin_option
@collation_a_option
def mynumber(card_file: Path | None, pin: str | None, collation_a: str | None) -> None:
    """Print the 12-digit my number (the card-info PIN or collation number A opens it)."""
    chosen, value = credential(pin, collation_a, "--collation-a", Pin.CARD_INFO_A)
    with application_session(CardInfoSession, card_file) as card_info:
        card_info.verify_pin(chosen, value)
        number = card_info.my_number()
    click.echo(number)


@text.command(epilog="Example: jpki text attributes --collation-b 55021720364189 --json")
@card_option
@card_info_pin_option
@collation_b_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def attributes(
    card_file: Path | None, pin: str | None, collation_b: str | None, as_json: bool
) -> None:
    """Print name, address, birth date and sex (the card-info PIN or collation number B
    opens them), and which header form the card wrote the record with."""
    chosen, value = credential(pin, collation_b, "--collation-b", Pin.CARD_INFO_B)
    with application_session(CardInfoSession, card_file) as card_info:
        card_info.verify_pin(chosen, value)
        found = card_info.attributes()
    if as_json:
        click.echo(json.dumps(found.to_json(), ensure_ascii=False, indent=2))
        return
    header = "FF 20 82 HH LL" if found.header_form == "long" else "FF 20 LL, or 81 LL"
    click.echo(f"name         {found.name}")
    click.echo(f"address      {found.address}")
    click.echo(f"birth date   {found.birth_date.isoformat()}")
    click.echo(f"sex          {found.sex_label} ({found.sex})")
    click.echo(f"header form  {found.header_form} ({header})")
