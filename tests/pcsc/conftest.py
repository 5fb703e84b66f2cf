"""PC/SC fixtures: the session's private pcscd (the pytest plugin's), and a fixture card served
per test."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from jpki.testing.pcscd import PrivatePcscd
from tests.conftest import CARDS, NEEDS, unmet
from tests.pcsc.harness import ServedCard


@pytest.fixture(scope="session")
def pcscd(request: pytest.FixtureRequest) -> PrivatePcscd:
    """The plugin's `jpki_pcscd`, once this machine is known to have the whole reader stack
    (unmet, the test fails where $JPKI_TEST_REQUIRE asks for it, rather than skipping)."""
    reason = NEEDS["reader_stack"]() or PrivatePcscd.missing()
    if reason:
        unmet("reader_stack", reason)
    daemon: PrivatePcscd = request.getfixturevalue("jpki_pcscd")
    return daemon


@pytest.fixture
def card_file(tmp_path: Path) -> Path:
    path = tmp_path / "taro.json"
    shutil.copyfile(CARDS / "taro.json", path)
    return path


@pytest.fixture
def jpki_home(tmp_path: Path) -> Path:
    """$JPKI_HOME of a served card: the fixture card taro as its default card."""
    home = tmp_path / "jpki-home"
    home.mkdir()
    shutil.copyfile(CARDS / "taro.json", home / "card.json")
    return home


@pytest.fixture
def served(pcscd: PrivatePcscd, card_file: Path) -> Iterator[ServedCard]:
    with ServedCard(card_file) as card:
        yield card
