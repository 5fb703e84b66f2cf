"""`jpki cert read`: a certificate from the card, as PEM, DER or text."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from cryptography.hazmat.primitives import serialization

from cli.context import card_option, card_session, pin_option, pin_value
from jpki import certinfo
from jpki.session import Certificate


@click.group()
def cert() -> None:
    """Certificates on the card."""


@cert.command()
@card_option
@pin_option
@click.argument("which", type=click.Choice([c.key for c in Certificate]))
@click.option("--format", "output_format", type=click.Choice(["pem", "der", "text", "json"]),
              default="pem", show_default=True)  # fmt: skip
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this file instead of stdout.")  # fmt: skip
def read(
    card_file: Path | None, pin: str | None, which: str, output_format: str, output: Path | None
) -> None:
    """Read a certificate (the signature certificate asks for the signature password)."""
    chosen = Certificate.named(which)
    with card_session(card_file) as session:
        if chosen.pin is not None:
            session.verify_pin(chosen.pin, pin_value(pin, chosen.pin.label.capitalize()))
        certificate = session.read_certificate(chosen)
    if output_format == "der":
        data = certificate.public_bytes(serialization.Encoding.DER)
    elif output_format == "pem":
        data = certificate.public_bytes(serialization.Encoding.PEM)
    elif output_format == "json":
        data = (
            json.dumps(certinfo.describe(certificate), ensure_ascii=False, indent=2) + "\n"
        ).encode()
    else:
        data = _text(certinfo.describe(certificate)).encode()
    if output is not None:
        output.write_bytes(data)
    else:
        sys.stdout.buffer.write(data)


def _text(description: dict[str, object]) -> str:
    lines = [f"{key.replace('_', ' '):<12} {value}" for key, value in description.items()
             if key != "holder"]  # fmt: skip
    holder = description.get("holder")
    if isinstance(holder, dict):
        lines.append("holder (four basic attributes)")
        lines += [f"  {key.replace('_', ' '):<26} {value}" for key, value in holder.items()]
    return "\n".join(lines) + "\n"
