"""見本カード: named holders and card states that break real systems, one command away.

`jpki card create --sample NAME` issues one; `fixtures/generate.py` writes every one of them
for the tests. Every sample has the authentication PIN 1234 and, aged 15 or more, the signature
password ABC123 (the card-info, 住基 and common PINs are 1234 too, except on `different-pins`);
the security code on the face is 2285, so 照合番号B is the era birth date, the card's expiry year
and 2285 (`jpki card info` shows the expiry).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography import x509

from card_emulator.applications.jpki import JPKI
from card_emulator.state.image import CardImage, CardSettings
from card_emulator.vocabulary.keys import Certificate
from card_emulator.vocabulary.pins import Pin
from jpki.issuer.ca import RevocationReason, TestCA
from jpki.issuer.holder import UNKNOWN_ERA, Holder, Sex, with_check_digit
from jpki.issuer.provision import (
    SIGNATURE_CERTIFICATE_MIN_AGE,
    application_name,
    provision_card,
)

AUTH_PIN = "1234"
SIGN_PIN = "ABC123"
SECURITY_CODE = "2285"  # printed on every sample's face (the J-LIS test card's code)
CHILD_AGE = 8  # years on the day the card is made: under 15, so no signature certificate
EXPIRED_YEARS_AGO = 6  # issued so long ago that the certificates (five birthdays) have expired
# The card's own state after issuance, beside its holder.
CERTIFICATES_VALID, CERTIFICATES_EXPIRED, CERTIFICATES_REVOKED, CERTIFICATES_NONE = (
    "valid", "expired", "revoked", "none",
)  # fmt: skip


def years_before(day: datetime.date, years: int) -> datetime.date:
    """The same calendar day `years` earlier (February 29 becomes February 28)."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return day.replace(year=day.year - years, day=28)


def _holder(**values: object) -> Callable[[datetime.date], Holder]:
    return lambda _issued: Holder(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Sample:
    name: str
    description: str
    holder: Callable[[datetime.date], Holder]  # given the issuance day (a child stays a child)
    pins: dict[Pin, str] = field(default_factory=dict)  # beyond AUTH_PIN / SIGN_PIN
    locked: tuple[Pin, ...] = ()
    certificates: str = CERTIFICATES_VALID
    attributes_header: str = "short"

    def state(self, issued: datetime.date) -> dict[str, object]:
        """What is special about the card issued on `issued`, as `jpki card samples --json`
        shows it: the PINs it has (none of them locked unless listed), its certificates."""
        return {
            "locked": [pin.key for pin in self.locked],
            "certificates": self.certificates,
            "attributes_header": self.attributes_header,
            "pins": {pin.key: value for pin, value in self._all_pins(issued).items()},
        }

    def _all_pins(self, issued: datetime.date) -> dict[Pin, str]:
        pins = {Pin.AUTH: AUTH_PIN, **self.pins}
        adult = self.holder(issued).age_on(issued) >= SIGNATURE_CERTIFICATE_MIN_AGE
        if adult and self.certificates != CERTIFICATES_NONE:
            pins[Pin.SIGN] = SIGN_PIN
        return pins

    def issue(
        self,
        ca: TestCA,
        now: datetime.datetime,
        *,
        settings: CardSettings | None = None,
        forged: str | None = None,
    ) -> CardImage:
        """The sample's card, issued by `ca` as of `now` (expired samples years before)."""
        issued = now
        if self.certificates == CERTIFICATES_EXPIRED:
            issued = datetime.datetime.combine(
                years_before(now.date(), EXPIRED_YEARS_AGO), now.timetz()
            )
        pins = self._all_pins(issued.date())
        image = provision_card(
            ca,
            self.holder(issued.date()),
            pins[Pin.AUTH],
            pins.get(Pin.SIGN),
            now=issued,
            card_info_pin=pins.get(Pin.CARD_INFO),
            juki_pin=pins.get(Pin.JUKI),
            common_pin=pins.get(Pin.COMMON),
            security_code=SECURITY_CODE,
            attributes_header=self.attributes_header,
            with_certificates=self.certificates != CERTIFICATES_NONE,
            settings=settings,
            forged=forged,
        )
        if self.certificates == CERTIFICATES_REVOKED:
            jpki = image.contents(JPKI.name)
            for certificate in (Certificate.AUTH, Certificate.SIGN):
                der = jpki.files.get(certificate.fid)
                if der is not None:
                    serial = x509.load_der_x509_certificate(der).serial_number
                    ca.revoke(serial, RevocationReason.KEY_COMPROMISE, when=now)
        for pin in self.locked:
            image.contents(application_name(pin)).pins[pin.fid].tries_left = 0
        image.metadata["sample"] = self.name
        return image


TARO = dict(
    name="番号　太郎",
    birth_date=datetime.date(1980, 2, 17),
    sex=Sex.MALE,
    address="東京都渋谷区神南一丁目１９番１１号",
    my_number="123456789018",
)

ADDRESS_200 = ("東京都千代田区千代田１番１号" + "皇居外苑前広場東側通路沿い" * 15)[:200]
LONG_NAME = "寿限無寿限無五劫の擦り切れ海砂利水魚　水行末雲来末風来末食う寝る処に住む処やぶら小路"

SAMPLES: tuple[Sample, ...] = (
    Sample("taro", "an ordinary adult, born in Showa", _holder(**TARO)),
    Sample(
        "hanako-long-address",
        "143-character address with full-width digits; 𠮷 outside JIS X 0208; leap-day birthday",
        _holder(
            name="𠮷田　花子",
            birth_date=datetime.date(1992, 2, 29),
            sex=Sex.FEMALE,
            address=(
                "北海道札幌市中央区北一条西二丁目１番地１２３４５６７８９０"
                "札幌市役所本庁舎第一別館東棟十二階南側廊下突き当たり右手奥"
                "住民記録担当窓口隣接事務室内第三書庫前通路沿い南向き区画"
                "１２３番地の４５６号室から北へ徒歩三分の場所にある建物の"
                "二階にある小さな会議室の隣の部屋の奥にある倉庫の中の棚の上"
            ),
            my_number="987654321000",
            prefecture="Hokkaido",
            municipality="Sapporo-shi Chuo-ku",
            municipality_code="01101",
        ),
    ),
    Sample(
        "unknown-era",
        "Roman-letter name, birth date with no Japanese era, sex not applicable",
        _holder(
            name="SMITH　JOHN",
            birth_date=datetime.date(1965, 7, 4),
            sex=Sex.NOT_APPLICABLE,
            address="大阪府大阪市北区中之島一丁目３番２０号",
            my_number="111122223333",
            prefecture="Osaka-fu",
            municipality="Osaka-shi Kita-ku",
            municipality_code="27127",
            birth_era=UNKNOWN_ERA,
        ),
    ),
    Sample(
        "child",
        f"{CHILD_AGE} years old: authentication certificate only, no signature key or password",
        lambda issued: Holder(
            name="番号　次郎",
            birth_date=years_before(issued, CHILD_AGE),
            sex=Sex.MALE,
            address="東京都渋谷区神南一丁目１９番１１号",
            my_number="555566667772",
        ),
    ),
    Sample(
        "address-200",
        "a 200-character address",
        _holder(
            **{
                **TARO,
                "name": "長住　所子",
                "sex": Sex.FEMALE,
                "my_number": with_check_digit("20000000000"),
                "address": ADDRESS_200,
            }
        ),
    ),
    Sample(
        "former-surname",
        "a former surname (旧氏) in brackets after the name, as after a marriage",
        _holder(
            **{
                **TARO,
                "name": "山田　花子［佐藤］",
                "sex": Sex.FEMALE,
                "my_number": with_check_digit("30000000000"),
            }
        ),  # fmt: skip
    ),
    Sample(
        "foreign-resident",
        "a foreign resident: Roman-letter name with a middle name, Gregorian birth date",
        _holder(
            name="NGUYEN　VAN AN",
            birth_date=datetime.date(1995, 3, 5),
            sex=Sex.MALE,
            address="愛知県名古屋市中区三の丸三丁目１番１号",
            my_number=with_check_digit("40000000000"),
            prefecture="Aichi-ken",
            municipality="Nagoya-shi Naka-ku",
            municipality_code="23106",
            birth_era=UNKNOWN_ERA,
        ),
    ),
    Sample(
        "full-width-digits",
        "full-width digits and hyphens in the address (１２３－４５)",
        _holder(
            **{
                **TARO,
                "address": "東京都新宿区西新宿２－８－１　都庁第一本庁舎３２階",
                "my_number": with_check_digit("50000000000"),
            }
        ),  # fmt: skip
    ),
    Sample(
        "long-name",
        f"a {len(LONG_NAME)}-character name",
        _holder(**{**TARO, "my_number": with_check_digit("60000000000"), "name": LONG_NAME}),
    ),
    Sample(
        "long-header",
        "the attributes EF with the long header FF 20 82 00 LL (cards from about 2023)",
        _holder(**TARO),
        attributes_header="long",
    ),
    Sample("auth-locked", "authentication PIN locked", _holder(**TARO), locked=(Pin.AUTH,)),
    Sample("sign-locked", "signature password locked", _holder(**TARO), locked=(Pin.SIGN,)),
    Sample(
        "collation-b-locked",
        "照合番号B locked, in the card-info and the card-face APs",
        _holder(**TARO),
        locked=(Pin.CARD_INFO_B, Pin.FACE_B),
    ),
    Sample(
        "different-pins",
        "a different PIN per application: card-info 5678, 住基 2468, common 1357",
        _holder(**TARO),
        pins={Pin.CARD_INFO: "5678", Pin.JUKI: "2468", Pin.COMMON: "1357"},
    ),
    Sample(
        "expired",
        f"issued {EXPIRED_YEARS_AGO} years ago: both certificates have expired",
        _holder(**TARO),
        certificates=CERTIFICATES_EXPIRED,
    ),
    Sample(
        "revoked",
        "both certificates revoked (keyCompromise) by the issuing test CA",
        _holder(**TARO),
        certificates=CERTIFICATES_REVOKED,
    ),
    Sample(
        "no-certificates",
        "a holder who declined the JPKI certificates: no keys or certificates (EF 0008 00 00 00)",
        _holder(**TARO),
        certificates=CERTIFICATES_NONE,
    ),
)


def sample_named(name: str) -> Sample:
    found = next((sample for sample in SAMPLES if sample.name == name), None)
    if found is None:
        raise KeyError(name)
    return found
