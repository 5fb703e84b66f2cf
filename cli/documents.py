"""`jpki sign`, `jpki verify` and `jpki login`: what a holder and a relying party do."""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path

import click

from cli.context import card_option, card_session, pin_option, pin_value, trust_store
from jpki.documents import sign_document, verify_document
from jpki.login import new_challenge, respond, verify_login
from jpki.session import Key, Pin
from jpki.verify import Purpose, Revocation, VerificationError

EXIT_INVALID = 1

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


def _revocation(crl: Path | None, ocsp_url: str | None) -> Revocation:
    if crl is not None and ocsp_url is not None:
        raise click.UsageError("give --crl or --ocsp, not both")
    return Revocation(crl.read_bytes() if crl else None, ocsp_url)


def _invalid(error: VerificationError, as_json: bool, **extra: str) -> None:
    if as_json:
        report = {**extra, "valid": False, "reason": error.reason, "message": str(error)}
        click.echo(json.dumps(report))
    else:
        click.echo(f"INVALID: {error}")
    sys.exit(EXIT_INVALID)


@click.command()
@card_option
@pin_option
@click.option("--key", "key_name", type=click.Choice([k.key for k in Key]), default=Key.SIGN.key,
              show_default=True, help="Which card key signs.")  # fmt: skip
@click.option("--attached", is_flag=True, help="Put the document inside the signature.")
@click.argument("document", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the CMS signature (default: DOCUMENT.p7s).")  # fmt: skip
def sign(
    card_file: Path | None,
    pin: str | None,
    key_name: str,
    attached: bool,
    document: Path,
    output: Path | None,
) -> None:
    """Sign a file with the card: CMS SignedData (SHA-256), detached unless --attached."""
    key = Key.named(key_name)
    data = document.read_bytes()
    with card_session(card_file) as session:
        session.verify_pin(key.pin, pin_value(pin, key.pin.label.capitalize()))
        signature = sign_document(session, key, data, detached=not attached)
    output = output or document.with_name(document.name + ".p7s")
    output.write_bytes(signature)
    click.echo(f"Signed {document} with the {key.key} key: {output}")


@click.command()
@click.argument("document", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("signature", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@ca_cert_option
@crl_option
@ocsp_option
@click.option("--purpose", type=click.Choice([p.value for p in Purpose]),
              default=Purpose.SIGNATURE.value, show_default=True,
              help="What the signer's certificate must be for.")  # fmt: skip
@json_option
def verify(
    document: Path,
    signature: Path,
    ca_certificates: tuple[Path, ...],
    crl: Path | None,
    ocsp_url: str | None,
    purpose: str,
    as_json: bool,
) -> None:
    """Verify a CMS signature over DOCUMENT; exit 0 only when valid, else the reason."""
    try:
        result = verify_document(
            document.read_bytes(),
            signature.read_bytes(),
            trust_store(ca_certificates),
            purpose=Purpose(purpose),
            revocation=_revocation(crl, ocsp_url),
        )
    except VerificationError as error:
        _invalid(error, as_json)
        return
    signed_at = result.signing_time.isoformat() if result.signing_time else None
    if as_json:
        click.echo(json.dumps({
            "valid": True,
            "signer": result.signer.identity,
            "subject": result.signer.certificate.subject.rfc4514_string(),
            "signing_time": signed_at,
            "revocation": result.signer.revocation_checked,
        }, ensure_ascii=False))  # fmt: skip
        return
    click.echo(f"VALID: signed by {result.signer.identity}"
               + (f" at {signed_at}" if signed_at else "")
               + f"; revocation {result.signer.revocation_checked}")  # fmt: skip


@click.command()
@card_option
@pin_option
@click.option("--nonce", help="The server's nonce in hex (default: a fresh random one).")
@ca_cert_option
@crl_option
@ocsp_option
@json_option
def login(
    card_file: Path | None,
    pin: str | None,
    nonce: str | None,
    ca_certificates: tuple[Path, ...],
    crl: Path | None,
    ocsp_url: str | None,
    as_json: bool,
) -> None:
    """Log in as a relying party sees it: nonce, card signature, verification, identity."""
    try:
        challenge = bytes.fromhex(nonce) if nonce else new_challenge()
    except ValueError:
        raise click.BadParameter("the nonce must be hex", param_hint="--nonce") from None
    with card_session(card_file) as session:
        response = respond(session, challenge, pin_value(pin, Pin.AUTH.label.capitalize()))
    summary = {
        "nonce": challenge.hex(),
        "signature": response.signature.hex(),
        "certificate": response.certificate.hex(),
    }
    try:
        verified = verify_login(challenge, response, trust_store(ca_certificates),
                                revocation=_revocation(crl, ocsp_url))  # fmt: skip
    except VerificationError as error:
        _invalid(error, as_json, **summary)
        return
    identity = {
        "issuer": verified.issuer.subject.rfc4514_string(),
        "serial": f"{verified.certificate.serial_number:X}",
        "subject": verified.certificate.subject.rfc4514_string(),
        "revocation": verified.revocation_checked,
        "logged_in_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    if as_json:
        click.echo(json.dumps({**summary, "valid": True, "identity": identity}))
        return
    click.echo(f"Nonce      {challenge.hex()}")
    click.echo(f"Signature  {len(response.signature)} bytes, RSA PKCS#1 v1.5 SHA-256: verified")
    click.echo(f"Logged in  {verified.identity}; revocation {verified.revocation_checked}")
