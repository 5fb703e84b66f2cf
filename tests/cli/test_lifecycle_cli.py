"""`jpki card renew|change|suspend|revoke|history` as a user runs them: after each one the card
(read through APDUs by `jpki cert read`, `jpki text attributes`, `jpki face read`), `jpki card
info`, the CA's CRL (`jpki ca crl`) and its OCSP responder (`jpki ca serve`, asked by `jpki
login` and `jpki verify`) tell the same story.

The card and the CA are made `--at` T0, a fixed past moment, and every later step runs `--at` a
fixed moment around the certificates' expiry (the holder's 5th birthday after T0), so the tests
hold on any date.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from jpki.issuer.ca import TestCA
from tests.cli.test_card_commands import jpki

ROOT = Path(__file__).resolve().parents[2]
T0 = "2021-04-01T00:00:00+00:00"
# Certificates to 2026-02-17 14:59:59Z; renewal opens 2025-11-18 00:00 JST (15:00Z the day before).
BEFORE_WINDOW = "2025-11-17T14:00:00+00:00"
INSIDE_WINDOW = "2025-12-01T10:00:00+00:00"
AFTER_EXPIRY = "2026-03-01T00:00:00+00:00"
OLD_COLLATION_B = "55021720312285"  # Showa 55-02-17, card expiry 2031, security code 2285
NEW_COLLATION_B = "55031820312285"  # the birth date corrected to 1980-03-18
DOCUMENT = "契約書: the holder agrees.\n"


def at(moment: str, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`jpki --at MOMENT ARGS…` in `home`."""
    return jpki(home, "--at", moment, *args)


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def issued(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A JPKI_HOME whose CA was created and card issued at T0."""
    home = tmp_path_factory.mktemp("lifecycle-home")
    ok(
        at(T0, home, "card", "create", "--auth-pin", "1234", "--sign-pin", "ABC123",
           "--name", "番号　太郎", "--birth-date", "1980-02-17", "--my-number", "123456789018",
           "--security-code", "2285")
    )  # fmt: skip
    return home


@pytest.fixture
def home(tmp_path: Path, issued: Path) -> Path:
    home = tmp_path / "home"
    shutil.copytree(issued, home)
    (home / "doc.txt").write_text(DOCUMENT)
    return home


@contextlib.contextmanager
def responder(home: Path, moment: str) -> Iterator[str]:
    """`jpki --at MOMENT ca serve` on a free loopback port: its OCSP URL."""
    server = subprocess.Popen(
        [sys.executable, "-m", "cli", "--at", moment, "ca", "serve", "--port", "0"],
        cwd=ROOT,
        env={**os.environ, "JPKI_HOME": str(home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        match = re.search(r"OCSP at (http://127\.0\.0\.1:\d+/ocsp)", line)
        assert match, line
        yield match[1]
    finally:
        server.terminate()
        server.wait(timeout=10)


def card_info(home: Path, moment: str) -> dict[str, Any]:
    return json.loads(ok(at(moment, home, "card", "info", "--json")).stdout)  # type: ignore[no-any-return]


def serials(home: Path, moment: str) -> dict[str, str]:
    """The card's certificate serials as `jpki card info` shows them."""
    certificates = card_info(home, moment)["certificates"]
    return {kind: certificates[kind]["serial"] for kind in ("auth", "sign") if kind in certificates}


def read_certificate(home: Path, moment: str, which: str) -> dict[str, Any]:
    """A certificate read from the card through APDUs."""
    pin = ("--pin", "ABC123") if which == "sign" else ()
    result = ok(at(moment, home, "cert", "read", which, *pin, "--format", "json"))
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def crl(home: Path, moment: str, which: str) -> dict[str, str]:
    """The CA's CRL: revoked serial → reason."""
    path = home / f"{which}.crl"
    ok(at(moment, home, "ca", "crl", which, "-o", str(path), "--force"))
    revoked = {}
    for entry in x509.load_der_x509_crl(path.read_bytes()):
        try:
            reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.value
        except x509.ExtensionNotFound:
            reason = "unspecified"
        revoked[f"{entry.serial_number:X}"] = reason
    return revoked


def login(home: Path, moment: str, *extra: str) -> dict[str, Any]:
    result = at(moment, home, "login", "--pin", "1234", "--json", *extra)
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def sign(home: Path, moment: str, name: str) -> Path:
    output = home / f"{name}.p7s"
    ok(at(moment, home, "sign", "--pin", "ABC123", str(home / "doc.txt"), "-o", str(output)))
    return output


def verify(home: Path, moment: str, signature: Path, *extra: str) -> dict[str, Any]:
    result = at(moment, home, "verify", str(home / "doc.txt"), str(signature), "--json", *extra)
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def lifecycle(home: Path, moment: str, *args: str) -> dict[str, Any]:
    result = ok(at(moment, home, "card", *args, "--json"))
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def history(home: Path) -> list[dict[str, Any]]:
    """The card's history after its issuance, which `jpki card create` records first."""
    entries: list[dict[str, Any]] = json.loads(ok(jpki(home, "card", "history", "--json")).stdout)
    assert entries[0]["what"] == "issue" and entries[0]["channel"] == "window"
    return entries[1:]


# --- renewal ---------------------------------------------------------------------------------


def test_renewal_inside_the_window_supersedes_the_old_certificates(home: Path) -> None:
    old = serials(home, INSIDE_WINDOW)
    old_signature = sign(home, "2025-10-01T00:00:00+00:00", "old")

    refused = at(BEFORE_WINDOW, home, "card", "renew")
    assert refused.returncode == 1
    assert "outside the renewal window" in refused.stderr and "--force" in refused.stderr
    assert serials(home, BEFORE_WINDOW) == old and history(home) == []

    renewed = lifecycle(home, INSIDE_WINDOW, "renew")
    assert renewed["revoked"] == {
        kind: {"serial": serial, "reason": "superseded"} for kind, serial in old.items()
    }
    new = renewed["issued"]
    assert set(new) == {"auth", "sign"} and not set(new.values()) & set(old.values())
    # The card (card info, and through APDUs) holds the new ones.
    assert serials(home, INSIDE_WINDOW) == new
    assert read_certificate(home, INSIDE_WINDOW, "auth")["serial"] == new["auth"]
    assert read_certificate(home, INSIDE_WINDOW, "sign")["serial"] == new["sign"]
    # The CRLs list the old ones as superseded, and not the new ones.
    for which in ("auth", "sign"):
        listed = crl(home, INSIDE_WINDOW, which)
        assert listed[old[which]] == "superseded" and new[which] not in listed
    with responder(home, INSIDE_WINDOW) as ocsp:
        logged_in = login(home, INSIDE_WINDOW, "--ocsp", ocsp)
        assert logged_in["valid"] and logged_in["identity"]["serial"] == new["auth"]
        stale = verify(home, INSIDE_WINDOW, old_signature, "--ocsp", ocsp)
        assert stale["valid"] is False and stale["reason"] == "revoked"
        assert "superseded" in stale["message"]
        fresh = verify(home, INSIDE_WINDOW, sign(home, INSIDE_WINDOW, "new"), "--ocsp", ocsp)
        assert fresh["valid"] and fresh["signer"]["serial"] == new["sign"]
    (entry,) = history(home)
    assert entry["what"] == "renew" and entry["channel"] == "window"
    assert entry["details"]["issued_auth"] == new["auth"]


def test_renewal_before_the_window_with_force(home: Path) -> None:
    old = serials(home, BEFORE_WINDOW)
    renewed = lifecycle(home, BEFORE_WINDOW, "renew", "--force")
    assert {kind: value["serial"] for kind, value in renewed["revoked"].items()} == old
    assert serials(home, BEFORE_WINDOW) == renewed["issued"]
    assert history(home)[0]["details"]["forced"] == "true"


def test_after_the_fifth_birthday_login_fails_until_renewal(home: Path) -> None:
    expired = login(home, AFTER_EXPIRY)
    assert expired["valid"] is False and expired["reason"] == "expired"
    renewed = lifecycle(home, AFTER_EXPIRY, "renew")  # no --force: the window is open
    logged_in = login(home, AFTER_EXPIRY)
    assert logged_in["valid"] and logged_in["identity"]["serial"] == renewed["issued"]["auth"]
    assert read_certificate(home, AFTER_EXPIRY, "auth")["not_after"].startswith("2031-02-17")


# --- change of the four attributes ------------------------------------------------------------


def test_a_change_revokes_the_signature_certificate_and_rewrites_the_card(home: Path) -> None:
    old = serials(home, INSIDE_WINDOW)
    old_signature = sign(home, "2025-10-01T00:00:00+00:00", "old")
    address = "東京都千代田区千代田１番１号"
    changed = lifecycle(
        home, INSIDE_WINDOW, "change", "--name", "山田　太郎", "--address", address,
        "--birth-date", "1980-03-18",
    )  # fmt: skip
    assert changed["changed"] == ["name", "address", "birth_date"]
    assert changed["revoked"] == {"sign": {"serial": old["sign"], "reason": "affiliationChanged"}}
    assert changed["kept"] == {"auth": old["auth"]} and changed["issued"] == {}

    # The card-info AP, read with the card-info PIN.
    attributes = json.loads(
        ok(at(INSIDE_WINDOW, home, "text", "attributes", "--pin", "1234", "--json")).stdout
    )
    assert attributes["name"] == "山田　太郎" and attributes["address"] == address
    assert attributes["birth_date"] == "1980-03-18"
    # The card face: the new 照合番号B opens it, the old one does not.
    face = json.loads(
        ok(
            at(INSIDE_WINDOW, home, "face", "read", "--collation-b", NEW_COLLATION_B, "--json")
        ).stdout
    )
    assert face["birth_date"] == "1980-03-18"
    wrong = at(INSIDE_WINDOW, home, "face", "read", "--collation-b", OLD_COLLATION_B)
    assert wrong.returncode == 6, wrong.stderr
    # `jpki card info`: the new holder, the same certificates on the card.
    info = card_info(home, INSIDE_WINDOW)
    assert info["holder"]["name"] == "山田　太郎" and info["holder"]["address"] == address
    assert serials(home, INSIDE_WINDOW) == old
    # The CRLs: the sign certificate, affiliationChanged; the auth one absent.
    assert crl(home, INSIDE_WINDOW, "sign")[old["sign"]] == "affiliationChanged"
    assert old["auth"] not in crl(home, INSIDE_WINDOW, "auth")
    with responder(home, INSIDE_WINDOW) as ocsp:
        stale = verify(home, INSIDE_WINDOW, old_signature, "--ocsp", ocsp)
        assert stale["reason"] == "revoked" and "affiliationChanged" in stale["message"]
        logged_in = login(home, INSIDE_WINDOW, "--ocsp", ocsp)
        assert logged_in["valid"] and logged_in["identity"]["serial"] == old["auth"]

        # A signature certificate on request, with the new attributes.
        reissued = lifecycle(home, INSIDE_WINDOW, "change", "--sex", "female", "--reissue-sign")
        assert reissued["revoked"] == {}  # the old one was revoked already
        new_sign = reissued["issued"]["sign"]
        on_card = read_certificate(home, INSIDE_WINDOW, "sign")
        assert on_card["serial"] == new_sign
        assert on_card["holder"]["name"] == "山田　太郎"
        assert on_card["holder"]["address"] == address
        fresh = verify(home, INSIDE_WINDOW, sign(home, INSIDE_WINDOW, "new"), "--ocsp", ocsp)
        assert fresh["valid"] and fresh["signer"]["serial"] == new_sign
    assert [entry["what"] for entry in history(home)] == ["change", "change"]


def test_change_needs_an_attribute(home: Path) -> None:
    result = at(INSIDE_WINDOW, home, "card", "change")
    assert result.returncode == 2 and "--name" in result.stderr
    same = at(INSIDE_WINDOW, home, "card", "change", "--name", "番号　太郎")
    assert same.returncode == 5 and "nothing to change" in same.stderr


# --- loss and revocation -------------------------------------------------------------------------


def test_a_lost_card_is_suspended_then_renewed_when_found(home: Path) -> None:
    lost, found = "2023-05-01T00:00:00+00:00", "2023-05-04T00:00:00+00:00"
    old = serials(home, lost)
    suspended = lifecycle(home, lost, "suspend")
    assert {value["reason"] for value in suspended["revoked"].values()} == {"certificateHold"}
    for which in ("auth", "sign"):
        assert crl(home, found, which)[old[which]] == "certificateHold"
    refused = at(found, home, "card", "change", "--address", "東京都千代田区千代田１番１号")
    assert refused.returncode == 1 and "suspended" in refused.stderr
    with responder(home, found) as ocsp:
        held = login(home, found, "--ocsp", ocsp)
        assert held["valid"] is False and held["reason"] == "revoked"
        assert "certificateHold" in held["message"]
        renewed = lifecycle(home, found, "renew")  # outside the window, no --force
        assert renewed["revoked"] == {} and renewed["replaced"] == old
        logged_in = login(home, found, "--ocsp", ocsp)
        assert logged_in["valid"] and logged_in["identity"]["serial"] == renewed["issued"]["auth"]
    # The old ones stay on hold for good.
    assert crl(home, found, "auth")[old["auth"]] == "certificateHold"
    assert [entry["what"] for entry in history(home)] == ["suspend", "renew"]


def test_revocation_for_good_with_its_reason(home: Path) -> None:
    old = serials(home, INSIDE_WINDOW)
    unconfirmed = at(INSIDE_WINDOW, home, "card", "revoke", "--reason", "keyCompromise")
    assert unconfirmed.returncode == 2 and "--yes" in unconfirmed.stderr
    not_ours = at(INSIDE_WINDOW, home, "card", "revoke", "--reason", "superseded", "--yes")
    assert not_ours.returncode == 2
    revoked = lifecycle(home, INSIDE_WINDOW, "revoke", "--reason", "keyCompromise", "--yes")
    assert revoked["revoked"] == {
        kind: {"serial": serial, "reason": "keyCompromise"} for kind, serial in old.items()
    }
    for which in ("auth", "sign"):
        assert crl(home, INSIDE_WINDOW, which)[old[which]] == "keyCompromise"
    with responder(home, INSIDE_WINDOW) as ocsp:
        refused = login(home, INSIDE_WINDOW, "--ocsp", ocsp)
        assert refused["reason"] == "revoked" and "keyCompromise" in refused["message"]
    again = at(INSIDE_WINDOW, home, "card", "revoke", "--reason", "unspecified", "--yes")
    assert again.returncode == 1 and "nothing to revoke" in again.stderr
    (entry,) = history(home)
    assert entry["what"] == "revoke" and entry["details"]["reason"] == "keyCompromise"
    shown = ok(jpki(home, "card", "history")).stdout
    assert "window" in shown and "revoke" in shown and "keyCompromise" in shown


# --- two operations at once ----------------------------------------------------------------------


def start(home: Path, moment: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "--at", moment, "card", *args, "--json"],
        cwd=ROOT,
        env={**os.environ, "JPKI_HOME": str(home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def outcomes(processes: list[subprocess.Popen[str]]) -> list[tuple[int, str, str]]:
    results = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=120)
        results.append((process.returncode, stdout, stderr))
    return results


def test_two_renewals_at_once_both_complete_or_one_is_refused_cleanly(home: Path) -> None:
    processes = [start(home, INSIDE_WINDOW, "renew", "--force") for _ in range(2)]
    results = outcomes(processes)
    for code, _stdout, stderr in results:
        assert code == 0 or (code == 3 and "in use" in stderr), stderr
    done = [json.loads(stdout) for code, stdout, _ in results if code == 0]
    assert done
    # The history has every one that completed; the card holds the last one's certificates.
    entries = history(home)
    assert [entry["what"] for entry in entries] == ["renew"] * len(done)
    current = serials(home, INSIDE_WINDOW)
    assert current == {kind: entries[-1]["details"][f"issued_{kind}"] for kind in ("auth", "sign")}
    # The CA's record: the card's two are good, every other one superseded, none lost.
    ca = TestCA.load(home / "ca")
    try:
        record = {f"{entry.serial:X}": entry.revocation for entry in ca.issued}
    finally:
        ca.close()
    assert len(record) == 2 + 2 * len(done)
    for serial, revocation in record.items():
        if serial in current.values():
            assert revocation is None
        else:
            assert revocation is not None and revocation.reason.value == "superseded"


def test_a_suspension_and_a_change_at_once(home: Path) -> None:
    processes = [
        start(home, INSIDE_WINDOW, "suspend"),
        start(home, INSIDE_WINDOW, "change", "--address", "東京都千代田区千代田１番１号"),
    ]
    (suspend_code, _, suspend_error), (change_code, _, change_error) = outcomes(processes)
    assert suspend_code in (0, 3), suspend_error
    # The change waits for the card, then is refused because it is suspended; or it runs first.
    assert change_code in (0, 1, 3), change_error
    if change_code == 1:
        assert "suspended" in change_error
    completed = [
        what for what, code in (("suspend", suspend_code), ("change", change_code)) if code == 0
    ]
    assert sorted(entry["what"] for entry in history(home)) == sorted(completed)
    address = card_info(home, INSIDE_WINDOW)["holder"]["address"]
    assert (address == "東京都千代田区千代田１番１号") == ("change" in completed)
