"""The `jpki` command line as a user runs it: a real process, real files, exit codes and output."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CA_DIR, CARDS

ROOT = Path(__file__).resolve().parents[2]
SELECT_JPKI = "00A4040C0AD392F000260100000001"


def jpki(home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "JPKI_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A JPKI_HOME holding the fixture CA and the fixture card `taro` as the default card."""
    shutil.copytree(CA_DIR, tmp_path / "ca")
    shutil.copyfile(CARDS / "taro.json", tmp_path / "card.json")
    return tmp_path


def years_ago(years: int) -> datetime.date:
    """A birth date `years` (give or take a few days) before today, the day `jpki card create`
    takes the holder's age on: a fixed date would make a child an adult, or the reverse, some day.
    """
    return datetime.date.today() - datetime.timedelta(days=years * 365)


def test_create_then_info_non_interactively(tmp_path: Path) -> None:
    card = tmp_path / "cards" / "hanako.json"
    created = jpki(
        tmp_path,
        "card", "create", "--card", str(card), "--auth-pin", "1234", "--sign-pin", "ABC123",
        "--name", "山田　花子", "--birth-date", years_ago(36).isoformat(), "--sex", "female",
        "--address", "東京都千代田区千代田１番１号", "--my-number", "123456789018",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert stat.S_IMODE(card.stat().st_mode) == 0o600
    for key in ("signature-ca.key", "authentication-ca.key"):
        assert stat.S_IMODE((tmp_path / "ca" / key).stat().st_mode) == 0o600
    info = jpki(tmp_path, "--card", str(card), "card", "info", "--json")
    assert info.returncode == 0, info.stderr
    summary = json.loads(info.stdout)
    assert summary["holder"]["name"] == "山田　花子"
    assert summary["pins"]["auth"] == {
        "application": "jpki",
        "label": "authentication PIN",
        "tries_left": 3,
        "max_tries": 3,
        "blocked": False,
    }
    assert summary["pins"]["sign"]["tries_left"] == 5
    assert set(summary["certificates"]) == {"auth", "sign", "auth-ca", "sign-ca"}
    assert "O=JPKI-TEST" in summary["certificates"]["sign-ca"]["subject"]
    assert "ABC123" not in info.stdout and "salt" not in info.stdout
    assert "PRIVATE KEY" not in info.stdout


def test_create_for_a_holder_under_15_issues_no_signature_key(tmp_path: Path) -> None:
    birth_date = years_ago(10)
    card = tmp_path / "child.json"
    created = jpki(
        tmp_path,
        "card", "create", "--card", str(card), "--auth-pin", "1234",
        "--name", "番号　次郎", "--birth-date", birth_date.isoformat(), "--sex", "male",
        "--address", "東京都渋谷区神南一丁目１９番１１号", "--my-number", "555566667772",
        stdin="",  # no signature password is asked for
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert "Under 15: no signature key" in created.stdout
    summary = json.loads(jpki(tmp_path, "--card", str(card), "card", "info", "--json").stdout)
    assert summary["holder"]["birth_date"] == birth_date.isoformat()
    assert set(summary["certificates"]) == {"auth", "auth-ca", "sign-ca"}
    assert "sign" not in summary["pins"]


def test_create_refuses_bad_pins_and_existing_cards(home: Path) -> None:
    bad = jpki(home, "card", "create", "--card", str(home / "x.json"),
               "--auth-pin", "12345", "--sign-pin", "ABC123")  # fmt: skip
    assert bad.returncode == 5
    assert bad.stderr.strip() == "jpki: error: the authentication PIN must be exactly 4 digits"
    lower = jpki(home, "card", "create", "--card", str(home / "x.json"),
                 "--auth-pin", "1234", "--sign-pin", "abc123")  # fmt: skip
    assert lower.returncode == 5 and "A-Z" in lower.stderr
    exists = jpki(home, "card", "create", "--auth-pin", "1234", "--sign-pin", "ABC123")
    assert exists.returncode == 3 and "already exists" in exists.stderr


def test_apdu_from_arguments_in_one_session(home: Path) -> None:
    result = jpki(home, "apdu", SELECT_JPKI, "00B0880000", "0020009804 31323334", "00200098")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["9000", "8F8F009000", "9000", "63C3"]


def test_apdu_from_stdin_with_comments_and_reset(home: Path) -> None:
    script = f"""# select, verify, warm reset: the PIN stays verified
{SELECT_JPKI}
0020009804 31323334
reset
{SELECT_JPKI}
00A4020C020017
"""
    result = jpki(home, "apdu", stdin=script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["9000", "9000", "3BE000FF8131FE4514", "9000", "9000"]


def test_apdu_keeps_retry_counters_between_runs(home: Path) -> None:
    jpki(home, "apdu", SELECT_JPKI, "002000980430303030")
    result = jpki(home, "apdu", SELECT_JPKI, "00200098")
    assert result.stdout.splitlines() == ["9000", "63C2"]
    info = json.loads(jpki(home, "card", "info", "--json").stdout)
    assert info["pins"]["auth"]["tries_left"] == 2


def test_verbose_trace_redacts_pins(home: Path) -> None:
    result = jpki(home, "-v", "apdu", SELECT_JPKI, "0020009804 31323334",
                  "0024019804 35363738")  # fmt: skip
    assert result.returncode == 0
    assert "0020009804********" in result.stderr
    assert "31323334" not in result.stderr + result.stdout
    assert "35363738" not in result.stderr + result.stdout


def test_unblock_as_a_municipal_office_does(home: Path) -> None:
    jpki(home, "apdu", SELECT_JPKI, *["002000980430303030"] * 3)
    locked = jpki(home, "apdu", SELECT_JPKI, "0020009804 31323334")
    assert locked.stdout.splitlines()[-1] == "6984"
    assert jpki(home, "card", "unblock", "auth", "--new-pin", "4321").returncode == 0
    result = jpki(home, "apdu", SELECT_JPKI, "00200098", "0020009804 34333231")
    assert result.stdout.splitlines() == ["9000", "63C3", "9000"]
    assert "BLOCKED" not in jpki(home, "card", "info").stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("--card", "/nonexistent/card.json", "apdu", "00A40000"), 3, "no card file at"),
        (("apdu", "00A4 zz"), 2, "not an APDU in hex"),
        (("card", "info", "--card", "{corrupt}"), 3, "invalid JSON"),
        (("card", "unblock", "both"), 2, "Invalid value"),
    ],
)
def test_errors_are_one_readable_line(home: Path, args: tuple[str, ...], code: int,
                                      message: str) -> None:  # fmt: skip
    corrupt = home / "corrupt.json"
    corrupt.write_text("{")
    result = jpki(home, *(a.replace("{corrupt}", str(corrupt)) for a in args))
    assert result.returncode == code
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("jpki")]) <= 1


def test_a_second_process_gets_a_clear_error(home: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-m", "cli", "apdu"],
        cwd=ROOT,
        env={**os.environ, "JPKI_HOME": str(home)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert holder.stdin is not None and holder.stdout is not None
    holder.stdin.write(SELECT_JPKI + "\n")
    holder.stdin.flush()
    assert holder.stdout.readline().strip() == "9000"  # the first process holds the card now
    second = jpki(home, "apdu", SELECT_JPKI)
    holder.stdin.close()
    holder.wait(timeout=30)
    assert second.returncode == 3
    assert "in use by another process" in second.stderr


def test_demo_runs_on_an_in_memory_card(tmp_path: Path) -> None:
    result = jpki(tmp_path, "demo")
    assert result.returncode == 0, result.stderr
    assert "verifies against the authentication certificate" in result.stdout
    assert "63C2 TRIES_LEFT_2" in result.stdout
    assert not list(tmp_path.iterdir())  # nothing written to JPKI_HOME
