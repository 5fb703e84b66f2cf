"""Signing time as a relying party uses it: "valid at signing time" after a revocation or an
expiry, the reasons that keep or lose that, and RFC 3161 timestamps from the test CA's TSA.

Everything runs on the one clock (`jpki.clock`), set per test: a CA created at CREATED, a
certificate issued then, signatures made, revocations recorded and CRLs published at chosen
moments, and verification later — on any date the tests run.
"""

from __future__ import annotations

import datetime
import hashlib
import shutil
import stat
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from asn1crypto import cms as asn1_cms
from asn1crypto import core as asn1_core
from asn1crypto import tsp
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from card_emulator.signing import SignatureScheme, sign
from jpki import clock, cms
from jpki.certificates import CertificateKind
from jpki.issuer.ca import RevocationReason, TestCA
from jpki.issuer.holder import Holder, Sex
from jpki.issuer.revocation import build_crl
from jpki.issuer.timestamps import (
    TSA_CERTIFICATE_FILE,
    TSA_KEY_FILE,
    TimeStampAuthority,
    build_tsa_certificate,
)
from jpki.relying_party.documents import (
    SIGNING_TIME,
    EventKind,
    RevokedOrExpired,
    SigningTimeSource,
    VerifiedDocument,
    verify_document,
)
from jpki.relying_party.timestamps import verify_timestamp
from jpki.relying_party.verify import Revocation, TrustStore, VerificationError

UTC = datetime.UTC
DAY = datetime.timedelta(days=1)
CREATED = datetime.datetime(2027, 1, 10, tzinfo=UTC)
SIGNED = datetime.datetime(2028, 1, 10, 9, 30, tzinfo=UTC)
DATA = b"%PDF-1.7 lease of the flat, signed before the move\n"
HOLDER = Holder(
    "番号\u3000花子", datetime.date(1980, 2, 17), Sex.FEMALE,
    "東京都渋谷区神南一丁目１９番１１号", "123456789018",
)  # fmt: skip
TSA_NAME = "JPKI emulator test TSA"


@pytest.fixture(autouse=True)
def own_clock() -> Iterator[None]:
    yield
    clock.set_now(None)


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("signing-time") / "ca"
    TestCA.create(directory, now=CREATED).close()
    return directory


@pytest.fixture
def ca(ca_dir: Path) -> Iterator[TestCA]:
    ca = TestCA.load(ca_dir)
    yield ca
    ca.close()


@pytest.fixture(scope="module")
def tsa(ca_dir: Path) -> TimeStampAuthority:
    return TimeStampAuthority.of_ca(ca_dir)


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def certificate(ca: TestCA, key: rsa.RSAPrivateKey) -> x509.Certificate:
    """A fresh signature certificate for each test: revocations are for good."""
    return ca.issue_signature_certificate(HOLDER, key.public_key(), now=CREATED)


def signed(
    certificate: x509.Certificate,
    key: rsa.RSAPrivateKey,
    when: datetime.datetime,
    tsa: TimeStampAuthority | None = None,
) -> bytes:
    """A signature made at `when` on the clock (signingTime), timestamped then if `tsa`."""
    clock.set_now(when)
    p7s = cms.sign_detached(
        DATA, certificate, lambda info: sign(key, SignatureScheme.PKCS1_RAW, info)
    )
    return p7s if tsa is None else cms.add_timestamp(p7s, tsa.respond)


def revoke(
    ca: TestCA, certificate: x509.Certificate, reason: RevocationReason, when: datetime.datetime
) -> None:
    ca.revoke(certificate.serial_number, reason, when=when)


def verify(
    ca: TestCA,
    p7s: bytes,
    now: datetime.datetime,
    *,
    at: datetime.datetime | object = None,
    tsa: TimeStampAuthority | None = None,
    crl: bool = True,
) -> VerifiedDocument:
    """Verify at `now` on the clock, against a CRL published then."""
    clock.set_now(now)
    revocation = Revocation()
    if crl:
        revocation = Revocation(crl=build_crl(ca, CertificateKind.SIGNATURE).public_bytes(
            serialization.Encoding.DER))  # fmt: skip
    return verify_document(
        DATA,
        p7s,
        TrustStore([ca.signature.certificate]),
        at=at,  # type: ignore[arg-type]
        revocation=revocation,
        timestamp_authorities=[tsa.certificate] if tsa else [],
    )


def refused(ca: TestCA, p7s: bytes, now: datetime.datetime, **options: object) -> RevokedOrExpired:
    with pytest.raises(RevokedOrExpired) as caught:
        verify(ca, p7s, now, **options)  # type: ignore[arg-type]
    return caught.value


# Revoked after the signing time


def test_superseded_after_signing_is_valid_at_signing_time_but_not_now(
    ca: TestCA, certificate: x509.Certificate, key: rsa.RSAPrivateKey
) -> None:
    p7s = signed(certificate, key, SIGNED)
    revoke(ca, certificate, RevocationReason.SUPERSEDED, SIGNED + DAY)
    error = refused(ca, p7s, SIGNED + 2 * DAY)
    assert error.reason == "revoked" and error.valid_at_signing_time
    assert error.event.kind is EventKind.REVOKED and error.event.reason == "superseded"
    assert error.event.time == SIGNED + DAY
    assert error.signing_time is not None
    assert error.signing_time.time == SIGNED
    assert error.signing_time.source is SigningTimeSource.SIGNER
    assert str(error) == (
        "valid at signing time 2028-01-10 09:30:00Z (claimed by the signer), not now: "
        "certificate was revoked on 2028-01-11 09:30:00Z (superseded)"
    )
    then = error.document
    assert then is not None and then.as_of == SIGNED and then.signer.revocation_checked == "crl"


def test_at_signing_time_it_is_valid_and_the_revocation_is_reported(
    ca: TestCA, certificate: x509.Certificate, key: rsa.RSAPrivateKey
) -> None:
    p7s = signed(certificate, key, SIGNED)
    revoke(ca, certificate, RevocationReason.AFFILIATION_CHANGED, SIGNED + DAY)
    result = verify(ca, p7s, SIGNED + 2 * DAY, at=SIGNING_TIME)
    assert result.at_signing_time and result.as_of == SIGNED
    assert result.signer.certificate == certificate and result.signer.revocation_checked == "crl"
    assert result.event is not None
    assert (result.event.kind, result.event.reason) == (EventKind.REVOKED, "affiliationChanged")


def test_as_of_a_time_before_the_revocation_it_is_valid(
    ca: TestCA, certificate: x509.Certificate, key: rsa.RSAPrivateKey
) -> None:
    p7s = signed(certificate, key, SIGNED)
    revoke(ca, certificate, RevocationReason.SUPERSEDED, SIGNED + DAY)
    result = verify(ca, p7s, SIGNED + 2 * DAY, at=SIGNED + DAY / 2)
    assert not result.at_signing_time and result.as_of == SIGNED + DAY / 2
    assert result.event is not None and result.event.time == SIGNED + DAY
    # As of a time after it, only at signing time.
    error = refused(ca, p7s, SIGNED + 2 * DAY, at=SIGNED + DAY * 3 / 2)
    assert error.valid_at_signing_time
    assert "not as of 2028-01-11 21:30:00Z" in str(error)


def test_revoked_before_the_signing_time_is_invalid_even_at_signing_time(
    ca: TestCA, certificate: x509.Certificate, key: rsa.RSAPrivateKey
) -> None:
    revoke(ca, certificate, RevocationReason.SUPERSEDED, SIGNED - DAY)
    p7s = signed(certificate, key, SIGNED)  # the card still signs with a revoked certificate
    for at in (None, SIGNING_TIME):
        error = refused(ca, p7s, SIGNED + DAY, at=at)
        assert not error.valid_at_signing_time and error.document is None
        assert str(error) == (
            "certificate was revoked on 2028-01-09 09:30:00Z (superseded), before the signing "
            "time 2028-01-10 09:30:00Z (claimed by the signer)"
        )


@pytest.mark.parametrize(
    ("reason", "doubt"),
    [
        (RevocationReason.KEY_COMPROMISE, "the key was reported compromised"),
        (RevocationReason.CERTIFICATE_HOLD, "the certificate was put on hold"),
        (RevocationReason.UNSPECIFIED, "does not say the key stayed safe"),
    ],
)
def test_a_revocation_that_puts_the_key_in_doubt_is_invalid_with_its_times(
    ca: TestCA,
    certificate: x509.Certificate,
    key: rsa.RSAPrivateKey,
    reason: RevocationReason,
    doubt: str,
) -> None:
    p7s = signed(certificate, key, SIGNED)
    revoke(ca, certificate, reason, SIGNED + DAY)
    for at in (None, SIGNING_TIME):
        error = refused(ca, p7s, SIGNED + 2 * DAY, at=at)
        assert error.reason == "revoked" and not error.valid_at_signing_time
        assert error.event.time == SIGNED + DAY and error.signing_time is not None
        message = str(error)
        assert message.startswith("certificate was revoked on 2028-01-11 09:30:00Z (")
        assert "after the signing time 2028-01-10 09:30:00Z (claimed by the signer)" in message
        assert doubt in message and "the relying party's judgement" in message


def test_cessation_of_operation_keeps_the_signature_valid_at_signing_time(
    ca: TestCA, certificate: x509.Certificate, key: rsa.RSAPrivateKey
) -> None:
    p7s = signed(certificate, key, SIGNED)
    revoke(ca, certificate, RevocationReason.CESSATION_OF_OPERATION, SIGNED + DAY)
    assert refused(ca, p7s, SIGNED + 2 * DAY).valid_at_signing_time


def test_without_a_revocation_check_it_is_valid_now(
    ca: TestCA, certificate: x509.Certificate, key: rsa.RSAPrivateKey
) -> None:
    p7s = signed(certificate, key, SIGNED)
    result = verify(ca, p7s, SIGNED + DAY, crl=False)
    assert result.event is None and result.signer.revocation_checked == "not checked"
    assert result.signing_time is not None and result.signing_time.time == SIGNED


# Expired after the signing time


def test_expired_after_signing_is_valid_at_signing_time(
    ca: TestCA, certificate: x509.Certificate, key: rsa.RSAPrivateKey
) -> None:
    expiry = certificate.not_valid_after_utc  # the holder's fifth birthday after issuance
    assert expiry == datetime.datetime(2031, 2, 17, 14, 59, 59, tzinfo=UTC)
    p7s = signed(certificate, key, SIGNED)
    day_after_birthday = datetime.datetime(2031, 2, 18, 12, tzinfo=UTC)
    error = refused(ca, p7s, day_after_birthday)
    assert error.reason == "expired" and error.valid_at_signing_time
    assert error.event.kind is EventKind.EXPIRED and error.event.time == expiry
    assert str(error).endswith("not now: certificate expired on 2031-02-17 14:59:59Z")
    result = verify(ca, p7s, day_after_birthday, at=SIGNING_TIME)
    assert result.event is not None and result.event.kind is EventKind.EXPIRED


def test_signed_after_the_expiry_is_invalid(
    ca: TestCA, certificate: x509.Certificate, key: rsa.RSAPrivateKey
) -> None:
    late = certificate.not_valid_after_utc + DAY
    p7s = signed(certificate, key, late)
    error = refused(ca, p7s, late + DAY, crl=False)
    assert not error.valid_at_signing_time
    assert str(error) == "certificate expired on 2031-02-17 14:59:59Z"
    with pytest.raises(VerificationError, match="expired on 2031-02-17"):
        verify(ca, p7s, late + DAY, at=SIGNING_TIME, crl=False)


def test_no_signing_time_cannot_be_validated_at_signing_time(
    ca: TestCA, certificate: x509.Certificate, key: rsa.RSAPrivateKey
) -> None:
    clock.set_now(SIGNED)
    p7s = cms.sign_content(  # signed attributes without signingTime
        DATA, certificate, lambda info: sign(key, SignatureScheme.PKCS1_RAW, info), detached=True
    )
    with pytest.raises(VerificationError) as caught:
        verify(ca, p7s, SIGNED + DAY, at=SIGNING_TIME)
    assert caught.value.reason == "no-signing-time"
    revoke(ca, certificate, RevocationReason.SUPERSEDED, SIGNED)
    error = refused(ca, p7s, SIGNED + DAY)  # nothing to place the revocation after
    assert str(error) == "certificate was revoked on 2028-01-10 09:30:00Z (superseded)"


# Timestamps


def test_a_timestamp_is_the_signing_time_and_names_its_authority(
    ca: TestCA, certificate: x509.Certificate, key: rsa.RSAPrivateKey, tsa: TimeStampAuthority
) -> None:
    clock.set_now(SIGNED)
    p7s = cms.sign_detached(DATA, certificate, lambda info: sign(key, SignatureScheme.PKCS1_RAW,
                            info), signing_time=SIGNED - DAY)  # fmt: skip
    p7s = cms.add_timestamp(p7s, tsa.respond)  # stamped at SIGNED: the claim says a day earlier
    result = verify(ca, p7s, SIGNED + DAY, tsa=tsa)
    assert result.signing_time is not None
    assert result.signing_time.source is SigningTimeSource.TIMESTAMP
    assert result.signing_time.time == SIGNED and result.signing_time.authority == TSA_NAME
    assert str(result.signing_time) == f"2028-01-10 09:30:00Z (timestamp by {TSA_NAME})"


def test_the_timestamp_not_the_claim_places_the_revocation(
    ca: TestCA, certificate: x509.Certificate, key: rsa.RSAPrivateKey, tsa: TimeStampAuthority
) -> None:
    # The signer claims a time before the revocation; the TSA saw the signature after it.
    clock.set_now(SIGNED + DAY)
    p7s = cms.sign_detached(DATA, certificate, lambda info: sign(key, SignatureScheme.PKCS1_RAW,
                            info), signing_time=SIGNED - DAY)  # fmt: skip
    p7s = cms.add_timestamp(p7s, tsa.respond)
    revoke(ca, certificate, RevocationReason.SUPERSEDED, SIGNED)
    error = refused(ca, p7s, SIGNED + 2 * DAY, tsa=tsa)
    assert not error.valid_at_signing_time
    assert str(error).endswith(
        f"before the signing time 2028-01-11 09:30:00Z (timestamp by {TSA_NAME})"
    )


def test_timestamped_and_superseded_later_is_valid_at_the_timestamp(
    ca: TestCA, certificate: x509.Certificate, key: rsa.RSAPrivateKey, tsa: TimeStampAuthority
) -> None:
    p7s = signed(certificate, key, SIGNED, tsa)
    revoke(ca, certificate, RevocationReason.SUPERSEDED, SIGNED + DAY)
    error = refused(ca, p7s, SIGNED + 2 * DAY, tsa=tsa)
    assert error.valid_at_signing_time
    assert f"(timestamp by {TSA_NAME}), not now" in str(error)
    assert verify(ca, p7s, SIGNED + 2 * DAY, at=SIGNING_TIME, tsa=tsa).at_signing_time


def with_token(p7s: bytes, token: bytes) -> bytes:
    """`p7s` with its timestamp tokens replaced by `token`, the signed parts byte for byte."""

    def present(value: asn1_core.Sequence) -> dict[str, object]:
        return {name: value[name] for name in value if not isinstance(value[name], asn1_core.Void)}

    signed_data = asn1_cms.ContentInfo.load(p7s)["content"]
    signer_info = present(signed_data["signer_infos"][0])
    signer_info["unsigned_attrs"] = [
        {"type": "signature_time_stamp_token", "values": [asn1_cms.ContentInfo.load(token)]}
    ]
    rebuilt = present(signed_data)
    rebuilt["signer_infos"] = [asn1_cms.SignerInfo(signer_info)]
    content = asn1_cms.SignedData(rebuilt)
    return bytes(asn1_cms.ContentInfo({"content_type": "signed_data", "content": content}).dump())


def test_a_timestamp_over_another_signature_is_refused(
    ca: TestCA, certificate: x509.Certificate, key: rsa.RSAPrivateKey, tsa: TimeStampAuthority
) -> None:
    other = signed(certificate, key, SIGNED - DAY, tsa)
    p7s = with_token(signed(certificate, key, SIGNED), tokens_of(other)[0])
    assert cms.verify_signed_data(p7s, DATA).timestamp_tokens  # the CMS layer does not judge it
    with pytest.raises(VerificationError) as caught:
        verify(ca, p7s, SIGNED + DAY, tsa=tsa)
    assert caught.value.reason == "bad-timestamp"
    assert str(caught.value) == (
        "the timestamp is over other data, not this signature (its message imprint differs)"
    )


def test_a_timestamp_of_an_untrusted_authority_is_refused(
    ca: TestCA, certificate: x509.Certificate, key: rsa.RSAPrivateKey, tsa: TimeStampAuthority
) -> None:
    stranger_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    stranger_certificate = build_tsa_certificate(
        stranger_key, tsa.certificate.not_valid_before_utc, tsa.certificate.not_valid_after_utc
    )  # same name, other key
    stranger = TimeStampAuthority(stranger_certificate, stranger_key)
    p7s = signed(certificate, key, SIGNED, stranger)
    name = f"C=JP, O=JPKI-TEST, OU=JPKI card emulator - not for production use, CN={TSA_NAME}"
    expected = {
        f"the timestamp is signed by {name}, which is not a trusted time-stamping authority": tsa,
        f"the timestamp is signed by {name}, and no time-stamping authority is trusted": None,
    }
    for message, pinned in expected.items():
        with pytest.raises(VerificationError) as caught:
            verify(ca, p7s, SIGNED + DAY, tsa=pinned)
        assert caught.value.reason == "untrusted-timestamp"
        assert str(caught.value) == message


def test_a_token_without_the_tsa_certificate_verifies_with_the_pinned_one(
    certificate: x509.Certificate, key: rsa.RSAPrivateKey, tsa: TimeStampAuthority
) -> None:
    signature = cms.verify_signed_data(signed(certificate, key, SIGNED), DATA).signature
    request = tsp.TimeStampReq(
        {
            "version": "v1",
            "message_imprint": {
                "hash_algorithm": {"algorithm": "sha512"},
                "hashed_message": hashlib.sha512(signature).digest(),
            },
            "cert_req": False,
        }
    )
    response = tsp.TimeStampResp.load(tsa.respond(request.dump()))
    token = response["time_stamp_token"]
    assert isinstance(token["content"]["certificates"], asn1_core.Void)  # none asked for
    stamp = verify_timestamp(token.dump(), signature, [tsa.certificate])
    assert stamp.time == SIGNED and stamp.authority == TSA_NAME
    with pytest.raises(VerificationError, match="signer certificate not included"):
        verify_timestamp(token.dump(), signature, [])


def tokens_of(p7s: bytes) -> tuple[bytes, ...]:
    return cms.verify_signed_data(p7s, DATA).timestamp_tokens


def test_add_timestamp_keeps_every_signed_byte(
    certificate: x509.Certificate, key: rsa.RSAPrivateKey, tsa: TimeStampAuthority
) -> None:
    plain = signed(certificate, key, SIGNED)
    stamped = cms.add_timestamp(plain, tsa.respond)
    before = asn1_cms.ContentInfo.load(plain)["content"]
    after = asn1_cms.ContentInfo.load(stamped)["content"]
    for field in ("digest_algorithms", "encap_content_info", "certificates"):
        assert after[field].dump() == before[field].dump()
    for field in ("sid", "signed_attrs", "signature"):
        assert after["signer_infos"][0][field].dump() == before["signer_infos"][0][field].dump()
    assert len(tokens_of(stamped)) == 1 and tokens_of(plain) == ()
    assert len(tokens_of(cms.add_timestamp(stamped, tsa.respond))) == 2


def test_the_tsa_refuses_what_it_cannot_stamp(
    certificate: x509.Certificate, key: rsa.RSAPrivateKey, tsa: TimeStampAuthority
) -> None:
    def status(reply: bytes) -> tuple[str, set[str]]:
        parsed = cms.TimeStampResp.load(reply)["status"]
        return parsed["status"].native, set(parsed["fail_info"].native)

    def request(algorithm: str, length: int, **more: str) -> bytes:
        imprint = {"hash_algorithm": {"algorithm": algorithm}, "hashed_message": b"0" * length}
        return bytes(tsp.TimeStampReq({"version": "v1", "message_imprint": imprint, **more}).dump())

    assert status(tsa.respond(b"\x30\x03junk")) == ("rejection", {"bad_data_format"})
    assert status(tsa.respond(request("md5", 16))) == ("rejection", {"bad_alg"})
    assert status(tsa.respond(request("sha256", 20))) == ("rejection", {"bad_data_format"})
    assert status(tsa.respond(request("sha256", 32, req_policy="1.2.3.4"))) == (
        "rejection",
        {"unaccepted_policy"},
    )
    p7s = signed(certificate, key, SIGNED)
    with pytest.raises(cms.CmsError, match="refused: the request is not a DER TimeStampReq"):
        cms.add_timestamp(p7s, lambda _request: tsa.respond(b"junk"))


def test_add_timestamp_refuses_a_reply_for_another_imprint(
    certificate: x509.Certificate, key: rsa.RSAPrivateKey, tsa: TimeStampAuthority
) -> None:
    other = signed(certificate, key, SIGNED - DAY)
    p7s = signed(certificate, key, SIGNED)
    other_request: list[bytes] = []

    def elsewhere(request: bytes) -> bytes:
        # answers the request another signature would have made
        parsed = tsp.TimeStampReq.load(request)
        signature = cms.verify_signed_data(other, DATA).signature
        parsed["message_imprint"]["hashed_message"] = hashlib.sha256(signature).digest()
        other_request.append(parsed.dump(force=True))
        return tsa.respond(other_request[0])

    with pytest.raises(cms.CmsError, match="not a timestamp of this signature"):
        cms.add_timestamp(p7s, elsewhere)


# The TSA's files


def test_the_tsa_is_made_once_beside_the_ca(ca_dir: Path, tsa: TimeStampAuthority) -> None:
    assert stat.S_IMODE((ca_dir / TSA_KEY_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE((ca_dir / TSA_CERTIFICATE_FILE).stat().st_mode) == 0o644
    assert TimeStampAuthority.of_ca(ca_dir).certificate == tsa.certificate
    usage = tsa.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert usage.critical and list(usage.value) == [ExtendedKeyUsageOID.TIME_STAMPING]
    # Valid as long as the CA is, so that any time on the clock the CA serves can be stamped.
    ca_certificate = x509.load_pem_x509_certificate((ca_dir / "signature-ca.pem").read_bytes())
    assert tsa.certificate.not_valid_before_utc == ca_certificate.not_valid_before_utc
    assert tsa.certificate.not_valid_after_utc == ca_certificate.not_valid_after_utc


def test_concurrent_first_uses_make_one_tsa(ca_dir: Path, tmp_path: Path) -> None:
    directory = tmp_path / "ca"
    shutil.copytree(ca_dir, directory, ignore=shutil.ignore_patterns("tsa.*"))
    made: list[x509.Certificate] = []
    threads = [
        threading.Thread(
            target=lambda: made.append(TimeStampAuthority.of_ca(directory).certificate)
        )
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 4 and len(set(made)) == 1


@pytest.mark.openssl
def test_openssl_verifies_the_token(
    certificate: x509.Certificate, key: rsa.RSAPrivateKey, tsa: TimeStampAuthority, tmp_path: Path
) -> None:
    p7s = signed(certificate, key, SIGNED, tsa)
    (tmp_path / "token.der").write_bytes(tokens_of(p7s)[0])
    # the TSA's certificate is its own anchor
    (tmp_path / "tsa.pem").write_bytes(tsa.certificate.public_bytes(serialization.Encoding.PEM))
    signature = cms.verify_signed_data(p7s, DATA).signature
    result = subprocess.run(
        ["openssl", "ts", "-verify", "-token_in", "-in", str(tmp_path / "token.der"),
         "-digest", hashlib.sha256(signature).hexdigest(),
         "-CAfile", str(tmp_path / "tsa.pem"), "-attime", str(int(SIGNED.timestamp()))],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert "Verification: OK" in result.stdout, result.stdout + result.stderr
