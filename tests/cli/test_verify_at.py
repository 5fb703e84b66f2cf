"""`jpki verify --at` and "valid at signing time", end to end on the one clock: sign at T, revoke
the next day, verify the day after; a card created at T0 and verified the day after its fifth
birthday; signatures with a timestamp of the test CA's TSA.

Every command runs with `jpki --at` (or $JPKI_NOW), so the tests hold on any date.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from jpki.issuer.timestamps import TimeStampAuthority, build_tsa_certificate
from tests.conftest import CA_DIR, CARDS, FIXTURE_VALID_AT

ROOT = Path(__file__).resolve().parents[2]
DAY = datetime.timedelta(days=1)
T = FIXTURE_VALID_AT.replace(microsecond=0)  # the fixture card and CA are valid then
TSA = "JPKI emulator test TSA"


def at(moment: datetime.datetime) -> str:
    return moment.isoformat()


def shown(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def jpki(
    home: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    inherited = {name: value for name, value in os.environ.items() if name != "JPKI_NOW"}
    environment = {**inherited, "JPKI_HOME": str(home), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """JPKI_HOME with a copy of the fixture CA and the fixture card `taro` as the default card."""
    home = tmp_path / "home"
    shutil.copytree(CA_DIR, home / "ca")
    shutil.copyfile(CARDS / "taro.json", home / "card.json")
    (home / "doc.txt").write_text("賃貸借契約書\n")
    return home


def sign(home: Path, when: datetime.datetime, *extra: str) -> Path:
    output = home / f"doc.{len(list(home.glob('*.p7s')))}.p7s"
    ok(jpki(home, "--at", at(when), "sign", "--pin", "ABC123", *extra,
            str(home / "doc.txt"), "-o", str(output)))  # fmt: skip
    return output


def revoke(home: Path, when: datetime.datetime, reason: str) -> None:
    ok(jpki(home, "--at", at(when), "ca", "revoke", "--cert", "sign", "--reason", reason, "--yes"))


def verify(
    home: Path, signature: Path, when: datetime.datetime, *extra: str
) -> subprocess.CompletedProcess[str]:
    """`jpki --at WHEN verify` against the sign CA's CRL published at WHEN."""
    crl = home / "sign.crl"
    ok(jpki(home, "--at", at(when), "ca", "crl", "sign", "-o", str(crl), "--force"))
    return jpki(home, "--at", at(when), "verify", str(home / "doc.txt"), str(signature),
                "--crl", str(crl), *extra)  # fmt: skip


def test_revoked_superseded_after_signing_is_valid_at_signing_time(home: Path) -> None:
    signature = sign(home, T)
    revoke(home, T + DAY, "superseded")
    now = verify(home, signature, T + 2 * DAY)
    assert now.returncode == 1, now.stdout + now.stderr
    line = now.stdout.strip()
    assert line.startswith("INVALID now, valid at signing time: signed by 番号　太郎 (")
    assert f" at {T.isoformat()} (claimed by the signer); " in line
    assert line.endswith(
        f"; revocation crl; certificate was revoked on {shown(T + DAY)} (superseded)"
    )

    then = verify(home, signature, T + 2 * DAY, "--at", "signing-time")
    assert then.returncode == 0, then.stdout + then.stderr
    assert then.stdout.startswith("VALID as of the signing time: signed by 番号　太郎 (")
    assert then.stdout.strip().endswith(
        f"since then, certificate was revoked on {shown(T + DAY)} (superseded)"
    )


def test_the_json_report_carries_the_signing_time_and_the_event(home: Path) -> None:
    signature = sign(home, T)
    revoke(home, T + DAY, "affiliationChanged")
    event = {"kind": "revoked", "time": at(T + DAY), "reason": "affiliationChanged",
             "certificate": "signer"}  # fmt: skip
    now = verify(home, signature, T + 2 * DAY, "--json")
    assert now.returncode == 1
    report = json.loads(now.stdout)
    assert report["valid"] is False and report["valid_at_signing_time"] is True
    assert report["reason"] == "revoked" and report["event"] == event
    assert (report["signing_time"], report["signing_time_source"]) == (at(T), "signer")
    assert report["signer"]["name"] == "番号　太郎" and report["signer"]["revocation"] == "crl"

    then = verify(home, signature, T + 2 * DAY, "--at", "signing-time", "--json")
    assert then.returncode == 0
    report = json.loads(then.stdout)
    assert report["valid"] is True and report["as_of"] == "signing-time"
    assert report["event"] == event and report["signing_time_source"] == "signer"


def test_revoked_before_signing_is_invalid(home: Path) -> None:
    revoke(home, T, "superseded")
    signature = sign(home, T + DAY)
    for extra in ((), ("--at", "signing-time")):
        result = verify(home, signature, T + 2 * DAY, *extra)
        assert result.returncode == 1
        assert result.stdout.strip() == (
            f"INVALID: certificate was revoked on {shown(T)} (superseded), before the signing "
            f"time {shown(T + DAY)} (claimed by the signer)"
        )


def test_key_compromise_after_signing_is_reported_not_accepted(home: Path) -> None:
    signature = sign(home, T)
    revoke(home, T + DAY, "keyCompromise")
    for extra in ((), ("--at", "signing-time")):
        result = verify(home, signature, T + 2 * DAY, *extra)
        assert result.returncode == 1
        assert result.stdout.strip() == (
            f"INVALID: certificate was revoked on {shown(T + DAY)} (keyCompromise), after the "
            f"signing time {shown(T)} (claimed by the signer), but the key was reported "
            "compromised: whether the signature was made before that is the relying party's "
            "judgement"
        )
    report = json.loads(verify(home, signature, T + 2 * DAY, "--json").stdout)
    assert report["valid_at_signing_time"] is False and report["event"]["reason"] == "keyCompromise"


def test_expired_after_signing_the_day_after_the_fifth_birthday(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "doc.txt").write_text("年金の申請\n")
    created = datetime.datetime(
        2027, 1, 10, 9, tzinfo=datetime.timezone(datetime.timedelta(hours=9))
    )
    ok(jpki(home, "--at", at(created), "card", "create", "--auth-pin", "1234",
            "--sign-pin", "ABC123", "--birth-date", "1980-02-17"))  # fmt: skip
    signature = sign(home, created + 365 * DAY)
    timestamped = sign(home, created + 365 * DAY, "--timestamp")
    expiry = datetime.datetime(2031, 2, 17, 14, 59, 59, tzinfo=datetime.UTC)
    day_after = "2031-02-18T12:00:00+09:00"
    for p7s, source in ((signature, "claimed by the signer"), (timestamped, f"timestamp by {TSA}")):
        command = ("verify", str(home / "doc.txt"), str(p7s))
        # $JPKI_NOW sets the clock like `jpki --at`
        now = jpki(home, *command, env={"JPKI_NOW": day_after})
        assert now.returncode == 1, now.stdout + now.stderr
        assert now.stdout.startswith("INVALID now, valid at signing time: ")
        assert f"({source})" in now.stdout
        assert now.stdout.strip().endswith(f"certificate expired on {shown(expiry)}")
        then = jpki(home, "--at", day_after, *command, "--at", "signing-time")
        assert then.returncode == 0, then.stdout + then.stderr
        assert then.stdout.startswith("VALID as of the signing time: ")
        report = json.loads(jpki(home, "--at", day_after, *command, "--json").stdout)
        assert report["event"] == {"kind": "expired", "time": at(expiry), "reason": None,
                                   "certificate": "signer"}  # fmt: skip
    # Signed after the birthday: invalid, as before.
    late = sign(home, expiry + DAY)
    result = jpki(home, "--at", day_after, "verify", str(home / "doc.txt"), str(late))
    assert result.returncode == 1
    assert result.stdout.strip() == f"INVALID: certificate expired on {shown(expiry)}"


def test_a_timestamp_is_the_signing_time(home: Path) -> None:
    signature = sign(home, T, "--timestamp")
    assert (home / "ca" / "tsa.pem").exists()  # made on first use, pinned by default
    revoke(home, T + DAY, "superseded")
    now = verify(home, signature, T + 2 * DAY, "--json")
    report = json.loads(now.stdout)
    assert now.returncode == 1 and report["valid_at_signing_time"] is True
    assert report["signing_time_source"] == "timestamp" and report["timestamp_authority"] == TSA
    assert report["signing_time"] == at(T)
    text = verify(home, signature, T + 2 * DAY, "--at", "signing-time").stdout
    assert f" at {T.isoformat()} (timestamp by {TSA}); " in text


def test_a_timestamp_of_an_untrusted_tsa_is_refused(home: Path, tmp_path: Path) -> None:
    signature = sign(home, T, "--timestamp")
    tsa = TimeStampAuthority.of_ca(home / "ca")
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = build_tsa_certificate(
        other_key, tsa.certificate.not_valid_before_utc, tsa.certificate.not_valid_after_utc
    )
    pinned = tmp_path / "other-tsa.pem"
    pinned.write_bytes(other.public_bytes(serialization.Encoding.PEM))
    result = verify(home, signature, T + DAY, "--tsa-cert", str(pinned), "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["reason"] == "untrusted-timestamp"
    assert "which is not a trusted time-stamping authority" in report["message"]
    # With the right pin, explicitly, it verifies.
    good = verify(home, signature, T + DAY, "--tsa-cert", str(home / "ca" / "tsa.pem"))
    assert good.returncode == 0 and f"(timestamp by {TSA})" in good.stdout


def test_the_clock_reaches_verify_from_every_side(home: Path) -> None:
    signature = sign(home, T)
    revoke(home, T + DAY, "superseded")
    crl = home / "sign.crl"
    ok(jpki(home, "--at", at(T + 2 * DAY), "ca", "crl", "sign", "-o", str(crl)))
    command = ("verify", str(home / "doc.txt"), str(signature), "--crl", str(crl))
    results = [
        jpki(home, "--at", at(T + 2 * DAY), *command),
        jpki(home, *command, env={"JPKI_NOW": at(T + 2 * DAY)}),
        # the subcommand's --at wins over the top level's (the CRL stays fresh: the clock is T+2d)
        jpki(home, "--at", at(T + 2 * DAY), *command, "--at", at(T + DAY * 3 / 2)),
    ]
    assert [result.returncode for result in results] == [1, 1, 1]
    assert results[0].stdout == results[1].stdout
    assert "not as of" not in results[0].stdout
    before = jpki(home, "--at", at(T + 2 * DAY), *command, "--at", at(T + DAY / 2))
    assert before.returncode == 0, before.stdout + before.stderr
    assert before.stdout.startswith("VALID: ") and "since then, certificate was revoked" in (
        before.stdout
    )


def test_at_takes_a_time_or_signing_time(home: Path) -> None:
    signature = sign(home, T)
    result = jpki(home, "verify", str(home / "doc.txt"), str(signature), "--at", "yesterday")
    assert result.returncode == 2
    assert "signing-time" in result.stderr and "ISO 8601" in result.stderr
