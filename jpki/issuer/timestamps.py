"""The test CA's time-stamping authority (RFC 3161): it answers a TimeStampReq with a token that
says, signed, that a hash existed at the emulator's clock time.

Real JPKI has no TSA of its own (signers use accredited ones); the emulator keeps one beside its
test CA so that a signature can carry a trusted signing time. Its key and certificate live in
the CA directory, made on first use under the CA's lock (like the CVC keys):

    tsa.key   PKCS#8 key of the TSA (0600)
    tsa.pem   its self-signed certificate, extended key usage timeStamping only, critical
              (0644): the anchor a verifier pins, valid from the first generation's signature
              CA's notBefore to the last one's notAfter when it is made

`TimeStampAuthority.respond` is the whole protocol, DER in and DER out, so that the same object
can answer in process (`jpki sign --timestamp`) or behind an HTTP endpoint.
"""

from __future__ import annotations

import datetime
import hashlib
from pathlib import Path

from asn1crypto import algos, tsp
from asn1crypto import cms as asn1_cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from jpki import clock, cms
from jpki.certificates import CertificateKind
from jpki.durable import remove_leftovers, write_atomically
from jpki.issuer import profile
from jpki.issuer.ca import (
    PRIVATE_FILE_MODE,
    PUBLIC_FILE_MODE,
    RSA_KEY_BITS,
    RSA_PUBLIC_EXPONENT,
    CAError,
    TestCA,
    locked,
)

TSA_KEY_FILE = "tsa.key"
TSA_CERTIFICATE_FILE = "tsa.pem"
TSA_COMMON_NAME = "JPKI emulator test TSA"
# The TSA's policy: an OID of the UUID arc (X.667), which anyone may mint, not a J-LIS one.
TSA_POLICY_OID = "2.25.160635496371296563125398312125425390977"
ACCURACY_SECONDS = 1
IMPRINT_ALGORITHMS = {"sha256": 32, "sha384": 48, "sha512": 64}
KEY_ERRORS = (ValueError, TypeError, UnsupportedAlgorithm)


class TimeStampAuthority:
    """The TSA: a key and its certificate. `respond` answers requests, `certificate` is what
    verifiers pin."""

    def __init__(self, certificate: x509.Certificate, private_key: rsa.RSAPrivateKey) -> None:
        self.certificate = certificate
        self._private_key = private_key

    @classmethod
    def of_ca(cls, directory: Path) -> TimeStampAuthority:
        """The TSA of the test CA in `directory`, its key and certificate made on first use
        (under the CA's lock: another process may be making them too). Raises CAError."""
        directory = Path(directory)
        key_path, certificate_path = directory / TSA_KEY_FILE, directory / TSA_CERTIFICATE_FILE
        if not (key_path.exists() and certificate_path.exists()):
            ca = TestCA.load(directory)  # no TSA without its CA: CAError says what is missing
            try:
                cas = [g.authority(CertificateKind.SIGNATURE).certificate for g in ca.generations]
            finally:
                ca.close()
            not_before = min(certificate.not_valid_before_utc for certificate in cas)
            not_after = max(certificate.not_valid_after_utc for certificate in cas)
            with locked(directory):
                if not key_path.exists():
                    key = rsa.generate_private_key(
                        public_exponent=RSA_PUBLIC_EXPONENT, key_size=RSA_KEY_BITS
                    )
                    _write(key_path, _private_pem(key), PRIVATE_FILE_MODE)
                if not certificate_path.exists():
                    key = _read_key(key_path)
                    certificate = build_tsa_certificate(key, not_before, not_after)
                    pem = certificate.public_bytes(serialization.Encoding.PEM)
                    _write(certificate_path, pem, PUBLIC_FILE_MODE)
        return cls(_read_certificate(certificate_path), _read_key(key_path, certificate_path))

    @property
    def name(self) -> str:
        """The TSA's CN, as verifiers name it."""
        names = self.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(names[0].value) if names else self.certificate.subject.rfc4514_string()

    def respond(self, request: bytes, *, now: datetime.datetime | None = None) -> bytes:
        """The DER TimeStampResp to a DER TimeStampReq: a token, or a rejection saying why."""
        try:
            parsed = tsp.TimeStampReq.load(request, strict=True)
            version = parsed["version"].native
            imprint = parsed["message_imprint"]
            algorithm = imprint["hash_algorithm"]["algorithm"].native
            hashed = imprint["hashed_message"].native
            policy = parsed["req_policy"].native
            nonce = parsed["nonce"].native
            wants_certificate = bool(parsed["cert_req"].native)
            extensions = parsed["extensions"].native
        except (ValueError, TypeError, KeyError, IndexError, OverflowError):
            return _rejection("bad_data_format", "the request is not a DER TimeStampReq")
        if version != "v1":
            return _rejection("bad_request", "only version 1 requests are answered")
        if algorithm not in IMPRINT_ALGORITHMS:
            return _rejection("bad_alg", f"unsupported imprint hash {algorithm}")
        if len(hashed) != IMPRINT_ALGORITHMS[algorithm]:
            return _rejection("bad_data_format", f"the imprint is not a {algorithm} hash")
        if policy is not None and policy != TSA_POLICY_OID:
            return _rejection("unaccepted_policy", f"this TSA's policy is {TSA_POLICY_OID}")
        if extensions:
            return _rejection("unaccepted_extension", "no request extensions are supported")
        token = self._token(imprint, nonce, wants_certificate, clock.now() if now is None else now)
        response = cms.TimeStampResp({"status": {"status": "granted"}, "time_stamp_token": token})
        return bytes(response.dump())

    def _token(
        self,
        imprint: tsp.MessageImprint,
        nonce: int | None,
        with_certificate: bool,
        now: datetime.datetime,
    ) -> asn1_cms.ContentInfo:
        if now.utcoffset() is None:
            raise ValueError("the time must be timezone-aware")
        info = {
            "version": "v1",
            "policy": TSA_POLICY_OID,
            "message_imprint": imprint,
            "serial_number": x509.random_serial_number(),
            # whole seconds, as the accuracy says
            "gen_time": now.astimezone(datetime.UTC).replace(microsecond=0),
            "accuracy": {"seconds": ACCURACY_SECONDS},
            "tsa": asn1_x509.GeneralName(
                name="directory_name", value=_asn1_certificate(self.certificate).subject
            ),
        }
        if nonce is not None:
            info["nonce"] = nonce
        content = bytes(tsp.TSTInfo(info).dump())
        # RFC 5816: the ESS signing-certificate attribute names the TSA's certificate by hash.
        certificate_hash = hashlib.sha256(
            self.certificate.public_bytes(serialization.Encoding.DER)
        ).digest()
        signing_certificate = asn1_cms.CMSAttribute(
            {
                "type": "signing_certificate_v2",
                "values": [{"certs": [{"cert_hash": certificate_hash}]}],
            }
        )
        token = cms.sign_content(
            content,
            self.certificate,
            self._sign_digest_info,
            content_type=cms.TST_INFO,
            more_attributes=[signing_certificate],
            include_signer=with_certificate,
        )
        return asn1_cms.ContentInfo.load(token)

    def _sign_digest_info(self, digest_info: bytes) -> bytes:
        digest = algos.DigestInfo.load(digest_info)["digest"].native
        return self._private_key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))


def build_tsa_certificate(
    key: rsa.RSAPrivateKey, not_before: datetime.datetime, not_after: datetime.datetime
) -> x509.Certificate:
    """The TSA's self-signed certificate (the CA's generations give its validity)."""
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, profile.COUNTRY),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, profile.Hierarchy.TEST.value),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, profile.TEST_MARKER_OU),
            x509.NameAttribute(NameOID.COMMON_NAME, TSA_COMMON_NAME),
        ]
    )
    public_key = key.public_key()
    key_id = x509.SubjectKeyIdentifier.from_public_key(public_key)
    builder = (
        x509.CertificateBuilder()
        .serial_number(x509.random_serial_number())
        .issuer_name(name)
        .subject_name(name)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .public_key(public_key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        # RFC 3161 2.3: timeStamping as the only extended key usage, critical.
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .add_extension(key_id, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(key_id), critical=False
        )
    )
    return builder.sign(key, hashes.SHA256())


def _rejection(failure: str, text: str) -> bytes:
    status = {"status": "rejection", "status_string": [text], "fail_info": {failure}}
    return bytes(cms.TimeStampResp({"status": status}).dump())


def _asn1_certificate(certificate: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))


def _private_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write one file of the TSA; the caller holds the CA lock, so leftovers are a crash's."""
    try:
        remove_leftovers(path)
        write_atomically(path, data, mode)
    except OSError as error:
        raise CAError(f"cannot write {path}: {error.strerror}") from error


def _read_key(path: Path, certificate_path: Path | None = None) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as error:
        raise CAError(f"cannot read {path}: {error.strerror}") from error
    except KEY_ERRORS:
        raise CAError(f"{path} is not an unencrypted PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CAError(f"{path} is not an RSA key")
    if certificate_path is not None and not profile.key_matches(
        key, _read_certificate(certificate_path)
    ):
        raise CAError(f"{path} does not match the certificate {certificate_path.name}")
    return key


def _read_certificate(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except OSError as error:
        raise CAError(f"cannot read {path}: {error.strerror}") from error
    except ValueError:
        raise CAError(f"{path} is damaged: not a readable PEM certificate") from None
