"""Shared fixtures of the host-side tests: a copy of the fixture CA, and loopback HTTP that
no configured proxy intercepts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import CA_DIR

PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy")


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    """A copy of the committed fixture CA, for a test to change."""
    directory = tmp_path / "ca"
    shutil.copytree(CA_DIR, directory)
    return directory


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """urllib and openssl would send loopback requests to a configured proxy."""
    for variable in PROXY_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
