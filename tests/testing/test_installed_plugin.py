"""A project of someone else's: a fresh virtual environment that installs only this package (with
its pcsc extra) and pytest, and a test file that uses the four fixtures, found through the
package's `pytest11` entry point alone. Slow-ish (a venv and pip: about ten seconds with a warm
pip cache), and part of every run: this is how the plugin reaches its users."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.reader_stack

ROOT = Path(__file__).resolve().parents[2]
# What the package is built from (a copy: pip would otherwise build in the working tree).
PACKAGE_FILES = ("pyproject.toml", "README.md", "card_emulator", "jpki", "cli")
# Variables of this run that must not reach the other project's.
PRIVATE_VARIABLES = ("PYTHONPATH", "PYTEST_ADDOPTS", "PCSCLITE_CSOCK_NAME", "JPKI_HOME", "JPKI_NOW")
INSTALL_TIMEOUT = 600

USER_TESTS = '''
    """Login and a forced status word, a year after issuance, through a real reader stack."""

    import pytest

    from jpki.client.connection import PcscConnection
    from jpki.client.errors import ApduError
    from jpki.client.protocol import ApduProtocol
    from jpki.client.session import JpkiSession
    from jpki.client.signing import answer_login
    from jpki.relying_party.login import new_challenge, verify_login


    def test_login_a_year_after_issuance(jpki_ca, virtual_card, pcsc_card, jpki_clock):
        jpki_clock.set("2031-02-18T09:00:00+09:00")
        card = virtual_card("taro", auth_pin="2468")
        served = pcsc_card(card)
        jpki_clock.advance(days=365)
        challenge = new_challenge()
        with PcscConnection(served.reader) as connection:
            session = JpkiSession(ApduProtocol(connection))
            response = answer_login(session, challenge, "2468")
            assert verify_login(challenge, response, jpki_ca.trust_store).identity
            card.faults.add("sw=6A88,ins=2A")
            with pytest.raises(ApduError, match="card answered 6A88"):
                answer_login(session, challenge, "2468")
'''


def copy_package(destination: Path) -> Path:
    destination.mkdir()
    caches = shutil.ignore_patterns("__pycache__")
    for name in PACKAGE_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=caches)
        else:
            shutil.copy2(source, destination / name)
    return destination


def run(*command: str | Path, cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in PRIVATE_VARIABLES}
    return subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_a_project_that_installs_only_this_package_uses_the_four_fixtures(tmp_path: Path) -> None:
    package = copy_package(tmp_path / "jpki-emulator")
    project = tmp_path / "their-project"
    project.mkdir()
    (project / "test_login.py").write_text(textwrap.dedent(USER_TESTS))
    environment = tmp_path / "venv"
    created = run(sys.executable, "-m", "venv", environment, cwd=project, timeout=120)
    assert created.returncode == 0, created.stderr
    python = environment / "bin" / "python"
    installed = run(
        python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        f"{package}[pcsc]", "pytest",
        cwd=project, timeout=INSTALL_TIMEOUT,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stdout + installed.stderr
    tested = run(python, "-m", "pytest", "-p", "no:cacheprovider", "-rs", cwd=project, timeout=300)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "1 passed" in tested.stdout, tested.stdout
