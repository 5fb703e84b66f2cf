"""`jpki ca …`: the test CA — create it, revoke certificates, publish CRLs, serve OCSP."""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path

import click
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from card_emulator.state.store import read_image
from card_emulator.vocabulary.keys import Key
from cli.options import card_option, card_path
from cli.output import STDOUT, check_output, force_option, output_help, write_output
from jpki.certificates import CertificateKind
from jpki.issuer.ca import RevocationReason, TestCA
from jpki.issuer.profile import DEFAULT_OCSP_URL
from jpki.issuer.revocation import build_crl
from jpki.issuer.server import REQUEST_DEADLINE_SECONDS, make_server
from jpki.paths import ca_directory

KINDS = [kind.key for kind in CertificateKind]


@click.group()
def ca() -> None:
    """The built-in test CA in $JPKI_HOME/ca."""


@ca.command()
@click.option("--production-dn", is_flag=True, help="Use the production DN (O=JPKI).")
@click.option("--ocsp-url", help="OCSP URL written into authentication certificates.")
def init(production_dn: bool, ocsp_url: str | None) -> None:
    """Create the test CA (sign CA, auth CA, card-info signer)."""
    directory = ca_directory()
    TestCA.create(directory, production_dn=production_dn, ocsp_url=ocsp_url or DEFAULT_OCSP_URL)
    click.echo(f"Created the test CA in {directory}")


@ca.command()
@click.argument("serial", required=False)
@card_option
@click.option("--cert", "which", type=click.Choice(KINDS),
              help="With --card: which of the card's certificates.")  # fmt: skip
@click.option("--reason", type=click.Choice([r.value for r in RevocationReason]),
              default=RevocationReason.UNSPECIFIED.value, show_default=True)  # fmt: skip
@click.option(
    "--yes", is_flag=True, help="Do not ask for confirmation (revoking cannot be undone)."
)
def revoke(
    serial: str | None, card_file: Path | None, which: str | None, reason: str, yes: bool
) -> None:
    """Revoke a certificate by SERIAL (hex), or a card's --cert sign|auth.

    Example: jpki ca revoke --cert sign --reason keyCompromise --yes
    """
    if serial is None:
        if which is None:
            raise click.UsageError("give a SERIAL, or --cert sign|auth (with --card)")
        fid = Key.named(which).certificate.fid
        der = read_image(card_path(card_file)).contents("jpki").files.get(fid)
        if der is None:
            raise click.UsageError(f"the card has no {which} certificate")
        number = x509.load_der_x509_certificate(der).serial_number
    else:
        try:
            number = int(serial, 16)
        except ValueError:
            raise click.BadParameter("a serial number in hex", param_hint="SERIAL") from None
    ca_state = TestCA.load(ca_directory())
    if not yes:
        if not sys.stdin.isatty():
            raise click.UsageError("revoking cannot be undone: confirm with --yes")
        click.confirm(
            f"Revoke certificate {number:X} ({reason})? This cannot be undone", abort=True
        )
    entry = ca_state.revoke(number, RevocationReason(reason))
    click.echo(f"Revoked {entry.kind.value} certificate {number:X} ({reason})")


@ca.command()
@click.argument("which", type=click.Choice(KINDS))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help=output_help)  # fmt: skip
@force_option
@click.option("--pem", is_flag=True, help="PEM instead of DER.")
def crl(which: str, output: Path, force: bool, pem: bool) -> None:
    """Write a fresh CRL of the sign or auth CA."""
    check_output(output, force)
    revocation_list = build_crl(TestCA.load(ca_directory()), CertificateKind.named(which))
    encoding = serialization.Encoding.PEM if pem else serialization.Encoding.DER
    write_output(output, revocation_list.public_bytes(encoding))
    click.echo(
        f"Wrote the {which} CA's CRL ({len(list(revocation_list))} revoked) to {output}",
        err=output == STDOUT,
    )


@ca.command("cvc-root", epilog="Example: jpki ca cvc-root -o cvc-root.bin")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help=output_help)  # fmt: skip
@force_option
def cvc_root(output: Path, force: bool) -> None:
    """Write the card-verifiable root certificate (the bytes of the cards' GET DATA 00F8):
    verifiers pin it to check card-face records (`jpki face check --cvc-root FILE`)."""
    check_output(output, force)
    root = TestCA.load(ca_directory()).cvc_root()
    write_output(output, root.encode(bare=True))
    click.echo(f"Wrote the card-verifiable root {root.subject} to {output}", err=output == STDOUT)


@ca.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (loopback unless you say otherwise).")  # fmt: skip
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--deadline", default=REQUEST_DEADLINE_SECONDS, show_default=True,
              type=click.FloatRange(min=0.1),
              help="Seconds a whole request may take to arrive.")  # fmt: skip
def serve(host: str, port: int, deadline: float) -> None:
    """Serve OCSP (POST /ocsp) and CRLs (/crl/signature.crl, /crl/authentication.crl)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    with make_server(ca_directory(), host, port, deadline) as server:
        click.echo(
            f"OCSP at {server.base_url}/ocsp, CRLs at {server.base_url}/crl/",
        )
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
