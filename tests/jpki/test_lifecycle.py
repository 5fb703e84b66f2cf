"""The window's lifecycle operations (jpki.issuer.lifecycle): after each one, the card as a
client reads it through APDUs, the CA's record, its CRL and its OCSP answers agree.

A CA created and a card issued at T0, a fixed past moment; the operations run at fixed moments
around the certificates' expiry (the holder's 5th birthday after T0), never on today's date.
"""

from __future__ import annotations

import contextlib
import datetime
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from card_emulator.state.store import FileStore, read_image
from card_emulator.transports.memory import VirtualCard
from card_emulator.vocabulary.identifiers import JpkiFile
from card_emulator.vocabulary.keys import Certificate, Key
from card_emulator.vocabulary.pins import Pin
from jpki.card_face import face_signature_valid, parse_face
from jpki.certificates import CertificateKind, basic_attributes
from jpki.client.applications import CardFaceSession, CardInfoSession
from jpki.client.connection import InProcessConnection
from jpki.client.errors import WrongPinError
from jpki.client.protocol import ApduProtocol
from jpki.client.session import CardSession, JpkiSession
from jpki.client.signing import answer_login
from jpki.errors import BadValueError
from jpki.issuer import card_info, face_images, history, lifecycle
from jpki.issuer.ca import CAError, CertificateAuthority, RevocationReason, TestCA
from jpki.issuer.card_contents import certificate_availability
from jpki.issuer.holder import Holder, Sex
from jpki.issuer.lifecycle import LifecycleError
from jpki.issuer.provision import provision_card
from jpki.issuer.revocation import build_crl, build_ocsp_response
from jpki.relying_party.login import new_challenge, verify_login
from jpki.relying_party.revocation import check_crl
from jpki.relying_party.verify import Revocation, TrustStore, VerificationError

UTC = datetime.UTC
JST = datetime.timezone(datetime.timedelta(hours=9))
T0 = datetime.datetime(2021, 4, 1, tzinfo=UTC)
HOLDER = Holder(
    "番号　太郎", datetime.date(1980, 2, 17), Sex.MALE, "東京都渋谷区神南一丁目１９番１１号",
    "123456789018",
)  # fmt: skip
SECURITY_CODE = "2285"
# The 5th birthday after T0 ends the certificates; renewal opens 3 months before, the day after.
EXPIRY = datetime.datetime(2026, 2, 17, 14, 59, 59, tzinfo=UTC)
WINDOW_OPENS = datetime.datetime(2025, 11, 18, tzinfo=JST)
INSIDE = datetime.datetime(2025, 12, 1, 10, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]
S = TypeVar("S", bound=CardSession)


@pytest.fixture(scope="module")
def ca_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("lifecycle") / "ca"
    TestCA.create(directory, now=T0).close()
    return directory


@pytest.fixture
def ca(tmp_path: Path, ca_template: Path) -> Iterator[TestCA]:
    shutil.copytree(ca_template, tmp_path / "ca")
    loaded = TestCA.load(tmp_path / "ca")
    yield loaded
    loaded.close()


def issue(ca: TestCA, path: Path, holder: Holder = HOLDER, sign_pin: str | None = "ABC123") -> Path:
    image = provision_card(ca, holder, "1234", sign_pin, now=T0, security_code=SECURITY_CODE)
    FileStore.create(path, image)
    return path


@pytest.fixture
def card(tmp_path: Path, ca: TestCA) -> Path:
    return issue(ca, tmp_path / "card.json")


@contextlib.contextmanager
def session(path: Path, kind: type[S]) -> Iterator[S]:
    """A client's session with the card file, through APDUs, the file unlocked afterwards."""
    connection = InProcessConnection(VirtualCard.open(path))
    try:
        yield kind(ApduProtocol(connection))
    finally:
        connection.close()


def on_card(path: Path, which: Certificate) -> x509.Certificate:
    with session(path, JpkiSession) as jpki:
        if which.pin is not None:
            jpki.verify_pin(which.pin, "ABC123")
        return jpki.read_certificate(which)


def trust(ca: TestCA) -> TrustStore:
    return TrustStore([ca.signature.certificate, ca.authentication.certificate])


def issuer_of(ca: TestCA, certificate: x509.Certificate) -> CertificateAuthority:
    """The CA (by key: both share a DN pattern) that signed `certificate`."""
    for authority in (ca.signature, ca.authentication):
        try:
            certificate.verify_directly_issued_by(authority.certificate)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return authority
    raise AssertionError("issued by neither CA")


def crl_says(ca: TestCA, certificate: x509.Certificate, at: datetime.datetime) -> str:
    """What the CA's CRL says of `certificate`: good (absent) or the revocation reason."""
    issuer = issuer_of(ca, certificate)
    crl = build_crl(ca, issuer.kind, now=at).public_bytes(serialization.Encoding.DER)
    status = check_crl(certificate, issuer.certificate, crl, at=at)
    return (status.reason or "unspecified") if status.revoked else "good"


def ocsp_says(ca: TestCA, certificate: x509.Certificate, at: datetime.datetime) -> str:
    """The CA's OCSP answer for `certificate`: good, unknown or the revocation reason."""
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(certificate, issuer_of(ca, certificate).certificate, hashes.SHA1())
        .build()
        .public_bytes(serialization.Encoding.DER)
    )
    response = ocsp.load_der_ocsp_response(build_ocsp_response(ca, request, now=at))
    status = response.certificate_status
    if status is ocsp.OCSPCertStatus.REVOKED:
        reason = response.revocation_reason
        return "unspecified" if reason is None else reason.value
    return status.name.lower()


def verifiers_say(ca: TestCA, certificate: x509.Certificate, at: datetime.datetime) -> str:
    """What CRL and OCSP say of the certificate; they must agree."""
    by_crl, by_ocsp = crl_says(ca, certificate, at), ocsp_says(ca, certificate, at)
    assert by_crl == by_ocsp, (by_crl, by_ocsp)
    return by_ocsp


def login(path: Path, ca: TestCA, at: datetime.datetime, pin: str = "1234") -> str:
    """Log in with the card, checking revocation with the CA's CRL: the identity or the reason
    the relying party refuses it."""
    challenge = new_challenge()
    with session(path, JpkiSession) as jpki:
        response = answer_login(jpki, challenge, pin)
    crl = build_crl(ca, CertificateKind.AUTHENTICATION, now=at)
    try:
        verified = verify_login(
            challenge,
            response,
            trust(ca),
            at=at,
            revocation=Revocation(crl.public_bytes(serialization.Encoding.DER), None),
        )
    except VerificationError as error:
        return f"refused: {error.reason}: {error}"
    return f"{verified.certificate.serial_number:X}"


def issued_serials(ca: TestCA) -> dict[int, str | None]:
    return {
        entry.serial: None if entry.revocation is None else entry.revocation.reason.value
        for entry in ca.issued
    }


# --- the renewal window ----------------------------------------------------------------------


def test_the_renewal_window_opens_the_day_after_three_months_before_expiry() -> None:
    assert lifecycle.renewal_window_opens(EXPIRY) == WINDOW_OPENS
    # A date that month lacks: its last day, then the day after.
    may_end = datetime.datetime(2026, 5, 31, 14, 59, 59, tzinfo=UTC)
    assert lifecycle.renewal_window_opens(may_end) == datetime.datetime(2026, 3, 1, tzinfo=JST)
    january = datetime.datetime(2027, 1, 10, 14, 59, 59, tzinfo=UTC)
    assert lifecycle.renewal_window_opens(january) == datetime.datetime(2026, 10, 11, tzinfo=JST)


def test_renewal_is_refused_before_the_window_and_allowed_from_its_first_minute(
    card: Path, ca: TestCA
) -> None:
    before = image_bytes(card)
    last_second = WINDOW_OPENS - datetime.timedelta(seconds=1)
    with pytest.raises(LifecycleError, match="renewal opens on 2025-11-18"):
        lifecycle.renew(card, ca, at=last_second)
    assert image_bytes(card) == before and history.entries(card) == []
    result = lifecycle.renew(card, ca, at=WINDOW_OPENS)
    assert set(result.issued) == {"auth", "sign"}
    assert {reason for _, reason in result.revoked.values()} == {RevocationReason.SUPERSEDED}


def test_forced_renewal_before_the_window(card: Path, ca: TestCA) -> None:
    early = datetime.datetime(2022, 6, 1, tzinfo=UTC)
    result = lifecycle.renew(card, ca, at=early, force=True)
    assert set(result.issued) == {"auth", "sign"}
    assert any("forced" in note for note in result.notes)
    (entry,) = history.entries(card)
    assert entry.what == "renew" and entry.channel == "window"
    assert entry.details["forced"] == "true"


def image_bytes(path: Path) -> bytes:
    return path.read_bytes()


# --- renewal ---------------------------------------------------------------------------------


def test_renewal_replaces_keys_and_certificates_and_supersedes_the_old_ones(
    card: Path, ca: TestCA
) -> None:
    old_auth, old_sign = on_card(card, Certificate.AUTH), on_card(card, Certificate.SIGN)
    assert login(card, ca, INSIDE) == f"{old_auth.serial_number:X}"
    with session(card, JpkiSession) as jpki, pytest.raises(WrongPinError):
        jpki.verify_pin(Pin.AUTH, "9999")  # a try spent: renewal gives it back
    result = lifecycle.renew(card, ca, at=INSIDE)

    new_auth, new_sign = on_card(card, Certificate.AUTH), on_card(card, Certificate.SIGN)
    assert result.issued == {"auth": new_auth.serial_number, "sign": new_sign.serial_number}
    assert result.revoked == {
        "auth": (old_auth.serial_number, RevocationReason.SUPERSEDED),
        "sign": (old_sign.serial_number, RevocationReason.SUPERSEDED),
    }
    assert new_auth.public_key() != old_auth.public_key()
    assert new_auth.not_valid_before_utc == INSIDE.replace(microsecond=0)
    # The CA certificates on the card are the CA's current ones.
    assert on_card(card, Certificate.AUTH_CA) == ca.authentication.certificate
    assert on_card(card, Certificate.SIGN_CA) == ca.signature.certificate
    # Verifiers: the old ones superseded at the renewal, the new ones good.
    assert verifiers_say(ca, old_auth, INSIDE) == "superseded"
    assert verifiers_say(ca, old_sign, INSIDE) == "superseded"
    assert verifiers_say(ca, new_auth, INSIDE) == "good"
    assert verifiers_say(ca, new_sign, INSIDE) == "good"
    record = ca.find_issued(old_auth.serial_number)
    assert record is not None and record.revocation is not None
    assert record.revocation.time == INSIDE.replace(microsecond=0)
    # Login works with the new key and certificate, and the PIN is the same, tries restored.
    assert login(card, ca, INSIDE) == f"{new_auth.serial_number:X}"
    image = read_image(card)
    assert image.contents("jpki").pins[Pin.AUTH.fid].tries_left == 3
    assert image.metadata[lifecycle.RENEWED] == INSIDE.isoformat(timespec="seconds")
    (entry,) = history.entries(card)
    assert entry.details == {
        "issued_auth": f"{new_auth.serial_number:X}",
        "issued_sign": f"{new_sign.serial_number:X}",
        "revoked_auth": f"{old_auth.serial_number:X} superseded",
        "revoked_sign": f"{old_sign.serial_number:X} superseded",
        "replaced_auth": f"{old_auth.serial_number:X}",
        "replaced_sign": f"{old_sign.serial_number:X}",
    }


def test_after_the_fifth_birthday_the_expired_certificates_are_renewed(
    card: Path, ca: TestCA
) -> None:
    after = EXPIRY + datetime.timedelta(days=10)
    assert login(card, ca, after).startswith("refused: expired")
    lifecycle.renew(card, ca, at=after)
    new_auth = on_card(card, Certificate.AUTH)
    assert login(card, ca, after) == f"{new_auth.serial_number:X}"
    # Five birthdays on from the renewal day.
    assert new_auth.not_valid_after_utc == datetime.datetime(2031, 2, 17, 14, 59, 59, tzinfo=UTC)


def test_a_card_past_its_own_expiry_is_not_renewed(card: Path, ca: TestCA) -> None:
    card_expiry = datetime.date.fromisoformat(read_image(card).metadata["card_expiry"])
    after = datetime.datetime.combine(card_expiry, datetime.time(), JST) + datetime.timedelta(2)
    with pytest.raises(LifecycleError, match="card itself expired"):
        lifecycle.renew(card, ca, at=after, force=True)


def test_a_holder_under_15_still_gets_no_signature_certificate(tmp_path: Path, ca: TestCA) -> None:
    child = Holder(
        "番号　次郎", datetime.date(2012, 6, 1), Sex.MALE, HOLDER.address, "555566667772"
    )
    path = issue(ca, tmp_path / "child.json", child, sign_pin=None)
    result = lifecycle.renew(path, ca, at=datetime.datetime(2024, 1, 5, tzinfo=UTC), force=True)
    assert set(result.issued) == {"auth"}
    assert any("under 15" in note for note in result.notes)
    jpki = read_image(path).contents("jpki")
    assert JpkiFile.SIGNATURE_CERTIFICATE not in jpki.files
    assert Pin.SIGN.fid not in jpki.pins
    with pytest.raises(LifecycleError, match="under 15"):
        lifecycle.renew(path, ca, at=datetime.datetime(2024, 2, 5, tzinfo=UTC), sign_pin="NEW123")


def test_a_holder_who_turned_15_gets_a_signature_certificate_with_a_new_password(
    tmp_path: Path, ca: TestCA
) -> None:
    teen = Holder(
        "番号　三郎", datetime.date(2007, 1, 10), Sex.MALE, HOLDER.address, "555566667772"
    )
    path = issue(ca, tmp_path / "teen.json", teen, sign_pin=None)  # 14 at T0
    # Card and certificates to 2026-01-10 (a minor's card: 5 birthdays); the window opens
    # 2025-10-11, when the holder is 18.
    at = datetime.datetime(2025, 10, 20, tzinfo=UTC)
    without = lifecycle.renew(path, ca, at=at)
    assert set(without.issued) == {"auth"}
    later = at + datetime.timedelta(days=1)
    result = lifecycle.renew(path, ca, at=later, force=True, sign_pin="SIGN1515")
    assert set(result.issued) == {"auth", "sign"}
    with session(path, JpkiSession) as jpki:
        jpki.verify_pin(Pin.SIGN, "SIGN1515")
        assert jpki.read_certificate(Certificate.SIGN).serial_number == result.issued["sign"]
    files = read_image(path).contents("jpki").files
    assert files[JpkiFile.CERTIFICATE_AVAILABILITY] == certificate_availability(True, True)
    with pytest.raises(LifecycleError, match="keeps"):
        lifecycle.renew(path, ca, at=later, force=True, sign_pin="OTHER123")


# --- change of the four attributes ------------------------------------------------------------


def test_a_move_revokes_the_signature_certificate_and_keeps_the_authentication_one(
    card: Path, ca: TestCA
) -> None:
    old_auth, old_sign = on_card(card, Certificate.AUTH), on_card(card, Certificate.SIGN)
    address = "東京都千代田区千代田１番１号"
    result = lifecycle.change(card, ca, at=INSIDE, address=address)
    assert result.changed == ("address",)
    assert result.revoked == {
        "sign": (old_sign.serial_number, RevocationReason.AFFILIATION_CHANGED)
    }
    assert result.kept == {"auth": old_auth.serial_number} and result.issued == {}
    assert verifiers_say(ca, old_sign, INSIDE) == "affiliationChanged"
    assert verifiers_say(ca, old_auth, INSIDE) == "good"
    assert on_card(card, Certificate.AUTH) == old_auth
    assert login(card, ca, INSIDE) == f"{old_auth.serial_number:X}"
    # The card-info AP, opened with the card-info PIN, gives the new address, signed again.
    with session(card, CardInfoSession) as text:
        text.verify_pin(Pin.CARD_INFO, "1234")
        attributes = text.attributes()
        assert attributes.address == address and attributes.name == HOLDER.name
        assert card_info.verify_integrity(
            text.integrity_record(),
            text.my_number_record().ljust(17, b"\xff"),  # the EF's 17 bytes, as hashed
            text.attributes_record(),
            ca.card_info_signer.public_key(),
        )
    # The card face, opened with the same 照合番号B, shows the new address image, signed again.
    collation_b = card_info.collation_number_b(HOLDER, card_expiry_year(card), SECURITY_CODE)
    with session(card, CardFaceSession) as face:
        face.verify_pin(Pin.FACE_B, collation_b)
        shown = face.face()
    assert shown.address_png == face_images.address_image(address)
    assert face_signature_valid(shown, ca.card_info_signer.public_key())
    assert read_image(card).metadata["holder"]["address"] == address


def test_after_a_move_without_reissue_renewal_gives_a_signature_certificate_at_once(
    card: Path, ca: TestCA
) -> None:
    """A holder who did not ask for a new signature certificate when moving can come back for
    one: with a certificate revoked, the renewal window no longer applies."""
    before_window = datetime.datetime(2023, 6, 1, tzinfo=UTC)
    lifecycle.change(card, ca, at=before_window, address="東京都千代田区千代田１番１号")
    result = lifecycle.renew(card, ca, at=before_window)  # no --force needed
    new_sign = on_card(card, Certificate.SIGN)
    assert result.issued["sign"] == new_sign.serial_number
    assert verifiers_say(ca, new_sign, before_window) == "good"


def card_expiry_year(path: Path) -> int:
    return datetime.date.fromisoformat(read_image(path).metadata["card_expiry"]).year


def test_a_marriage_with_reissue_gives_a_signature_certificate_with_the_new_name(
    card: Path, ca: TestCA
) -> None:
    old_sign = on_card(card, Certificate.SIGN)
    result = lifecycle.change(card, ca, at=INSIDE, name="山田　太郎", reissue_sign=True)
    new_sign = on_card(card, Certificate.SIGN)
    assert result.issued == {"sign": new_sign.serial_number}
    assert basic_attributes(new_sign)["name"] == "山田　太郎"
    assert new_sign.public_key() != old_sign.public_key()
    assert verifiers_say(ca, old_sign, INSIDE) == "affiliationChanged"
    assert verifiers_say(ca, new_sign, INSIDE) == "good"
    # The new key signs, under the same signature password.
    with session(card, JpkiSession) as jpki:
        jpki.verify_pin(Pin.SIGN, "ABC123")
        signature = jpki.sign(Key.SIGN, b"\x00" * 51)
    assert signature and len(signature) == 256


def test_a_new_birth_date_gives_a_new_collation_number_b_and_birth_date_key(
    card: Path, ca: TestCA
) -> None:
    year = card_expiry_year(card)
    old_b = card_info.collation_number_b(HOLDER, year, SECURITY_CODE)
    corrected = Holder(**{**HOLDER.__dict__, "birth_date": datetime.date(1980, 3, 18)})
    new_b = card_info.collation_number_b(corrected, year, SECURITY_CODE)
    assert new_b != old_b
    lifecycle.change(card, ca, at=INSIDE, birth_date=corrected.birth_date)
    with session(card, CardFaceSession) as face:
        with pytest.raises(WrongPinError):
            face.verify_pin(Pin.FACE_B, old_b)
        face.verify_pin(Pin.FACE_B, new_b)
        assert parse_face(face.face_record()).birth_date == "19800318"
        face.verify_pin(Pin.BIRTH_DATE, card_info.birth_date_key(corrected))
        assert face.age().birth_date == "19800318"
    with session(card, CardInfoSession) as text:
        text.verify_pin(Pin.CARD_INFO_B, new_b)
        assert text.attributes().birth_date == corrected.birth_date
    # The counters of the new values start full.
    pins = read_image(card).contents("card-face").pins
    assert pins[Pin.FACE_B.fid].tries_left == 10


def test_change_refusals(card: Path, ca: TestCA) -> None:
    with pytest.raises(BadValueError, match="nothing to change"):
        lifecycle.change(card, ca, at=INSIDE, name=HOLDER.name)
    with pytest.raises(BadValueError, match="after"):
        lifecycle.change(card, ca, at=INSIDE, birth_date=datetime.date(2030, 1, 1))
    with pytest.raises(BadValueError, match="sex is one of"):
        lifecycle.change(card, ca, at=INSIDE, sex="other")
    assert history.entries(card) == []


# --- suspension --------------------------------------------------------------------------------


def test_a_loss_puts_both_certificates_on_hold_and_renewal_issues_new_ones(
    card: Path, ca: TestCA
) -> None:
    old_auth, old_sign = on_card(card, Certificate.AUTH), on_card(card, Certificate.SIGN)
    lost = datetime.datetime(2023, 5, 1, 12, tzinfo=UTC)
    result = lifecycle.suspend(card, ca, at=lost)
    assert {reason for _, reason in result.revoked.values()} == {RevocationReason.CERTIFICATE_HOLD}
    assert verifiers_say(ca, old_auth, lost) == "certificateHold"
    assert verifiers_say(ca, old_sign, lost) == "certificateHold"
    assert "certificateHold" in login(card, ca, lost)
    assert read_image(card).metadata[lifecycle.SUSPENDED] == lost.isoformat(timespec="seconds")
    with pytest.raises(LifecycleError, match="already suspended"):
        lifecycle.suspend(card, ca, at=lost)
    with pytest.raises(LifecycleError, match="suspended"):
        lifecycle.change(card, ca, at=lost, address="東京都千代田区千代田１番１号")
    # Found: the window renews, outside the renewal window and without --force.
    found = lost + datetime.timedelta(days=3)
    renewal = lifecycle.renew(card, ca, at=found)
    assert renewal.revoked == {}  # the old ones stay on hold, for good
    assert renewal.replaced == {"auth": old_auth.serial_number, "sign": old_sign.serial_number}
    assert verifiers_say(ca, old_auth, found) == "certificateHold"
    assert login(card, ca, found) == f"{renewal.issued['auth']:X}"
    assert lifecycle.SUSPENDED not in read_image(card).metadata
    assert [entry.what for entry in history.entries(card)] == ["suspend", "renew"]


# --- revocation for good -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "reason",
    [
        RevocationReason.KEY_COMPROMISE,
        RevocationReason.CESSATION_OF_OPERATION,
        RevocationReason.UNSPECIFIED,
    ],
)
def test_revocation_for_good(card: Path, ca: TestCA, reason: RevocationReason) -> None:
    auth, sign = on_card(card, Certificate.AUTH), on_card(card, Certificate.SIGN)
    result = lifecycle.revoke(card, ca, at=INSIDE, reason=reason.value)
    assert set(result.revoked) == {"auth", "sign"}
    assert verifiers_say(ca, auth, INSIDE) == reason.value
    assert verifiers_say(ca, sign, INSIDE) == reason.value
    (entry,) = history.entries(card)
    assert entry.what == "revoke" and entry.details["reason"] == reason.value
    with pytest.raises(LifecycleError, match="nothing to revoke"):
        lifecycle.revoke(card, ca, at=INSIDE, reason=reason)
    assert len(history.entries(card)) == 1


def test_revocation_takes_only_the_windows_reasons(card: Path, ca: TestCA) -> None:
    for reason in ("superseded", "affiliationChanged", "certificateHold", "cACompromise"):
        with pytest.raises(BadValueError, match="the reason is one of"):
            lifecycle.revoke(card, ca, at=INSIDE, reason=reason)
    assert all(revocation is None for revocation in issued_serials(ca).values())


def test_revocation_after_a_move_revokes_what_is_left(card: Path, ca: TestCA) -> None:
    auth = on_card(card, Certificate.AUTH)
    lifecycle.change(card, ca, at=INSIDE, address="東京都千代田区千代田１番１号")
    result = lifecycle.revoke(card, ca, at=INSIDE, reason="cessationOfOperation")
    assert result.revoked == {"auth": (auth.serial_number, RevocationReason.CESSATION_OF_OPERATION)}


# --- failures leave the card and the CA as they were ---------------------------------------------


def test_a_record_that_fails_to_commit_leaves_the_card_as_it_was(
    card: Path, ca: TestCA, monkeypatch: pytest.MonkeyPatch
) -> None:
    before, issued_before = card.read_bytes(), issued_serials(ca)
    real_batch = ca.batch

    @contextlib.contextmanager
    def failing_batch() -> Iterator[None]:
        with real_batch():
            yield
            raise CAError("ca.sqlite: disk full")

    monkeypatch.setattr(ca, "batch", failing_batch)
    with pytest.raises(CAError, match="disk full"):
        lifecycle.renew(card, ca, at=INSIDE)
    assert card.read_bytes() == before
    assert issued_serials(ca) == issued_before
    assert history.entries(card) == []


def test_a_card_in_use_is_refused_or_waited_for(card: Path, ca: TestCA) -> None:
    """Another process holds the card: the operation waits for it, or refuses cleanly."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from card_emulator.state.store import FileStore\n"
            f"store = FileStore.open({str(card)!r})\n"
            "print('locked', flush=True)\n"
            "time.sleep(1.5)\n"
            "store.close()\n",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        try:
            result = lifecycle.suspend(card, ca, at=INSIDE)
        except Exception as error:  # without waiting: refused, nothing changed
            assert "in use" in str(error)
            assert all(revocation is None for revocation in issued_serials(ca).values())
            assert history.entries(card) == []
        else:
            assert set(result.revoked) == {"auth", "sign"}
            assert [entry.what for entry in history.entries(card)] == ["suspend"]
    finally:
        holder.wait(timeout=10)


def test_the_history_holds_serials_reasons_and_attribute_names_only(card: Path, ca: TestCA) -> None:
    lifecycle.renew(card, ca, at=INSIDE)
    lifecycle.change(card, ca, at=INSIDE, name="山田　太郎", birth_date=datetime.date(1980, 3, 18))
    lifecycle.suspend(card, ca, at=INSIDE)
    certificate_value = re.compile(r"[0-9A-F]+( [A-Za-z]+)?")
    for entry in history.entries(card):
        for key, value in entry.details.items():
            if key == "changed":
                assert set(value.split(",")) <= set(lifecycle.ATTRIBUTES)
            else:
                assert key.startswith(("issued_", "revoked_", "replaced_", "kept_")), key
                assert certificate_value.fullmatch(value), value
    assert "山田" not in card.with_name(card.name + ".history").read_text()
