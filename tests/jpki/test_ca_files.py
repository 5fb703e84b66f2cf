"""The test CA's files fail safe: ca.json read strictly, fixed modes, no CA over old keys, and
trust anchors that are damaged or writable by others refused with one line (exit 4)."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from jpki.durable import write_atomically
from jpki.issuer import ca as ca_module
from jpki.issuer.ca import CA_FILES, STATE_FILE, CAError, Revocation, RevocationReason, TestCA
from jpki.issuer.holder import Holder, Sex
from jpki.relying_party.verify import TrustAnchorError, TrustStore
from tests.conftest import CA_DIR, CARDS

ROOT = Path(__file__).resolve().parents[2]
EXIT_CA = 4
SUBJECT_KEY_ID_OID = bytes.fromhex("0603551d0e")  # 2.5.29.14, DER-encoded
OCTET_STRING_TAG = 0x04
NULL_TAG = 0x05
HOLDER = Holder(
    "権限　確認", datetime.date(1990, 1, 1), Sex.MALE, "東京都渋谷区１番", "123456789018"
)


def _taro_certificate(fid: str) -> x509.Certificate:
    jpki_ap = json.loads((CARDS / "taro.json").read_text(encoding="utf-8"))["applications"]["jpki"]
    return x509.load_der_x509_certificate(base64.b64decode(jpki_ap["files"][fid]))


# The signature certificate of the fixture card taro: recorded in the fixture CA, not revoked.
FIXTURE_SERIAL = _taro_certificate("0001").serial_number


def run_jpki(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "JPKI_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("jpki: error: "), result.stderr
    return lines[0]


@contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.fixture
def home(tmp_path: Path, ca_dir: Path) -> Path:
    shutil.copyfile(CARDS / "taro.json", tmp_path / "card.json")
    return tmp_path


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A document and its signature by the fixture card taro."""
    home = tmp_path_factory.mktemp("signer")
    shutil.copytree(CA_DIR, home / "ca")
    shutil.copyfile(CARDS / "taro.json", home / "card.json")
    document, signature = home / "contract.txt", home / "contract.txt.p7s"
    document.write_text("契約書\n", encoding="utf-8")
    result = run_jpki(home, "sign", str(document), "--pin", "ABC123", "-o", str(signature))
    assert result.returncode == 0, result.stderr
    return document, signature


def fixture_valid_at() -> datetime.datetime:
    """A day after the fixture card taro was issued: it and the fixture CA are valid then."""
    return _taro_certificate("0001").not_valid_before_utc + datetime.timedelta(days=1)


def verify(home: Path, signed: tuple[Path, Path], *extra: str) -> subprocess.CompletedProcess[str]:
    # At a fixed moment, not today: the committed fixture certificates expire.
    return run_jpki(
        home, "verify", *map(str, signed), "--at", fixture_valid_at().isoformat(), *extra
    )


# --- ca.json is read strictly ----------------------------------------------------------------


def test_fixture_ca_json_reads_back_to_the_same_bytes(ca_dir: Path) -> None:
    raw = (ca_dir / STATE_FILE).read_bytes()
    loaded = TestCA.load(ca_dir)
    assert ca_module._dumps(loaded._state(loaded.next_serial, loaded.issued)) == raw


def test_ca_json_with_a_revocation_reads_back_to_the_same_bytes(ca_dir: Path) -> None:
    # A version-1 ca.json with a revocation, as earlier versions wrote it (revoking now
    # migrates the record into ca.sqlite instead).
    fixture = TestCA.load(ca_dir)
    revocation = Revocation(
        datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
        RevocationReason.KEY_COMPROMISE,
    )
    issued = tuple(
        dataclasses.replace(entry, revocation=revocation) if entry.serial == FIXTURE_SERIAL
        else entry
        for entry in fixture.issued
    )  # fmt: skip
    raw = ca_module._dumps(fixture._state(fixture.next_serial, issued))
    (ca_dir / STATE_FILE).write_bytes(raw)
    loaded = TestCA.load(ca_dir)
    entry = loaded.find_issued(FIXTURE_SERIAL)
    assert entry is not None and entry.revocation == revocation
    assert ca_module._dumps(loaded._state(loaded.next_serial, loaded.issued)) == raw


def _changed(change: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        state = json.loads(path.read_text(encoding="utf-8"))
        change(state)
        path.write_text(json.dumps(state, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

    return damage


def _entry(**fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda state: state["issued"][1].update(fields)


def _drop(field: str) -> Callable[[dict[str, Any]], None]:
    return lambda state: state.pop(field)


def _next_serial(value: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], None]:
    """next_serial set to a value made from the fixture's own state (its serials change when
    the fixture is regenerated)."""
    return lambda state: state.update(next_serial=value(state))


def _serial_issued_twice(state: dict[str, Any]) -> None:
    state["issued"][1]["serial"] = state["issued"][0]["serial"]


def _replaced(old: str, new: str) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        text = path.read_text(encoding="utf-8")
        assert old in text
        path.write_text(text.replace(old, new, 1), encoding="utf-8")

    return damage


@pytest.mark.parametrize(
    ("damage", "field"),
    [
        (_changed(lambda state: state.update(note="kept?")), "unknown field 'note'"),
        (_changed(_entry(comment="x")), "issued[1]: unknown field 'comment'"),
        (_changed(_drop("crl_url")), "missing field 'crl_url'"),
        (_changed(lambda state: state["issued"][0].pop("label")), "issued[0]: missing field"),
        (_replaced('"crl_url": null,', '"crl_url": null, "crl_url": null,'), "'crl_url'"),
        (_changed(lambda state: state.update(version="1")), "version"),
        (_changed(lambda state: state.update(version=True)), "version"),
        (_changed(lambda state: state.update(production_dn="false")), "production_dn"),
        # the right value as a JSON number, then in upper case: hex text in lower case only
        (_changed(_next_serial(lambda state: int(state["next_serial"], 16))), "next_serial"),
        (_changed(_next_serial(lambda state: state["next_serial"].upper())), "next_serial"),
        (_changed(lambda state: state.update(next_serial="80000001")), "next_serial"),
        # issued[3] (and those after it) no longer below next_serial
        (_changed(_next_serial(lambda state: state["issued"][3]["serial"])), "issued[3].serial"),
        (_changed(lambda state: state.update(issued={})), "issued"),
        (_changed(lambda state: state.update(ocsp_url="file:///etc/passwd")), "ocsp_url"),
        (_changed(_serial_issued_twice), "issued[1].serial"),
        (_changed(_entry(kind="encryption")), "issued[1].kind"),
        (_changed(_entry(label=7)), "issued[1].label"),
        (_changed(_entry(subject="")), "issued[1].subject"),
        (_changed(_entry(not_after="2031-02-17T14:59:59")), "issued[1].not_after"),
        (_changed(_entry(not_after="2031-02-17T23:59:59+09:00")), "issued[1].not_after"),
        (_changed(_entry(not_after="2031-02-17T14:59:59Z")), "issued[1].not_after"),
        (_changed(_entry(revocation=None)), "issued[1].revocation"),
        (
            _changed(_entry(revocation={"time": "2026-01-01T00:00:00+00:00", "reason": "bored"})),
            "issued[1].revocation.reason",
        ),
        (
            _changed(_entry(revocation={"time": "2026-01-01T00:00:00+00:00"})),
            "issued[1].revocation: missing field 'reason'",
        ),
        (_replaced('"holder_name": "番号', '"holder_name": "\\ud800番号'), "issued[0].holder_name"),
    ],
)
def test_ca_json_is_read_against_its_schema(
    ca_dir: Path, damage: Callable[[Path], None], field: str
) -> None:
    path = ca_dir / STATE_FILE
    damage(path)
    before = path.read_bytes()
    with pytest.raises(CAError) as raised:
        TestCA.load(ca_dir)
    message = str(raised.value)
    assert "\n" not in message
    assert str(path) in message and field in message
    assert path.read_bytes() == before


HUGE_INTEGER = b"9" * 5000
DEEP_ARRAYS = b"[" * 100_000 + b"]" * 100_000
CRAFTED: dict[str, Callable[[bytes], bytes]] = {
    "5000-digit-integer": lambda raw: raw.replace(b'"version": 1', b'"version": ' + HUGE_INTEGER),
    "deep-arrays": lambda raw: raw.replace(b'"crl_url": null', b'"crl_url": ' + DEEP_ARRAYS),
    "invalid-utf-8": lambda raw: raw.replace("番号".encode(), b"\xff\xfe", 1),
    "truncated": lambda raw: raw[: len(raw) // 2],
}


@pytest.mark.parametrize("crafted", CRAFTED.values(), ids=list(CRAFTED))
def test_crafted_ca_json_gives_one_ca_error_line(
    ca_dir: Path, crafted: Callable[[bytes], bytes]
) -> None:
    path = ca_dir / STATE_FILE
    path.write_bytes(crafted(path.read_bytes()))
    with pytest.raises(CAError) as raised:
        TestCA.load(ca_dir)
    assert "\n" not in str(raised.value) and str(path) in str(raised.value)


def test_an_unknown_field_is_refused_never_dropped_by_a_rewrite(ca_dir: Path) -> None:
    test_ca = TestCA.load(ca_dir)
    path = ca_dir / STATE_FILE
    _changed(lambda state: state.update(added_by_a_newer_version=[1, 2]))(path)
    before = path.read_bytes()
    with pytest.raises(CAError, match="unknown field 'added_by_a_newer_version'"):
        test_ca.revoke(FIXTURE_SERIAL, RevocationReason.SUPERSEDED)
    assert path.read_bytes() == before


def test_an_unknown_field_through_the_cli_is_exit_4(home: Path) -> None:
    _changed(lambda state: state.update(note="x"))(home / "ca" / STATE_FILE)
    result = run_jpki(home, "ca", "revoke", "--cert", "sign", "--yes")
    assert result.returncode == EXIT_CA
    line = one_error_line(result)
    assert str(home / "ca" / STATE_FILE) in line and "'note'" in line


# --- modes whatever the umask ----------------------------------------------------------------


@pytest.mark.parametrize("mask", [0o000, 0o077], ids=oct)
def test_ca_modes_do_not_depend_on_the_umask(tmp_path: Path, mask: int) -> None:
    home = tmp_path / "home"
    with umask(mask):
        test_ca = TestCA.create(home / "ca")
        key = rsa.generate_private_key(65537, 2048).public_key()
        test_ca.issue_authentication_certificate(HOLDER, key)  # rewrites ca.json

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    assert mode(home) == 0o700 and mode(home / "ca") == 0o700
    assert mode(home / "ca" / STATE_FILE) == 0o600  # it names the holders
    for name in ("signature-ca.key", "authentication-ca.key", "card-info-signer.key",
                 "cvc-root.key", "cvc-issuer.key"):  # fmt: skip
        assert mode(home / "ca" / name) == 0o600
    for name in ("signature-ca.pem", "authentication-ca.pem"):
        assert mode(home / "ca" / name) == 0o644


def test_an_existing_ca_json_becomes_private_on_its_next_write(ca_dir: Path) -> None:
    os.chmod(ca_dir / STATE_FILE, 0o644)
    TestCA.load(ca_dir).revoke(FIXTURE_SERIAL, RevocationReason.SUPERSEDED)
    assert stat.S_IMODE((ca_dir / STATE_FILE).stat().st_mode) == 0o600


@pytest.mark.parametrize("mask", [0o000, 0o077, 0o777], ids=oct)
@pytest.mark.parametrize("mode", [0o600, 0o644], ids=oct)
def test_write_atomically_gives_exactly_the_requested_mode(
    tmp_path: Path, mask: int, mode: int
) -> None:
    path = tmp_path / "out.bin"
    with umask(mask):
        write_atomically(path, b"data", mode)
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert path.read_bytes() == b"data"


def test_leftover_copies_go_when_the_ca_lock_is_held(ca_dir: Path) -> None:
    leftover = ca_dir / f".{STATE_FILE}.0123abcd.tmp"
    leftover.write_bytes(b"{half a state")
    unrelated = ca_dir / ".notes.txt.0123abcd.tmp"
    unrelated.write_bytes(b"someone else's")
    TestCA.load(ca_dir).revoke(FIXTURE_SERIAL, RevocationReason.SUPERSEDED)
    assert not leftover.exists()
    assert unrelated.exists()


# --- no new CA over existing keys ------------------------------------------------------------


@pytest.mark.parametrize("name", CA_FILES)
def test_create_refuses_a_directory_holding_any_ca_file(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(b"what was there")
    with pytest.raises(CAError, match="refusing to overwrite") as raised:
        TestCA.create(tmp_path)
    assert name in str(raised.value) and str(tmp_path) in str(raised.value)
    assert (tmp_path / name).read_bytes() == b"what was there"
    assert {path.name for path in tmp_path.iterdir()} <= {name, "ca.json.lock"}


def test_card_create_never_makes_a_ca_over_existing_keys(home: Path) -> None:
    (home / "ca" / STATE_FILE).unlink()
    keys = {path.name: path.read_bytes() for path in (home / "ca").glob("*.key")}
    card = home / "new.json"
    result = run_jpki(home, "card", "create", "--card", str(card),
                      "--auth-pin", "1234", "--sign-pin", "ABC123")  # fmt: skip
    assert result.returncode == EXIT_CA
    line = one_error_line(result)
    assert "ca.json is missing" in line and "signature-ca.key" in line
    assert {path.name: path.read_bytes() for path in (home / "ca").glob("*.key")} == keys
    assert not (home / "ca" / STATE_FILE).exists() and not card.exists()


# --- trust anchors ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o777], ids=oct)
def test_verify_refuses_a_ca_directory_others_can_write(
    home: Path, signed: tuple[Path, Path], mode: int
) -> None:
    directory = home / "ca"
    os.chmod(directory, mode)
    refused = verify(home, signed)
    assert refused.returncode == EXIT_CA
    assert str(directory) in one_error_line(refused) and "writable" in refused.stderr
    os.chmod(directory, 0o700)
    assert verify(home, signed).returncode == 0


def test_login_refuses_a_ca_directory_others_can_write(home: Path) -> None:
    os.chmod(home / "ca", 0o777)
    refused = run_jpki(home, "login", "--pin", "1234")
    assert refused.returncode == EXIT_CA
    assert str(home / "ca") in one_error_line(refused)


@pytest.mark.parametrize("mode", [0o664, 0o646], ids=oct)
def test_verify_refuses_a_ca_cert_file_others_can_write(
    tmp_path: Path, signed: tuple[Path, Path], mode: int
) -> None:
    anchor = tmp_path / "sign-ca.pem"
    shutil.copyfile(CA_DIR / "signature-ca.pem", anchor)
    os.chmod(anchor, mode)
    refused = verify(tmp_path, signed, "--ca-cert", str(anchor))
    assert refused.returncode == EXIT_CA
    assert str(anchor) in one_error_line(refused)
    os.chmod(anchor, 0o644)
    assert verify(tmp_path, signed, "--ca-cert", str(anchor)).returncode == 0


def _der(path: Path) -> bytearray:
    certificate = x509.load_pem_x509_certificate(path.read_bytes())
    return bytearray(certificate.public_bytes(serialization.Encoding.DER))


def _write_pem(path: Path, der: bytes) -> None:
    body = base64.encodebytes(der).decode()
    path.write_text(f"-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n")


def _damage_an_extension(path: Path) -> None:
    """The subject key identifier no longer an OCTET STRING: parsed (and refused) lazily."""
    der = _der(path)
    at = der.index(SUBJECT_KEY_ID_OID) + len(SUBJECT_KEY_ID_OID) + 2
    assert der[at] == OCTET_STRING_TAG
    der[at] = NULL_TAG
    _write_pem(path, bytes(der))


def _damage_the_signature(path: Path) -> None:
    der = _der(path)
    der[-1] ^= 0xFF
    _write_pem(path, bytes(der))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:400])


DAMAGES = [_damage_an_extension, _damage_the_signature, _truncate]


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_ca_certificate_is_exit_4_naming_the_file(
    home: Path, signed: tuple[Path, Path], damage: Callable[[Path], None]
) -> None:
    damaged = home / "ca" / "signature-ca.pem"
    damage(damaged)
    for result in (
        verify(home, signed),
        verify(home, signed, "--ca-cert", str(damaged)),
        run_jpki(
            home,
            "card",
            "create",
            "--card",
            str(home / "new.json"),
            "--auth-pin",
            "1234",
            "--sign-pin",
            "ABC123",
        ),  # fmt: skip
    ):
        assert result.returncode == EXIT_CA, result.stderr
        assert str(damaged) in one_error_line(result)
    assert not (home / "new.json").exists()


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_ca_certificates_are_refused_when_loaded(
    ca_dir: Path, damage: Callable[[Path], None]
) -> None:
    damaged = ca_dir / "authentication-ca.pem"
    damage(damaged)
    with pytest.raises(CAError, match="authentication-ca.pem is damaged"):
        TestCA.load(ca_dir)
    with pytest.raises(TrustAnchorError, match="authentication-ca.pem is damaged"):
        TrustStore.from_files([damaged])
