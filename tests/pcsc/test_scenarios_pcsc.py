"""The scenario guide through a real reader: the scenarios of tests/cli/test_scenarios.py with the
card served by `jpki serve` to a private pcscd (vpcd) and driven by pyscard alone.

The forgotten auth PIN is reset by the administration APDUs (EXTERNAL AUTHENTICATE with the
AES-CMAC of `jpki window admin-key`, RESET RETRY COUNTER), the administrator's lock reached and
restored on the way; the lost card is suspended and renewed by `jpki` while the card is out of
the reader, and read back over APDUs after each step. After every step the same witnesses as in
memory agree, and `jpki pin status --reader` reads the counters through pcscd as well.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.cli import test_scenarios as scenarios
from tests.cli.test_card_commands import jpki
from tests.cli.test_scenarios import Terminal, Truth
from tests.pcsc.harness import READER, Pcscd, ServedCard
from tests.pcsc.test_whole_card import connected

pytestmark = [pytest.mark.reader_stack, pytest.mark.root]

# The scenarios' card: issued once for this module, copied for each test.
issued = scenarios.issued
home = scenarios.home
truth = scenarios.truth


@contextmanager
def through_pcscd(card: Path) -> Iterator[Terminal]:
    """The card file's card served in the first vpcd slot and connected with pyscard; once the
    script lets go, `jpki pin status --reader` must read the counters the script saw."""
    with ServedCard(card):
        with connected(READER) as connection:
            terminal = Terminal(connection.send)
            yield terminal
        if terminal.seen:
            result = jpki(card.parent, "--reader", READER, "pin", "status", "--json")
            assert result.returncode == 0, result.stderr
            read = {row["key"]: row["tries_left"] for row in json.loads(result.stdout)}
            assert read == terminal.seen


def test_forgotten_auth_pin_reset_by_the_administration_apdus(
    pcscd: Pcscd, home: Path, truth: Truth
) -> None:
    scenarios.reset_by_apdus(home, truth, through_pcscd)


def test_lost_card_suspended_then_found_and_renewed(pcscd: Pcscd, home: Path, truth: Truth) -> None:
    scenarios.lost_card(home, truth, through_pcscd)
