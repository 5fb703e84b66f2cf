"""Golden APDU exchanges, kept as data in conformance/*.txt (see the header of jpki-ap.txt)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import CardFactory

CASES = Path(__file__).resolve().parent / "conformance"
HEX_BYTE = "[0-9A-F]{2}"


@dataclass
class Scenario:
    name: str
    card: str = "taro"
    settings: dict[str, str] = field(default_factory=dict)
    steps: list[tuple[str, str, int]] = field(default_factory=list)  # (command, pattern, line)


def expected_pattern(text: str) -> str:
    """`..` any byte, `{N}` / `{N-M}` that many bytes, `*` any bytes; the rest is literal hex."""
    parts = []
    for token in text.split():
        if token == "*":
            parts.append(f"(?:{HEX_BYTE})*")
        elif m := re.fullmatch(r"\{(\d+)(?:-(\d+))?\}", token):
            parts.append(f"(?:{HEX_BYTE}){{{m[1]},{m[2] or m[1]}}}")
        else:
            parts.append(
                re.escape(token.upper()).replace(r"\.\.", HEX_BYTE).replace("..", HEX_BYTE)
            )
    return "".join(parts)


def load(path: Path) -> list[Scenario]:
    scenarios: list[Scenario] = []
    pending: str | None = None
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip() if not raw.startswith("##") else raw.strip()
        if not line:
            continue
        if line.startswith("##"):
            scenarios.append(Scenario(f"{path.stem}: {line[2:].strip()}"))
        elif line.startswith("@card"):
            scenarios[-1].card = line.split()[1]
        elif line.startswith("@setting"):
            key, value = line.split(None, 1)[1].split("=", 1)
            scenarios[-1].settings[key.strip()] = value.strip()
        elif line.startswith(">") or line in ("reset", "power-cycle"):
            pending = line[1:].strip() if line.startswith(">") else line
        elif line.startswith("<"):
            assert pending is not None, f"{path.name}:{number}: response without a command"
            scenarios[-1].steps.append((pending, expected_pattern(line[1:]), number))
            pending = None
        else:
            raise ValueError(f"{path.name}:{number}: cannot parse {raw!r}")
    return scenarios


ALL = [s for path in sorted(CASES.glob("*.txt")) for s in load(path)]


@pytest.mark.parametrize("scenario", ALL, ids=[s.name for s in ALL])
def test_exchange(scenario: Scenario, make_card: CardFactory) -> None:
    from card_emulator.state.image import CardSettings

    settings = {k: CardSettings.value_of(k, v) for k, v in scenario.settings.items()}
    card = make_card(scenario.card, **settings)
    for command, pattern, line in scenario.steps:
        if command == "reset":
            answer = card.reset()
        elif command == "power-cycle":
            card.power_off()
            answer = card.power_on()
        else:
            answer = card.transmit(bytes.fromhex(command.replace(" ", "")))
        got = answer.hex().upper()
        assert re.fullmatch(pattern, got), f"line {line}: {command} -> {got}"


def test_every_file_has_scenarios() -> None:
    assert len(ALL) > 20 and all(s.steps for s in ALL)
