"""The pytest plugin, installed with the package (entry point `pytest11: jpki`): a test CA, virtual
cards it issued, such cards in the reader of a private pcscd, and the lifecycle clock.

    def test_login_through_a_real_reader_stack(pcsc_card, jpki_ca):
        challenge = new_challenge()
        with PcscConnection(pcsc_card().reader) as connection:
            response = answer_login(JpkiSession(ApduProtocol(connection)), challenge, "1234")
        assert verify_login(challenge, response, jpki_ca.trust_store).identity

- `jpki_ca`: a test CA of the test's own (revocations and rollovers stay in the test), copied
  from one made once per session; `.home` is a $JPKI_HOME holding it in ca/.
- `virtual_card(sample="taro", *, auth_pin=, sign_pin=, settings={...}, file_backed=True)`: a
  fresh `VirtualCard` (transmit, reset, power_off, power_on, path, faults, trace) issued by it.
- `pcsc_card(card="taro", **virtual_card_options)`: a card (or a sample's) in a reader of the
  session's private pcscd (`.reader`, `.card`, `.environment`, `.remove()`, `.insert()`,
  `.restart_reader()`); skipped, with the reason, where a private pcscd cannot run.
- `jpki_clock`: `.set(moment)`, `.advance(days=...)`, `.now()`; $JPKI_NOW follows for `jpki`.

Heavy modules load when a fixture is used, so that this plugin costs pytest nothing elsewhere.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.util
import os
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from card_emulator.transports.vpcd import PORT_VARIABLE, SLOTS
from jpki.testing.pcscd import (
    SOCKET_VARIABLE,
    PcscdError,
    PrivatePcscd,
    missing,
    wait_for,
)

if TYPE_CHECKING:
    from cryptography import x509

    from card_emulator.state.image import CardImage, CardSettings
    from card_emulator.transports.memory import VirtualCard
    from card_emulator.transports.vpcd import VpcdLink
    from jpki.issuer.ca import TestCA
    from jpki.relying_party.verify import TrustStore

CLOCK_VARIABLE = "JPKI_NOW"  # jpki.clock.ENVIRONMENT_VARIABLE, without loading jpki.clock here
HOME_VARIABLE = "JPKI_HOME"
READER_VARIABLE = "JPKI_READER"  # which reader `jpki` commands use
LINK_STOP_TIMEOUT = 10  # seconds for a vpcd link to let go of its reader
PYSCARD_MISSING = "pyscard is not installed: pip install 'jpki-emulator[pcsc]'"

CardFactory = Callable[..., "VirtualCard"]  # virtual_card's value
PcscCardFactory = Callable[..., "PcscCard"]  # pcsc_card's value


# The session's issuer: one CA and one card image per sample and PINs -------------------------


class _Issuer:
    """The session's template CA and the card images it issued, made once and copied per test.

    Creating a CA and provisioning a card both generate RSA keys; copying them costs nothing.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory  # the template CA's directory, made on first use
        self._ca: TestCA | None = None
        self._images: dict[tuple[object, ...], bytes] = {}

    @property
    def ca(self) -> TestCA:
        if self._ca is None:
            from jpki.issuer.ca import TestCA

            # At the real time, whatever a test's clock says: every test shares this CA.
            self._ca = TestCA.create(self.directory, now=datetime.datetime.now(datetime.UTC))
        return self._ca

    @property
    def created(self) -> datetime.datetime:
        """When the CA was made: cards are issued then unless the test's clock is set."""
        return self.ca.authentication.certificate.not_valid_before_utc

    def copy_to(self, directory: Path) -> None:
        self.ca.close()  # ca.sqlite whole in one file, no journal beside it
        shutil.copytree(self.directory, directory)

    def image(
        self, key: tuple[object, ...], issue: Callable[[TestCA], CardImage], own: JpkiCA
    ) -> CardImage:
        """A fresh copy of the image `issue` makes. Once the test's CA is in use, a card new
        to the session is issued by that CA and kept for the test alone: the test's CA then
        records every certificate its cards hold."""
        from card_emulator.state.image import CardImage

        for images in (self._images, own.images):
            if key in images:
                return CardImage.loads(images[key])
        images, ca = (own.images, own.ca) if own.in_use else (self._images, self.ca)
        raw = issue(ca).dumps()
        images[key] = raw
        return CardImage.loads(raw)


@pytest.fixture(scope="session")
def _jpki_issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Issuer]:
    issuer = _Issuer(tmp_path_factory.mktemp("jpki-issuer") / "ca")
    yield issuer
    if issuer._ca is not None:
        issuer._ca.close()


class JpkiCA:
    """The test's CA: a copy of the session's, made when the test first touches it."""

    def __init__(self, issuer: _Issuer, home: Path) -> None:
        self._issuer = issuer
        self._home = home
        self._ca: TestCA | None = None
        self.images: dict[tuple[object, ...], bytes] = {}  # cards it issued itself, as bytes

    @property
    def in_use(self) -> bool:
        return self._ca is not None

    @property
    def ca(self) -> TestCA:
        """The `TestCA` (jpki.issuer.ca): issue, revoke, roll over, build CRLs."""
        if self._ca is None:
            from jpki.issuer.ca import TestCA

            self._issuer.copy_to(self._home / "ca")
            self._ca = TestCA.load(self._home / "ca")
        return self._ca

    @property
    def home(self) -> Path:
        """A $JPKI_HOME whose ca/ holds this CA, as the `jpki` commands expect it."""
        return self.ca.directory.parent

    @property
    def directory(self) -> Path:
        return self.ca.directory

    @property
    def created(self) -> datetime.datetime:
        return self._issuer.created

    @property
    def certificates(self) -> list[x509.Certificate]:
        """The CA certificates of every generation: what a relying party pins."""
        return [
            authority.certificate
            for generation in self.ca.generations
            for authority in generation.authorities
        ]

    @property
    def trust_store(self) -> TrustStore:
        from jpki.relying_party.verify import TrustStore

        return TrustStore(self.certificates)

    @property
    def environment(self) -> dict[str, str]:
        """$JPKI_HOME for `jpki` subprocesses: they trust this CA and issue from it."""
        return {HOME_VARIABLE: str(self.home)}

    def close(self) -> None:
        if self._ca is not None:
            self._ca.close()


@pytest.fixture
def jpki_ca(_jpki_issuer: _Issuer, tmp_path: Path) -> Iterator[JpkiCA]:
    """The test's own test CA (function scope, so that what a test revokes or rolls over stays
    in it), copied from one CA created once per session: the copy costs no key generation."""
    home = tmp_path / "jpki-home"
    home.mkdir()
    authority = JpkiCA(_jpki_issuer, home)
    yield authority
    authority.close()


# The clock -----------------------------------------------------------------------------------


class JpkiClock:
    """The lifecycle clock (jpki.clock) for one test; $JPKI_NOW follows it for subprocesses."""

    def __init__(self) -> None:
        self.is_set = False
        self._environment = os.environ.get(CLOCK_VARIABLE)  # restored after the test

    def set(self, moment: datetime.datetime | str) -> datetime.datetime:
        """Start the clock at `moment` (ISO 8601 text or a datetime; without an offset, UTC)."""
        from jpki import clock

        if isinstance(moment, str):
            moment = clock.parse_time(moment)
        elif moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.UTC)
        clock.set_now(moment)
        os.environ[CLOCK_VARIABLE] = moment.isoformat()
        self.is_set = True
        return moment

    def advance(self, delta: datetime.timedelta | None = None, **units: float) -> datetime.datetime:
        """Move the clock on by `delta` or by timedelta's units (days=, hours=, ...)."""
        step = delta if delta is not None else datetime.timedelta(**units)
        return self.set(self.now() + step)

    def now(self) -> datetime.datetime:
        from jpki import clock

        return clock.now()

    def restore(self) -> None:
        """The clock as it was: $JPKI_NOW as before the test, else the system's time."""
        from jpki import clock

        if self._environment is None:
            os.environ.pop(CLOCK_VARIABLE, None)
        else:
            os.environ[CLOCK_VARIABLE] = self._environment
        clock.set_now(None)  # read from $JPKI_NOW again, if set
        self.is_set = False


@pytest.fixture
def jpki_clock() -> Iterator[JpkiClock]:
    """Set and advance the time the issuer, the relying party and `jpki` see; undone after."""
    controller = JpkiClock()
    yield controller
    controller.restore()


# Virtual cards -------------------------------------------------------------------------------


def _with_pins(
    image: CardImage, sample: str, pins: Mapping[str, str], auth: str | None, sign: str | None
) -> None:
    """Give the issued sample's card other PINs: `auth` replaces the authentication PIN and
    the card-info, 住基 and common PINs that have its value (as issuance defaults them to it),
    `sign` the signature password."""
    from card_emulator.vocabulary.pins import Pin
    from jpki.issuer.provision import application_name, check_pin

    wanted: dict[Pin, str] = {}
    if auth is not None:
        check_pin(Pin.AUTH, auth)
        old = pins[Pin.AUTH.key]
        for pin in (Pin.AUTH, Pin.CARD_INFO, Pin.JUKI, Pin.COMMON):
            if pins.get(pin.key, old) == old:
                wanted[pin] = auth
    if sign is not None:
        if Pin.SIGN.key not in pins:
            raise ValueError(f"sample {sample!r} has no signature password to set")
        check_pin(Pin.SIGN, sign)
        wanted[Pin.SIGN] = sign
    for pin, value in wanted.items():
        image.contents(application_name(pin)).pins[pin.fid].replace(value.encode())


def _settings(image: CardImage, settings: CardSettings | Mapping[str, Any]) -> None:
    """As `jpki card settings` changes them: retry limits move the counters with them."""
    from card_emulator.state.image import CardSettings

    if not isinstance(settings, CardSettings):
        unknown = [name for name in settings if not hasattr(image.settings, name)]
        if unknown:
            raise AttributeError(f"no card setting {', '.join(map(repr, unknown))}")
        settings = dataclasses.replace(image.settings, **settings)
    image.change_settings(settings.checked())


@pytest.fixture
def virtual_card(
    _jpki_issuer: _Issuer, jpki_ca: JpkiCA, jpki_clock: JpkiClock, tmp_path: Path
) -> Iterator[CardFactory]:
    """A factory of fresh virtual cards issued by `jpki_ca`, closed after the test:

    virtual_card(sample="taro", *, auth_pin=None, sign_pin=None, settings=None,
                 file_backed=True) -> VirtualCard

    `sample` is one of `jpki card samples` (PINs 1234 and ABC123 unless given); `settings` are
    card settings by name (CardSettings fields) or a CardSettings; a file-backed card lives in
    the test's temporary directory (`card.path`), an in-memory one writes nothing. Cards are
    issued when the CA was made, or at `jpki_clock`'s time if the test set it.
    """
    cards: list[VirtualCard] = []

    def make(
        sample: str = "taro",
        *,
        auth_pin: str | None = None,
        sign_pin: str | None = None,
        settings: CardSettings | Mapping[str, Any] | None = None,
        file_backed: bool = True,
    ) -> VirtualCard:
        from card_emulator.state.store import FileStore
        from card_emulator.transports.memory import VirtualCard
        from jpki.issuer.samples import sample_named

        try:
            chosen = sample_named(sample)
        except KeyError:
            raise ValueError(f"no sample {sample!r} (`jpki card samples` lists them)") from None
        moment = jpki_clock.now() if jpki_clock.is_set else _jpki_issuer.created
        moment = moment.replace(microsecond=0)
        pins: Mapping[str, str] = chosen.state(moment.date())["pins"]  # type: ignore[assignment]

        def issue(ca: TestCA) -> CardImage:
            image = chosen.issue(ca, moment)
            _with_pins(image, sample, pins, auth_pin, sign_pin)
            return image

        image = _jpki_issuer.image((sample, auth_pin, sign_pin, moment), issue, jpki_ca)
        if settings is not None:
            _settings(image, settings)
        if file_backed:
            path = tmp_path / f"{sample}.json"
            number = 1
            while path.exists():
                number += 1
                path = tmp_path / f"{sample}-{number}.json"
            FileStore.create(path, image)
            card = VirtualCard.open(path)
        else:
            card = VirtualCard.in_memory(image)
        cards.append(card)
        return card

    yield make
    for card in cards:
        card.close()


# Cards in a private pcscd --------------------------------------------------------------------


def _pyscard_missing() -> str | None:
    return None if importlib.util.find_spec("smartcard") else PYSCARD_MISSING


@pytest.fixture(scope="session")
def jpki_pcscd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivatePcscd]:
    """The session's private pcscd (one socket path for the whole session: libpcsclite reads
    $PCSCLITE_CSOCK_NAME once per process, so it is set here before any PC/SC call)."""
    reason = missing() or _pyscard_missing()
    if reason is not None:
        pytest.skip(f"no private pcscd here: {reason}")
    daemon = PrivatePcscd(tmp_path_factory.mktemp("pcscd"))
    previous = {name: os.environ.get(name) for name in (SOCKET_VARIABLE, PORT_VARIABLE)}
    os.environ.update(daemon.environment())  # the socket, before this process's first PC/SC call
    try:
        daemon.start()
        daemon.check_reached()
    except PcscdError as error:
        failure: str | None = str(error)
    else:
        failure = None
        os.environ.update(daemon.environment())  # and the port, for `jpki serve` in subprocesses
        yield daemon
    daemon.stop()
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    if failure is not None:
        pytest.fail(failure, pytrace=False)


class PcscCard:
    """A virtual card in a reader of the session's private pcscd, served from this process."""

    def __init__(
        self,
        card: VirtualCard,
        reader: str,
        pcscd: PrivatePcscd,
        link: VpcdLink,
        ca: JpkiCA,
        served: list[PcscCard],
    ) -> None:
        self.card = card  # the VirtualCard: its faults, trace and counters act on what is served
        self.reader = reader
        self.pcscd = pcscd
        self.link = link
        self._ca = ca
        self._served = served  # every card of the test: a restarted pcscd must see them all
        self._events = -1  # the reader's event count when pcscd last saw the card

    @property
    def environment(self) -> dict[str, str]:
        """The environment for a subprocess that uses this card: pkcs11-tool, opensc-tool, or
        `jpki` (its $JPKI_READER is this reader, its $JPKI_HOME the test's CA)."""
        return {
            **os.environ,
            **self.pcscd.environment(),
            READER_VARIABLE: self.reader,
            **self._ca.environment,
        }

    def remove(self) -> None:
        """Pull the card out; returns once pcscd has seen it go."""
        self.card.remove()
        self.wait(present=False)

    def insert(self) -> None:
        """Put the card back (also after a fault took it out); returns once pcscd sees it."""
        if not self.card.inserted:
            self.wait(present=False)  # pcscd must see it go first, or it never sees it return
        self.card.insert()
        self.wait(present=True)

    def restart_reader(self) -> None:
        """The reader disappears and comes back (pcscd restarts): clients' handles and contexts
        fail; returns once pcscd sees the inserted cards again."""
        self.pcscd.restart()
        for served in self._served:
            served._events = -1  # a new pcscd counts from 0
            if served.card.inserted:
                served.wait(present=True)

    def wait(self, present: bool, timeout: float = 10) -> None:
        """Block until pcscd reports the card in the reader (present), or until its poll of
        the reader has seen the card leave (not present)."""
        if present:
            self._events = wait_for(self.reader, True, timeout)
        else:
            wait_for(self.reader, False, timeout, newer_than=self._events)


@pytest.fixture
def pcsc_card(
    jpki_pcscd: PrivatePcscd, virtual_card: CardFactory, jpki_ca: JpkiCA
) -> Iterator[PcscCardFactory]:
    """A factory that puts a card in a reader of the session's private pcscd:

    pcsc_card(card="taro", **virtual_card_options) -> PcscCard

    `card` is a card from `virtual_card` (its faults then act on the served card), or the
    sample name of one to make with the options. Returns once pyscard sees the card; two cards
    at most (the reader's two slots).
    """
    from card_emulator.transports.vpcd import VpcdLink

    served: list[PcscCard] = []
    threads: list[threading.Thread] = []

    def serve(card: VirtualCard | str | None = None, **options: Any) -> PcscCard:
        if len(served) == SLOTS:
            raise ValueError(f"the private pcscd's reader has {SLOTS} slots, both in use")
        if card is None or isinstance(card, str):
            card = virtual_card(card or "taro", **options)
        elif options:
            raise TypeError("give a card or the options to make one, not both")
        assert jpki_pcscd.port is not None
        slot = len(served)
        link = VpcdLink(card, "127.0.0.1", jpki_pcscd.port + slot)
        thread = threading.Thread(target=link.serve_forever, name=f"vpcd slot {slot}", daemon=True)
        thread.start()
        threads.append(thread)
        entry = PcscCard(card, jpki_pcscd.readers[slot], jpki_pcscd, link, jpki_ca, served)
        served.append(entry)
        entry.wait(present=True)
        return entry

    yield serve
    for entry in served:
        entry.link.stop()
    for thread in threads:
        thread.join(LINK_STOP_TIMEOUT)
    if jpki_pcscd.process is None:  # the test stopped it: the next tests need it
        jpki_pcscd.start()
        return
    for entry in served:  # so that the next card in this slot is a new card to pcscd
        entry.wait(present=False)
