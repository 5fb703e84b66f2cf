"""`jpki face …`: the card-face AP (券面事項確認AP): the printed face as the chip holds it.

`jpki face read` reads it with a collation number (and the age record with the birth-date
key); `jpki face check` (the relying party's checks of what was read) lives here too.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from card_emulator.vocabulary.identifiers import CardData
from card_emulator.vocabulary.pins import Pin
from cli.context import application_session, pin_value, trusted_ca_directory
from cli.exits import Exit
from cli.options import (
    PIN_ENVIRONMENT_VARIABLE,
    birth_date_key_option,
    card_option,
    collation_a_option,
    collation_b_option,
)
from cli.output import force_option, write_output
from jpki.attributes import SEX_LABELS
from jpki.client.applications import CHALLENGE_LENGTH, CardFaceSession, CardLevelSession
from jpki.client.errors import PinFormatError
from jpki.client.session import check_pin_format
from jpki.cvc import CardVerifiableCertificate, CvcError
from jpki.relying_party.card_face import check_card_face

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_SIZE_AT = 16  # width and height, 4 bytes each, in the IHDR chunk that comes first
JP2_SIGNATURE = bytes.fromhex("0000000C6A502020")
JP2_HEADER_BOX = b"ihdr"  # then height and width, 4 bytes each
CARD_DATE_FORMAT = "%Y%m%d"
# `$JPKI_PIN` or a prompt stands for either collation number: its length says which.
COLLATION_BY_LENGTH = {
    len("123456789018"): Pin.FACE_A,
    len("55021720352285"): Pin.FACE_B,
}
CREDENTIAL_NAMES = {Pin.FACE_A: "collation-a", Pin.FACE_B: "collation-b"}


def face_credential(
    collation_a: str | None, collation_b: str | None, birth_date_key: str | None
) -> tuple[Pin, str] | None:
    """Which collation number opens the face, and its value; None when only the age record
    is wanted. Without an option, $JPKI_PIN (or a prompt) gives A (12 digits) or B (14)."""
    if collation_a is not None and collation_b is not None:
        raise click.UsageError("give --collation-a or --collation-b, not both")
    if collation_a is not None:
        return Pin.FACE_A, collation_a
    if collation_b is not None:
        return Pin.FACE_B, collation_b
    if birth_date_key is not None:
        return None
    if not os.environ.get(PIN_ENVIRONMENT_VARIABLE) and not sys.stdin.isatty():
        raise click.UsageError(
            "no terminal to ask for a collation number: give --collation-a, --collation-b, "
            f"--birth-date-key or ${PIN_ENVIRONMENT_VARIABLE}"
        )
    value = pin_value(None, "collation number A (12 digits) or B (14 digits)")
    chosen = COLLATION_BY_LENGTH.get(len(value))
    if chosen is None:
        raise PinFormatError(
            "the card face opens with collation number A (exactly 12 digits) "
            "or B (exactly 14 digits)"
        )
    return chosen, value


def image_summary(data: bytes) -> dict[str, Any]:
    """Format, pixel size and bytes of a PNG or JPEG 2000 image, read from its header."""
    summary: dict[str, Any] = {"format": "unknown", "bytes": len(data)}
    if data.startswith(PNG_SIGNATURE) and len(data) >= PNG_SIZE_AT + 8:
        summary["format"] = "png"
        summary["width"] = int.from_bytes(data[PNG_SIZE_AT : PNG_SIZE_AT + 4], "big")
        summary["height"] = int.from_bytes(data[PNG_SIZE_AT + 4 : PNG_SIZE_AT + 8], "big")
    elif data.startswith(JP2_SIGNATURE):
        summary["format"] = "jp2"
        at = data.find(JP2_HEADER_BOX) + len(JP2_HEADER_BOX)
        if at >= len(JP2_HEADER_BOX) and len(data) >= at + 8:
            summary["height"] = int.from_bytes(data[at : at + 4], "big")
            summary["width"] = int.from_bytes(data[at + 4 : at + 8], "big")
    return summary


def _shown(summary: dict[str, Any]) -> str:
    kind = {"png": "PNG", "jp2": "JPEG 2000"}.get(summary["format"], "unknown format")
    pixels = f" {summary['width']}×{summary['height']}" if "width" in summary else ""
    return f"{kind}{pixels}, {summary['bytes']} bytes"


def _iso(card_date: str) -> str:
    return datetime.datetime.strptime(card_date, CARD_DATE_FORMAT).date().isoformat()


def photo_png(jp2: bytes) -> bytes | None:
    """The JPEG 2000 photo as a PNG (Pillow, loaded only here), or None if it cannot be."""
    try:
        from PIL import Image
    except ImportError:
        click.echo("jpki: warning: photo.png not written: Pillow is not installed", err=True)
        return None
    try:
        with Image.open(io.BytesIO(jp2)) as image:
            out = io.BytesIO()
            image.save(out, "PNG")
            return out.getvalue()
    except OSError as error:  # no JPEG 2000 decoder, or a photo it cannot read
        click.echo(f"jpki: warning: photo.png not written: {error}", err=True)
        return None


def planned_files(out_dir: Path, chosen: Pin) -> list[Path]:
    names = ["name.png", "address.png", "photo.jp2", "photo.png", "security-code.png"]
    if chosen is Pin.FACE_A:
        names.append("my-number.png")
    return [out_dir / name for name in names]


@click.group()
def face() -> None:
    """The card face as the chip holds it (券面事項確認AP)."""


@face.command(epilog="Example: jpki face read --collation-b 55021720364189 --out-dir face/ --json")
@card_option
@collation_a_option
@collation_b_option
@birth_date_key_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write the images here: name.png, address.png, photo.jp2, photo.png, "
    "security-code.png, and with collation number A my-number.png.",
)
@force_option
def read(
    card_file: Path | None,
    collation_a: str | None,
    collation_b: str | None,
    birth_date_key: str | None,
    as_json: bool,
    out_dir: Path | None,
    force: bool,
) -> None:
    """Read the card face: birth date, sex, card expiry and the images (name, address, photo,
    security code; with collation number A also the my number). Collation number A is the
    my number, B is era YYMMDD + card expiry year + security code; without either option
    $JPKI_PIN (or a prompt) is taken as A or B by its length. --birth-date-key reads the
    age record. Signatures are not checked here."""
    credential = face_credential(collation_a, collation_b, birth_date_key)
    if credential is not None:
        check_pin_format(*credential)
    if birth_date_key is not None:
        check_pin_format(Pin.BIRTH_DATE, birth_date_key)
    files: list[Path] = []
    if out_dir is not None:
        if credential is None:
            raise click.UsageError("--out-dir needs --collation-a or --collation-b")
        files = planned_files(out_dir, credential[0])
        existing = [path.name for path in files if path.exists()]
        if existing and not force:
            raise click.BadParameter(
                f"{out_dir} already holds {', '.join(existing)}; give --force to overwrite",
                param_hint="--out-dir",
            )

    summary: dict[str, Any] = {}
    images: dict[str, bytes] = {}
    with application_session(CardFaceSession, card_file) as card_face:
        if credential is not None:
            chosen, value = credential
            card_face.verify_pin(chosen, value)
            found = card_face.face()
            images = {
                "name.png": found.name_png,
                "address.png": found.address_png,
                "photo.jp2": found.photo_jp2,
                "security-code.png": found.security_code_png,
            }
            summary.update(
                credential=CREDENTIAL_NAMES[chosen],
                birth_date=_iso(found.birth_date),
                sex=found.sex,
                sex_label=SEX_LABELS.get(found.sex, "unknown"),
                card_expiry=_iso(found.expiry),
            )
            if chosen is Pin.FACE_A:
                images["my-number.png"] = card_face.my_number_image().png
        if birth_date_key is not None:
            card_face.verify_pin(Pin.BIRTH_DATE, birth_date_key)
            summary["age_record"] = {"birth_date": _iso(card_face.age().birth_date)}
    if images:
        summary["images"] = {
            name.split(".")[0].replace("-", "_"): image_summary(data)
            for name, data in images.items()
        }

    if out_dir is not None:
        photo = photo_png(images["photo.jp2"])
        if photo is not None:
            images["photo.png"] = photo
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for path in files:
            if path.name in images:
                write_output(path, images[path.name])
                written.append(str(path))
        summary["files"] = written

    if as_json:
        click.echo(json.dumps(summary, ensure_ascii=False, indent=2))
        return
    _print_summary(summary)


def _print_summary(summary: dict[str, Any]) -> None:
    labels = {
        "name": "name image",
        "address": "address image",
        "photo": "photo",
        "security_code": "security code",
        "my_number": "my-number image",
    }
    if "birth_date" in summary:
        click.echo(f"{'birth date':<16} {summary['birth_date']}")
        click.echo(f"{'sex':<16} {summary['sex_label']} ({summary['sex']})")
        click.echo(f"{'card expiry':<16} {summary['card_expiry']}")
    for key, image in summary.get("images", {}).items():
        click.echo(f"{labels[key]:<16} {_shown(image)}")
    if "age_record" in summary:
        click.echo(f"{'age record':<16} birth date {summary['age_record']['birth_date']}")
    for path in summary.get("files", []):
        click.echo(f"{'wrote':<16} {path}")


# `jpki face check`: the relying party's checks of the records read above.


CHECK_STEPS = (
    ("chain", "chain"),  # (1) MF 7F21 and EF 0004 chain to the pinned CVC root
    ("face_signature", "face signature"),  # (2) EF 0002 signed by the key EF 0004 certifies
    ("chip", "chip"),  # (3) the chip signs with the card key in EF 0002
)


def pinned_cvc_root(cvc_root: Path | None) -> CardVerifiableCertificate:
    """The CVC root to check chains against: the --cvc-root file (as `jpki ca cvc-root` writes
    it), else the test CA's in $JPKI_HOME/ca; never one read off the card. A damaged or
    replaceable anchor is a test CA error (exit 4), naming the file."""
    # Here: `jpki face read` never loads the issuer.
    from jpki.issuer.ca import CAError, TestCA

    if cvc_root is not None:
        try:
            return CardVerifiableCertificate.parse(cvc_root.read_bytes())
        except CvcError as error:
            raise CAError(f"{cvc_root}: {error}") from None
    directory = trusted_ca_directory()
    if not directory.is_dir():
        raise click.UsageError(f"no CVC root to trust: give --cvc-root, or create {directory}")
    return TestCA.load(directory).cvc_root()


def check_credential(collation_a: str | None, collation_b: str | None) -> tuple[Pin, str]:
    """The collation number that opens EF 0002, checked for its shape (before the card sees
    it): an option, else $JPKI_PIN (or a prompt) taken as A or B by its length."""
    if (
        collation_a is None
        and collation_b is None
        and not os.environ.get(PIN_ENVIRONMENT_VARIABLE)
        and not sys.stdin.isatty()
    ):
        raise click.UsageError(
            "no terminal to ask for a collation number: give --collation-a, --collation-b "
            f"or ${PIN_ENVIRONMENT_VARIABLE}"
        )
    credential = face_credential(collation_a, collation_b, None)
    assert credential is not None  # without --birth-date-key one is always chosen
    check_pin_format(*credential)
    return credential


@face.command(
    # \b keeps click from joining the two examples into one paragraph.
    epilog="\b\nExamples: jpki face check --collation-b 55021720362285\n"
    "          jpki ca cvc-root -o root.cvc && jpki face check --cvc-root root.cvc --json"
)
@card_option
@click.option(
    "--cvc-root",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The pinned card-verifiable root (the bytes `jpki ca cvc-root` writes; "
    "default: the test CA's in $JPKI_HOME/ca).",
)
@collation_a_option
@collation_b_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def check(
    card_file: Path | None,
    cvc_root: Path | None,
    collation_a: str | None,
    collation_b: str | None,
    as_json: bool,
) -> None:
    """Check that the chip is a genuine card face, as a terminal does in person: (1) the
    card-verifiable certificates (MF 7F21, EF 0004) chain to the pinned root; (2) the face
    record (EF 0002) is signed by the key EF 0004 certifies; (3) the chip signs a fresh
    challenge with the card key inside that record (a copied chip fails here). Step (4) is
    yours: compare the birth date and expiry shown with the printed card. The face opens with
    collation number A or B (without either option, $JPKI_PIN or a prompt, taken by its
    length). Exit 0 when genuine, 1 when not."""
    credential = check_credential(collation_a, collation_b)
    root = pinned_cvc_root(cvc_root)
    with application_session(CardFaceSession, card_file) as card_face:
        # GET DATA first: returning to the MF forgets what was verified in an application.
        issuer_cvc = CardLevelSession(card_face.protocol).get_data(CardData.SECOND_CVC)
        ap_cvc = card_face.ap_certificate()
        card_face.verify_pin(*credential)
        face_ef = card_face.face_record()
        challenge = card_face.get_challenge(CHALLENGE_LENGTH)
        challenge_signature = card_face.sign_challenge(challenge)
    result = check_card_face(
        root=root,
        issuer_cvc=issuer_cvc,
        ap_cvc=ap_cvc,
        face=face_ef,
        challenge=challenge,
        challenge_signature=challenge_signature,
    )
    printed = None
    if result.face is not None:
        printed = {
            "birth_date": _iso(result.face.birth_date),
            "sex": result.face.sex,
            "card_expiry": _iso(result.face.expiry),
        }
    steps = dict(zip((key for key, _label in CHECK_STEPS), result.steps, strict=True))
    if as_json:
        report = {
            "genuine": result.ok,
            "credential": CREDENTIAL_NAMES[credential[0]],
            "steps": {
                key: {"passed": step.passed, "reason": step.reason} for key, step in steps.items()
            },
            "face": printed,
        }
        click.echo(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        if printed is not None:
            click.echo(
                f"compare with the printed card: born {printed['birth_date']}, "
                f"card expiry {printed['card_expiry']}"
            )
        for key, label in CHECK_STEPS:
            step = steps[key]
            click.echo(f"{label:<15} {'OK' if step.passed else 'FAILED':<7} {step.reason}")
        click.echo(f"card face: {'genuine' if result.ok else 'NOT genuine'}")
    if not result.ok:
        sys.exit(Exit.FAILURE)
