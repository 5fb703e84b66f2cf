"""Where the CLI keeps its data: `$JPKI_HOME` (default `~/.jpki`): the test CA and default card."""

from __future__ import annotations

import os
from pathlib import Path


def jpki_home() -> Path:
    return Path(os.environ.get("JPKI_HOME") or Path.home() / ".jpki")


def default_card_path() -> Path:
    return jpki_home() / "card.json"


def ca_directory() -> Path:
    return jpki_home() / "ca"
