"""PC/SC fixtures: a private pcscd for the session, and a fixture card served per test."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CARDS
from tests.pcsc.harness import Pcscd, ServedCard, enter_private_namespaces, missing_programs


@pytest.fixture(scope="session")
def pcscd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pcscd]:
    if os.geteuid() != 0:
        pytest.skip("PC/SC tests need root for private namespaces (CI runs as root)")
    missing = missing_programs()
    assert not missing, f"missing {missing}: run scripts/test, which installs them"
    enter_private_namespaces()
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
