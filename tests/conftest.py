"""Shared test material: the committed fixture cards and CA, loaded without generating keys."""

from __future__ import annotations

import dataclasses
import datetime
import functools
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import pytest
from cryptography import x509

from card_emulator.state.store import read_image
from card_emulator.transports.memory import VirtualCard

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
CARDS = FIXTURES / "cards"
CA_DIR = FIXTURES / "ca"
AUTH_PIN = b"1234"
SIGN_PIN = b"ABC123"

CardFactory = Callable[..., VirtualCard]


def _fixture_valid_at() -> datetime.datetime:
    """A day after the fixture card taro was issued: its certificates and the fixture CA are
    valid then. Tests check fixture material at this moment, never on today's date."""
    der = read_image(CARDS / "taro.json").contents("jpki").files[0x0001]
    return x509.load_der_x509_certificate(der).not_valid_before_utc + datetime.timedelta(days=1)


FIXTURE_VALID_AT = _fixture_valid_at()

# Needs a test declares with a marker (registered in pyproject.toml). Unmet, the test is skipped
# with the reason; a need named in $JPKI_TEST_REQUIRE (comma-separated, or "all") fails instead,
# so that CI, which provides everything, cannot pass by skipping.
REQUIRE_VARIABLE = "JPKI_TEST_REQUIRE"


def _root_missing() -> str | None:
    if os.geteuid() == 0:
        return None
    return "needs root (CI runs as root)"


def _openssl_missing() -> str | None:
    return None if shutil.which("openssl") else "the openssl command is not installed"


def _tesseract_missing() -> str | None:
    if not shutil.which("tesseract"):
        return "the tesseract command is not installed (Debian: tesseract-ocr tesseract-ocr-jpn)"
    languages = subprocess.run(
        ["tesseract", "--list-langs"], capture_output=True, text=True, check=False
    ).stdout.split()
    if "jpn" not in languages:
        return "tesseract has no Japanese data (Debian: tesseract-ocr-jpn)"
    return None


def _browser_missing() -> str | None:
    """Debian's headless Chromium, its driver and selenium, for the card panel's tests."""
    missing = [name for name in ("chromium", "chromedriver") if shutil.which(name) is None]
    if missing:
        return f"missing {', '.join(missing)}: run scripts/test, which installs them"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: pip install -e '.[test]'"
    return None


def _reader_stack_missing() -> str | None:
    from tests.pcsc.harness import reader_stack_missing  # the PC/SC harness knows its parts

    return reader_stack_missing()


NEEDS: dict[str, Callable[[], str | None]] = {
    "root": functools.cache(_root_missing),
    "openssl": functools.cache(_openssl_missing),
    "tesseract": functools.cache(_tesseract_missing),
    "reader_stack": functools.cache(_reader_stack_missing),
    "browser": functools.cache(_browser_missing),
}


def unmet(need: str, reason: str) -> NoReturn:
    """Skip the test for an unmet need, or fail it when $JPKI_TEST_REQUIRE names the need."""
    required = {name.strip() for name in os.environ.get(REQUIRE_VARIABLE, "").split(",")}
    if need in required or "all" in required:
        pytest.fail(f"{reason} (and ${REQUIRE_VARIABLE} requires {need})", pytrace=False)
    pytest.skip(reason)


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in item.iter_markers():
        check = NEEDS.get(marker.name)
        reason = check() if check else None
        if reason:
            unmet(marker.name, reason)


@pytest.fixture
def make_card() -> CardFactory:
    """An in-memory copy of a fixture card, with optional setting overrides."""

    def make(name: str = "taro", **settings: Any) -> VirtualCard:
        image = read_image(CARDS / f"{name}.json")
        for key in settings:
            if not hasattr(image.settings, key):
                raise AttributeError(f"no card setting {key!r}")
        # As `jpki card settings` changes them: retry limits move the counters with them.
        image.change_settings(dataclasses.replace(image.settings, **settings).checked())
        card = VirtualCard.in_memory(image)
        card.power_off()
        card.power_on()  # settings such as the ATR apply from this power-up
        return card

    return make


@pytest.fixture
def card(make_card: CardFactory) -> VirtualCard:
    return make_card()
