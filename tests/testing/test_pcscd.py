"""The private pcscd: its own mount namespace, never this process's; its socket in a temporary
directory; a free pair of vpcd ports, kept across restarts; root or not.

Clients here are subprocesses (opensc-tool): this process's PC/SC library belongs to the
session's pcscd (libpcsclite reads $PCSCLITE_CSOCK_NAME once per process)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import textwrap
from pathlib import Path

import pytest

from jpki.testing import pcscd
from jpki.testing.pcscd import PrivatePcscd

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = Path("/usr/bin/python3")
NOBODY = 65534
MODULE_FILES = ("jpki/__init__.py", "jpki/testing/__init__.py", "jpki/testing/pcscd.py")


pytestmark = pytest.mark.reader_stack


@pytest.fixture(autouse=True)
def _needs_a_private_pcscd() -> None:
    reason = PrivatePcscd.missing()
    if reason is not None:
        pytest.skip(reason)


def listed_readers(daemon: PrivatePcscd) -> list[str]:
    """The readers `opensc-tool -l` finds through `daemon`."""
    listed = subprocess.run(
        ["opensc-tool", "-l"],
        env={**os.environ, **daemon.environment()},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    return [line.split(None, 2)[-1] for line in listed.stdout.splitlines() if line[:1].isdigit()]


def namespace(pid: int | str) -> str:
    return os.readlink(f"/proc/{pid}/ns/mnt")


def test_only_the_daemon_gets_a_mount_namespace_of_its_own(tmp_path: Path) -> None:
    before = namespace("self")
    with PrivatePcscd(tmp_path) as daemon:
        assert daemon.process is not None
        assert namespace("self") == before  # this process stays where it was
        assert namespace(daemon.process.pid) != before
        assert daemon.socket_path == tmp_path / "run" / "pcscd.comm"
        assert daemon.socket_path.is_socket()
        assert daemon.environment() == {
            "PCSCLITE_CSOCK_NAME": str(daemon.socket_path),
            "JPKI_VPCD_PORT": str(daemon.port),  # where `jpki serve` puts its first card
        }
        assert listed_readers(daemon) == ["Virtual PCD 00 00", "Virtual PCD 00 01"]
        assert daemon.readers == ["Virtual PCD 00 00", "Virtual PCD 00 01"]
    assert daemon.process is None
    assert not daemon.socket_path.exists()


def test_a_restart_keeps_the_ports_so_served_cards_find_it_again(tmp_path: Path) -> None:
    with PrivatePcscd(tmp_path) as daemon:
        port, first = daemon.port, daemon.process
        daemon.restart()
        assert daemon.port == port
        assert daemon.process is not first
        assert listed_readers(daemon) == daemon.readers


def test_a_port_taken_meanwhile_is_passed_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = pcscd.free_port_pair()
    free = pcscd.free_port_pair()
    offered = iter([taken, free])
    monkeypatch.setattr(pcscd, "free_port_pair", lambda: next(offered))
    with socket.socket() as squatter:  # takes the second port of the first pair, as a race would
        squatter.bind(("", taken + 1))
        squatter.listen()
        with PrivatePcscd(tmp_path) as daemon:
            assert daemon.port == free
            assert listed_readers(daemon) == daemon.readers


@pytest.mark.root
def test_an_unprivileged_user_runs_one_too() -> None:
    setpriv = shutil.which("setpriv")
    if setpriv is None or not SYSTEM_PYTHON.exists():
        pytest.skip("needs setpriv and /usr/bin/python3 to run as nobody")
    script = textwrap.dedent(
        """
        import os, subprocess, sys
        from pathlib import Path
        from jpki.testing.pcscd import PrivatePcscd

        assert PrivatePcscd.missing() is None, PrivatePcscd.missing()
        with PrivatePcscd(Path(sys.argv[1])) as daemon:
            environment = {**os.environ, **daemon.environment()}
            listed = subprocess.run(["opensc-tool", "-l"], env=environment, capture_output=True)
            sys.stdout.write(listed.stdout.decode())
        """
    )
    # Outside pytest's temporary directories (only root may enter them), with the system's
    # Python and a copy of the module (this test's Python and checkout may be root's alone).
    with tempfile.TemporaryDirectory() as directory:
        source = Path(directory) / "source"
        for module in MODULE_FILES:
            (source / module).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / module, source / module)
        for path in (Path(directory), *source.rglob("*")):
            os.chown(path, NOBODY, NOBODY)
        ran = subprocess.run(
            [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
             str(SYSTEM_PYTHON), "-c", script, directory],
            env={"PATH": os.environ["PATH"], "PYTHONPATH": str(source), "HOME": directory},
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert "Virtual PCD 00 00" in ran.stdout
