"""Every kind of fault, set from Python on a `pcsc_card`, as real clients see it through the
private pcscd: pyscard, and OpenSC's pkcs11-tool. Each test also reads the card's trace: the
fault is in it, a PIN never is."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from card_emulator.state.store import read_image
from jpki.testing.plugin import PcscCard, PcscCardFactory

pytestmark = pytest.mark.reader_stack

MODULE = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"
AUTH_TOKEN = "JPKI (User Authentication PIN)"
AUTH_PIN = "1234"
WRONG_PIN = "0000"
SELECT_JPKI = "00A4040C0AD392F000260100000001"
SELECT_AUTH_PIN = "00A4020C020018"
SELECT_AUTH_CERTIFICATE = "00A4020C02000A"
READ_HEADER = "00B0000004"
PIN_STATUS = "00200080"  # VERIFY without data: 63Cx, x tries left
SIGN_INS = "2A"  # PERFORM SECURITY OPERATION: COMPUTE DIGITAL SIGNATURE
TIMEOUT = 60


# pyscard -------------------------------------------------------------------------------------


@contextmanager
def pyscard(reader: str) -> Iterator[Any]:
    """A pyscard connection to the card in `reader`, disconnected afterwards."""
    from smartcard.Exceptions import CardConnectionException
    from smartcard.System import readers

    chosen = next(candidate for candidate in readers() if str(candidate) == reader)
    connection = chosen.createConnection()
    connection.connect()
    try:
        yield connection
    finally:
        with contextlib.suppress(CardConnectionException):  # the card may be gone already
            connection.disconnect()


def send(connection: Any, command: str) -> tuple[bytes, str]:
    """(data, SW in hex) of a command in hex."""
    data, sw1, sw2 = connection.transmit(list(bytes.fromhex(command)))
    return bytes(data), f"{sw1:02X}{sw2:02X}"


def auth_pin_tries(reader: str) -> str:
    """What the card says of the authentication PIN: 63Cx with x tries left."""
    with pyscard(reader) as connection:
        for command in (SELECT_JPKI, SELECT_AUTH_PIN):
            assert send(connection, command)[1] == "9000"
        return send(connection, PIN_STATUS)[1]


def reader_names() -> list[str]:
    from smartcard.System import readers

    return [str(reader) for reader in readers()]


# pkcs11-tool ---------------------------------------------------------------------------------


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.write_bytes("signed through a private pcscd — 署名\n".encode())
    return path


def pkcs11_tool(
    served: PcscCard, tmp_path: Path, *arguments: str
) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "home"  # no user configuration or OpenSC file cache leaks in
    home.mkdir(exist_ok=True)
    environment = {**served.environment, "HOME": str(home), "XDG_CACHE_HOME": str(home / "cache")}
    return subprocess.run(
        ["pkcs11-tool", "--module", MODULE, *arguments],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=environment,
    )


def pkcs11_sign(served: PcscCard, tmp_path: Path, data: Path) -> subprocess.CompletedProcess[str]:
    signature = tmp_path / "signature"
    signature.unlink(missing_ok=True)
    return pkcs11_tool(
        served, tmp_path,
        "--token-label", AUTH_TOKEN, "--login", "--pin", AUTH_PIN,
        "--sign", "--id", "01", "-m", "SHA256-RSA-PKCS", "-i", str(data), "-o", str(signature),
    )  # fmt: skip


def assert_signed(served: PcscCard, tmp_path: Path, data: Path) -> None:
    """pkcs11-tool signs, and the signature verifies with the card's authentication certificate."""
    signed = pkcs11_sign(served, tmp_path, data)
    assert signed.returncode == 0, signed.stderr
    assert served.card.path is not None
    der = read_image(served.card.path).contents("jpki").files[0x000A]
    public_key = x509.load_der_x509_certificate(der).public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    signature = (tmp_path / "signature").read_bytes()
    public_key.verify(signature, data.read_bytes(), padding.PKCS1v15(), hashes.SHA256())


def tokens(served: PcscCard, tmp_path: Path) -> list[str]:
    """The token labels `pkcs11-tool -L` lists in the card's reader."""
    listed = pkcs11_tool(served, tmp_path, "-L")
    assert listed.returncode == 0, listed.stderr
    labels, in_reader = [], False
    for line in listed.stdout.splitlines():
        if line.startswith("Slot "):
            in_reader = line.rstrip().endswith(served.reader)
        elif in_reader and line.strip().startswith("token label"):
            labels.append(line.partition(":")[2].strip())
    return labels


def signing_index(served: PcscCard, tmp_path: Path, data: Path) -> int:
    """How many APDUs a pkcs11-tool signature sends before its COMPUTE DIGITAL SIGNATURE."""
    start = served.card.trace.last_seq
    assert_signed(served, tmp_path, data)
    commands = [event.command for event in served.card.trace.since(start) if event.kind == "apdu"]
    return next(n for n, command in enumerate(commands) if command[2:4] == SIGN_INS)


# The trace -----------------------------------------------------------------------------------


def assert_traced(served: PcscCard, spec: str, pins: tuple[str, ...] = (AUTH_PIN,)) -> None:
    """The fault is in the card's trace, by its spec; the PINs sent are nowhere in it."""
    events = served.card.trace.since(0)
    assert any(event.kind == "fault" and spec in event.text for event in events), [
        event.text for event in events if event.kind != "apdu"
    ]
    for event in events:
        for pin in pins:
            assert pin.encode().hex() not in event.command.lower()
            assert pin not in event.text


# sw= -----------------------------------------------------------------------------------------


def test_a_status_word_for_one_matching_command_reaches_pyscard(
    pcsc_card: PcscCardFactory,
) -> None:
    served = pcsc_card()
    served.card.faults.add("sw=6A82,ins=B0,nth=2")
    with pyscard(served.reader) as connection:
        for command in (SELECT_JPKI, SELECT_AUTH_CERTIFICATE):
            assert send(connection, command)[1] == "9000"
        first, second, third = (send(connection, READ_HEADER) for _ in range(3))
    assert first[1] == "9000" and first[0][:2] == b"\x30\x82"
    assert second == (b"", "6A82")
    assert third == first
    assert_traced(served, "sw=6A82,ins=B0,nth=2")


def test_a_status_word_for_the_signature_fails_pkcs11_tool(
    pcsc_card: PcscCardFactory, tmp_path: Path, data: Path
) -> None:
    served = pcsc_card()
    fault = served.card.faults.add(f"sw=6982,ins={SIGN_INS}")
    refused = pkcs11_sign(served, tmp_path, data)
    assert refused.returncode == 1
    assert "C_SignFinal failed: rv = CKR_USER_NOT_LOGGED_IN" in refused.stderr
    assert not (tmp_path / "signature").exists()
    served.card.faults.discard(fault)
    assert_signed(served, tmp_path, data)
    assert_traced(served, f"sw=6982,ins={SIGN_INS}")


# remove ---------------------------------------------------------------------------------------


def test_removal_after_n_apdus_fails_a_pkcs11_tool_signature(
    pcsc_card: PcscCardFactory, tmp_path: Path, data: Path
) -> None:
    served = pcsc_card()
    before_signing = signing_index(served, tmp_path, data)
    # The same run again: its COMPUTE DIGITAL SIGNATURE is the first APDU to find no card.
    served.card.faults.add(f"remove,after={before_signing}")
    failed = pkcs11_sign(served, tmp_path, data)
    assert failed.returncode == 1
    assert "C_SignFinal failed" in failed.stderr, failed.stderr
    served.wait(present=False)
    assert tokens(served, tmp_path) == []
    served.insert()
    assert tokens(served, tmp_path) == [AUTH_TOKEN, "JPKI (Digital Signature PIN)"]
    assert_signed(served, tmp_path, data)
    assert_traced(served, f"remove,after={before_signing}")


def test_removal_during_the_signature_fails_pkcs11_tool(
    pcsc_card: PcscCardFactory, tmp_path: Path, data: Path
) -> None:
    served = pcsc_card()
    served.card.faults.add(f"remove,during={SIGN_INS}")
    failed = pkcs11_sign(served, tmp_path, data)
    assert failed.returncode == 1
    assert "C_SignFinal failed" in failed.stderr, failed.stderr
    assert not (tmp_path / "signature").exists()
    served.wait(present=False)
    assert tokens(served, tmp_path) == []
    served.insert()
    assert_signed(served, tmp_path, data)  # the fault was spent
    events = served.card.trace.since(0)
    signatures = [e for e in events if e.kind == "apdu" and e.command[2:4] == SIGN_INS]
    assert signatures[0].response == ""  # the card signed, and was out before it answered
    assert_traced(served, f"remove,during={SIGN_INS}")


def test_removal_at_once_and_insertion_through_pyscard(pcsc_card: PcscCardFactory) -> None:
    from smartcard.Exceptions import CardConnectionException

    served = pcsc_card()
    with pyscard(served.reader) as connection:
        assert send(connection, SELECT_JPKI)[1] == "9000"
        served.card.faults.add("remove")  # at once: the next APDU finds no card
        with pytest.raises(CardConnectionException):
            send(connection, SELECT_JPKI)
    served.insert()
    assert auth_pin_tries(served.reader) == "63C3"
    assert_traced(served, "remove")


# latency= --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "at_least"),
    [("latency=200ms,ins=A4", 0.2), ("latency=200ms,jitter=50ms,ins=A4", 0.15)],
    ids=["fixed", "jitter"],
)
def test_latency_delays_each_matching_answer(
    pcsc_card: PcscCardFactory, spec: str, at_least: float
) -> None:
    served = pcsc_card()
    served.card.faults.add(spec)
    with pyscard(served.reader) as connection:
        for command in (SELECT_JPKI, SELECT_AUTH_CERTIFICATE):
            started = time.monotonic()
            assert send(connection, command)[1] == "9000"
            assert time.monotonic() - started >= at_least
    assert_traced(served, spec)


# power-loss= ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("point", "tries_after"),
    [("after-counter-write", 2), ("before-counter-write", 3)],
)
def test_power_lost_at_the_counter_write_of_a_wrong_verify(
    pcsc_card: PcscCardFactory, point: str, tries_after: int
) -> None:
    from smartcard.Exceptions import CardConnectionException

    served = pcsc_card()
    served.card.faults.add(f"power-loss={point}")
    with pyscard(served.reader) as connection:
        for command in (SELECT_JPKI, SELECT_AUTH_PIN):
            assert send(connection, command)[1] == "9000"
        with pytest.raises(CardConnectionException):
            send(connection, PIN_STATUS + "04" + WRONG_PIN.encode().hex())
    served.wait(present=False)  # the power cut leaves the card out of the reader
    assert served.card.path is not None
    assert read_image(served.card.path).contents("jpki").pins[0x0018].tries_left == tries_after
    served.insert()
    assert auth_pin_tries(served.reader) == f"63C{tries_after}"
    assert_traced(served, f"power-loss={point}", pins=(WRONG_PIN,))


# The reader disappearing -------------------------------------------------------------------------


def test_the_reader_disappears_and_comes_back(pcsc_card: PcscCardFactory) -> None:
    from smartcard import scard

    served = pcsc_card()
    result, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    assert result == scard.SCARD_S_SUCCESS
    result, handle, protocol = scard.SCardConnect(
        context, served.reader, scard.SCARD_SHARE_SHARED, scard.SCARD_PROTOCOL_ANY
    )
    assert result == scard.SCARD_S_SUCCESS
    select = list(bytes.fromhex(SELECT_JPKI))
    assert scard.SCardTransmit(handle, protocol, select) == [scard.SCARD_S_SUCCESS, [0x90, 0x00]]

    served.pcscd.stop()  # pcscd is gone, and its reader with it
    result, _ = scard.SCardListReaders(context, [])
    assert result == scard.SCARD_E_NO_SERVICE
    served.restart_reader()
    result, _ = scard.SCardTransmit(handle, protocol, select)
    assert result != scard.SCARD_S_SUCCESS  # a handle from before the restart is dead
    scard.SCardReleaseContext(context)  # refused too: the context died with the old pcscd

    assert served.reader in reader_names()
    assert auth_pin_tries(served.reader) == "63C3"


def test_restart_reader_alone_brings_the_card_back(pcsc_card: PcscCardFactory) -> None:
    served = pcsc_card()
    served.restart_reader()
    assert auth_pin_tries(served.reader) == "63C3"
