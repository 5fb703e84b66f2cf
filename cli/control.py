"""`jpki control`: drive a running `jpki serve --control` from the shell, through its HTTP API.

The server announces itself in $JPKI_HOME: `control.json` ({"url", "pid"}) and `control.token`
(the bearer token, new at every start), both 0600 and both removed when it stops. One control
server per $JPKI_HOME: it holds `control.lock` while it runs. `ControlFiles` is the server's
side of that, `ControlClient` the commands' side.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, NoReturn

import click

from cli.exits import Exit
from jpki.durable import PRIVATE_DIRECTORY_MODE, PRIVATE_FILE_MODE, write_atomically
from jpki.paths import jpki_home

TOKEN_FILE = "control.token"
ANNOUNCEMENT_FILE = "control.json"
LOCK_FILE = "control.lock"
REQUEST_TIMEOUT = 15.0  # seconds for a request; a trace poll adds its own wait
FOLLOW_WAIT = 25  # seconds one `trace --follow` request lets the server wait for events


class Failure(click.ClickException):
    """One line for the user (`jpki: error: …`); the class's exit code says why."""

    exit_code = Exit.FAILURE


class BadUsage(Failure):
    exit_code = Exit.USAGE  # as click's usage errors, in one line


class BadValue(Failure):
    exit_code = Exit.BAD_VALUE


class Refused(Failure):
    exit_code = Exit.REFUSED


# What the server's answer means for a script: the value was wrong, or the server refused.
_FAILURES: dict[int, type[Failure]] = {
    400: BadValue, 404: BadValue, 401: Refused, 403: Refused, 409: Refused,
}  # fmt: skip


# The server's side: announce it in $JPKI_HOME, one per home ---------------------------------


class ControlFiles:
    """The files through which `jpki control` finds a running control server."""

    def __init__(self, home: Path | None = None) -> None:
        self.home = home or jpki_home()
        self.token_path = self.home / TOKEN_FILE
        self.announcement_path = self.home / ANNOUNCEMENT_FILE
        self._lock: IO[bytes] | None = None

    def claim(self) -> None:
        """Become this home's control server, or refuse while another one runs."""
        self.home.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIRECTORY_MODE)
        descriptor = os.open(self.home / LOCK_FILE, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE_MODE)
        lock = os.fdopen(descriptor, "ab")  # held until release()
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            running = read_announcement(self.announcement_path)
            where = f" (pid {running['pid']}, {running['url']})" if running else ""
            raise Refused(
                f"a control server for {self.home} is already running{where}; stop it first"
            ) from None
        self._lock = lock

    def publish(self, url: str, token: str) -> None:
        write_atomically(self.token_path, token.encode() + b"\n")
        announcement = {"url": url, "pid": os.getpid()}
        write_atomically(self.announcement_path, json.dumps(announcement).encode() + b"\n")

    def release(self) -> None:
        if self._lock is None:
            return
        self.announcement_path.unlink(missing_ok=True)
        self.token_path.unlink(missing_ok=True)
        self._lock.close()  # the lock file stays: unlinking it would race the next claim
        self._lock = None


def read_announcement(path: Path) -> dict[str, Any] | None:
    """The {"url", "pid"} a control server wrote, or None if there is none to read."""
    try:
        announcement = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(announcement, dict) or not isinstance(announcement.get("url"), str):
        return None
    if not isinstance(announcement.get("pid"), int):
        return None
    return announcement


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


# The commands' side ---------------------------------------------------------------------------


class ControlClient:
    """Requests to the control server of $JPKI_HOME, each answered with JSON."""

    def __init__(self, url: str, token: str, home: Path) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.home = home

    @classmethod
    def find(cls) -> ControlClient:
        files = ControlFiles()
        announcement = read_announcement(files.announcement_path)
        if announcement is None or not _alive(announcement["pid"]):
            _no_server(files.home)
        try:
            token = files.token_path.read_text().strip()
        except OSError as error:
            raise Failure(f"cannot read {files.token_path}: {error.strerror}") from None
        return cls(announcement["url"], token, files.home)

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None, wait: float = 0
    ) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT + wait) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            with error:
                message = _error_message(error.read()) or f"{error.code} {error.reason}"
            raise _FAILURES.get(error.code, Failure)(message) from None
        except urllib.error.URLError as error:
            if isinstance(error.reason, ConnectionRefusedError):
                _no_server(self.home)
            raise Failure(f"control server at {self.url}: {error.reason}") from None
        except (TimeoutError, ConnectionError) as error:
            raise Failure(f"control server at {self.url}: {error}") from None


def _error_message(body: bytes) -> str | None:
    with contextlib.suppress(ValueError):
        answer = json.loads(body)
        if isinstance(answer, dict) and isinstance(answer.get("error"), str):
            return str(answer["error"])
    return None


def _no_server(home: Path) -> NoReturn:
    raise Failure(f"no control server for {home} (start one with `jpki serve --control`)")


# The command line -----------------------------------------------------------------------------

slot_option = click.option(
    "--slot", type=click.IntRange(0, 9999), default=0, show_default=True, help="Reader slot."
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2))


def _slot_line(slot: dict[str, Any]) -> str:
    if not slot["inserted"]:
        state = "removed"
    else:
        state = "inserted, powered" if slot["powered"] else "inserted"
    return f"slot {slot['slot']}  {slot['reader']}  {state}  {slot['card'] or '(in memory)'}"


def _fault_line(fault: dict[str, Any]) -> str:
    return f"fault {fault['id']}: {fault['spec']} (fired {fault['fired']}×)"


@click.group(
    epilog="Example (with `jpki serve --control` running): jpki control remove && "
    "jpki control fault add sw=6A82,ins=B0 && jpki control insert",
)
def control() -> None:
    """Drive a running `jpki serve --control`: insert, remove and power-cycle cards, read their
    PIN counters, set faults, follow the APDU trace (PINs masked). Finds the server through
    $JPKI_HOME/control.json, and its token in $JPKI_HOME/control.token."""


@control.command(
    "list",
    short_help="The slots, their cards and faults.",
    epilog="Example: jpki control list --json",
)
@json_option
def list_slots(as_json: bool) -> None:
    """The slots: reader, card file, whether the card is in and powered, its faults."""
    slots = ControlClient.find().request("GET", "/slots")
    if as_json:
        _echo_json(slots)
        return
    for slot in slots:
        click.echo(_slot_line(slot))
        for fault in slot["faults"]:
            click.echo(f"        {_fault_line(fault)}")


def _change_slot(slot: int, action: str, done: str, as_json: bool) -> None:
    answer = ControlClient.find().request("POST", f"/slots/{slot}/{action}", {})
    if as_json:
        _echo_json(answer)
    else:
        click.echo(f"slot {slot}: {done} ({answer['reader']})")


@control.command(
    short_help="Insert the card, or another card file.",
    epilog="Example: jpki control insert --slot 1 --card other.json",
)
@slot_option
@click.option(
    "--card",
    "card_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Insert this card file instead of the slot's card (the slot must be empty).",
)
@json_option
def insert(slot: int, card_file: Path | None, as_json: bool) -> None:
    """Insert the card into its reader, as a hand does; pcscd sees it arrive."""
    body = {} if card_file is None else {"card": str(card_file.resolve())}
    answer = ControlClient.find().request("POST", f"/slots/{slot}/insert", body)
    if as_json:
        _echo_json(answer)
    else:
        click.echo(f"slot {slot}: {answer['card']} inserted ({answer['reader']})")


@control.command(
    short_help="Pull the card out of its reader.", epilog="Example: jpki control remove --slot 0"
)
@slot_option
@json_option
def remove(slot: int, as_json: bool) -> None:
    """Pull the card out of its reader; pcscd and its clients see it removed."""
    _change_slot(slot, "remove", "card removed", as_json)


@control.command(
    "power-cycle",
    short_help="Cut the card's power and restore it.",
    epilog="Example: jpki control power-cycle --slot 0",
)
@slot_option
@json_option
def power_cycle(slot: int, as_json: bool) -> None:
    """Cut the card's power and restore it: what was verified and selected is gone, and the
    host is not told (its next command meets a freshly powered card)."""
    _change_slot(slot, "power-cycle", "card power-cycled", as_json)


@control.command(
    short_help="PIN tries left, blocked or not, and each lock.",
    epilog="Example: jpki control counters --slot 0 --json",
)
@slot_option
@json_option
def counters(slot: int, as_json: bool) -> None:
    """Every key reference of the card: tries left of the most, blocked or not, what it
    protects and who can unblock it."""
    from cli.pin import padded

    rows = ControlClient.find().request("GET", f"/slots/{slot}/counters")
    if as_json:
        _echo_json(rows)
        return
    application_width = max((len(str(row["application"])) for row in rows), default=0)
    for row in rows:
        tries = f"{row['tries_left']} of {row['max_tries']} tries left"
        text = "BLOCKED" if row["blocked"] else tries
        application = padded(str(row["application"]), application_width)
        click.echo(f"{application}  {padded(str(row['label']), 20)} {text}")
        if row["blocked"]:
            unblocked_by = row["unblocked_by"]
            if isinstance(unblocked_by, list):
                unblocked_by = ", ".join(unblocked_by)
            click.echo(f"{'':{application_width}}    protects {row['protects']}")
            click.echo(f"{'':{application_width}}    unblocked at {unblocked_by}")


@control.group(
    short_help="Add, list and clear injected faults.",
    epilog="Example: jpki control fault add sw=6A82,ins=B0,nth=2",
)
def fault() -> None:
    """Faults injected into a served card (the grammar of `jpki serve --help`)."""


@fault.command("add", epilog="Example: jpki control fault add remove,during=2A --slot 0")
@click.argument("spec")
@slot_option
@json_option
def fault_add(spec: str, slot: int, as_json: bool) -> None:
    """Add a fault to the card in the slot, e.g. sw=6A82,ins=B0 or latency=50ms,jitter=10ms."""
    from card_emulator.errors import FaultSpecError
    from card_emulator.faults import Fault

    try:
        Fault.parse(spec)  # a typing error says so here, before the server is asked
    except FaultSpecError as error:
        raise BadUsage(str(error)) from None
    added = ControlClient.find().request("POST", f"/slots/{slot}/faults", {"spec": spec})
    if as_json:
        _echo_json(added)
    else:
        click.echo(f"slot {slot}: {_fault_line(added)}")


@fault.command("clear", epilog="Example: jpki control fault clear 2")
@click.argument("fault_id", metavar="[ID]", type=click.IntRange(1), required=False)
@slot_option
@json_option
def fault_clear(fault_id: int | None, slot: int, as_json: bool) -> None:
    """Clear the fault ID, or every fault of the card in the slot."""
    path = f"/slots/{slot}/faults" + ("" if fault_id is None else f"/{fault_id}")
    left = ControlClient.find().request("DELETE", path)
    if as_json:
        _echo_json(left)
    elif fault_id is None:
        click.echo(f"slot {slot}: faults cleared")
    else:
        click.echo(f"slot {slot}: fault {fault_id} cleared")


@fault.command("list", epilog="Example: jpki control fault list --json")
@slot_option
@json_option
def fault_list(slot: int, as_json: bool) -> None:
    """The active faults of the card in the slot, and how often each has fired."""
    faults = ControlClient.find().request("GET", f"/slots/{slot}/faults")
    if as_json:
        _echo_json(faults)
        return
    if not faults:
        click.echo(f"slot {slot}: no faults")
    for each in faults:
        click.echo(_fault_line(each))


def _event_line(event: dict[str, Any]) -> str:
    moment = datetime.datetime.fromtimestamp(event["time"]).strftime("%H:%M:%S.%f")[:-3]
    slot = "-" if event["slot"] is None else event["slot"]
    line = f"{event['seq']:>6} {moment} [{slot}] {event['kind']:<8}"
    if event["command"]:
        line += f" {event['command']} -> {event['response'] or '(no answer)'}"
    if event["text"]:
        line += f" {event['text']}"
    return line


def _events(client: ControlClient, since: int, follow: bool) -> Iterator[dict[str, Any]]:
    while True:
        wait = FOLLOW_WAIT if follow else 0
        answer = client.request("GET", f"/trace?since={since}&wait={wait}", wait=wait)
        yield from answer["events"]
        if answer["events"]:
            since = answer["events"][-1]["seq"]
        if not follow:
            return


@control.command(
    short_help="The APDU trace, PINs masked (--follow to keep it coming).",
    epilog="Example: jpki control trace --follow --slot 0",
)
@click.option("--since", type=click.IntRange(0), default=0, help="Only events after this one.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events until Ctrl-C.")
@click.option("--slot", type=click.IntRange(0, 9999), help="Only this slot's events.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def trace(since: int, follow: bool, slot: int | None, as_json: bool) -> None:
    """The card's trace: every APDU (PINs masked), fault, removal, insertion and power cut."""
    client = ControlClient.find()
    try:
        for event in _events(client, since, follow):
            if slot is None or event["slot"] == slot:
                click.echo(json.dumps(event, ensure_ascii=False) if as_json else _event_line(event))
    except KeyboardInterrupt:
        if not follow:
            raise  # Ctrl-C is how --follow ends; anywhere else it interrupts
