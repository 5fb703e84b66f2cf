"""`jpki ca …`: the test CA — create it, roll it over to a new generation, revoke certificates,
publish CRLs, serve OCSP."""

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
from jpki.issuer.ca import (
    CertificateAuthority,
    Generation,
    RevocationReason,
    TestCA,
    certificate_file,
    generation_directory,
)
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
    click.echo(
        f"Revoked {entry.kind.value} certificate {number:X} ({reason}; CA generation "
        f"{entry.generation})"
    )


def _key_id(authority: CertificateAuthority) -> str:
    """As `openssl x509 -text` shows a key identifier (and a certificate's authority key id)."""
    return authority.key_id.hex(":").upper()


def _certificate_path(authority: CertificateAuthority) -> Path:
    directory = generation_directory(ca_directory(), authority.generation)
    return directory / certificate_file(authority.kind)


@ca.command(
    epilog="""\b
Example:
  $ jpki ca rollover
  Generation 2 of the test CA in ~/.jpki/ca issues from now on (valid to 2036-11-27)
    sign CA  key id 5F:0A:…  ~/.jpki/ca/generations/2/signature-ca.pem
    auth CA  key id C3:91:…  ~/.jpki/ca/generations/2/authentication-ca.pem

\b
The CA certificates of each generation (PEM, to pin with --ca-cert):
  generation 1  $JPKI_HOME/ca/signature-ca.pem, $JPKI_HOME/ca/authentication-ca.pem
  generation N  $JPKI_HOME/ca/generations/N/signature-ca.pem, …/authentication-ca.pem
`jpki ca generations` lists them."""
)
def rollover() -> None:
    """Make a new CA generation, which issues every certificate from now on.

    The new signature and authentication CAs have the DNs of the others and new keys, valid
    ten years. Certificates issued before stay valid: their generation keeps answering OCSP
    and signing its CRL (`jpki ca crl sign --generation 1`). Verifiers without --ca-cert trust
    every generation in $JPKI_HOME/ca; one that pins only an old generation's certificates
    rejects new cards until it pins the new ones too (--ca-cert is repeatable).
    """
    generation = TestCA.load(ca_directory()).rollover()
    ends = generation.signature.certificate.not_valid_after_utc
    click.echo(
        f"Generation {generation.number} of the test CA in {ca_directory()} issues from now on "
        f"(valid to {ends:%Y-%m-%d})"
    )
    _echo_authorities(generation)


def _echo_authorities(generation: Generation) -> None:
    for authority in generation.authorities:
        click.echo(
            f"  {authority.kind.key} CA  key id {_key_id(authority)}  "
            f"{_certificate_path(authority)}"
        )


@ca.command(epilog="Example: jpki ca generations")
def generations() -> None:
    """List the CA generations: key ids, validity and certificate files (the newest issues)."""
    test_ca = TestCA.load(ca_directory())
    for generation in test_ca.generations:
        certificate = generation.signature.certificate
        current = "  (issues)" if generation is test_ca.current else ""
        click.echo(
            f"Generation {generation.number}: {certificate.not_valid_before_utc:%Y-%m-%d} to "
            f"{certificate.not_valid_after_utc:%Y-%m-%d}{current}"
        )
        _echo_authorities(generation)


@ca.command(epilog="Example: jpki ca crl sign --generation 1 -o sign-1.crl")
@click.argument("which", type=click.Choice(KINDS))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help=output_help)  # fmt: skip
@force_option
@click.option("--pem", is_flag=True, help="PEM instead of DER.")
@click.option("--generation", type=click.IntRange(min=1),
              help="The CA generation whose CRL (default: the current one).")  # fmt: skip
def crl(which: str, output: Path, force: bool, pem: bool, generation: int | None) -> None:
    """Write a fresh CRL of the sign or auth CA: one generation's, listing the revoked
    certificates that generation issued, signed by its key."""
    check_output(output, force)
    test_ca = TestCA.load(ca_directory())
    if generation is not None and generation > len(test_ca.generations):
        raise click.BadParameter(
            f"the test CA has generations 1 to {len(test_ca.generations)}",
            param_hint="--generation",
        )
    number = test_ca.current.number if generation is None else generation
    revocation_list = build_crl(test_ca, CertificateKind.named(which), generation=number)
    encoding = serialization.Encoding.PEM if pem else serialization.Encoding.DER
    write_output(output, revocation_list.public_bytes(encoding))
    click.echo(
        f"Wrote the {which} CA's CRL (generation {number}, {len(list(revocation_list))} revoked) "
        f"to {output}",
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
    """Serve OCSP for every CA generation (POST /ocsp) and CRLs: the current generation's at
    /crl/signature.crl and /crl/authentication.crl, generation N's at /crl/signature-N.crl and
    /crl/authentication-N.crl."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    with make_server(ca_directory(), host, port, deadline) as server:
        click.echo(
            f"OCSP at {server.base_url}/ocsp, CRLs at {server.base_url}/crl/",
        )
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
