"""Shared test material: the committed fixture cards and CA, loaded without generating keys."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from card_emulator.state.store import read_image
from card_emulator.transports.memory import VirtualCard

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
CARDS = FIXTURES / "cards"
CA_DIR = FIXTURES / "ca"
AUTH_PIN = b"1234"
SIGN_PIN = b"ABC123"

CardFactory = Callable[..., VirtualCard]


@pytest.fixture
def make_card() -> CardFactory:
    """An in-memory copy of a fixture card, with optional setting overrides."""

    def make(name: str = "taro", **settings: object) -> VirtualCard:
        image = read_image(CARDS / f"{name}.json")
        for key, value in settings.items():
            if not hasattr(image.settings, key):
                raise AttributeError(f"no card setting {key!r}")
            setattr(image.settings, key, value)
        card = VirtualCard.in_memory(image)
        card.power_off()
        card.power_on()  # settings such as the ATR apply from this power-up
        return card

    return make


@pytest.fixture
def card(make_card: CardFactory) -> VirtualCard:
    return make_card()
