"""The PC/SC harness itself: it stops what it starts, whatever the process does with its signal."""

from __future__ import annotations

import signal
import subprocess
import sys
import warnings

import pytest

from jpki.testing.pcscd import PrivatePcscd, end_process, wait_for
from tests.pcsc.harness import READER, ROOT, ServedCard


def test_a_process_that_ignores_its_signal_is_killed() -> None:
    # An ignored signal stays ignored across exec: this sleep shrugs off SIGTERM.
    process = subprocess.Popen(
        ["sh", "-c", "trap '' TERM; echo ready; exec sleep 60"], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "ready\n"  # the trap is set
    assert not end_process(process, signal.SIGTERM, grace=0.2)
    assert process.returncode == -signal.SIGKILL
    process.stdout.close()


def test_a_process_that_obeys_is_not_killed() -> None:
    process = subprocess.Popen(["sleep", "60"])
    assert end_process(process, signal.SIGTERM)
    assert process.returncode == -signal.SIGTERM


HOLD_THE_CARD = """
import sys
from jpki.client.connection import PcscConnection
connection = PcscConnection(sys.argv[1])
print("holding", flush=True)
sys.stdin.read()
"""


@pytest.mark.reader_stack
def test_pcscd_stops_with_a_client_holding_the_served_card(
    pcscd: PrivatePcscd, served: ServedCard
) -> None:
    client = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_CARD, READER],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert client.stdout is not None and client.stdin is not None
    try:
        assert client.stdout.readline() == "holding\n"
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # "pcscd ignored SIGTERM … was killed" fails the test
            pcscd.stop()
        assert pcscd.process is None
    finally:
        client.stdin.close()
        end_process(client, signal.SIGTERM)
        client.stdout.close()
        if pcscd.process is None:
            pcscd.start()  # the session's pcscd, for the tests after this one
    wait_for(READER, present=True)  # jpki serve found the new pcscd by itself
