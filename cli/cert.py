"""`jpki cert read`: a certificate from the card, as PEM, DER or text."""

from __future__ import annotations

import json
from pathlib import Path

import click
from cryptography.hazmat.primitives import serialization

from card_emulator.vocabulary.keys import Certificate
from cli.context import card_session, pin_value
from cli.options import card_option, pin_option
from cli.output import STDOUT, check_output, force_option, output_help, write_output
from jpki import certificates


@click.group()
def cert() -> None:
    """Certificates on the card."""


@cert.command()
@card_option
@pin_option
@click.argument("which", type=click.Choice([c.key for c in Certificate]))
@click.option("--format", "output_format", type=click.Choice(["pem", "der", "text", "json"]),
              default="pem", show_default=True)  # fmt: skip
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=STDOUT,
              help=output_help)  # fmt: skip
@force_option
def read(
    card_file: Path | None,
    pin: str | None,
    which: str,
    output_format: str,
    output: Path,
    force: bool,
) -> None:
    """Read a certificate (the signature certificate asks for the signature password)."""
    chosen = Certificate.named(which)
    check_output(output, force)
    with card_session(card_file) as session:
        if chosen.pin is not None:
            session.verify_pin(chosen.pin, pin_value(pin, chosen.pin.label))
        certificate = session.read_certificate(chosen)
    if output_format == "der":
        data = certificate.public_bytes(serialization.Encoding.DER)
    elif output_format == "pem":
        data = certificate.public_bytes(serialization.Encoding.PEM)
    elif output_format == "json":
        data = (
            json.dumps(certificates.describe(certificate), ensure_ascii=False, indent=2) + "\n"
        ).encode()
    else:
        data = _text(certificates.describe(certificate)).encode()
    write_output(output, data)


def _text(description: dict[str, object]) -> str:
    lines = [f"{key.replace('_', ' '):<12} {value}" for key, value in description.items()
             if key != "holder"]  # fmt: skip
    holder = description.get("holder")
    if isinstance(holder, dict):
        lines.append("holder (four basic attributes)")
        lines += [f"  {key.replace('_', ' '):<26} {value}" for key, value in holder.items()]
    return "\n".join(lines) + "\n"
