"""`jpki sign`, `jpki verify` and `jpki login`: what a holder and a relying party do."""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import click
from cryptography import x509

from card_emulator.vocabulary.keys import Key
from card_emulator.vocabulary.pins import Pin
from cli.context import card_session, pin_value, trust_store, trusted_ca_directory
from cli.exits import Exit
from cli.options import card_option, pin_option
from cli.output import STDOUT, check_output, force_option, output_help, write_output
from jpki import clock, cms
from jpki.certificates import CertificateKind, basic_attributes, readable_name
from jpki.client.signing import answer_login, sign_document
from jpki.errors import BadValueError
from jpki.paths import ca_directory
from jpki.relying_party.documents import (
    SIGNING_TIME,
    AsOf,
    CertificateEvent,
    RevokedOrExpired,
    SigningTime,
    VerifiedDocument,
    verify_document,
)
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


def _as_of(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> datetime.datetime | AsOf | None:
    """None (now, on the one clock: `jpki --at` or $JPKI_NOW), a time, or SIGNING_TIME."""
    if value is None:
        return None
    if value.strip() == SIGNING_TIME.value:
        return SIGNING_TIME
    try:
        return clock.parse_time(value)
    except BadValueError as error:
        raise click.BadParameter(f"{error}, or {SIGNING_TIME.value}") from None


verify_at_option = click.option(
    "--at",
    metavar="TIME|signing-time",
    callback=_as_of,
    help="Verify as of TIME (ISO 8601, UTC if no zone) or as of the signature's signing time "
    "(default: now, which `jpki --at` and $JPKI_NOW set).",
)


def _revocation(crl: Path | None, ocsp_url: str | None) -> Revocation:
    if crl is not None and ocsp_url is not None:
        raise click.UsageError("give --crl or --ocsp, not both")
    return Revocation(crl.read_bytes() if crl else None, ocsp_url)


def _not_valid(error: VerificationError, as_json: bool, **extra: Any) -> NoReturn:
    """INVALID (exit 1), or UNKNOWN (exit 8) when revocation could not be checked."""
    unknown = error.reason == REVOCATION_UNKNOWN
    if as_json:
        report = {**extra, "valid": False, "reason": error.reason, "message": str(error)}
        click.echo(json.dumps(report, ensure_ascii=False))
    else:
        click.echo(f"{'UNKNOWN' if unknown else 'INVALID'}: {error}")
    sys.exit(Exit.UNKNOWN if unknown else Exit.FAILURE)


def _timestamp_authorities(tsa_certificates: tuple[Path, ...]) -> list[x509.Certificate]:
    """Pinned TSA certificates: the --tsa-cert files, else the test CA's TSA if it has one."""
    from jpki.issuer.ca import CAError
    from jpki.issuer.timestamps import TSA_CERTIFICATE_FILE
    from jpki.relying_party.verify import TrustAnchorError, TrustStore

    paths = list(tsa_certificates)
    if not paths:
        default = trusted_ca_directory() / TSA_CERTIFICATE_FILE
        paths = [default] if default.exists() else []
    try:
        return TrustStore.from_files(paths).certificates if paths else []
    except TrustAnchorError as error:
        raise CAError(str(error)) from None


def _signing_report(signing: SigningTime | None) -> dict[str, Any]:
    if signing is None:
        return {"signing_time": None, "signing_time_source": None}
    report: dict[str, Any] = {
        "signing_time": signing.time.isoformat(),
        "signing_time_source": signing.source.value,
    }
    if signing.authority is not None:
        report["timestamp_authority"] = signing.authority
    return report


def _event_report(event: CertificateEvent | None) -> dict[str, Any] | None:
    if event is None:
        return None
    return {
        "kind": event.kind.value,
        "time": event.time.isoformat(),
        "reason": event.reason,
        "certificate": "issuing-ca" if event.of_issuer else "signer",
    }


def _document_line(verdict: str, result: VerifiedDocument) -> str:
    """One line: the verdict, who signed and when (and by whose word), the certificate."""
    signer = _signer(result.signer)
    who = f"{signer['name']} ({signer['subject']})" if signer["name"] else signer["subject"]
    signing = result.signing_time
    when = f" at {signing.time.isoformat()} ({signing.description})" if signing else ""
    return (
        f"{verdict}: signed by {who}{when}; certificate {signer['serial']} from "
        f"{signer['issuer']}; revocation {signer['revocation']}"
    )


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
@click.option("--timestamp", is_flag=True,
              help="Add an RFC 3161 timestamp of the signature from the test CA's time-stamping "
              "authority ($JPKI_HOME/ca): a signing time verifiers can trust.")  # fmt: skip
@click.argument("document", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help=f"The CMS signature (default: DOCUMENT.p7s). {output_help}")  # fmt: skip
@force_option
def sign(
    card_file: Path | None,
    pin: str | None,
    key_name: str,
    attached: bool,
    timestamp: bool,
    document: Path,
    output: Path | None,
    force: bool,
) -> None:
    """Sign a file with the card: CMS SignedData (SHA-256), detached unless --attached."""
    key = Key.named(key_name)
    output = output or document.with_name(document.name + ".p7s")
    check_output(output, force, not_over=document)  # before the card spends anything
    data = document.read_bytes()
    authority = None
    if timestamp:
        from jpki.issuer.timestamps import TimeStampAuthority

        authority = TimeStampAuthority.of_ca(ca_directory())  # before the card, too
    with card_session(card_file) as session:
        session.verify_pin(key.pin, pin_value(pin, key.pin.label))
        signature = sign_document(session, key, data, detached=not attached)
    if authority is not None:
        signature = cms.add_timestamp(signature, authority.respond)
    write_output(output, signature)
    if output != STDOUT:
        stamped = f", timestamped by {authority.name}" if authority else ""
        click.echo(f"Signed {document} with the {key.key} key{stamped}: {output}")


@click.command(
    epilog="Example: jpki verify contract.pdf contract.pdf.p7s --ocsp http://127.0.0.1:8080/ocsp"
)
@click.argument("document", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("signature", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@ca_cert_option
@crl_option
@ocsp_option
@click.option("--tsa-cert", "tsa_certificates", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Pinned time-stamping authority certificate (PEM or DER), or its CA's; repeat "
              "for several (default: the test CA's TSA, $JPKI_HOME/ca/tsa.pem).")  # fmt: skip
@click.option("--purpose", type=click.Choice([kind.key for kind in CertificateKind]),
              default=CertificateKind.SIGNATURE.key, show_default=True,
              help="What the signer's certificate must be for.")  # fmt: skip
@verify_at_option
@json_option
def verify(
    document: Path,
    signature: Path,
    ca_certificates: tuple[Path, ...],
    crl: Path | None,
    ocsp_url: str | None,
    tsa_certificates: tuple[Path, ...],
    purpose: str,
    at: datetime.datetime | AsOf | None,
    as_json: bool,
) -> None:
    """Verify a CMS signature over DOCUMENT: exit 0 when valid, 1 when invalid, 8 when its
    revocation status could not be established.

    A certificate revoked (superseded, affiliationChanged, cessationOfOperation) or expired
    after the signing time leaves a signature "valid at signing time": exit 1, or 0 with --at
    signing-time. A revocation that puts the key in doubt (keyCompromise, certificateHold, ...)
    is INVALID either way, with its times. The signing time is a timestamp's when the signature
    has one, else the signer's own claim; each report says which.
    """
    try:
        result = verify_document(
            document.read_bytes(),
            signature.read_bytes(),
            trust_store(ca_certificates),
            purpose=CertificateKind.named(purpose),
            at=at,
            revocation=_revocation(crl, ocsp_url),
            timestamp_authorities=_timestamp_authorities(tsa_certificates),
        )
    except RevokedOrExpired as error:
        _no_longer_valid(error, as_json)
    except VerificationError as error:
        _not_valid(error, as_json)
    later = f"; since then, {result.event.description}" if result.event else ""
    if as_json:
        report = {
            "valid": True,
            "signer": _signer(result.signer),
            **_signing_report(result.signing_time),
            "as_of": SIGNING_TIME.value if result.at_signing_time else result.as_of.isoformat(),
            "event": _event_report(result.event),
        }
        click.echo(json.dumps(report, ensure_ascii=False))
        return
    verdict = "VALID as of the signing time" if result.at_signing_time else "VALID"
    click.echo(_document_line(verdict, result) + later)


def _no_longer_valid(error: RevokedOrExpired, as_json: bool) -> NoReturn:
    """INVALID (exit 1), saying "valid at signing time" when the signature was."""
    then = error.document
    if as_json:
        extra: dict[str, Any] = {
            **_signing_report(error.signing_time),
            "event": _event_report(error.event),
            "valid_at_signing_time": then is not None,
        }
        if then is not None:
            extra["signer"] = _signer(then.signer)
        _not_valid(error, True, **extra)
    if then is None:
        _not_valid(error, False)
    click.echo(
        _document_line("INVALID now, valid at signing time", then) + f"; {error.event.description}"
    )
    sys.exit(Exit.FAILURE)


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
