"""A terminal's in-person read of the card, end to end through `jpki`: draw the front of a
created card (`jpki card face-image`), OCR it, make 照合番号B from what is printed, and open the
chip's face with it (`jpki face read`). A front printed with other values opens nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.cli.test_text_face_pin import jpki
from tests.conftest import CA_DIR
from tests.jpki.test_face_images import ocr, read_front

# One holder born in Showa, one whose birth date has no era (Gregorian YYMMDD in B).
HOLDERS = ["taro", "unknown-era"]


@pytest.fixture(scope="module")
def issued(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with the fixture CA and each sample of HOLDERS issued as NAME.json; the tests
    work on copies of it."""
    home = tmp_path_factory.mktemp("issued")
    shutil.copytree(CA_DIR, home / "ca")
    for name in HOLDERS:
        created = jpki(
            home, "card", "create", "--sample", name, "--card", str(home / f"{name}.json")
        )
        assert created.returncode == 0, created.stderr
    return home


@pytest.fixture
def home(tmp_path: Path, issued: Path) -> Path:
    home = tmp_path / "home"
    shutil.copytree(issued, home)
    return home


def printed_collation_b(home: Path, card: Path, *forged: str) -> str:
    """照合番号B as OCR reads it off the front `jpki card face-image` draws."""
    front = home / "front.png"
    drawn = jpki(home, "card", "face-image", "--card", str(card), "-o", str(front), "--force",
                 *forged)  # fmt: skip
    assert drawn.returncode == 0, drawn.stderr
    return read_front(ocr(front.read_bytes())).collation_number_b


@pytest.mark.tesseract
@pytest.mark.parametrize("name", HOLDERS)
def test_the_printed_face_opens_the_chip(home: Path, name: str) -> None:
    card = home / f"{name}.json"
    info = json.loads(jpki(home, "card", "info", "--json", "--card", str(card)).stdout)

    collation_b = printed_collation_b(home, card)

    result = jpki(home, "face", "read", "--card", str(card), "--collation-b", collation_b,
                  "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    face = json.loads(result.stdout)
    assert face["credential"] == "collation-b"
    assert face["birth_date"] == info["holder"]["birth_date"]
    assert face["card_expiry"] == info["card_expiry"]


@pytest.mark.tesseract
@pytest.mark.parametrize("name", HOLDERS)
def test_a_front_printed_with_other_values_does_not_open_the_chip(home: Path, name: str) -> None:
    card = home / f"{name}.json"
    genuine = printed_collation_b(home, card)

    forged = printed_collation_b(home, card, "--forged", "mismatch")

    assert forged != genuine
    result = jpki(home, "face", "read", "--card", str(card), "--collation-b", forged)
    assert result.returncode == 6, result.stdout + result.stderr
    assert "wrong collation number B: 9 tries left" in result.stderr
    assert forged not in result.stdout + result.stderr  # never echoed
