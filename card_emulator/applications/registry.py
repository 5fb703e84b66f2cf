"""The one registry of applications, used by the command engine and by the image loader."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from card_emulator.applications.card_face import CARD_FACE
from card_emulator.applications.card_info import CARD_INFO
from card_emulator.applications.card_level import CARD_LEVEL
from card_emulator.applications.jpki import JPKI
from card_emulator.applications.model import Application
from card_emulator.applications.resident_registry import COMMON, RESIDENT_REGISTRY


class ApplicationRegistry:
    """Applications by name (as card images store them) and by AID (as SELECT names them)."""

    def __init__(self, applications: Iterable[Application]) -> None:
        self._by_name = {application.name: application for application in applications}
        self._by_aid = {app.aid: app for app in self._by_name.values() if app.aid}

    def by_name(self, name: str) -> Application | None:
        return self._by_name.get(name)

    def by_aid(self, aid: bytes) -> Application | None:
        """The application selected by `aid`; an AID not listed here answers 6A82."""
        return self._by_aid.get(aid)

    def by_aid_prefix(self, prefix: bytes) -> Application | None:
        """The first application whose AID starts with `prefix` (a setting; off by default)."""
        return next((app for aid, app in self._by_aid.items() if aid.startswith(prefix)), None)

    def __iter__(self) -> Iterator[Application]:
        return iter(self._by_name.values())


APPLICATIONS = ApplicationRegistry(
    (JPKI, CARD_INFO, CARD_FACE, RESIDENT_REGISTRY, COMMON, CARD_LEVEL)
)
CARD_LEVEL_NAME = CARD_LEVEL.name
