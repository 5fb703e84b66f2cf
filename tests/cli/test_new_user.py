"""Defects a new user hit with the CLI, each reproduced through the `jpki` command as run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jpki.certificates import CertificateKind
from jpki.issuer.ca import TestCA
from tests.cli.test_card_commands import ROOT, SELECT_JPKI, jpki
from tests.conftest import CA_DIR, CARDS, FIXTURE_VALID_AT

FIXED_TIME = FIXTURE_VALID_AT.isoformat()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    shutil.copytree(CA_DIR, home / "ca")
    shutil.copyfile(CARDS / "taro.json", home / "card.json")
    (home / "doc.txt").write_text("契約書\n")
    return home


def tries_left(home: Path) -> dict[str, int]:
    status = json.loads(jpki(home, "pin", "status", "--json").stdout)
    return {row["key"]: row["tries_left"] for row in status if row["present"]}


# A PIN that cannot be right never reaches the card -----------------------------------------


@pytest.mark.parametrize("command", [("login",), ("cert", "read", "sign"), ("sign", "doc.txt")])
@pytest.mark.parametrize("bad", ["12", "abcd", "12345", "abc123", ""])
def test_a_pin_that_cannot_be_right_costs_no_try(
    home: Path, command: tuple[str, ...], bad: str
) -> None:
    before = tries_left(home)
    args = [str(home / a) if a == "doc.txt" else a for a in command]
    result = jpki(home, *args, "--pin", bad)
    assert result.returncode == 5, result.stderr
    assert "must be" in result.stderr
    assert len(bad) < 4 or bad not in result.stderr  # never echoed
    assert tries_left(home) == before


def test_a_bad_new_pin_is_a_bad_value_and_costs_no_try(home: Path) -> None:
    result = jpki(home, "pin", "change", "auth", "--pin", "0000", "--new-pin", "12")
    assert result.returncode == 5
    assert "exactly 4 digits" in result.stderr
    assert tries_left(home)["auth"] == 3  # the (wrong) current PIN was not even tried


# Outputs --------------------------------------------------------------------------------


def test_sign_never_overwrites_the_document(home: Path) -> None:
    document = home / "doc.txt"
    result = jpki(home, "sign", str(document), "-o", str(document), "--pin", "ABC123", "--force")
    assert result.returncode == 2
    assert "is the input file itself" in result.stderr
    assert document.read_text() == "契約書\n"
    assert tries_left(home)["sign"] == 5


def test_sign_refuses_an_existing_output_without_force(home: Path) -> None:
    output = home / "doc.txt.p7s"
    output.write_bytes(b"keep me")
    refused = jpki(home, "sign", str(home / "doc.txt"), "--pin", "ABC123")
    assert refused.returncode == 2 and "--force" in refused.stderr
    assert output.read_bytes() == b"keep me"
    forced = jpki(home, "sign", str(home / "doc.txt"), "--pin", "ABC123", "--force")
    assert forced.returncode == 0, forced.stderr
    assert output.read_bytes()[:1] == b"\x30"


def test_dash_output_means_standard_output(home: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cli", "sign", str(home / "doc.txt"), "-o", "-", "--pin", "ABC123"],
        cwd=home, env={**os.environ, "JPKI_HOME": str(home), "PYTHONPATH": str(ROOT)},
        capture_output=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout[:1] == b"\x30"  # a DER SignedData
    assert not (home / "-").exists()
    signature = home / "from-stdout.p7s"
    signature.write_bytes(result.stdout)
    verified = jpki(home, "verify", str(home / "doc.txt"), str(signature), "--at", FIXED_TIME)
    assert verified.returncode == 0, verified.stdout + verified.stderr


# Read-only cards --------------------------------------------------------------------------


def in_read_only_mount(directory: Path, *args: str, writable_file: Path | None = None) -> (
    subprocess.CompletedProcess[str]
):  # fmt: skip
    """`jpki ARGS` with `directory` mounted read-only (optionally one file in it writable)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("a read-only mount needs root and unshare")
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && '
    if writable_file is not None:
        script += f'mount --bind "{writable_file}" "{writable_file}" && '
    script += 'exec "$@"'
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"mount namespaces are not permitted here: {probe.stderr.decode().strip()}")
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", script, "sh", str(directory),
         sys.executable, "-m", "cli", *args],
        cwd=ROOT, env={**os.environ, "JPKI_HOME": str(directory)},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.root
@pytest.mark.parametrize("file_writable", [False, True], ids=["read-only-mount", "read-only-dir"])
def test_a_read_only_card_answers_what_changes_nothing(home: Path, file_writable: bool) -> None:
    writable = home / "card.json" if file_writable else None
    status = in_read_only_mount(home, "pin", "status", "--json", writable_file=writable)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)[0] == {
        "application": "jpki", "key": "auth", "label": "authentication PIN", "ef": "0018",
        "tries_left": 3, "max_tries": 3, "blocked": False, "present": True,
    }  # fmt: skip
    certificate = in_read_only_mount(home, "cert", "read", "auth", writable_file=writable)
    assert certificate.returncode == 0 and "BEGIN CERTIFICATE" in certificate.stdout
    # A VERIFY must record the try before comparing: it cannot, and says so in one line.
    login = in_read_only_mount(home, "login", "--pin", "1234", writable_file=writable)
    assert login.returncode == 3, login.stderr
    assert "Traceback" not in login.stderr and "6F00" not in login.stderr
    assert len(login.stderr.strip().splitlines()) == 1
    assert "card.json" in login.stderr
    assert tries_left(home)["auth"] == 3


# PIN sources ------------------------------------------------------------------------------


def test_no_terminal_for_the_prompt_says_how_to_give_the_pin(home: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "JPKI_PIN"}
    result = subprocess.run(
        [sys.executable, "-m", "cli", "login"], cwd=ROOT, stdin=subprocess.DEVNULL,
        env={**env, "JPKI_HOME": str(home)}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "GetPassWarning" not in result.stderr and "Traceback" not in result.stderr
    assert "--pin" in result.stderr and "JPKI_PIN" in result.stderr


# One cause, one exit code ---------------------------------------------------------------


@pytest.mark.parametrize(
    "args", [("card", "info"), ("pin", "status"), ("cert", "read", "auth"), ("apdu", SELECT_JPKI)]
)
def test_a_missing_card_file_is_exit_3_everywhere(tmp_path: Path, args: tuple[str, ...]) -> None:
    env = {key: value for key, value in os.environ.items() if key != "JPKI_READER"}
    for extra in ((), ("--card", str(tmp_path / "missing.json"))):
        result = subprocess.run(
            [sys.executable, "-m", "cli", *extra, *args], cwd=ROOT,
            env={**env, "JPKI_HOME": str(tmp_path)}, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 3, (extra, result.stderr)
        assert "no card file at" in result.stderr


def test_an_unreachable_ocsp_responder_is_unknown_not_invalid(home: Path) -> None:
    signed = jpki(home, "sign", str(home / "doc.txt"), "--pin", "ABC123")
    assert signed.returncode == 0, signed.stderr
    result = jpki(home, "verify", str(home / "doc.txt"), str(home / "doc.txt.p7s"),
                  "--at", FIXED_TIME, "--ocsp", "http://127.0.0.1:9/ocsp")  # fmt: skip
    assert result.returncode == 8
    assert result.stdout.startswith("UNKNOWN: revocation check failed")


# jpki apdu ------------------------------------------------------------------------------


def test_apdu_stops_at_a_malformed_line(home: Path) -> None:
    lines = f"{SELECT_JPKI}\n00200098\nzz not hex\n002000980430303030\n"
    result = jpki(home, "apdu", stdin=lines)
    assert result.returncode == 5
    assert result.stdout.splitlines() == ["9000", "63C3"]
    assert "line 3" in result.stderr
    assert tries_left(home)["auth"] == 3  # the wrong PIN after the bad line was never sent


def test_apdu_answers_each_line_before_reading_the_next(home: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "apdu"], cwd=ROOT, env={**os.environ, "JPKI_HOME": str(home)},
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdin is not None and process.stdout is not None
    try:
        process.stdin.write(SELECT_JPKI + "\n")
        process.stdin.flush()
        assert process.stdout.readline().strip() == "9000"
        process.stdin.write("0084000008\n")  # GET CHALLENGE: a script would answer it next
        process.stdin.flush()
        answer = process.stdout.readline().strip()
        assert len(answer) == 20 and answer.endswith("9000")
    finally:
        process.stdin.close()
        process.wait(timeout=30)


def test_apdu_goes_to_the_reader_it_is_given(home: Path) -> None:
    result = jpki(home, "--reader", "No Such Reader", "apdu", SELECT_JPKI)
    assert result.returncode == 7
    assert "9000" not in result.stdout


def test_card_and_reader_together_are_refused(home: Path) -> None:
    result = jpki(home, "--reader", "PCD", "--card", str(home / "card.json"), "pin", "status")
    assert result.returncode == 2
    assert "not both" in result.stderr


@pytest.mark.parametrize(("atr", "message"), [("3B", "2 to 33 bytes"), ("zz", "not hex"),
                                               ("00FF", "starts with 3B")])  # fmt: skip
def test_card_create_refuses_an_atr_no_card_can_have(home: Path, atr: str, message: str) -> None:
    card = home / "new.json"
    result = jpki(home, "card", "create", "--card", str(card), "--auth-pin", "1234",
                  "--sign-pin", "ABC123", "--atr", atr)  # fmt: skip
    assert result.returncode == 2
    assert message in result.stderr and "fromhex" not in result.stderr
    assert not card.exists()


# Names and labels -----------------------------------------------------------------------


def test_readers_from_slot_ten_are_named_in_hex(home: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--card", str(home / "card.json"),
         "--port", str(35963 + 10), "--host", "127.0.0.1"],
        cwd=ROOT, env={**os.environ, "JPKI_HOME": str(home)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        assert "reader 'Virtual PCD 00 0A'" in process.stdout.readline()
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_verify_names_the_signer_not_the_ca(home: Path) -> None:
    assert jpki(home, "sign", str(home / "doc.txt"), "--pin", "ABC123").returncode == 0
    result = jpki(home, "verify", str(home / "doc.txt"), str(home / "doc.txt.p7s"),
                  "--at", FIXED_TIME)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    holder = json.loads(jpki(home, "card", "info", "--json").stdout)["holder"]["name"]
    assert result.stdout.startswith(f"VALID: signed by {holder} (")


def test_card_info_and_pin_status_use_the_same_labels(home: Path) -> None:
    info = jpki(home, "card", "info").stdout
    status = jpki(home, "pin", "status").stdout
    for label in ("authentication PIN", "signature password", "card-info PIN"):
        assert label in info and label in status


def test_revoke_asks_first_unless_yes(home: Path) -> None:
    before = {kind: TestCA.load(home / "ca").revoked(kind) for kind in CertificateKind}
    refused = jpki(home, "ca", "revoke", "--cert", "sign", stdin="")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    test_ca = TestCA.load(home / "ca")
    assert all(test_ca.revoked(kind) == before[kind] for kind in CertificateKind)


def test_version_and_completion(home: Path) -> None:
    version = jpki(home, "--version")
    assert version.returncode == 0 and version.stdout.startswith("jpki, version ")
    completion = subprocess.run(
        [sys.executable, "-m", "cli"], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "_JPKI_COMPLETE": "bash_source"},
    )  # fmt: skip
    assert "complete" in completion.stdout and "_jpki_completion" in completion.stdout


def test_traces_mask_the_odd_ins_pin_commands(home: Path) -> None:
    result = jpki(home, "-v", "apdu", SELECT_JPKI, "0021009804 31323334", "0025019804 35363738",
                  "002D009804 39393939")  # fmt: skip
    assert "31323334" not in result.stderr
    assert "35363738" not in result.stderr
    assert "39393939" not in result.stderr
