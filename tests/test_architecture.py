"""The roles' boundaries, as a user of each package meets them: what an import drags in."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def modules_loaded_by(*imports: str) -> set[str]:
    """Project modules a fresh interpreter holds after these imports."""
    code = "\n".join(
        [*(f"import {name}" for name in imports),
         "import json, sys",
         "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
         "('card_emulator', 'jpki', 'cli'))))"]
    )  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return set(json.loads(result.stdout))


def test_the_import_contracts_hold() -> None:
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint_imports, "import-linter is a test dependency: pip install -e '.[test]'"
    result = subprocess.run([lint_imports], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_relying_party_loads_no_issuer_no_client_and_no_card() -> None:
    loaded = modules_loaded_by(
        "jpki.relying_party.verify",
        "jpki.relying_party.documents",
        "jpki.relying_party.login",
        "jpki.relying_party.revocation",
    )
    assert "jpki.relying_party.login" in loaded
    assert not {m for m in loaded if m.startswith(("card_emulator", "jpki.issuer", "jpki.client"))}


@pytest.mark.parametrize(
    "imports",
    [
        ("card_emulator.vocabulary.apdu", "card_emulator.vocabulary.sw"),
        ("card_emulator.vocabulary.pins", "card_emulator.vocabulary.keys"),
        ("jpki.client.session", "jpki.client.connection", "jpki.client.signing"),
    ],
)
def test_the_card_vocabulary_loads_no_engine_state_or_transport(imports: tuple[str, ...]) -> None:
    loaded = modules_loaded_by(*imports)
    emulator = {m for m in loaded if m.startswith("card_emulator")}
    assert emulator, "the imports should load the vocabulary"
    assert all(m == "card_emulator" or m.startswith("card_emulator.vocabulary") for m in emulator)


def test_virtual_card_is_importable_from_the_package() -> None:
    code = (
        "from card_emulator import VirtualCard\n"
        "card = VirtualCard.in_memory('fixtures/cards/taro.json')\n"
        "print(card.transmit(bytes.fromhex('00A4040C0AD392F000260100000001')).hex())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "9000"


@pytest.mark.parametrize("arguments", [["--help"], ["--card", "{card}", "pin", "status"]])
def test_commands_import_only_what_they_use(tmp_path: Path, arguments: list[str]) -> None:
    card = tmp_path / "card.json"
    card.write_bytes((ROOT / "fixtures" / "cards" / "taro.json").read_bytes())
    argv = [card.as_posix() if a == "{card}" else a for a in arguments]
    code = (
        "import json, sys\n"
        "from cli.main import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(json.dumps(sorted(sys.modules)), file=sys.stderr)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    loaded = set(json.loads(result.stderr.strip().splitlines()[-1]))
    heavy = ("jpki.issuer", "jpki.cms", "jpki.relying_party", "http.client", "asn1crypto")
    assert not {module for module in loaded if module.startswith(heavy)}
