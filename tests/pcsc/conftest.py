"""PC/SC fixtures: a private pcscd for the session, and a fixture card served per test."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CARDS, NEEDS, unmet
from tests.pcsc.harness import NamespacesUnavailable, Pcscd, ServedCard, enter_private_namespaces


@pytest.fixture(scope="session")
def pcscd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pcscd]:
    for need in ("root", "reader_stack"):  # also for a test that asks for pcscd unmarked
        reason = NEEDS[need]()
        if reason:
            unmet(need, reason)
    try:
        enter_private_namespaces()
    except NamespacesUnavailable as error:
        unmet("reader_stack", str(error))
    daemon = Pcscd(tmp_path_factory.mktemp("pcscd") / "pcscd.log")
    daemon.start()
    yield daemon
    daemon.stop()


@pytest.fixture
def card_file(tmp_path: Path) -> Path:
    path = tmp_path / "taro.json"
    shutil.copyfile(CARDS / "taro.json", path)
    return path


@pytest.fixture
def served(pcscd: Pcscd, card_file: Path) -> Iterator[ServedCard]:
    with ServedCard(card_file) as card:
        yield card
