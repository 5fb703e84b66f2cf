"""`jpki sign`, `jpki verify` and `jpki login`: what a holder and a relying party do."""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from card_emulator.vocabulary.keys import Key
from card_emulator.vocabulary.pins import Pin
from cli.context import card_session, pin_value, trust_store
from cli.exits import Exit
from cli.options import card_option, pin_option
from cli.output import STDOUT, check_output, force_option, output_help, write_output
from jpki import clock
from jpki.certificates import CertificateKind, basic_attributes, readable_name
from jpki.client.signing import answer_login, sign_document
from jpki.errors import BadValueError
from jpki.relying_party.documents import verify_document
from jpki.relying_party.login import new_challenge, verify_login
from jpki.relying_party.verify import Revocation, VerificationError, VerifiedCertificate

REVOCATION_UNKNOWN = "revocation-unknown"

ca_cert_option = click.option(
    "--ca-cert",
    "ca_certificates",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Pinned CA certificate, PEM or DER; repeat for several generations "
    "(default: the test CA in $JPKI_HOME/ca).",
)
crl_option = click.option(
    "--crl", type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Check revocation against this CRL (DER or PEM).",
)  # fmt: skip
ocsp_option = click.option("--ocsp", "ocsp_url", help="Check revocation with this OCSP responder.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _moment(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime.datetime:
    if value is None:
        return clock.now()
    try:
        return clock.parse_time(value)
    except BadValueError as error:
        raise click.BadParameter(str(error)) from None


at_option = click.option(
    "--at",
    callback=_moment,
    help="Verify as of this time (ISO 8601; default: now; UTC if no zone).",
)


def _revocation(crl: Path | None, ocsp_url: str | None) -> Revocation:
    if crl is not None and ocsp_url is not None:
        raise click.UsageError("give --crl or --ocsp, not both")
    return Revocation(crl.read_bytes() if crl else None, ocsp_url)


def _not_valid(error: VerificationError, as_json: bool, **extra: str) -> NoReturn:
    """INVALID (exit 1), or UNKNOWN (exit 8) when revocation could not be checked."""
    unknown = error.reason == REVOCATION_UNKNOWN
    if as_json:
        report = {**extra, "valid": False, "reason": error.reason, "message": str(error)}
        click.echo(json.dumps(report))
    else:
        click.echo(f"{'UNKNOWN' if unknown else 'INVALID'}: {error}")
    sys.exit(Exit.UNKNOWN if unknown else Exit.FAILURE)


def _signer(verified: VerifiedCertificate) -> dict[str, Any]:
    certificate = verified.certificate
    return {
        "name": basic_attributes(certificate).get("name"),
        "subject": readable_name(certificate.subject),
        "issuer": readable_name(verified.issuer.subject),
        "serial": f"{certificate.serial_number:X}",
        "revocation": verified.revocation_checked,
    }


@click.command(epilog="Example: jpki sign contract.pdf  (writes contract.pdf.p7s)")
@card_option
@pin_option
@click.option("--key", "key_name", type=click.Choice([k.key for k in Key]), default=Key.SIGN.key,
              show_default=True, help="Which card key signs.")  # fmt: skip
@click.option("--attached", is_flag=True, help="Put the document inside the signature.")
@click.argument("document", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help=f"The CMS signature (default: DOCUMENT.p7s). {output_help}")  # fmt: skip
@force_option
def sign(
    card_file: Path | None,
    pin: str | None,
    key_name: str,
    attached: bool,
    document: Path,
    output: Path | None,
    force: bool,
) -> None:
    """Sign a file with the card: CMS SignedData (SHA-256), detached unless --attached."""
    key = Key.named(key_name)
    output = output or document.with_name(document.name + ".p7s")
    check_output(output, force, not_over=document)  # before the card spends anything
    data = document.read_bytes()
    with card_session(card_file) as session:
        session.verify_pin(key.pin, pin_value(pin, key.pin.label))
        signature = sign_document(session, key, data, detached=not attached)
    write_output(output, signature)
    if output != STDOUT:
        click.echo(f"Signed {document} with the {key.key} key: {output}")


@click.command(
    epilog="Example: jpki verify contract.pdf contract.pdf.p7s --ocsp http://127.0.0.1:8080/ocsp"
)
@click.argument("document", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("signature", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@ca_cert_option
@crl_option
@ocsp_option
@click.option("--purpose", type=click.Choice([kind.key for kind in CertificateKind]),
              default=CertificateKind.SIGNATURE.key, show_default=True,
              help="What the signer's certificate must be for.")  # fmt: skip
@at_option
@json_option
def verify(
    document: Path,
    signature: Path,
    ca_certificates: tuple[Path, ...],
    crl: Path | None,
    ocsp_url: str | None,
    purpose: str,
    at: datetime.datetime,
    as_json: bool,
) -> None:
    """Verify a CMS signature over DOCUMENT: exit 0 when valid, 1 when invalid, 8 when its
    revocation status could not be established."""
    try:
        result = verify_document(
            document.read_bytes(),
            signature.read_bytes(),
            trust_store(ca_certificates),
            purpose=CertificateKind.named(purpose),
            at=at,
            revocation=_revocation(crl, ocsp_url),
        )
    except VerificationError as error:
        _not_valid(error, as_json)
    signed_at = result.signing_time.isoformat() if result.signing_time else None
    signer = _signer(result.signer)
    if as_json:
        click.echo(json.dumps({"valid": True, "signer": signer, "signing_time": signed_at},
                              ensure_ascii=False))  # fmt: skip
        return
    who = f"{signer['name']} ({signer['subject']})" if signer["name"] else signer["subject"]
    click.echo(f"VALID: signed by {who}"
               + (f" at {signed_at}" if signed_at else "")
               + f"; certificate {signer['serial']} from {signer['issuer']}"
               + f"; revocation {signer['revocation']}")  # fmt: skip


@click.command(epilog="Example: jpki login --nonce 00112233445566778899aabbccddeeff --json")
@card_option
@pin_option
@click.option("--nonce", help="The server's nonce in hex (default: a fresh random one).")
@ca_cert_option
@crl_option
@ocsp_option
@at_option
@json_option
def login(
    card_file: Path | None,
    pin: str | None,
    nonce: str | None,
    ca_certificates: tuple[Path, ...],
    crl: Path | None,
    ocsp_url: str | None,
    at: datetime.datetime,
    as_json: bool,
) -> None:
    """Log in as a relying party sees it: nonce, card signature, verification, identity."""
    try:
        challenge = bytes.fromhex(nonce) if nonce else new_challenge()
    except ValueError:
        raise click.BadParameter("the nonce must be hex", param_hint="--nonce") from None
    with card_session(card_file) as session:
        response = answer_login(session, challenge, pin_value(pin, Pin.AUTH.label))
    summary = {
        "nonce": challenge.hex(),
        "signature": response.signature.hex(),
        "certificate": response.certificate.hex(),
    }
    try:
        verified = verify_login(challenge, response, trust_store(ca_certificates), at=at,
                                revocation=_revocation(crl, ocsp_url))  # fmt: skip
    except VerificationError as error:
        _not_valid(error, as_json, **summary)
    identity = {**_signer(verified), "logged_in_at": at.isoformat(timespec="seconds")}
    if as_json:
        click.echo(json.dumps({**summary, "valid": True, "identity": identity}, ensure_ascii=False))
        return
    click.echo(f"Nonce      {challenge.hex()}")
    click.echo(f"Signature  {len(response.signature)} bytes, RSA PKCS#1 v1.5 SHA-256: verified")
    click.echo(f"Logged in  {verified.identity}; revocation {verified.revocation_checked}")
