"""The one registry of applications, used by the command engine and by the image loader."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from card_emulator.applications.card_info import CARD_INFO
from card_emulator.applications.jpki import JPKI
from card_emulator.applications.model import Application


class ApplicationRegistry:
    """Applications by name (as card images store them) and by AID (as SELECT names them)."""

    def __init__(self, applications: Iterable[Application]) -> None:
        self._by_name = {application.name: application for application in applications}

    def by_name(self, name: str) -> Application | None:
        return self._by_name.get(name)

    def by_aid(self, aid: bytes) -> Application | None:
        """The application selected by `aid`; an AID not listed here answers 6A82."""
        return next((app for app in self._by_name.values() if app.aid == aid), None)

    def __iter__(self) -> Iterator[Application]:
        return iter(self._by_name.values())


APPLICATIONS = ApplicationRegistry((JPKI, CARD_INFO))
