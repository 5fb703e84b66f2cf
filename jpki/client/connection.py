"""Connections: the one thing the host code needs from a card is `transmit(bytes) -> bytes`.

A card in a PC/SC reader (real, or served with `jpki serve`) and a virtual card in this process
(`card_emulator.VirtualCard` has `transmit` and `close`) both fit here, so every layer above
works the same against either.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from types import TracebackType
from typing import Protocol, Self

from jpki.client.errors import CardConnectionError, CardRemovedError


class Connection(Protocol):
    """A card session: send a command APDU, get the response APDU (data + SW)."""

    def transmit(self, apdu: bytes) -> bytes: ...

    def close(self) -> None: ...


class ClosesOnExit:
    """`with connection:` closes it."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class InProcessCard(Protocol):
    """What a card object in this process offers (`card_emulator.VirtualCard` does)."""

    def transmit(self, apdu: bytes) -> bytes: ...

    def reset(self) -> bytes: ...

    def power_off(self) -> None: ...

    def power_on(self) -> bytes: ...

    def close(self) -> None: ...


class InProcessConnection(ClosesOnExit):
    """A card object in this process (a virtual card); a card without power is a removed card."""

    def __init__(self, card: InProcessCard) -> None:
        self.card = card

    def reset(self) -> bytes:
        """Warm reset; returns the ATR."""
        return self.card.reset()

    def power_cycle(self) -> bytes:
        """Power off and on again; returns the ATR."""
        self.card.power_off()
        return self.card.power_on()

    def transmit(self, apdu: bytes) -> bytes:
        try:
            return self.card.transmit(apdu)
        except ConnectionError:
            raise CardRemovedError("the card was removed") from None

    def close(self) -> None:
        self.card.close()


class PcscConnection(ClosesOnExit):
    """A card in a PC/SC reader, through pyscard (a real card or one served with `jpki serve`)."""

    def __init__(self, reader: str | None = None) -> None:
        try:
            from smartcard.Exceptions import CardConnectionException, NoCardException
            from smartcard.System import readers
        except ImportError:
            raise CardConnectionError(
                "PC/SC needs pyscard: pip install 'jpki-emulator[pcsc]'"
            ) from None
        self._errors: tuple[type[Exception], ...] = (CardConnectionException, NoCardException)
        try:
            available = readers()
        except Exception as error:  # noqa: BLE001 - pyscard raises several kinds when pcscd is down
            raise CardConnectionError(
                f"PC/SC is not available ({error}); is pcscd running?"
            ) from None
        self.reader_name = choose_reader([str(r) for r in available], reader, reader_status)
        chosen = next(r for r in available if str(r) == self.reader_name)
        self._connection = chosen.createConnection()
        try:
            self._connection.connect()
        except self._errors as error:
            raise CardConnectionError(f"no card in reader '{self.reader_name}' ({error})") from None

    def _reconnect(self, disposition: str) -> bytes:
        from smartcard import scard

        try:
            self._connection.reconnect(disposition=getattr(scard, disposition))
            return bytes(self._connection.getATR())
        except self._errors as error:
            raise CardRemovedError(
                f"the card was removed from '{self.reader_name}' ({error})"
            ) from None

    def reset(self) -> bytes:
        """Warm reset; returns the ATR."""
        return self._reconnect("SCARD_RESET_CARD")

    def power_cycle(self) -> bytes:
        """Power off and on again; returns the ATR."""
        return self._reconnect("SCARD_UNPOWER_CARD")

    def transmit(self, apdu: bytes) -> bytes:
        try:
            data, sw1, sw2 = self._connection.transmit(list(apdu))
        except self._errors as error:
            raise CardRemovedError(
                f"the card was removed from '{self.reader_name}' ({error})"
            ) from None
        return bytes(data) + bytes([sw1, sw2])

    def close(self) -> None:
        with contextlib.suppress(*self._errors):  # the card may be gone already
            self._connection.disconnect()


def reader_status(name: str) -> bool:
    """Whether pcscd sees a card in the reader `name`."""
    from smartcard import scard

    result, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if result != scard.SCARD_S_SUCCESS:
        return False
    try:
        result, states = scard.SCardGetStatusChange(context, 0, [(name, scard.SCARD_STATE_UNAWARE)])
        return result == scard.SCARD_S_SUCCESS and bool(states[0][1] & scard.SCARD_STATE_PRESENT)
    finally:
        scard.SCardReleaseContext(context)


def list_readers() -> list[tuple[str, bool]]:
    """Every PC/SC reader and whether it holds a card."""
    try:
        from smartcard.System import readers
    except ImportError:
        raise CardConnectionError(
            "PC/SC needs pyscard: pip install 'jpki-emulator[pcsc]'"
        ) from None
    try:
        names = [str(r) for r in readers()]
    except Exception as error:  # noqa: BLE001 - pyscard raises several kinds when pcscd is down
        raise CardConnectionError(f"PC/SC is not available ({error}); is pcscd running?") from None
    return [(name, reader_status(name)) for name in names]


def choose_reader(names: list[str], wanted: str | None, has_card: Callable[[str], bool]) -> str:
    """The reader named exactly or by a unique substring; by default the only one with a card."""
    if not names:
        raise CardConnectionError("no PC/SC reader found")
    if wanted:
        if wanted in names:
            return wanted
        matches = [name for name in names if wanted.lower() in name.lower()]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise CardConnectionError(f"no reader matches '{wanted}' (readers: {', '.join(names)})")
        raise CardConnectionError(f"'{wanted}' matches several readers: {', '.join(matches)}")
    with_card = [name for name in names if has_card(name)]
    if len(with_card) == 1:
        return with_card[0]
    if not with_card:
        raise CardConnectionError(f"no card in any reader ({', '.join(names)})")
    raise CardConnectionError(
        f"cards in several readers, choose one with --reader: {', '.join(with_card)}"
    )
