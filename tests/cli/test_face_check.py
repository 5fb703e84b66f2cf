"""`jpki face check` as a terminal runs it on a card in person: a real process against card files
issued by `jpki card create`, asserting the steps printed, the verdict and the exit codes."""

from __future__ import annotations

import datetime
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from jpki.issuer.card_info import collation_number_b
from jpki.issuer.holder import Holder
from tests.cli.test_text_face_pin import jpki
from tests.conftest import CA_DIR

STEP_LABELS = ("chain", "face signature", "chip")
GENUINE = "card face: genuine"
NOT_GENUINE = "card face: NOT genuine"


@pytest.fixture(scope="module")
def issued(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with the fixture CA and a card issued as `--sample taro`; never used itself (the
    tests copy it), so every test starts from untouched retry counters."""
    home = tmp_path_factory.mktemp("issued")
    shutil.copytree(CA_DIR, home / "ca")
    created = jpki(home, "card", "create", "--sample", "taro")
    assert created.returncode == 0, created.stderr
    return home


@pytest.fixture
def home(tmp_path: Path, issued: Path) -> Path:
    home = tmp_path / "home"
    shutil.copytree(issued, home)
    return home


@pytest.fixture(scope="module")
def other_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CVC root of a second test CA, as `jpki ca cvc-root` writes it."""
    home = tmp_path_factory.mktemp("other-ca")
    for args in (("ca", "init"), ("ca", "cvc-root", "-o", str(home / "root.cvc"))):
        result = jpki(home, *args)
        assert result.returncode == 0, result.stderr
    return home / "root.cvc"


def info(home: Path, card: Path | None = None) -> dict[str, Any]:
    shown = jpki(home, "card", "info", "--json", *(("--card", str(card)) if card else ()))
    assert shown.returncode == 0, shown.stderr
    summary: dict[str, Any] = json.loads(shown.stdout)
    return summary


def collation_b(summary: dict[str, Any]) -> str:
    """照合番号B from what `jpki card info --json` shows: era birth date, expiry year, code."""
    holder = Holder.from_json(summary["holder"])
    expiry = datetime.date.fromisoformat(summary["card_expiry"])
    return collation_number_b(holder, expiry.year, summary["security_code"])


def steps(stdout: str) -> dict[str, str]:
    """Each step's line after its label: `OK     reason` or `FAILED reason`."""
    found = {}
    for line in stdout.splitlines():
        for label in STEP_LABELS:
            if line.startswith(label + " "):
                found[label] = line[len(label) :].strip()
    assert list(found) == list(STEP_LABELS), stdout
    return found


def face_tries(home: Path, key: str) -> int:
    status = json.loads(jpki(home, "pin", "status", "--json").stdout)
    tries: int = next(row["tries_left"] for row in status if row["key"] == key)
    return tries


def test_a_genuine_card_passes_every_step(home: Path) -> None:
    summary = info(home)
    result = jpki(home, "face", "check", "--collation-b", collation_b(summary))
    assert result.returncode == 0, result.stdout + result.stderr
    shown = steps(result.stdout)
    assert all(line.startswith("OK ") for line in shown.values()), shown
    assert "pinned root 9000020/001" in shown["chain"]
    assert result.stdout.splitlines()[-1] == GENUINE
    # Step (4) is the person's: the chip's dates are shown to compare with the printed card.
    assert f"born {summary['holder']['birth_date']}" in result.stdout
    assert f"card expiry {summary['card_expiry']}" in result.stdout


def test_json_reports_the_steps_and_the_face(home: Path) -> None:
    summary = info(home)
    my_number = summary["holder"]["my_number"]
    result = jpki(home, "face", "check", "--json", env={"JPKI_PIN": my_number})
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["genuine"] is True
    assert report["credential"] == "collation-a"  # 12 digits in $JPKI_PIN: collation number A
    assert set(report["steps"]) == {"chain", "face_signature", "chip"}
    assert all(step["passed"] and step["reason"] for step in report["steps"].values())
    assert report["face"]["birth_date"] == summary["holder"]["birth_date"]
    assert report["face"]["card_expiry"] == summary["card_expiry"]


def test_a_forged_face_signature_fails_that_step(home: Path) -> None:
    forged = home / "forged.json"
    created = jpki(home, "card", "create", "--sample", "taro", "--forged", "face-signature",
                   "--card", str(forged))  # fmt: skip
    assert created.returncode == 0, created.stderr
    result = jpki(home, "face", "check", "--card", str(forged),
                  "--collation-b", collation_b(info(home, forged)))  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    shown = steps(result.stdout)
    assert shown["face signature"].startswith("FAILED")
    assert "card-face signature does not verify" in shown["face signature"]
    assert shown["chain"].startswith("OK") and shown["chip"].startswith("OK")
    assert result.stdout.splitlines()[-1] == NOT_GENUINE


def test_records_signed_by_a_key_the_cvc_does_not_certify_fail(home: Path) -> None:
    forged = home / "forged.json"
    created = jpki(home, "card", "create", "--sample", "taro", "--forged", "cvc",
                   "--card", str(forged))  # fmt: skip
    assert created.returncode == 0, created.stderr
    result = jpki(home, "face", "check", "--card", str(forged), "--json",
                  "--collation-b", collation_b(info(home, forged)))  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["genuine"] is False
    failed = {name for name, step in report["steps"].items() if not step["passed"]}
    # The CVC in EF 0004 does not certify the key that signed the records: the chain to it,
    # or the records under it, must fail; the chip's own key is genuine.
    assert failed and failed <= {"chain", "face_signature"}, report
    assert report["steps"]["chip"]["passed"]


def test_a_card_of_another_ca_fails_the_chain(home: Path, other_root: Path) -> None:
    result = jpki(home, "face", "check", "--cvc-root", str(other_root),
                  "--collation-b", collation_b(info(home)))  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    shown = steps(result.stdout)
    assert shown["chain"].startswith("FAILED")
    assert "MF 7F21 is not signed by 9000020/001" in shown["chain"]
    assert shown["face signature"].startswith("OK") and shown["chip"].startswith("OK")
    assert result.stdout.splitlines()[-1] == NOT_GENUINE


def test_the_root_written_by_ca_cvc_root_is_pinned(home: Path) -> None:
    root = home / "root.cvc"
    written = jpki(home, "ca", "cvc-root", "-o", str(root))
    assert written.returncode == 0, written.stderr
    shutil.rmtree(home / "ca")  # the file alone is trusted, not the CA beside it
    result = jpki(home, "face", "check", "--cvc-root", str(root),
                  "--collation-b", collation_b(info(home)))  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == GENUINE


def test_a_damaged_root_file_is_a_ca_error(home: Path) -> None:
    root = home / "root.cvc"
    root.write_bytes(b"\x7f\x21\x05not a cvc")
    result = jpki(home, "face", "check", "--cvc-root", str(root),
                  "--collation-b", collation_b(info(home)))  # fmt: skip
    assert result.returncode == 4, result.stdout + result.stderr
    assert str(root) in result.stderr
    assert face_tries(home, "face-b") == 10  # refused before the card was asked anything


def test_a_wrong_collation_number_b_costs_a_try(home: Path) -> None:
    right = collation_b(info(home))
    wrong = right[:-1] + str((int(right[-1]) + 1) % 10)
    result = jpki(home, "face", "check", "--collation-b", wrong)
    assert result.returncode == 6, result.stdout + result.stderr
    assert "wrong collation number B: 9 tries left" in result.stderr
    assert wrong not in result.stdout + result.stderr
    assert GENUINE not in result.stdout and NOT_GENUINE not in result.stdout
    assert face_tries(home, "face-b") == 9


@pytest.mark.parametrize(
    ("args", "environment"),
    [
        (("--collation-b", "5502172036228"), {}),  # 13 digits
        (("--collation-b", "55021720362285x"), {}),
        (("--collation-a", "12345678901"), {}),
        ((), {"JPKI_PIN": "5502172036228"}),  # neither A's 12 nor B's 14 digits
    ],
    ids=["b-13-digits", "b-letter", "a-11-digits", "env-13-digits"],
)
def test_a_malformed_collation_number_never_reaches_the_card(
    home: Path, args: tuple[str, ...], environment: dict[str, str]
) -> None:
    result = jpki(home, "face", "check", *args, env=environment)
    assert result.returncode == 5, result.stdout + result.stderr
    assert "digits" in result.stderr
    assert face_tries(home, "face-b") == 10
    assert face_tries(home, "face-a") == 10


def test_without_a_collation_number_or_terminal_says_how_to_give_one(home: Path) -> None:
    result = jpki(home, "face", "check")
    assert result.returncode == 2
    assert "--collation-b" in result.stderr and "$JPKI_PIN" in result.stderr


def test_help_has_an_example() -> None:
    result = jpki(Path("/nonexistent"), "face", "check", "--help")
    assert result.returncode == 0
    assert "Example" in result.stdout and "jpki face check --collation-b" in result.stdout
    assert "--cvc-root" in result.stdout
