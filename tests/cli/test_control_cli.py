"""`jpki serve --fault/--control/--panel` and `jpki control`, with no reader stack: the server
serves a vpcd port nobody listens on, and everything here is its HTTP side and the command line.

The token and the announcement in $JPKI_HOME, one server per home, the Host and CSRF checks,
the panel's sign-in, one-line errors with their exit codes, the trace's long poll.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_card_commands import jpki
from tests.conftest import AUTH_PIN, CARDS, SIGN_PIN
from tests.pcsc.harness import ROOT, ServedCard, request
from tests.pcsc.test_control import assert_no_pin, trace_events

FAULT_KEYS = ("sw=", "remove", "latency=", "jitter=", "power-loss=", "ap=", "ins=", "file=",
              "nth=", "after=", "during=")  # fmt: skip


def free_port() -> int:
    """A loopback port nothing listens on (vpcd's, here: the card waits for it forever)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "jpki-home"
    path.mkdir()
    shutil.copyfile(CARDS / "taro.json", path / "card.json")
    return path


def serve(home: Path, *args: str) -> ServedCard:
    return ServedCard(
        home / "card.json", home=home, args=args or ("--control",), ports=[free_port()],
        present=False,
    )  # fmt: skip


@pytest.fixture
def served(home: Path) -> Iterator[ServedCard]:
    with serve(home) as server:
        yield server


@pytest.fixture
def panel(home: Path) -> Iterator[ServedCard]:
    with serve(home, "--panel") as server:
        yield server


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("jpki: error: "), result.stderr
    return result.stderr.removeprefix("jpki: error: ").rstrip("\n")


# `jpki serve`: the fault grammar, and a bad fault ------------------------------------------


def test_serve_help_lists_the_fault_grammar_with_examples(home: Path) -> None:
    result = jpki(home, "serve", "--help")
    assert result.returncode == 0
    for key in FAULT_KEYS:
        assert key in result.stdout
    for point in ("before-counter-write", "after-counter-write", "during-pin-change",
                  "during-certificate-write"):  # fmt: skip
        assert point in result.stdout
    assert "jpki serve --fault sw=6A82,ins=B0,nth=2 --control" in result.stdout
    assert "remove,during=2A" in result.stdout
    assert "--panel" in result.stdout and "--control-port N" in result.stdout


def test_a_bad_fault_is_a_one_line_usage_error_before_anything_is_served(home: Path) -> None:
    result = jpki(home, "serve", "--port", str(free_port()), "--control",
                  "--fault", "sw=6A82,ins=B0", "--fault", "sw=6A82,foo=1")  # fmt: skip
    assert result.returncode == 2
    assert one_line_error(result) == (
        "--fault: unknown key 'foo' in 'sw=6A82,foo=1' (kinds: sw=, remove, latency=, "
        "power-loss=; matchers: ap=, ins=, file=, nth=, after=, during=)"
    )
    assert result.stdout == ""  # nothing served
    assert not (home / "control.json").exists() and not (home / "control.token").exists()


def test_a_fault_given_to_serve_is_in_every_card(home: Path) -> None:
    other = home / "other.json"
    shutil.copyfile(CARDS / "hanako-long-address.json", other)
    args = ["--control", "--fault", "latency=50ms,ins=B0"]
    ports = [free_port(), free_port()]
    with ServedCard(
        home / "card.json", other, home=home, args=args, ports=ports, present=False
    ) as served:
        assert "Fault in every card: latency=50ms,ins=B0" in served.output
        slots = json.loads(served.control("list", "--json").stdout)
        assert [(slot["slot"], slot["card"]) for slot in slots] == [
            (0, str(home / "card.json")), (1, str(other))
        ]  # fmt: skip
        for slot in slots:
            assert slot["faults"] == [
                {"id": 1, "spec": "latency=50ms,ins=B0", "fired": 0, "spent": False}
            ]
        added = served.control("fault", "add", "sw=6A82", "--slot", "1")
        assert added.stdout == "slot 1: fault 2: sw=6A82 (fired 0×)\n"
        assert len(json.loads(served.control("fault", "list", "--json").stdout)) == 1


# The announcement in $JPKI_HOME ------------------------------------------------------------------


def test_the_server_announces_itself_privately_and_cleans_up_on_sigterm(home: Path) -> None:
    server = serve(home)
    token_path, announcement_path = home / "control.token", home / "control.json"
    for path in (token_path, announcement_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    announcement = json.loads(announcement_path.read_text())
    assert announcement == {"url": server.control_url, "pid": server.process.pid}
    assert server.control_url == f"http://127.0.0.1:{server.port}/api"
    first_token = server.token
    assert len(first_token) >= 32
    assert server.stop(signal.SIGTERM) == 0
    assert not token_path.exists() and not announcement_path.exists()

    with serve(home) as again:  # a fresh token at every start
        assert again.token != first_token
    assert again.returncode == 0  # stopped as Ctrl-C does
    assert not token_path.exists() and not announcement_path.exists()


def test_a_second_control_server_for_the_same_home_is_refused(
    served: ServedCard, home: Path
) -> None:
    other = home / "other.json"
    shutil.copyfile(CARDS / "hanako-long-address.json", other)
    second = jpki(home, "serve", "--card", str(other), "--port", str(free_port()), "--control")
    assert second.returncode == 9
    assert one_line_error(second) == (
        f"a control server for {home} is already running (pid {served.process.pid}, "
        f"{served.control_url}); stop it first"
    )
    assert second.stdout == ""
    assert served.control("list").returncode == 0  # the first one is untouched
    assert json.loads((home / "control.json").read_text())["pid"] == served.process.pid


def test_jpki_control_without_a_server_says_how_to_start_one(home: Path) -> None:
    expected = f"no control server for {home} (start one with `jpki serve --control`)"
    result = jpki(home, "control", "list")
    assert (result.returncode, one_line_error(result)) == (1, expected)
    # A server that died without cleaning up (SIGKILL) is no server either.
    (home / "control.json").write_text(
        json.dumps({"url": "http://127.0.0.1:9/api", "pid": 1 << 22})
    )
    stale = jpki(home, "control", "fault", "add", "sw=6A82")
    assert (stale.returncode, one_line_error(stale)) == (1, expected)


# The API: token, Host, errors ------------------------------------------------------------------


def test_every_api_request_needs_the_token(served: ServedCard) -> None:
    status, answer, response = request(served.port, "GET", "/api/slots")
    assert status == 401
    assert answer == {
        "error": f"send Authorization: Bearer <token> (the token is in {served.home}/control.token)"
    }
    assert response.getheader("WWW-Authenticate") == 'Bearer realm="jpki control"'
    for wrong in ("Bearer " + "x" * 43, "Basic " + served.token, served.token):
        assert request(served.port, "GET", "/api/slots", headers={"Authorization": wrong})[0] == 401
    status, slots, _ = served.api("GET", "/api/slots")
    assert status == 200
    assert slots == [
        {
            "slot": 0,
            "reader": slots[0]["reader"],
            "card": str(served.home / "card.json"),
            "inserted": True,
            "powered": True,
            "faults": [],
        }
    ]
    # Without --panel there is nothing but the API.
    assert served.api("GET", "/")[0] == 404


def test_a_foreign_host_header_is_refused_against_dns_rebinding(served: ServedCard) -> None:
    for host in (f"evil.example:{served.port}", "127.0.0.1", f"127.0.0.1:{served.port + 1}"):
        status, answer, _ = served.api("GET", "/api/slots", headers={"Host": host})
        assert (status, answer) == (400, {"error": "the Host header must name this server"})
    for host in (f"localhost:{served.port}", f"127.0.0.1:{served.port}"):
        assert served.api("GET", "/api/slots", headers={"Host": host})[0] == 200


def test_the_api_answers_errors_in_one_json_line(served: ServedCard) -> None:
    cases: list[tuple[str, str, Any, int, str]] = [
        ("POST", "/api/slots/0/faults", {"spec": "sw=6A82,foo=1"}, 400, "unknown key 'foo'"),
        ("POST", "/api/slots/0/faults", {"nothing": 1}, 400, 'send {"spec": "<fault spec>"}'),
        ("GET", "/api/slots/7/faults", None, 404, "no slot 7 (this server has slots 0 to 0)"),
        ("DELETE", "/api/slots/0/faults/9", None, 404, "slot 0 has no fault 9"),
        ("GET", "/api/nothing", None, 404, "no such endpoint: /api/nothing"),
        ("PUT", "/api/slots", None, 501, ""),
        ("DELETE", "/api/slots", None, 405, "DELETE /api/slots is not supported"),
        ("GET", "/api/trace?since=x", None, 400, "since must be an integer"),
    ]
    for method, path, body, expected_status, message in cases:
        status, answer, _ = served.api(method, path, body)
        assert status == expected_status, (method, path, answer)
        if message:
            assert message in answer["error"] and "\n" not in answer["error"], answer
    raw = request(served.port, "POST", "/api/slots/0/faults", raw=b"{not json",
                  headers={"Authorization": f"Bearer {served.token}"})  # fmt: skip
    assert raw[:2] == (400, {"error": "the body is not JSON"})


# `jpki control`: slots, faults, counters, trace ------------------------------------------------


def test_jpki_control_drives_the_slot_and_its_faults(served: ServedCard, home: Path) -> None:
    card = home / "card.json"
    listed = served.control("list").stdout
    announced = re.search(r"in reader '([^']+)'", served.text)  # the name serve printed
    assert announced is not None, served.text
    reader = announced.group(1)
    assert listed.startswith(f"slot 0  {reader}  ") and listed.endswith(f"{card}\n")

    added = served.control("fault", "add", "sw=6A82,ins=B0,nth=2")
    assert added.stdout == "slot 0: fault 1: sw=6A82,ins=B0,nth=2 (fired 0×)\n"
    assert (
        json.loads(served.control("fault", "add", "latency=50ms,jitter=10ms", "--json").stdout)[
            "id"
        ]
        == 2
    )
    assert served.control("fault", "list").stdout == (
        "fault 1: sw=6A82,ins=B0,nth=2 (fired 0×)\nfault 2: latency=50ms,jitter=10ms (fired 0×)\n"
    )
    assert "        fault 2: latency=50ms,jitter=10ms (fired 0×)" in served.control("list").stdout
    assert served.control("fault", "clear", "1").stdout == "slot 0: fault 1 cleared\n"
    assert [f["id"] for f in json.loads(served.control("fault", "list", "--json").stdout)] == [2]
    assert served.control("fault", "clear").stdout == "slot 0: faults cleared\n"
    assert served.control("fault", "list").stdout == "slot 0: no faults\n"

    bad = jpki(home, "control", "fault", "add", "sw=6A82,foo=1")
    assert bad.returncode == 2 and "unknown key 'foo' in 'sw=6A82,foo=1'" in one_line_error(bad)
    no_slot = jpki(home, "control", "remove", "--slot", "3")
    assert (no_slot.returncode, one_line_error(no_slot)) == (
        5, "no slot 3 (this server has slots 0 to 0)"
    )  # fmt: skip
    unknown = jpki(home, "control", "fault", "clear", "5")
    assert (unknown.returncode, one_line_error(unknown)) == (5, "slot 0 has no fault 5")

    assert served.control("remove").stdout == f"slot 0: card removed ({reader})\n"
    assert json.loads(served.control("list", "--json").stdout)[0]["inserted"] is False
    cycled = jpki(home, "control", "power-cycle")
    assert (cycled.returncode, one_line_error(cycled)) == (9, "no card in slot 0: insert it first")
    assert json.loads(served.control("insert", "--json").stdout)["inserted"] is True
    assert served.control("power-cycle").stdout.startswith("slot 0: card power-cycled (")
    events = [(event["kind"], event["text"]) for event in trace_events(home)]
    assert events == [("removed", "card removed"), ("inserted", "card inserted"),
                      ("power", "power off"), ("power", "power on")]  # fmt: skip
    text = served.control("trace").stdout.splitlines()
    assert not [line for line in text if "1234" in line or "31323334" in line]  # no PIN
    assert [line.split(maxsplit=2)[2] for line in text] == [
        "[0] removed  card removed",
        "[0] inserted card inserted",
        "[0] power    power off",
        "[0] power    power on",
    ]


def test_counters_show_every_key_reference_and_its_lock(served: ServedCard) -> None:
    rows = json.loads(served.control("counters", "--json").stdout)
    by_pin = {row["pin"]: row for row in rows}
    assert {"auth", "sign", "card-info", "juki", "common"} <= set(by_pin)
    auth = by_pin["auth"]
    assert (auth["application"], auth["label"], auth["tries_left"], auth["max_tries"]) == (
        "jpki", "authentication PIN", 3, 3
    )  # fmt: skip
    assert auth["blocked"] is False
    assert auth["protects"] == "logging in (the authentication key)"
    assert auth["unblocked_by"][0] == "the municipal window"
    text = served.control("counters").stdout
    assert "authentication PIN" in text and "3 of 3 tries left" in text


def test_another_card_needs_the_slot_emptied_first(served: ServedCard, home: Path) -> None:
    other = home / "other.json"
    shutil.copyfile(CARDS / "hanako-long-address.json", other)
    busy = jpki(home, "control", "insert", "--card", str(other))
    assert busy.returncode == 9
    assert one_line_error(busy) == (
        f"slot 0 holds {home / 'card.json'}: remove it before inserting {other}"
    )
    served.control("remove")
    assert served.control("insert", "--card", str(other)).stdout.startswith(f"slot 0: {other}")
    assert json.loads(served.control("list", "--json").stdout)[0]["card"] == str(other)
    missing = jpki(home, "control", "insert", "--card", str(home / "missing.json"))
    assert missing.returncode == 9  # the slot holds a card again: refused before opening


def test_the_trace_waits_for_the_next_event(served: ServedCard, home: Path) -> None:
    answers: list[tuple[float, Any]] = []

    def poll() -> None:
        started = time.monotonic()
        status, answer, _ = served.api("GET", "/api/trace?since=0&wait=25")
        answers.append((time.monotonic() - started, answer))

    waiting = threading.Thread(target=poll)
    waiting.start()
    served.control("remove")  # the event the poll is waiting for
    waiting.join(30)
    assert answers, "the trace request never came back"
    elapsed, answer = answers[0]
    assert_no_pin(answer["events"], [AUTH_PIN, SIGN_PIN])
    assert elapsed < 20  # answered by the event, not by the end of its wait
    assert [event["kind"] for event in answer["events"]] == ["removed"]
    assert answer["last_seq"] == answer["events"][0]["seq"]
    # Nothing newer: an immediate, empty answer.
    status, empty, _ = served.api("GET", f"/api/trace?since={answer['last_seq']}")
    assert (status, empty["events"]) == (200, [])


def test_trace_follow_prints_events_as_they_come_and_ends_on_ctrl_c(
    served: ServedCard, home: Path
) -> None:
    follower = subprocess.Popen(
        [sys.executable, "-m", "cli", "control", "trace", "--follow"],
        cwd=ROOT, env={**os.environ, "JPKI_HOME": str(home)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert follower.stdout is not None
    try:
        served.control("fault", "add", "remove")  # fires at once: a fault and a removal
        lines = [follower.stdout.readline(), follower.stdout.readline()]
        assert not [line for line in lines if "1234" in line or "31323334" in line]  # no PIN
        assert "fault    fault 1 (remove): card removed" in lines[0]
        assert "removed  card removed" in lines[1]
    finally:
        follower.send_signal(signal.SIGINT)
        _, errors = follower.communicate(timeout=30)
    assert (follower.returncode, errors) == (0, "")


# The panel: sign-in and CSRF -------------------------------------------------------------------


def test_the_panel_signs_in_with_the_token_and_refuses_forged_changes(panel: ServedCard) -> None:
    port, origin = panel.port, f"http://127.0.0.1:{panel.port}"
    assert panel.panel_url == f"{origin}/"
    status, page, _ = request(port, "GET", "/")
    assert status == 200 and b'<form method="post" action="/signin">' in page
    assert str(panel.home / "control.token").encode() in page and b"jpki card panel" in page

    form = {"Content-Type": "application/x-www-form-urlencoded", "Origin": origin}
    status, page, response = request(port, "POST", "/signin", raw=b"token=wrong", headers=form)
    assert (status, response.getheader("Set-Cookie")) == (401, None)
    assert b"That is not the token." in page
    elsewhere = {**form, "Origin": "http://evil.example"}
    signed = f"token={panel.token}".encode()
    assert request(port, "POST", "/signin", raw=signed, headers=elsewhere)[0] == 403
    status, _, response = request(port, "POST", "/signin", raw=signed, headers=form)
    assert (status, response.getheader("Location")) == (303, "/")
    cookie = response.getheader("Set-Cookie")
    name, _, attributes = cookie.partition("; ")
    assert name.startswith(f"jpki_panel_{port}=")
    assert attributes == "HttpOnly; SameSite=Strict; Path=/"

    session = {"Cookie": name}
    status, page, response = request(port, "GET", "/", headers=session)
    assert status == 200 and b'id="log-body"' in page
    policy = response.getheader("Content-Security-Policy")
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert response.getheader("X-Frame-Options") == "DENY"
    assert request(port, "GET", "/api/slots", headers=session)[0] == 200  # reading is enough

    # A change needs the panel's own header, which no other site can make a browser send.
    assert request(port, "POST", "/api/slots/0/remove", headers=session)[0] == 403
    forged = {**session, "X-JPKI-Panel": "1", "Origin": "http://evil.example"}
    assert request(port, "POST", "/api/slots/0/remove", headers=forged)[0] == 403
    assert request(port, "GET", "/api/slots", headers={"Cookie": name + "x"})[0] == 401
    own = {**session, "X-JPKI-Panel": "1", "Origin": origin}
    status, slot, _ = request(port, "POST", "/api/slots/0/remove", headers=own)
    assert (status, slot["inserted"]) == (200, False)


def test_panel_prints_its_url_on_its_own_line(panel: ServedCard) -> None:
    assert f"Panel: http://127.0.0.1:{panel.port}/" in panel.output
    assert f"Control: http://127.0.0.1:{panel.port}/api" in panel.output
