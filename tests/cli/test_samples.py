"""The sample cards (見本カード) as a user meets them: `jpki card samples` lists them, and every
card `jpki card create --sample NAME` issues, and every committed fixture card, shows in
`jpki card info` and `jpki pin status` the state its sample declares."""

from __future__ import annotations

import datetime
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from jpki.issuer.samples import CHILD_AGE, SAMPLES, years_before
from tests.cli.test_text_face_pin import jpki
from tests.conftest import CA_DIR, CARDS, FIXTURE_VALID_AT

SAMPLE_NAMES = [sample.name for sample in SAMPLES]
FIXTURE_CARDS = sorted(CARDS.glob("*.json"))
SIGNATURE_MIN_AGE = 15  # no signature certificate or password below it


@dataclass(frozen=True)
class Issued:
    """A card file and what `jpki card info --json` and `jpki pin status --json` said of it."""

    home: Path
    card: Path
    info: dict[str, Any]
    status: dict[str, dict[str, Any]]  # by PIN key


def run_json(home: Path, *args: str) -> Any:
    result = jpki(home, *args)
    assert result.returncode == 0, f"jpki {' '.join(args)}: {result.stderr}"
    return json.loads(result.stdout)


def look_at(home: Path, card: Path) -> Issued:
    info = run_json(home, "card", "info", "--json", "--card", str(card))
    status = run_json(home, "pin", "status", "--json", "--card", str(card))  # the card opens
    return Issued(home, card, info, {row["key"]: row for row in status})


@pytest.fixture(scope="module")
def declared() -> dict[str, dict[str, Any]]:
    """`jpki card samples --json`, by name."""
    listed = run_json(Path("/nonexistent"), "card", "samples", "--json")
    return {entry["name"]: entry for entry in listed}


@pytest.fixture(scope="module")
def issue(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Issued]:
    """Issues a sample once per module, in a home of its own with a copy of the fixture CA (a
    revoked sample's revocations go into that CA's record)."""
    cards: dict[str, Issued] = {}

    def issued(name: str) -> Issued:
        if name not in cards:
            home = tmp_path_factory.mktemp(f"sample-{name}")
            shutil.copytree(CA_DIR, home / "ca")
            card = home / "card.json"
            created = jpki(home, "card", "create", "--sample", name, "--card", str(card))
            assert created.returncode == 0, created.stderr
            assert f"Created sample card {name!r}" in created.stdout
            cards[name] = look_at(home, card)
        return cards[name]

    return issued


def revoked_serials(home: Path, which: str) -> set[int]:
    """The serial numbers on a fresh CRL of the home's CA (`jpki ca crl`): the CA's record."""
    crl_file = home / f"{which}.crl"
    result = jpki(home, "ca", "crl", which, "-o", str(crl_file), "--force")
    assert result.returncode == 0, result.stderr
    return {entry.serial_number for entry in x509.load_der_x509_crl(crl_file.read_bytes())}


def age_on(birth: datetime.date, day: datetime.date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def assert_in_declared_state(
    issued: Issued, entry: dict[str, Any], moment: datetime.datetime
) -> None:
    """What card info and pin status show agrees with the sample's entry in `card samples
    --json`, with each other, and with the certificates' state as of `moment`."""
    info, status = issued.info, issued.status
    assert info["sample"] == entry["name"]
    assert info["attributes_header"] == entry["attributes_header"]
    assert info["forged"] is None

    holder, expected = dict(info["holder"]), dict(entry["holder"])
    issued_on = datetime.datetime.fromisoformat(info["issued"]).date()
    born = datetime.date.fromisoformat(holder["birth_date"])
    if entry["name"] == "child":  # its birth date follows the issuance day
        assert holder.pop("birth_date") == years_before(issued_on, CHILD_AGE).isoformat()
        expected.pop("birth_date")
    assert holder == expected

    # Locked PINs: blocked on the card file and on the card, and nothing else blocked.
    locked = set(entry["locked"])
    assert {key for key, pin in info["pins"].items() if pin["blocked"]} == locked
    assert {key for key, row in status.items() if row["blocked"]} == locked
    for key, pin in info["pins"].items():
        assert status[key]["present"], key
        assert status[key]["tries_left"] == pin["tries_left"], key
        assert status[key]["max_tries"] == pin["max_tries"], key
    for key in locked:
        assert status[key]["tries_left"] == 0

    # Certificates: none, or valid, expired or revoked as of `moment`.
    certificates = info["certificates"]
    adult = age_on(born, issued_on) >= SIGNATURE_MIN_AGE
    state = entry["certificates"]
    if state == "none":
        assert not {"auth", "sign"} & set(certificates)
        return
    holder_keys = ["auth", "sign"] if adult else ["auth"]
    assert [key for key in ("auth", "sign") if key in certificates] == holder_keys
    for key in holder_keys:
        not_before = datetime.datetime.fromisoformat(certificates[key]["not_before"])
        not_after = datetime.datetime.fromisoformat(certificates[key]["not_after"])
        if state == "expired":
            assert not_after < moment, (key, not_after)
        else:
            assert not_before <= moment <= not_after, (key, not_before, not_after)
    if state == "revoked":
        for key in holder_keys:
            serial = int(certificates[key]["serial"], 16)
            assert serial in revoked_serials(issued.home, key), key
    else:
        assert state in ("valid", "expired"), state


# --- the list ------------------------------------------------------------------------------


def test_samples_lists_each_sample_on_a_line_of_its_own() -> None:
    result = jpki(Path("/nonexistent"), "card", "samples")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(SAMPLES)
    for line, sample in zip(lines, SAMPLES, strict=True):
        name, separator, description = line.partition("  ")
        assert (name, separator) == (sample.name, "  ")
        assert description.strip() == sample.description


def test_samples_json_gives_each_holder_and_state(declared: dict[str, dict[str, Any]]) -> None:
    assert list(declared) == SAMPLE_NAMES
    for entry in declared.values():
        assert entry["description"]
        assert {"name", "birth_date", "sex", "address", "my_number"} <= set(entry["holder"])
        assert entry["certificates"] in ("valid", "expired", "revoked", "none")
        assert entry["attributes_header"] in ("short", "long")
        assert isinstance(entry["locked"], list)
        assert "auth" in entry["pins"]
    # Only holders with a signature certificate have a signature password.
    without = [name for name, entry in declared.items() if "sign" not in entry["pins"]]
    assert without == ["child", "no-certificates"]


def test_an_unknown_sample_is_refused_naming_the_list(tmp_path: Path) -> None:
    result = jpki(tmp_path, "card", "create", "--sample", "nobody")
    assert result.returncode == 2
    assert "jpki card samples" in result.stderr
    assert not (tmp_path / "card.json").exists()


# --- every sample, issued now ---------------------------------------------------------------


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_a_created_sample_is_in_its_declared_state(
    name: str, issue: Callable[[str], Issued], declared: dict[str, dict[str, Any]]
) -> None:
    assert_in_declared_state(issue(name), declared[name], datetime.datetime.now(datetime.UTC))


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_every_declared_pin_is_on_the_card(
    name: str, issue: Callable[[str], Issued], declared: dict[str, dict[str, Any]]
) -> None:
    status = issue(name).status
    missing = [key for key in declared[name]["pins"] if not status[key]["present"]]
    assert not missing, f"{name} declares PINs the card does not have: {missing}"


def test_different_pins_each_verify_with_their_own_value(
    issue: Callable[[str], Issued], declared: dict[str, dict[str, Any]]
) -> None:
    pins = declared["different-pins"]["pins"]
    issued = issue("different-pins")
    card = issued.home / "pins.json"
    shutil.copyfile(issued.card, card)  # a copy never opened: its own retry counters
    home, on_card = issued.home, ("--card", str(card))

    number = jpki(home, "text", "mynumber", "--pin", pins["card-info"], *on_card)
    assert number.returncode == 0, number.stderr
    assert number.stdout.strip() == declared["different-pins"]["holder"]["my_number"]
    # Changing a PIN to itself verifies the current one first.
    for key in ("auth", "sign", "juki", "common"):
        changed = jpki(home, "pin", "change", key, "--pin", pins[key], "--new-pin", pins[key],
                       *on_card)  # fmt: skip
        assert changed.returncode == 0, (key, changed.stderr)
    # The card-info PIN is not the authentication PIN here.
    other = jpki(home, "text", "mynumber", "--pin", pins["auth"], *on_card)
    assert other.returncode == 6
    assert "wrong card-info PIN" in other.stderr


# --- the committed fixtures -----------------------------------------------------------------


@pytest.mark.parametrize("fixture", FIXTURE_CARDS, ids=[path.stem for path in FIXTURE_CARDS])
def test_a_fixture_card_opens_in_the_state_of_its_sample(
    fixture: Path, tmp_path: Path, declared: dict[str, dict[str, Any]]
) -> None:
    home = tmp_path / "home"
    shutil.copytree(CA_DIR, home / "ca")  # the CA that issued the fixtures, and its record
    card = home / "card.json"
    shutil.copyfile(fixture, card)  # opening a card may write beside it: never in fixtures/
    issued = look_at(home, card)
    assert issued.info["sample"] in declared, f"{fixture.name} names no sample"
    assert issued.info["sample"] == fixture.stem
    # Fixture material is checked at the moment it is valid, never on today's date.
    assert_in_declared_state(issued, declared[issued.info["sample"]], FIXTURE_VALID_AT)


def test_every_sample_has_a_fixture() -> None:
    assert sorted(path.stem for path in FIXTURE_CARDS) == sorted(SAMPLE_NAMES)
