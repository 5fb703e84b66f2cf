"""OpenSC against the served card, as a user of the distribution's tools sees it.

opensc-tool, pkcs15-tool, pkcs11-tool and opensc-explorer run unmodified through the private pcscd.

OpenSC's own driver decides everything here (no `OPENSC_DRIVER`): every process first sends the
probes of eleven other drivers, and the card must refuse them all for `jpki` to get the card.
Signatures are checked with `openssl dgst` against the public keys of the card's certificates.
"""

from __future__ import annotations

import hashlib
import os
import queue
import re
import ssl
import subprocess
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from card_emulator.state.store import read_image
from tests.conftest import unmet
from tests.pcsc.harness import READER, SECOND_READER, ServedCard

pytestmark = pytest.mark.reader_stack

ATR = "3b:e0:00:ff:81:31:fe:45:14"
AUTH_CERT, SIGN_CERT, AUTH_CA_CERT, SIGN_CA_CERT = 0x000A, 0x0001, 0x000B, 0x0002
AUTH_TOKEN = "JPKI (User Authentication PIN)"
SIGN_TOKEN = "JPKI (Digital Signature PIN)"
AUTH_PIN_NAME = "User Authentication PIN"
SIGN_PIN_NAME = "Digital Signature PIN"
UNLOCKED_FLAGS = "login required, token initialized, PIN initialized"
JPKI_AID = "D3 92 F0 00 26 01 00 00 00 01"
SHA256_DIGEST_INFO_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")
MODULE_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so",
    "/usr/lib/*/opensc-pkcs11.so",
    "/usr/lib/*/pkcs11/opensc-pkcs11.so",
    "/usr/lib/opensc-pkcs11.so",
    "/usr/lib64/opensc-pkcs11.so",
)
TIMEOUT = 60


def find_pkcs11_module() -> Path | None:
    for pattern in MODULE_CANDIDATES:
        for match in sorted(Path("/").glob(pattern.lstrip("/"))):
            if match.is_file():
                return match
    return None


@pytest.fixture(scope="module")
def module() -> Path:
    found = find_pkcs11_module()
    if found is None:
        unmet("reader_stack", f"no opensc-pkcs11.so in {MODULE_CANDIDATES}: install opensc-pkcs11")
    return found


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A private HOME for the tools, so no user configuration or OpenSC file cache leaks in."""
    path = tmp_path / "home"
    path.mkdir()
    return path


def run(*args: str | Path, home: Path, debug: bool = False) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}
    env.pop("OPENSC_DRIVER", None)
    env.pop("OPENSC_DEBUG", None)
    if debug:
        env["OPENSC_DEBUG"] = "9"  # the whole APDU trace, on stderr
    return subprocess.run(
        [str(arg) for arg in args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
    )


def apdu_pairs(trace: str) -> list[tuple[bytes, bytes]]:
    """(command, response) pairs from an OPENSC_DEBUG trace (hex dumps, 16 bytes a line)."""
    lines = trace.splitlines()
    dumps: list[tuple[str, bytes]] = []
    for index, line in enumerate(lines):
        header = re.fullmatch(r"(Outgoing|Incoming) APDU \((\d+) bytes\):", line.strip())
        if header is None:
            continue
        remaining, data, row = int(header.group(2)), bytearray(), index + 1
        while remaining:
            count = min(16, remaining)
            data += bytes.fromhex(lines[row][: 3 * count])  # the ASCII column follows the hex
            remaining -= count
            row += 1
        dumps.append((header.group(1), bytes(data)))
    pairs = []
    for (direction, command), (answer, response) in zip(dumps[::2], dumps[1::2], strict=True):
        assert (direction, answer) == ("Outgoing", "Incoming")
        pairs.append((command, response))
    return pairs


def parse_pins(listing: str) -> dict[str, dict[str, str]]:
    """`pkcs15-tool --list-pins` → {PIN name: {field: value}}."""
    pins: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in listing.splitlines():
        title = re.fullmatch(r"PIN \[(.*)\]", line)
        if title:
            current = pins.setdefault(title.group(1), {})
        elif current is not None and line.startswith("\t"):
            key, _, value = line.strip().partition(":")
            current[key.strip()] = value.strip()
    return pins


def parse_slots(listing: str) -> list[dict[str, str]]:
    """`pkcs11-tool -L` → one dict per slot: reader, the token fields, or `empty`."""
    slots: list[dict[str, str]] = []
    for line in listing.splitlines():
        slot = re.fullmatch(r"Slot (\d+) \(0x[0-9a-f]+\): (.*)", line)
        if slot:
            slots.append({"index": slot.group(1), "reader": slot.group(2).strip()})
        elif slots and line.strip() == "(empty)":
            slots[-1]["empty"] = "yes"
        elif slots and line.startswith("  "):
            key, _, value = line.strip().partition(":")
            slots[-1][key.strip()] = value.strip()
    return slots


def card_der(card_file: Path, fid: int) -> bytes:
    return read_image(card_file).contents("jpki").files[fid]


def public_key_pem(card_file: Path, fid: int, directory: Path) -> Path:
    certificate = x509.load_der_x509_certificate(card_der(card_file, fid))
    path = directory / f"{fid:04x}.pub.pem"
    path.write_bytes(
        certificate.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    return path


def list_pins(home: Path) -> dict[str, dict[str, str]]:
    listed = run("pkcs15-tool", "--list-pins", home=home)
    assert listed.returncode == 0, listed.stderr
    return parse_pins(listed.stdout)


def list_slots(module: Path, home: Path) -> list[dict[str, str]]:
    listed = run("pkcs11-tool", "--module", module, "-L", home=home)
    assert listed.returncode == 0, listed.stderr
    return parse_slots(listed.stdout)


def pkcs11_sign(
    module: Path,
    home: Path,
    token: str,
    pin: str,
    key_id: str,
    data: Path,
    signature: Path,
    mechanism: str = "SHA256-RSA-PKCS",
    debug: bool = False,
) -> subprocess.CompletedProcess[str]:
    return run(
        "pkcs11-tool", "--module", module, "--token-label", token,
        "--login", "--pin", pin, "--sign", "--id", key_id, "-m", mechanism,
        "-i", data, "-o", signature,
        home=home, debug=debug,
    )  # fmt: skip


def openssl_verify(public_key: Path, signature: Path, data: Path) -> str:
    verified = subprocess.run(
        ["openssl", "dgst", "-sha256", "-verify", str(public_key), "-signature", str(signature),
         str(data)],
        capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    return verified.stdout.strip()


# 1. ---------------------------------------------------------------------------------------------


def test_opensc_tool_names_the_card_jpki_after_every_probe_fails(
    served: ServedCard, home: Path
) -> None:
    named = run("opensc-tool", "--name", home=home, debug=True)
    assert named.returncode == 0, named.stderr[-2000:]
    assert named.stdout == "jpki\n"
    before_jpki, found, _ = named.stderr.partition("trying driver 'jpki'")
    assert found, "OpenSC never got to its jpki driver"
    probes = apdu_pairs(before_jpki)
    assert len(probes) >= 20, probes  # coolkey, muscle, sc-hsm, mcrd, setcos, PIV, cac, …
    for command, response in probes:
        assert response[-2:] != b"\x90\x00", f"probe {command.hex(' ')} answered 9000"
        if command[:3] == b"\x00\xa4\x04":  # SELECT by AID of some other card's applet
            assert response == b"\x6a\x82", f"{command.hex(' ')} → {response.hex(' ')}"
    muscle = bytes.fromhex("00 A4 04 00 06 A0 00 00 00 01 01")
    assert (muscle, b"\x6a\x82") in probes

    atr = run("opensc-tool", "--atr", home=home)
    assert atr.returncode == 0, atr.stderr
    assert atr.stdout == f"{ATR}\n"
    assert "Using reader with a card: Virtual PCD 00 00" in atr.stderr


# 2. ---------------------------------------------------------------------------------------------


def test_pkcs15_tool_lists_both_pins_with_their_tries(served: ServedCard, home: Path) -> None:
    pins = list_pins(home)
    assert list(pins) == [AUTH_PIN_NAME, SIGN_PIN_NAME]
    auth, sign = pins[AUTH_PIN_NAME], pins[SIGN_PIN_NAME]
    assert (auth["ID"], auth["Tries left"]) == ("01", "3")
    assert (sign["ID"], sign["Tries left"]) == ("02", "5")
    assert auth["Length"] == "min_len:4, max_len:4, stored_len:0"
    assert sign["Length"] == "min_len:6, max_len:16, stored_len:0"


# 3. ---------------------------------------------------------------------------------------------


def test_pkcs15_tool_lists_and_reads_the_certificates(
    served: ServedCard, card_file: Path, home: Path
) -> None:
    listed = run("pkcs15-tool", "--list-certificates", home=home)
    assert listed.returncode == 0, listed.stderr
    certificates = re.findall(
        r"X\.509 Certificate \[(.*)\]\n(?:\t.*\n)*?\tPath +: (\w+)\n\tID +: (\w+)", listed.stdout
    )
    assert certificates == [
        ("User Authentication Certificate", "000a", "01"),
        ("Digital Signature Certificate", "0001", "02"),
        ("User Authentication Certificate CA", "000b", "03"),
        ("Digital Signature Certificate CA", "0002", "04"),
    ]
    assert "\tObject Flags   : [0x01], private\n\tAuthority      : no\n\tPath           : 0001" in (
        listed.stdout
    )
    for certificate_id, fid in (("01", AUTH_CERT), ("03", AUTH_CA_CERT), ("04", SIGN_CA_CERT)):
        read = run("pkcs15-tool", "--read-certificate", certificate_id, home=home)
        assert read.returncode == 0, read.stderr
        assert read.stdout.startswith("-----BEGIN CERTIFICATE-----\n")
        assert ssl.PEM_cert_to_DER_cert(read.stdout) == card_der(card_file, fid), certificate_id


def test_the_signature_certificate_needs_the_signature_password(
    served: ServedCard, card_file: Path, home: Path
) -> None:
    # The card answers 6982 to READ BINARY of EF 0001; OpenSC 0.23 reports that as an offset error.
    refused = run("pkcs15-tool", "--read-certificate", "02", home=home)
    assert refused.returncode != 0
    assert "Certificate read failed" in refused.stderr
    read = run(
        "pkcs15-tool", "--read-certificate", "02",
        "--verify-pin", "--auth-id", "02", "--pin", "ABC123",
        home=home,
    )  # fmt: skip
    assert read.returncode == 0, read.stderr
    assert ssl.PEM_cert_to_DER_cert(read.stdout) == card_der(card_file, SIGN_CERT)


# 4. ---------------------------------------------------------------------------------------------


def test_pkcs11_tool_shows_two_slots_on_one_reader(
    served: ServedCard, module: Path, home: Path
) -> None:
    slots = list_slots(module, home)
    with_token = [slot for slot in slots if "empty" not in slot]
    assert [(slot["reader"], slot["token label"]) for slot in with_token] == [
        (READER, AUTH_TOKEN),
        (READER, SIGN_TOKEN),
    ]
    assert [slot["pin min/max"] for slot in with_token] == ["4/4", "6/16"]
    for slot in with_token:
        assert slot["token manufacturer"] == "JPKI"
        assert slot["token flags"] == UNLOCKED_FLAGS
    assert [slot["reader"] for slot in slots if "empty" in slot] == [SECOND_READER]


# 5. ---------------------------------------------------------------------------------------------


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.write_bytes("signed by OpenSC through pcscd — 署名\n".encode())
    return path


@pytest.mark.openssl
def test_pkcs11_tool_signs_with_the_authentication_key(
    served: ServedCard, card_file: Path, module: Path, home: Path, data: Path, tmp_path: Path
) -> None:
    signature = tmp_path / "sig"
    signed = pkcs11_sign(module, home, AUTH_TOKEN, "1234", "01", data, signature)
    assert signed.returncode == 0, signed.stderr
    assert "Using signature algorithm SHA256-RSA-PKCS" in signed.stderr
    assert len(signature.read_bytes()) == 256
    public_key = public_key_pem(card_file, AUTH_CERT, tmp_path)
    assert openssl_verify(public_key, signature, data) == "Verified OK"


@pytest.mark.openssl
def test_pkcs11_tool_signs_with_the_signature_key_verifying_the_password_again(
    served: ServedCard, card_file: Path, module: Path, home: Path, data: Path, tmp_path: Path
) -> None:
    signature = tmp_path / "sig"
    signed = pkcs11_sign(module, home, SIGN_TOKEN, "ABC123", "02", data, signature, debug=True)
    assert signed.returncode == 0, signed.stderr[-3000:]
    public_key = public_key_pem(card_file, SIGN_CERT, tmp_path)
    assert openssl_verify(public_key, signature, data) == "Verified OK"
    apdus = apdu_pairs(signed.stderr)
    verify = bytes.fromhex("00 20 00 80 06") + b"ABC123"
    # C_Login, then the context-specific login the always-authenticate key demands.
    assert [response for command, response in apdus if command == verify] == [b"\x90\x00"] * 2
    signing = [(c, r) for c, r in apdus if c[:4] == bytes.fromhex("80 2A 00 80")]
    assert len(signing) == 1 and signing[0][1][-2:] == b"\x90\x00"
    assert (
        signing[0][0][5:-1]
        == SHA256_DIGEST_INFO_PREFIX + hashlib.sha256(data.read_bytes()).digest()
    )


@pytest.mark.openssl
@pytest.mark.parametrize(
    ("token", "pin", "key_id", "fid"),
    [(AUTH_TOKEN, "1234", "01", AUTH_CERT), (SIGN_TOKEN, "ABC123", "02", SIGN_CERT)],
    ids=["auth", "sign"],
)
def test_pkcs11_tool_signs_a_digest_info_of_its_own_with_rsa_pkcs(
    served: ServedCard,
    card_file: Path,
    module: Path,
    home: Path,
    data: Path,
    tmp_path: Path,
    token: str,
    pin: str,
    key_id: str,
    fid: int,
) -> None:
    digest_info = tmp_path / "digest-info"
    digest_info.write_bytes(SHA256_DIGEST_INFO_PREFIX + hashlib.sha256(data.read_bytes()).digest())
    signature = tmp_path / "sig"
    signed = pkcs11_sign(
        module, home, token, pin, key_id, digest_info, signature, mechanism="RSA-PKCS"
    )
    assert signed.returncode == 0, signed.stderr
    assert "Using signature algorithm RSA-PKCS" in signed.stderr
    public_key = public_key_pem(card_file, fid, tmp_path)
    assert openssl_verify(public_key, signature, data) == "Verified OK"


# 6. ---------------------------------------------------------------------------------------------


@pytest.mark.openssl
def test_wrong_pins_count_down_and_lock_the_authentication_pin(
    served: ServedCard, card_file: Path, module: Path, home: Path, data: Path, tmp_path: Path
) -> None:
    signature = tmp_path / "sig"
    flags_after = {
        2: "login required, token initialized, user PIN count low, PIN initialized",
        1: "login required, token initialized, final user PIN try, PIN initialized",
        0: "login required, token initialized, PIN initialized, user PIN locked",
    }
    for tries_left in (2, 1, 0):
        wrong = pkcs11_sign(module, home, AUTH_TOKEN, "0000", "01", data, signature)
        assert wrong.returncode == 1
        assert "C_Login failed: rv = CKR_PIN_INCORRECT (0xa0)" in wrong.stderr
        assert not signature.exists()
        pins = list_pins(home)
        assert pins[AUTH_PIN_NAME]["Tries left"] == str(tries_left)
        assert pins[SIGN_PIN_NAME]["Tries left"] == "5"
        slots = {slot.get("token label"): slot for slot in list_slots(module, home)}
        assert slots[AUTH_TOKEN]["token flags"] == flags_after[tries_left]
        assert slots[SIGN_TOKEN]["token flags"] == UNLOCKED_FLAGS
    # pkcs15-tool shows no flag of its own for a blocked PIN, only the count.
    assert list_pins(home)[AUTH_PIN_NAME]["Flags"] == "[0x12], local, initialized"

    # Blocked: the right PIN is refused too. The card answers 6984 (as the real card does), which
    # OpenSC calls "Reference data not usable" and PKCS#11 reports as a general error.
    right = pkcs11_sign(module, home, AUTH_TOKEN, "1234", "01", data, signature, debug=True)
    assert right.returncode == 1
    assert "C_Login failed: rv = CKR_GENERAL_ERROR (0x5)" in right.stderr
    assert (bytes.fromhex("00 20 00 80 04") + b"1234", b"\x69\x84") in apdu_pairs(right.stderr)
    assert not signature.exists()
    assert list_pins(home)[AUTH_PIN_NAME]["Tries left"] == "0"
    assert read_image(card_file).contents("jpki").pins[0x0018].tries_left == 0

    # The signature password is a separate counter and still works.
    signed = pkcs11_sign(module, home, SIGN_TOKEN, "ABC123", "02", data, signature)
    assert signed.returncode == 0, signed.stderr
    assert openssl_verify(public_key_pem(card_file, SIGN_CERT, tmp_path), signature, data) == (
        "Verified OK"
    )


def test_a_pin_of_the_wrong_length_never_reaches_the_card(
    served: ServedCard, module: Path, home: Path, data: Path, tmp_path: Path
) -> None:
    signature = tmp_path / "sig"
    too_long = pkcs11_sign(module, home, AUTH_TOKEN, "12345", "01", data, signature, debug=True)
    assert too_long.returncode == 1
    assert "C_Login failed: rv = CKR_PIN_LEN_RANGE" in too_long.stderr
    assert not [c for c, _ in apdu_pairs(too_long.stderr) if c[:5] == bytes.fromhex("0020008005")]
    assert list_pins(home)[AUTH_PIN_NAME]["Tries left"] == "3"


# 7. ---------------------------------------------------------------------------------------------


class Explorer:
    """An interactive opensc-explorer fed command by command (line-buffered through stdbuf)."""

    def __init__(self, reader: str, home: Path) -> None:
        env = {**os.environ, "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}
        env.pop("OPENSC_DRIVER", None)
        env.pop("OPENSC_DEBUG", None)
        self.process = subprocess.Popen(
            ["stdbuf", "-oL", "opensc-explorer", "--reader", reader],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.rounds = 0
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def run(self, *commands: str) -> list[str]:
        """Run the commands; returns what the explorer printed for them once all are done."""
        assert self.process.stdin is not None
        self.rounds += 1
        marker = f"done-{self.rounds}"
        script = "".join(f"{command}\n" for command in (*commands, f"echo {marker}"))
        self.process.stdin.write(script)
        self.process.stdin.flush()
        output: list[str] = []
        while (line := self.lines.get(timeout=TIMEOUT)) is not None:
            if line.strip() == marker:
                return output
            output.append(line)
        raise AssertionError(f"opensc-explorer ended early: {output}")

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=TIMEOUT)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def explorer(served: ServedCard, home: Path) -> Iterator[Explorer]:
    session = Explorer(READER, home)
    yield session
    session.close()


def printed(output: Sequence[str]) -> list[str]:
    """The explorer's answers, without its banner and prompt lines (which echo the commands)."""
    return [line for line in output if not line.startswith(("OpenSC [", "OpenSC Explorer "))]


def test_a_card_pulled_out_under_opensc_is_reported_removed(
    served: ServedCard, explorer: Explorer, module: Path, home: Path
) -> None:
    ready = explorer.run(
        # opensc-explorer does not select the JPKI AP itself (its `cd aid:…` trips over the
        # jpki driver, which returns no file for a DF name), so select it as OpenSC's PKCS#15
        # layer does: `pin_info`/`verify` then go through the jpki driver's own PIN commands.
        f"apdu 00 A4 04 0C 0A {JPKI_AID}",
        "pin_info CHV1",
        "verify CHV1 31323334",
        "pin_info CHV1",
    )
    assert printed(ready) == [
        f"Sending: 00 A4 04 0C 0A {JPKI_AID}",
        "Received (SW1=0x90, SW2=0x00)",
        "Success!",
        "Logged out.",
        "3 tries left.",
        "Code correct.",
        "Logged in.",
        "3 tries left.",
    ]

    served.remove()  # while opensc-explorer holds the card
    assert printed(explorer.run("pin_info CHV1")) == ["Unable to get PIN info: Card removed"]
    absent = run("opensc-tool", "--name", home=home)
    assert absent.returncode == 1
    assert "Failed to connect to reader: Card not present" in absent.stderr
    assert absent.stdout == ""
    slots = list_slots(module, home)
    assert [(slot["reader"], "empty" in slot) for slot in slots] == [
        (READER, True),
        (SECOND_READER, True),
    ]

    served.insert()
    again = run("opensc-tool", "--name", home=home)
    assert again.returncode == 0, again.stderr
    assert again.stdout == "jpki\n"
    assert [slot.get("token label") for slot in list_slots(module, home)] == [
        AUTH_TOKEN,
        SIGN_TOKEN,
        None,
    ]
