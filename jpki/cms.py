"""CMS (PKCS#7) SignedData for documents signed with the card's signature key: build and check.

`sign_detached` wraps a signature made by the card (which never lets the key out) into the
SignedData that OpenSSL, S/MIME and e-filing clients expect; `add_timestamp` asks an RFC 3161
time-stamping authority to stamp its signature and keeps the token in the SignerInfo's unsigned
attributes; `verify_signed_data` checks one made by this module, by OpenSSL or by another signer
(and, with `content_type="tst_info"`, a timestamp token, which is a SignedData too). Verification
covers only the CMS layer: the signer's certificate and any timestamp tokens are returned for
chain, validity, key usage, policy, revocation and timestamp checks, which are other modules' job.
"""

from __future__ import annotations

import datetime
import hashlib
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from asn1crypto import algos, cms, core, parser, pem, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from jpki import clock
from jpki.errors import JpkiError

Signer = Callable[[bytes], bytes]
"""Signs DER DigestInfo bytes with RSA PKCS#1 v1.5, as the card's 80 2A 00 xx (P1 00) does."""
TimestampTransport = Callable[[bytes], bytes]
"""Takes a DER TimeStampReq to a time-stamping authority and returns its DER TimeStampResp
(RFC 3161): in process, or over HTTP as application/timestamp-query."""

SHA256_LENGTH = 32
# RFC 5754: generators emit SHA-2 AlgorithmIdentifiers with absent parameters (so does OpenSSL);
# asn1crypto would add a NULL, so the exact encoding is given here.
SHA256_ALGORITHM_DER = bytes.fromhex("300b0609608648016503040201")
UTC_TIME_YEARS = range(1950, 2050)  # RFC 5652 11.3: UTCTime for these years, else GeneralizedTime
PEM_BEGIN = b"-----BEGIN "
PEM_LABELS = frozenset({"CMS", "PKCS7", "PKCS #7 SIGNED DATA"})
UNIVERSAL_CLASS = 0
CONSTRUCTED = 1
SET_TAG_NUMBER = 17
PSS_TRAILER_FIELD = "trailer_field_bc"  # RFC 4055: 1 (0xBC), the only trailer field defined
DATA = "data"
TST_INFO = "tst_info"  # id-ct-TSTInfo: the content of an RFC 3161 timestamp token
TIMESTAMP_ATTRIBUTE = "signature_time_stamp_token"  # id-aa-signatureTimeStampToken (RFC 3161 A)
TIMESTAMP_NONCE_BITS = 64
TIMESTAMP_GRANTED = ("granted", "granted_with_mods")

HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
# sha*WithRSAEncryption: PKCS#1 v1.5 with the hash named in the OID.
PKCS1_WITH_HASH = {
    "sha1_rsa": "sha1",
    "sha256_rsa": "sha256",
    "sha384_rsa": "sha384",
    "sha512_rsa": "sha512",
}
PKCS1_RSA = "rsassa_pkcs1v15"  # rsaEncryption: the hash is the SignerInfo's digestAlgorithm
PSS = "rsassa_pss"
MGF1 = "mgf1"

NOT_SIGNED_DATA = "not a CMS SignedData structure"
DIGEST_DIFFERS = "the signed data does not match (message digest differs)"
BAD_SIGNATURE = "signature does not verify with the signer's certificate"
NO_SIGNER_CERTIFICATE = "signer certificate not included"
CONTENT_NEEDED = "detached signature: the signed file is needed"
MANY_SIGNERS = "more than one signer is not supported"
NO_SIGNER = "the signature has no signer"
CONTENT_DIFFERS = "the given file differs from the content inside the signature"
NOT_DATA = "the signed content is not plain data (id-data)"
NOT_TST_INFO = "the signed content is not a timestamp (id-ct-TSTInfo)"
CONTENT_TYPE_DIFFERS = "the contentType attribute differs from the signed content's type"
TIMESTAMP_REFUSED = "the time-stamping authority refused"
BAD_TIMESTAMP_REPLY = "the time-stamping authority's reply is not a timestamp of this signature"
BAD_TIMESTAMP_TOKEN = "a timestamp token in the unsigned attributes cannot be read"
ALGORITHMS_DISAGREE = "the signature algorithm's hash differs from the digest algorithm"
BAD_PSS_PARAMETERS = "unsupported or invalid RSASSA-PSS parameters"
NOT_RSA = "the signer's key is not an RSA key"
BAD_CERTIFICATE = "an embedded certificate cannot be read"
CARD_SIGNATURE_MISMATCH = (
    "the card's signature does not verify with the certificate (another card's certificate?)"
)


class TimeStampResp(core.Sequence):  # type: ignore[misc]  # asn1crypto is untyped
    """RFC 3161 TimeStampResp, whose token is absent when the request is refused (asn1crypto's
    own class requires it)."""

    _fields = [
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


class CmsError(JpkiError):
    """A SignedData that cannot be made or does not verify; `reason` is one readable line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class SignedDocument:
    """What a verified SignedData says: who signed, with what, and when (as the signer claims)."""

    certificate: x509.Certificate
    certificates: tuple[x509.Certificate, ...]
    signing_time: datetime.datetime | None
    digest_algorithm: str
    signature: bytes = b""  # the SignerInfo's signature value, which a timestamp is over
    content: bytes = b""  # what was signed (for a timestamp token: the DER TSTInfo)
    timestamp_tokens: tuple[bytes, ...] = ()  # DER ContentInfos from id-aa-signatureTimeStampToken


def digest_info_sha256(digest: bytes) -> bytes:
    """DER DigestInfo of a SHA-256 digest: what PKCS#1 v1.5 pads and the card signs."""
    if len(digest) != SHA256_LENGTH:
        raise ValueError(f"a SHA-256 digest is {SHA256_LENGTH} bytes, not {len(digest)}")
    info = algos.DigestInfo({"digest_algorithm": {"algorithm": "sha256"}, "digest": digest})
    return bytes(info.dump())


def sign_detached(
    data: bytes,
    certificate: x509.Certificate,
    signer: Signer,
    *,
    signing_time: datetime.datetime | None = None,
    detached: bool = True,
    include_chain: Sequence[x509.Certificate] = (),
) -> bytes:
    """DER ContentInfo(SignedData) over `data`, signed by `signer` for `certificate`'s key.

    `signing_time` defaults to now and must be timezone-aware; `detached=False` puts `data` inside.
    The SET OF certificates is DER-sorted, so the order of `include_chain` is not kept.
    """
    return sign_content(
        data,
        certificate,
        signer,
        signing_time=_signing_time(signing_time),
        detached=detached,
        include_chain=include_chain,
    )


def sign_content(
    content: bytes,
    certificate: x509.Certificate,
    signer: Signer,
    *,
    content_type: str = DATA,
    signing_time: datetime.datetime | None = None,
    more_attributes: Sequence[cms.CMSAttribute] = (),
    detached: bool = False,
    include_chain: Sequence[x509.Certificate] = (),
    include_signer: bool = True,
) -> bytes:
    """DER ContentInfo(SignedData) of `content_type` (an asn1crypto name such as "tst_info").

    Signed attributes: contentType, messageDigest, signingTime when `signing_time` is given
    (whole seconds, timezone-aware), and `more_attributes`. `include_signer=False` leaves the
    signer's certificate out (a TSA asked for no certificate).
    """
    public_key = _rsa_public_key(certificate)
    attributes = _signed_attributes(
        content_type,
        hashlib.sha256(content).digest(),
        None if signing_time is None else _signing_time(signing_time),
        more_attributes,
    )
    to_sign = bytes(attributes.dump())
    signature = bytes(signer(digest_info_sha256(hashlib.sha256(to_sign).digest())))
    try:
        public_key.verify(signature, to_sign, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        # a card other than the certificate's would produce a SignedData nobody can verify
        raise CmsError(CARD_SIGNATURE_MISMATCH) from None

    signer_certificate = _asn1_certificate(certificate)
    signer_info = cms.SignerInfo(
        {
            "version": "v1",
            "sid": cms.SignerIdentifier(
                name="issuer_and_serial_number",
                value={
                    "issuer": signer_certificate.issuer,
                    "serial_number": signer_certificate.serial_number,
                },
            ),
            "digest_algorithm": _sha256_algorithm(),
            "signed_attrs": attributes,
            "signature_algorithm": {"algorithm": PKCS1_RSA},
            "signature": signature,
        }
    )
    encapsulated: dict[str, object] = {"content_type": content_type}
    if not detached:
        # id-data is an OCTET STRING; other types (TSTInfo) hold their DER as given
        encapsulated["content"] = (
            content if content_type == DATA else core.ParsableOctetString(content)
        )
    embedded = _unique(
        [*([signer_certificate] if include_signer else []), *map(_asn1_certificate, include_chain)]
    )
    signed: dict[str, object] = {
        # RFC 5652 5.1: version 3 when the content is not id-data
        "version": "v1" if content_type == DATA else "v3",
        "digest_algorithms": [_sha256_algorithm()],
        "encap_content_info": encapsulated,
        "signer_infos": [signer_info],
    }
    if embedded:
        signed["certificates"] = [
            cms.CertificateChoices(name="certificate", value=certificate)
            for certificate in embedded
        ]
    signed_data = cms.SignedData(signed)
    content_info = cms.ContentInfo({"content_type": "signed_data", "content": signed_data})
    return bytes(content_info.dump())


def add_timestamp(p7s: bytes, authority: TimestampTransport) -> bytes:
    """`p7s` (DER or PEM, one signer) as DER, with a timestamp of its signature value from
    `authority` added to the SignerInfo's unsigned attributes (RFC 3161 appendix A).

    The request asks for a SHA-256 imprint, a fresh nonce and the authority's certificate; a
    refusal, or a reply that is not a token over this signature with this nonce, raises CmsError.
    Everything signed stays byte for byte as it was.
    """
    try:
        content_info = cms.ContentInfo.load(_unarmor(p7s), strict=True)
        if content_info["content_type"].native != "signed_data":
            raise CmsError(NOT_SIGNED_DATA)
        signed_data = content_info["content"]
        signer_infos = list(signed_data["signer_infos"])
        signature = bytes(signer_infos[0]["signature"].native) if signer_infos else b""
    except (ValueError, TypeError, KeyError, IndexError, OverflowError):
        raise CmsError(NOT_SIGNED_DATA) from None
    if not signer_infos:
        raise CmsError(NO_SIGNER)
    if len(signer_infos) > 1:
        raise CmsError(MANY_SIGNERS)
    token = request_timestamp(signature, authority)
    attribute = cms.CMSAttribute({"type": TIMESTAMP_ATTRIBUTE, "values": [token]})
    # New containers around the parsed parts: asn1crypto re-encodes only what is new.
    signer_info = signer_infos[0]
    unsigned = signer_info["unsigned_attrs"]
    fields = _present_fields(signer_info)
    fields["unsigned_attrs"] = [*([] if isinstance(unsigned, core.Void) else unsigned), attribute]
    rebuilt = _present_fields(signed_data)
    rebuilt["signer_infos"] = [cms.SignerInfo(fields)]
    return bytes(
        cms.ContentInfo({"content_type": "signed_data", "content": cms.SignedData(rebuilt)}).dump()
    )


def request_timestamp(signature: bytes, authority: TimestampTransport) -> cms.ContentInfo:
    """The token `authority` gives for a SHA-256 imprint of `signature`, checked to be a granted
    timestamp of that imprint that echoes our nonce (its signature is for the verifier to check).
    """
    imprint = hashlib.sha256(signature).digest()
    nonce = secrets.randbits(TIMESTAMP_NONCE_BITS)
    request = tsp.TimeStampReq(
        {
            "version": "v1",
            "message_imprint": {"hash_algorithm": _sha256_algorithm(), "hashed_message": imprint},
            "nonce": nonce,
            "cert_req": True,
        }
    )
    reply = authority(bytes(request.dump()))
    try:
        response = TimeStampResp.load(reply, strict=True)
        status = response["status"]
        if status["status"].native not in TIMESTAMP_GRANTED:
            said = status["status_string"].native if status["status_string"] else None
            why = "; ".join(said) if said else status["status"].native
            raise CmsError(f"{TIMESTAMP_REFUSED}: {why}")
        token = response["time_stamp_token"]
        encapsulated = token["content"]["encap_content_info"]
        if encapsulated["content_type"].native != TST_INFO:
            raise CmsError(BAD_TIMESTAMP_REPLY)
        info = encapsulated["content"].parsed
        granted = (
            info["message_imprint"]["hashed_message"].native == imprint
            and info["message_imprint"]["hash_algorithm"]["algorithm"].native == "sha256"
            and info["nonce"].native == nonce
        )
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError):
        raise CmsError(BAD_TIMESTAMP_REPLY) from None
    if not granted:
        raise CmsError(BAD_TIMESTAMP_REPLY)
    return token


def _present_fields(value: core.Sequence) -> dict[str, object]:
    """The fields of a parsed SEQUENCE that are present, as they were parsed."""
    return {name: value[name] for name in value if not isinstance(value[name], core.Void)}


def verify_signed_data(
    p7s: bytes,
    data: bytes | None,
    *,
    content_type: str = DATA,
    certificates: Sequence[x509.Certificate] = (),
) -> SignedDocument:
    """Check the CMS signature in `p7s` (DER or PEM) over `data`, or over the content inside.

    `content_type` is the content expected (id-data; "tst_info" for a timestamp token);
    `certificates` are candidates for the signer's besides those the SignedData carries.
    Raises CmsError naming the first problem found. Chain, validity, key usage, policy and
    revocation of the returned certificate, and the timestamp tokens, are left to the caller.
    """
    parts = _parse(p7s)
    if parts.content_type != content_type:
        raise CmsError(NOT_DATA if content_type == DATA else NOT_TST_INFO)
    content = _content(parts.content, data)

    digest_name = parts.digest_algorithm
    if parts.signed_attributes is None:
        message = content
        signing_time = None
    else:
        attributes = _attributes(parts.signed_attributes, content_type)
        if attributes.message_digest != hashlib.new(digest_name, content).digest():
            raise CmsError(DIGEST_DIFFERS)
        message = parts.signed_attributes_der
        signing_time = attributes.signing_time

    given = tuple((_asn1_certificate(certificate), certificate) for certificate in certificates)
    candidates = [
        (asn1_certificate, certificate)
        for asn1_certificate, certificate in (*parts.certificates, *given)
        if _identifies(parts.signer_id, asn1_certificate)
    ]
    if not candidates:
        raise CmsError(NO_SIGNER_CERTIFICATE)
    scheme = _signature_padding(parts.signature_algorithm, parts.signature_parameters, digest_name)
    # the same certificate may be embedded twice; any one that verifies is the signer's
    for _embedded, certificate in candidates:
        if _verifies(certificate, parts.signature, message, scheme, digest_name):
            return SignedDocument(
                certificate=certificate,
                certificates=tuple(certificate for _asn1, certificate in parts.certificates),
                signing_time=signing_time,
                digest_algorithm=digest_name,
                signature=parts.signature,
                content=content,
                timestamp_tokens=parts.timestamp_tokens,
            )
    raise CmsError(BAD_SIGNATURE)


# Building


def _signing_time(when: datetime.datetime | None) -> datetime.datetime:
    if when is None:
        when = clock.now()
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError("signing_time must be timezone-aware")
    # neither UTCTime nor DER GeneralizedTime as signers write it carries fractions of a second
    return when.astimezone(datetime.UTC).replace(microsecond=0)


def _signed_attributes(
    content_type: str,
    message_digest: bytes,
    when: datetime.datetime | None,
    more: Sequence[cms.CMSAttribute],
) -> cms.CMSAttributes:
    """contentType, signingTime (if `when`), messageDigest and `more`; asn1crypto sorts the SET
    OF as DER requires."""
    attributes = [cms.CMSAttribute({"type": "content_type", "values": [content_type]})]
    if when is not None:
        time_kind = "utc_time" if when.year in UTC_TIME_YEARS else "generalized_time"
        attributes.append(
            cms.CMSAttribute(
                {"type": "signing_time", "values": [cms.Time(name=time_kind, value=when)]}
            )
        )
    attributes.append(cms.CMSAttribute({"type": "message_digest", "values": [message_digest]}))
    return cms.CMSAttributes([*attributes, *more])


def _sha256_algorithm() -> algos.DigestAlgorithm:
    return algos.DigestAlgorithm.load(SHA256_ALGORITHM_DER)


def _asn1_certificate(certificate: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))


def _rsa_public_key(certificate: x509.Certificate) -> rsa.RSAPublicKey:
    try:
        public_key = certificate.public_key()
    except (UnsupportedAlgorithm, ValueError):
        raise CmsError(NOT_RSA) from None
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise CmsError(NOT_RSA)
    return public_key


def _unique(certificates: Sequence[asn1_x509.Certificate]) -> list[asn1_x509.Certificate]:
    seen: set[bytes] = set()
    unique = []
    for certificate in certificates:
        encoded = bytes(certificate.dump())
        if encoded not in seen:
            seen.add(encoded)
            unique.append(certificate)
    return unique


# Verifying


@dataclass(frozen=True)
class _Parts:
    """The pieces of a one-signer SignedData that verification needs, already decoded."""

    content_type: str
    content: bytes | None
    certificates: tuple[tuple[asn1_x509.Certificate, x509.Certificate], ...]
    signer_id: cms.SignerIdentifier
    digest_algorithm: str
    signed_attributes: cms.CMSAttributes | None
    signed_attributes_der: bytes
    signature_algorithm: str
    signature_parameters: algos.RSASSAPSSParams | core.Asn1Value
    signature: bytes
    timestamp_tokens: tuple[bytes, ...]


@dataclass(frozen=True)
class _Attributes:
    message_digest: bytes
    signing_time: datetime.datetime | None


def _parse(p7s: bytes) -> _Parts:
    der = _unarmor(p7s)
    try:
        content_info = cms.ContentInfo.load(der, strict=True)
        if content_info["content_type"].native != "signed_data":
            raise CmsError(NOT_SIGNED_DATA)
        signed_data = content_info["content"]
        signer_infos = list(signed_data["signer_infos"])
        if not signer_infos:
            raise CmsError(NO_SIGNER)
        if len(signer_infos) > 1:
            raise CmsError(MANY_SIGNERS)
        signer_info = signer_infos[0]
        encapsulated = signed_data["encap_content_info"]
        content_value = encapsulated["content"]
        content = None if isinstance(content_value, core.Void) else bytes(content_value)
        signed_attributes = signer_info["signed_attrs"]
        if isinstance(signed_attributes, core.Void):
            signed_attributes = None
            signed_attributes_der = b""
        else:
            # the signature covers the attributes as sent, with the [0] IMPLICIT tag made a SET
            signed_attributes_der = bytes(
                parser.emit(
                    UNIVERSAL_CLASS, CONSTRUCTED, SET_TAG_NUMBER, signed_attributes.contents
                )
            )
        digest_name = signer_info["digest_algorithm"]["algorithm"].native
        signature_algorithm = signer_info["signature_algorithm"]
        parts = _Parts(
            content_type=encapsulated["content_type"].native,
            content=content,
            certificates=_certificates(signed_data["certificates"]),
            signer_id=signer_info["sid"],
            digest_algorithm=digest_name,
            signed_attributes=signed_attributes,
            signed_attributes_der=signed_attributes_der,
            signature_algorithm=signature_algorithm["algorithm"].native,
            signature_parameters=signature_algorithm["parameters"],
            signature=bytes(signer_info["signature"].native),
            timestamp_tokens=_timestamp_tokens(signer_info["unsigned_attrs"]),
        )
    except (ValueError, TypeError, KeyError, IndexError, OverflowError):
        raise CmsError(NOT_SIGNED_DATA) from None
    if parts.digest_algorithm not in HASHES:
        raise CmsError(f"unsupported digest algorithm: {parts.digest_algorithm}")
    return parts


def _timestamp_tokens(unsigned: cms.CMSAttributes | core.Void) -> tuple[bytes, ...]:
    """The DER ContentInfos of every id-aa-signatureTimeStampToken value, unchecked."""
    if isinstance(unsigned, core.Void):
        return ()
    try:
        return tuple(
            bytes(token.dump())
            for attribute in unsigned
            if attribute["type"].native == TIMESTAMP_ATTRIBUTE
            for token in attribute["values"]
        )
    except (ValueError, TypeError, KeyError, IndexError, OverflowError):
        raise CmsError(BAD_TIMESTAMP_TOKEN) from None


def _unarmor(p7s: bytes) -> bytes:
    # a DER SignedData starts with 0x30, so only text that opens with a PEM line is PEM
    if not p7s.lstrip().startswith(PEM_BEGIN):
        return p7s
    try:
        label, _headers, der = pem.unarmor(p7s)
    except ValueError:
        raise CmsError(NOT_SIGNED_DATA) from None
    if label not in PEM_LABELS:
        raise CmsError(NOT_SIGNED_DATA)
    return bytes(der)


def _certificates(
    choices: cms.CertificateSet | core.Void,
) -> tuple[tuple[asn1_x509.Certificate, x509.Certificate], ...]:
    if isinstance(choices, core.Void):
        return ()
    found = []
    for choice in choices:
        if choice.name != "certificate":
            continue  # attribute certificates and others cannot identify a signer
        asn1_certificate = choice.chosen
        try:
            certificate = x509.load_der_x509_certificate(bytes(asn1_certificate.dump()))
        except (ValueError, x509.InvalidVersion):
            raise CmsError(BAD_CERTIFICATE) from None
        found.append((asn1_certificate, certificate))
    return tuple(found)


def _content(inside: bytes | None, given: bytes | None) -> bytes:
    if inside is None:
        if given is None:
            raise CmsError(CONTENT_NEEDED)
        return given
    if given is not None and given != inside:
        raise CmsError(CONTENT_DIFFERS)
    return inside


def _attributes(attributes: cms.CMSAttributes, expected_type: str) -> _Attributes:
    """contentType must be the content's and messageDigest present; others are allowed and
    ignored."""
    content_type = _single_value(attributes, "content_type", required=True)
    if content_type != expected_type:
        raise CmsError(NOT_DATA if expected_type == DATA else CONTENT_TYPE_DIFFERS)
    message_digest = _single_value(attributes, "message_digest", required=True)
    signing_time = _single_value(attributes, "signing_time", required=False)
    if not isinstance(message_digest, bytes):
        raise CmsError("signed attribute message_digest is not an octet string")
    if signing_time is not None and not isinstance(signing_time, datetime.datetime):
        raise CmsError("signed attribute signing_time is not a time")
    return _Attributes(message_digest=message_digest, signing_time=signing_time)


def _single_value(attributes: cms.CMSAttributes, name: str, *, required: bool) -> object:
    """The value of attribute `name`, which RFC 5652 allows once and with a single value."""
    try:
        found = [attribute for attribute in attributes if attribute["type"].native == name]
        if not found:
            if required:
                raise CmsError(f"signed attribute {name} is missing")
            return None
        values = found[0]["values"]
        if len(found) > 1 or len(values) != 1:
            raise CmsError(f"signed attribute {name} must appear once with one value")
        return values[0].native
    except (ValueError, TypeError, KeyError, IndexError, OverflowError):
        raise CmsError(f"signed attribute {name} cannot be read") from None


def _identifies(signer_id: cms.SignerIdentifier, certificate: asn1_x509.Certificate) -> bool:
    """Whether `certificate` is the one the SignerInfo names by issuer+serial or key identifier."""
    try:
        if signer_id.name == "issuer_and_serial_number":
            wanted = signer_id.chosen
            return bool(
                wanted["serial_number"].native == certificate.serial_number
                and wanted["issuer"] == certificate.issuer
            )
        key_id = bytes(signer_id.chosen.native)
        # without the extension, signers fall back to RFC 5280 method 1 (SHA-1 of the key)
        return key_id in (certificate.key_identifier, certificate.public_key.sha1)
    except (ValueError, TypeError, KeyError, IndexError, OverflowError):
        return False


def _signature_padding(
    name: str, parameters: algos.RSASSAPSSParams | core.Asn1Value, digest_name: str
) -> padding.AsymmetricPadding:
    if name == PKCS1_RSA:
        return padding.PKCS1v15()
    if name in PKCS1_WITH_HASH:
        if PKCS1_WITH_HASH[name] != digest_name:
            raise CmsError(ALGORITHMS_DISAGREE)
        return padding.PKCS1v15()
    if name == PSS:
        return _pss_padding(parameters, digest_name)
    raise CmsError(f"unsupported signature algorithm: {name}")


def _pss_padding(
    parameters: algos.RSASSAPSSParams | core.Asn1Value, digest_name: str
) -> padding.PSS:
    # RFC 4056: in CMS the parameters are always present and the hash is the digest algorithm
    if isinstance(parameters, core.Void):
        raise CmsError(BAD_PSS_PARAMETERS)
    try:
        hash_name = parameters["hash_algorithm"]["algorithm"].native
        mask = parameters["mask_gen_algorithm"]
        mask_hash = mask["parameters"]["algorithm"].native
        salt_length = parameters["salt_length"].native
        valid = (
            mask["algorithm"].native == MGF1
            and mask_hash in HASHES
            and parameters["trailer_field"].native == PSS_TRAILER_FIELD
            and isinstance(salt_length, int)
            and salt_length >= 0
        )
    except (ValueError, TypeError, KeyError, IndexError, OverflowError):
        raise CmsError(BAD_PSS_PARAMETERS) from None
    if not valid:
        raise CmsError(BAD_PSS_PARAMETERS)
    if hash_name != digest_name:
        raise CmsError(ALGORITHMS_DISAGREE)
    return padding.PSS(mgf=padding.MGF1(HASHES[mask_hash]()), salt_length=salt_length)


def _verifies(
    certificate: x509.Certificate,
    signature: bytes,
    message: bytes,
    scheme: padding.AsymmetricPadding,
    digest_name: str,
) -> bool:
    public_key = _rsa_public_key(certificate)
    try:
        public_key.verify(signature, message, scheme, HASHES[digest_name]())
    except (InvalidSignature, ValueError):
        return False
    return True
