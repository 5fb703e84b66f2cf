"""A certificate ends on the holder's fifth birthday after issuance, or earlier: never after the
card's own expiry, nor after the CA generation that issued it (lifecycle.md §1)."""

from __future__ import annotations

import dataclasses
import datetime
import shutil
from pathlib import Path

import pytest
from cryptography import x509

from card_emulator.vocabulary.identifiers import JpkiFile
from jpki.issuer.ca import CAError, TestCA
from jpki.issuer.holder import Holder, Sex
from jpki.issuer.profile import expiry_for
from jpki.issuer.provision import provision_card
from tests.conftest import CA_DIR

UTC = datetime.UTC
HOLDER = Holder(
    name="期限　太郎",
    birth_date=datetime.date(1980, 2, 17),
    sex=Sex.MALE,
    address="東京都千代田区千代田１番１号",
    my_number="123456789018",
)


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    shutil.copytree(CA_DIR, tmp_path / "ca")
    return TestCA.load(tmp_path / "ca")


def certificate_ends(image_files: dict[int, bytes]) -> set[datetime.datetime]:
    return {
        x509.load_der_x509_certificate(image_files[fid]).not_valid_after_utc
        for fid in (JpkiFile.AUTHENTICATION_CERTIFICATE, JpkiFile.SIGNATURE_CERTIFICATE)
    }


def test_a_certificate_never_outlives_its_ca_generation(ca: TestCA) -> None:
    ca_end = ca.signature.certificate.not_valid_after_utc
    issued = ca_end - datetime.timedelta(days=365)  # the fifth birthday is years after the CA's end
    assert expiry_for(HOLDER, issued) > ca_end
    image = provision_card(ca, HOLDER, "1234", "ABC123", now=issued)
    assert certificate_ends(image.contents("jpki").files) == {ca_end}


def test_an_expired_generation_issues_nothing_until_a_rollover(ca: TestCA) -> None:
    after = ca.signature.certificate.not_valid_after_utc + datetime.timedelta(days=1)
    with pytest.raises(CAError, match="jpki ca rollover"):
        provision_card(ca, HOLDER, "1234", "ABC123", now=after)
    ca.rollover(now=after)
    image = provision_card(ca, HOLDER, "1234", "ABC123", now=after)
    assert certificate_ends(image.contents("jpki").files) == {expiry_for(HOLDER, after)}


def test_a_certificate_never_outlives_the_card(ca: TestCA) -> None:
    """A child's card ends on the fifth birthday after issuance; a certificate issued later on
    (a renewal) stops there too, not five birthdays after its own issuance."""
    child = dataclasses.replace(HOLDER, birth_date=datetime.date(2015, 6, 1))
    issued = datetime.datetime(2026, 11, 27, tzinfo=UTC)
    ca.rollover(now=issued)  # a generation that outlasts both
    image = provision_card(ca, child, "1234", None, now=issued)
    card_expiry = datetime.date.fromisoformat(image.metadata["card_expiry"])
    renewed = ca.issue_authentication_certificate(
        child, ca.authentication.certificate.public_key(),  # any RSA key will do
        now=issued + datetime.timedelta(days=3 * 365),
        card_expiry=card_expiry,
    )  # fmt: skip
    end = renewed.not_valid_after_utc
    unbounded = expiry_for(child, issued + datetime.timedelta(days=3 * 365))
    assert end.date() == card_expiry and end < unbounded
