"""The one registry of applications, used by the command engine and by the image loader."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from card_emulator.applications.card_face import CARD_FACE
from card_emulator.applications.card_info import CARD_INFO
from card_emulator.applications.card_level import CARD_LEVEL
from card_emulator.applications.jpki import JPKI
from card_emulator.applications.model import Application
from card_emulator.applications.resident_registry import COMMON, RESIDENT_REGISTRY
from card_emulator.vocabulary.pins import Pin


class ApplicationRegistry:
    """Applications by name (as card images store them) and by AID (as SELECT names them)."""

    def __init__(self, applications: Iterable[Application]) -> None:
        self._by_name = {application.name: application for application in applications}
        self._by_aid = {app.aid: app for app in self._by_name.values() if app.aid}
        self._pins = {(self.of(pin).name, pin.fid): pin for pin in Pin}

    def by_name(self, name: str) -> Application | None:
        return self._by_name.get(name)

    def by_aid(self, aid: bytes) -> Application | None:
        """The application selected by `aid`; an AID not listed here answers 6A82."""
        return self._by_aid.get(aid)

    def by_aid_prefix(self, prefix: bytes) -> Application | None:
        """The first application whose AID starts with `prefix` (a setting; off by default)."""
        return next((app for aid, app in self._by_aid.items() if aid.startswith(prefix)), None)

    def of(self, pin: Pin) -> Application:
        """The application a holder's PIN lives in."""
        application = self.by_aid(pin.application.value)
        assert application is not None, pin
        return application

    def pin_at(self, application: str, fid: int) -> Pin | None:
        """The holder's PIN in that application's EF, if it is one (card-info's dead EF 0012
        is not)."""
        return self._pins.get((application, fid))

    def __iter__(self) -> Iterator[Application]:
        return iter(self._by_name.values())


APPLICATIONS = ApplicationRegistry(
    (JPKI, CARD_INFO, CARD_FACE, RESIDENT_REGISTRY, COMMON, CARD_LEVEL)
)
CARD_LEVEL_NAME = CARD_LEVEL.name
