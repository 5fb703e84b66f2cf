"""The control side of `jpki serve`: the served slots, and an HTTP/JSON API over them on loopback.

A `Slot` is one vpcd reader slot: its `VirtualCard`, the `VpcdLink` that puts it in the reader,
and the thread serving that link. `Slots` holds them all and does what a hand does to a card in
a reader: insert (the same card, or another card file), remove, power-cycle; and sets faults.

`ControlServer` answers, on 127.0.0.1 only:

    GET    /api/slots                            every slot: reader, card file, inserted, powered,
                                                 faults
    POST   /api/slots/N/insert  [{"card": F}]    insert the slot's card, or card file F instead
    POST   /api/slots/N/remove                   pull the card out (the host sees it removed)
    POST   /api/slots/N/power-cycle              power off and on: volatile state gone
    GET    /api/slots/N/counters                 every key reference: tries left, blocked, lock
    GET    /api/slots/N/faults                   the active faults
    POST   /api/slots/N/faults  {"spec": S}      add a fault (card_emulator.faults grammar)
    DELETE /api/slots/N/faults[/ID]              clear them all, or one
    GET    /api/trace?since=SEQ&wait=SECONDS     trace events after SEQ (long poll, <= 30 s)

`/api/...` needs `Authorization: Bearer TOKEN`. With the panel, `/` serves the card panel
(panel.html) to a browser signed in with the same token: a session cookie (HttpOnly,
SameSite=Strict) then stands for the token, and every change it asks for must also carry the
`X-JPKI-Panel: 1` header, which no other site can make a browser send. A Host header other than
this server's own (127.0.0.1:PORT or localhost:PORT) is refused, against DNS rebinding. Errors
are JSON: {"error": "one line"}. The caller keeps the token; this module writes no files.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import html
import importlib.resources
import json
import logging
import re
import secrets
import socketserver
import sys
import threading
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from card_emulator.errors import CardEmulatorError
from card_emulator.faults import Fault
from card_emulator.state.store import real_card_path
from card_emulator.trace import Trace
from card_emulator.transports.memory import VirtualCard
from card_emulator.transports.vpcd import SocketTuning, VpcdLink, reader_name

log = logging.getLogger(__name__)

CONTROL_HOST = "127.0.0.1"
API_PREFIX = "/api"
MAX_TRACE_WAIT = 30.0  # seconds a trace request may wait for a first new event
MAX_BODY_BYTES = 64 * 1024
REQUEST_TIMEOUT = 35.0  # seconds a connection may sit idle or trickle (beyond the longest poll)
STOP_TIMEOUT = 10.0  # seconds a slot's serving thread gets to end
PANEL_HEADER = "X-JPKI-Panel"
MAX_SESSIONS = 32  # panel sign-ins remembered; beyond, the oldest must sign in again
PANEL_FILE = "panel.html"
INLINE_BLOCK = re.compile(r"<(script|style)>(.*?)</\1>", re.DOTALL)


class ControlError(CardEmulatorError):
    """A control request that cannot be done; `status` is its HTTP status."""

    status = HTTPStatus.BAD_REQUEST


class NoSuchSlot(ControlError):
    status = HTTPStatus.NOT_FOUND


class NoSuchFault(ControlError):
    status = HTTPStatus.NOT_FOUND


class SlotBusy(ControlError):
    status = HTTPStatus.CONFLICT


@dataclass
class Slot:
    """One vpcd reader slot: the card in it, the link to vpcd, and the thread serving the link."""

    number: int
    port: int
    card: VirtualCard
    link: VpcdLink
    thread: threading.Thread

    @property
    def reader(self) -> str:
        return reader_name(self.port)

    def to_json(self) -> dict[str, Any]:
        return {
            "slot": self.number,
            "reader": self.reader,
            "card": None if self.card.path is None else str(self.card.path),
            "inserted": self.card.inserted,
            "powered": self.card.engine.powered,
            "faults": self.card.faults.to_json(),
        }


class Slots:
    """The cards one server holds, one per vpcd slot; safe to use from any thread.

    `faults` are added to every card put into a slot: at the start, and by the insertion of
    another card file.
    """

    def __init__(
        self,
        host: str,
        tuning: SocketTuning | None = None,
        trace: Trace | None = None,
        faults: Sequence[Fault] = (),
    ) -> None:
        self.host = host
        self.tuning = tuning or SocketTuning()
        self.trace = trace or Trace()
        self.faults = tuple(faults)
        self._slots: list[Slot] = []
        self._lock = threading.RLock()  # one change of slots at a time

    def open(self, paths: Sequence[Path], ports: Sequence[int]) -> None:
        """Open (and lock) every card file, then make a link for each; nothing is served yet."""
        cards: list[VirtualCard] = []
        try:
            for number, path in enumerate(paths):
                cards.append(self._open_card(path, number))
        except BaseException:
            for card in cards:
                card.close()
            raise
        with self._lock:
            for number, (card, port) in enumerate(zip(cards, ports, strict=True)):
                self._slots.append(self._slot(number, port, card))

    def start(self) -> None:
        with self._lock:
            for slot in self._slots:
                if not slot.thread.is_alive():
                    slot.thread.start()

    def _open_card(self, path: Path, number: int) -> VirtualCard:
        card = VirtualCard.open(path, trace=self.trace, slot=number)
        try:
            for fault in self.faults:
                card.faults.add(fault)
        except BaseException:
            card.close()
            raise
        return card

    def _slot(self, number: int, port: int, card: VirtualCard) -> Slot:
        link = VpcdLink(card, self.host, port, self.tuning)
        thread = threading.Thread(
            target=link.serve_forever, name=f"vpcd slot {number}", daemon=True
        )
        return Slot(number, port, card, link, thread)

    def __iter__(self) -> Iterator[Slot]:
        with self._lock:
            return iter(list(self._slots))

    def get(self, number: int) -> Slot:
        with self._lock:
            if not 0 <= number < len(self._slots):
                raise NoSuchSlot(
                    f"no slot {number} (this server has slots 0 to {len(self._slots) - 1})"
                )
            return self._slots[number]

    def to_json(self) -> list[dict[str, Any]]:
        return [slot.to_json() for slot in self]

    # What a hand does to a card in a reader -------------------------------------------------

    def insert(self, number: int, path: Path | None = None) -> Slot:
        """Insert the slot's card, or the card in file `path` in its place (the slot's card must
        be out: a reader holds one card)."""
        with self._lock:
            slot = self.get(number)
            if path is None or self._same_file(slot, path):
                slot.card.insert()
                return slot
            if slot.card.inserted:
                raise SlotBusy(
                    f"slot {number} holds {slot.card.path}: remove it before inserting {path}"
                )
            card = self._open_card(path, number)  # refused here, the old card stays in the slot
            slot.link.stop()
            slot.thread.join(STOP_TIMEOUT)
            slot.card.close()
            replacement = self._slot(number, slot.port, card)
            replacement.link.removed_at = slot.link.removed_at  # still out long enough for pcscd
            self._slots[number] = replacement
            replacement.thread.start()
            self.trace.add("inserted", text=f"card {path} put into the slot", slot=number)
            return replacement

    @staticmethod
    def _same_file(slot: Slot, path: Path) -> bool:
        current = slot.card.path
        return current is not None and real_card_path(current) == real_card_path(path)

    def remove(self, number: int) -> Slot:
        with self._lock:
            slot = self.get(number)
            slot.card.remove()
            return slot

    def power_cycle(self, number: int) -> Slot:
        """Power off and on in the reader: what was verified and selected is gone. The host is
        not told; its next command meets the card as after a power-up."""
        with self._lock:
            slot = self.get(number)
            if not slot.card.inserted:
                raise SlotBusy(f"no card in slot {number}: insert it first")
            slot.card.power_off()  # each in the trace
            slot.card.power_on()
            return slot

    def remove_all(self) -> None:
        for slot in self:
            slot.card.remove()

    def insert_all(self) -> None:
        for slot in self:
            self.insert(slot.number)

    # Faults and counters ----------------------------------------------------------------------

    def add_fault(self, number: int, spec: str) -> dict[str, Any]:
        card = self.get(number).card
        fault_id = card.faults.add(spec)  # FaultSpecError: a ValueError with one line
        return next(entry for entry in card.faults.to_json() if entry["id"] == fault_id)

    def clear_faults(self, number: int, fault_id: int | None = None) -> list[dict[str, Any]]:
        faults = self.get(number).card.faults
        if fault_id is None:
            faults.clear()
        elif all(active.id != fault_id for active in faults.active()):
            raise NoSuchFault(f"slot {number} has no fault {fault_id}")
        else:
            faults.discard(fault_id)
        return faults.to_json()

    def counters(self, number: int) -> list[dict[str, Any]]:
        return [counter.to_json() for counter in self.get(number).card.counters()]

    def stop(self) -> None:
        """Stop serving every slot and close (unlock) every card."""
        with self._lock:
            for slot in self._slots:
                slot.link.stop()
            for slot in self._slots:
                if slot.thread.is_alive():
                    slot.thread.join(STOP_TIMEOUT)
                slot.card.close()


# The HTTP server ----------------------------------------------------------------------------


def _content_security_policy(page: str) -> str:
    """A policy allowing exactly this page's own inline script and style, and nothing else."""
    allowed: dict[str, list[str]] = {"script": [], "style": []}
    for kind, body in INLINE_BLOCK.findall(page):
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        allowed[kind].append(f"'sha256-{digest}'")
    scripts = " ".join(allowed["script"]) or "'none'"
    styles = " ".join(allowed["style"]) or "'none'"
    return (
        "default-src 'none'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
        f"base-uri 'none'; script-src {scripts}; style-src {styles}"
    )


SIGN_IN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>jpki card panel: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font:15px system-ui,sans-serif;margin:3em auto;max-width:34em;padding:0 1em}}
input{{font:inherit;padding:.3em;width:100%;box-sizing:border-box;margin:.5em 0}}
button{{font:inherit;padding:.3em 1.2em}}.error{{color:#b00020}}code{{background:#eee}}</style>
</head><body><h1>jpki card panel</h1>
<form method="post" action="/signin">
<p><label for="token">Token (in <code>{token_path}</code>)</label>
<input id="token" name="token" type="password" autocomplete="off" autofocus
 data-testid="token"></p>{error}
<button id="sign-in" type="submit" data-testid="sign-in">Sign in</button>
</form></body></html>
"""


def _panel_page() -> str:
    return importlib.resources.files("card_emulator.transports").joinpath(PANEL_FILE).read_text()


class ControlServer(ThreadingHTTPServer):
    """The control API (and, with `panel`, the card panel) of one server's slots, on loopback."""

    daemon_threads = True

    def __init__(
        self,
        slots: Slots,
        token: str,
        port: int = 0,
        panel: bool = False,
        token_hint: str = "the control.token file",
    ) -> None:
        self.slots = slots
        self.token = token
        self.panel = panel
        self.token_hint = token_hint
        self._sessions: OrderedDict[str, None] = OrderedDict()
        self._sessions_lock = threading.Lock()
        self.panel_page = _panel_page().encode() if panel else b""
        self.panel_policy = _content_security_policy(_panel_page()) if panel else ""
        super().__init__((CONTROL_HOST, port), _ControlRequestHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind also looks up the host's FQDN, which can stall without DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.socket.getsockname()[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, OSError):  # the client went away or was too slow
            log.debug("control client dropped: %s", error)
        else:
            log.error("control request failed: %s: %s", type(error).__name__, error)

    @property
    def port(self) -> int:
        return self.server_port

    @property
    def base_url(self) -> str:
        return f"http://{CONTROL_HOST}:{self.server_port}"

    @property
    def api_url(self) -> str:
        return self.base_url + API_PREFIX

    @property
    def panel_url(self) -> str:
        return self.base_url + "/"

    @property
    def cookie_name(self) -> str:
        # Browsers share cookies across a host's ports: one name per server.
        return f"jpki_panel_{self.server_port}"

    def allowed_hosts(self) -> tuple[str, ...]:
        return (f"127.0.0.1:{self.server_port}", f"localhost:{self.server_port}")

    def token_matches(self, candidate: str) -> bool:
        return hmac.compare_digest(candidate.encode(), self.token.encode())

    def new_session(self) -> str:
        session = secrets.token_urlsafe(32)
        with self._sessions_lock:
            self._sessions[session] = None
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)
        return session

    def session_matches(self, candidate: str) -> bool:
        with self._sessions_lock:
            known = list(self._sessions)
        # Compared with every one, in constant time each.
        return any([hmac.compare_digest(candidate.encode(), s.encode()) for s in known])

    def end_session(self, session: str) -> None:
        with self._sessions_lock:
            self._sessions.pop(session, None)


class _Refused(Exception):
    """Ends a request with an HTTP error status and a one-line reason."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


Route = Callable[["_ControlRequestHandler", re.Match[str]], tuple[HTTPStatus, Any]]


class _ControlRequestHandler(BaseHTTPRequestHandler):
    server: ControlServer
    server_version = "jpki-control"
    protocol_version = "HTTP/1.1"  # keep-alive: the panel polls
    timeout = REQUEST_TIMEOUT
    body = b""  # the request's, read whole before it is answered

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        log.debug("control: " + format, *args)

    # Dispatch -----------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        path = urllib.parse.urlsplit(self.path).path
        self.body = b""
        try:
            self.body = self._read_body()
            self._check_host()
            if path == API_PREFIX or path.startswith(API_PREFIX + "/"):
                self._api(method, path)
            elif self.server.panel:
                self._panel(method, path)
            else:
                raise _Refused(HTTPStatus.NOT_FOUND, f"no {path} here: the API is under /api")
        except _Refused as refused:
            self._send_json(refused.status, {"error": str(refused)})
        except Exception as error:  # noqa: BLE001 - the client gets an answer, the log the rest
            message = f"internal error: {type(error).__name__}: {error}".splitlines()[0]
            log.error("control: %s %s: %s", method, path, message)
            log.debug("control: %s %s", method, path, exc_info=True)
            self._send_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": message})

    def _read_body(self) -> bytes:
        """The whole body, read before anything is answered: on a kept-alive connection, what
        is left unread would be taken for the next request."""
        length_text = self.headers.get("Content-Length", "0").strip()
        if not length_text.isdigit() or self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise _Refused(HTTPStatus.BAD_REQUEST, "send a body with a Content-Length")
        if int(length_text) > MAX_BODY_BYTES:
            self.close_connection = True
            raise _Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "the body is too large")
        return self.rfile.read(int(length_text))

    def _check_host(self) -> None:
        host = (self.headers.get("Host") or "").lower()
        if host not in self.server.allowed_hosts():
            # A page of another site whose name resolves to 127.0.0.1 (DNS rebinding).
            raise _Refused(HTTPStatus.BAD_REQUEST, "the Host header must name this server")

    def _check_origin(self) -> None:
        origin = self.headers.get("Origin")
        if origin is not None and origin not in [
            f"http://{host}" for host in self.server.allowed_hosts()
        ]:
            raise _Refused(HTTPStatus.FORBIDDEN, "requests from other sites are refused")

    # The API ------------------------------------------------------------------------------

    def _api(self, method: str, path: str) -> None:
        self._authorize(changes=method != "GET")
        known = False
        for route_method, pattern, route in _ROUTES:
            match = pattern.fullmatch(path)
            if match and route_method == method:
                status, body = self._call(route, match)
                self._send_json(status, body)
                return
            known = known or match is not None
        if known:
            raise _Refused(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} {path} is not supported")
        raise _Refused(HTTPStatus.NOT_FOUND, f"no such endpoint: {path}")

    def _call(self, route: Route, match: re.Match[str]) -> tuple[HTTPStatus, Any]:
        try:
            return route(self, match)
        except ControlError as error:
            raise _Refused(error.status, str(error)) from None
        except (CardEmulatorError, ValueError) as error:  # a fault spec, a card file
            bad_value = isinstance(error, ValueError)
            status = HTTPStatus.BAD_REQUEST if bad_value else HTTPStatus.CONFLICT
            raise _Refused(status, str(error)) from None

    def _authorize(self, changes: bool) -> None:
        authorization = self.headers.get("Authorization", "")
        scheme, _, credential = authorization.partition(" ")
        if scheme.lower() == "bearer" and self.server.token_matches(credential.strip()):
            return
        session = self._session()
        if session is not None:
            self._check_origin()
            if changes and self.headers.get(PANEL_HEADER) != "1":
                message = f"a change from the panel needs the {PANEL_HEADER} header"
                raise _Refused(HTTPStatus.FORBIDDEN, message)
            return
        raise _Refused(
            HTTPStatus.UNAUTHORIZED,
            f"send Authorization: Bearer <token> (the token is in {self.server.token_hint})",
        )

    def _session(self) -> str | None:
        if not self.server.panel:
            return None
        cookies = self.headers.get("Cookie", "")
        for pair in cookies.split(";"):
            name, _, value = pair.strip().partition("=")
            if name == self.server.cookie_name and self.server.session_matches(value):
                return value
        return None

    def _slot_number(self, match: re.Match[str]) -> int:
        return int(match.group("slot"))

    def _json_body(self) -> dict[str, Any]:
        raw = self.body
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise _Refused(HTTPStatus.BAD_REQUEST, "the body is not JSON") from None
        if not isinstance(body, dict):
            raise _Refused(HTTPStatus.BAD_REQUEST, "the body must be a JSON object")
        return body

    def _list_slots(self, match: re.Match[str]) -> tuple[HTTPStatus, Any]:
        return HTTPStatus.OK, self.server.slots.to_json()

    def _insert(self, match: re.Match[str]) -> tuple[HTTPStatus, Any]:
        card = self._json_body().get("card")
        if card is not None and not isinstance(card, str):
            raise _Refused(HTTPStatus.BAD_REQUEST, '"card" must be a card file path')
        path = None if card is None else Path(card)
        return HTTPStatus.OK, self.server.slots.insert(self._slot_number(match), path).to_json()

    def _remove(self, match: re.Match[str]) -> tuple[HTTPStatus, Any]:
        self._json_body()
        return HTTPStatus.OK, self.server.slots.remove(self._slot_number(match)).to_json()

    def _power_cycle(self, match: re.Match[str]) -> tuple[HTTPStatus, Any]:
        self._json_body()
        return HTTPStatus.OK, self.server.slots.power_cycle(self._slot_number(match)).to_json()

    def _counters(self, match: re.Match[str]) -> tuple[HTTPStatus, Any]:
        return HTTPStatus.OK, self.server.slots.counters(self._slot_number(match))

    def _list_faults(self, match: re.Match[str]) -> tuple[HTTPStatus, Any]:
        return HTTPStatus.OK, self.server.slots.get(self._slot_number(match)).card.faults.to_json()

    def _add_fault(self, match: re.Match[str]) -> tuple[HTTPStatus, Any]:
        spec = self._json_body().get("spec")
        if not isinstance(spec, str):
            raise _Refused(HTTPStatus.BAD_REQUEST, 'send {"spec": "<fault spec>"}')
        return HTTPStatus.CREATED, self.server.slots.add_fault(self._slot_number(match), spec)

    def _clear_faults(self, match: re.Match[str]) -> tuple[HTTPStatus, Any]:
        fault = match.group("fault") if "fault" in match.groupdict() else None
        fault_id = None if fault is None else int(fault)
        return HTTPStatus.OK, self.server.slots.clear_faults(self._slot_number(match), fault_id)

    def _trace(self, match: re.Match[str]) -> tuple[HTTPStatus, Any]:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        try:
            since = int(query.get("since", ["0"])[-1])
            wait = float(query.get("wait", ["0"])[-1])
        except ValueError:
            raise _Refused(
                HTTPStatus.BAD_REQUEST, "since must be an integer and wait a number of seconds"
            ) from None
        if wait != wait or wait < 0:  # NaN or negative
            raise _Refused(HTTPStatus.BAD_REQUEST, "wait must be a number of seconds >= 0")
        trace = self.server.slots.trace
        events = trace.since(since, min(wait, MAX_TRACE_WAIT))
        return HTTPStatus.OK, {
            "events": [event.to_json() for event in events],
            "last_seq": trace.last_seq,
        }

    # The panel ----------------------------------------------------------------------------

    def _panel(self, method: str, path: str) -> None:
        if path == "/" and method == "GET":
            if self._session() is None:
                self._send_sign_in(HTTPStatus.OK)
            else:
                self._send_page(HTTPStatus.OK, self.server.panel_page, self.server.panel_policy)
        elif path == "/signin" and method == "POST":
            self._check_origin()
            self._sign_in()
        elif path == "/signout" and method == "POST":
            self._check_origin()
            session = self._session()
            if session is not None and self.headers.get(PANEL_HEADER) == "1":
                self.server.end_session(session)
            self._redirect_home(f"{self.server.cookie_name}=; Max-Age=0; Path=/")
        else:
            raise _Refused(HTTPStatus.NOT_FOUND, f"no {path} here")

    def _sign_in(self) -> None:
        form = urllib.parse.parse_qs(self.body.decode("utf-8", "replace"))
        token = form.get("token", [""])[-1].strip()
        if not self.server.token_matches(token):
            self._send_sign_in(HTTPStatus.UNAUTHORIZED, "That is not the token.")
            return
        session = self.server.new_session()
        self._redirect_home(
            f"{self.server.cookie_name}={session}; HttpOnly; SameSite=Strict; Path=/"
        )

    def _redirect_home(self, cookie: str) -> None:
        self.send_response(HTTPStatus.SEE_OTHER)
        self.send_header("Location", "/")
        self.send_header("Set-Cookie", cookie)
        self.send_header("Content-Length", "0")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()

    def _send_sign_in(self, status: HTTPStatus, error: str = "") -> None:
        page = SIGN_IN_PAGE.format(
            token_path=html.escape(self.server.token_hint),
            error=f'<p class="error" id="sign-in-error">{html.escape(error)}</p>' if error else "",
        )
        self._send_page(status, page.encode(), _content_security_policy(page))

    # Answers ------------------------------------------------------------------------------

    def _send_page(self, status: HTTPStatus, body: bytes, policy: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Security-Policy", policy)
        self._send_body(body)

    def _send_json(self, status: HTTPStatus, body: Any) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if status == HTTPStatus.UNAUTHORIZED:
            self.send_header("WWW-Authenticate", 'Bearer realm="jpki control"')
        self._send_body(json.dumps(body, ensure_ascii=False).encode() + b"\n")

    def _send_body(self, body: bytes) -> None:
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        # Not no-referrer: browsers would then send "Origin: null" with the panel's own requests.
        self.send_header("Referrer-Policy", "same-origin")
        self.end_headers()
        if self.command != "HEAD":
            with contextlib.suppress(OSError):
                self.wfile.write(body)


SLOT = r"/api/slots/(?P<slot>\d{1,4})"
ONE_FAULT = SLOT + r"/faults/(?P<fault>\d{1,9})"
_Handler = _ControlRequestHandler
_ROUTES: tuple[tuple[str, re.Pattern[str], Route], ...] = (
    ("GET", re.compile(r"/api/slots/?"), _Handler._list_slots),
    ("POST", re.compile(SLOT + "/insert"), _Handler._insert),
    ("POST", re.compile(SLOT + "/remove"), _Handler._remove),
    ("POST", re.compile(SLOT + "/power-cycle"), _Handler._power_cycle),
    ("GET", re.compile(SLOT + "/counters"), _Handler._counters),
    ("GET", re.compile(SLOT + "/faults/?"), _Handler._list_faults),
    ("POST", re.compile(SLOT + "/faults/?"), _Handler._add_fault),
    ("DELETE", re.compile(SLOT + "/faults/?"), _Handler._clear_faults),
    ("DELETE", re.compile(ONE_FAULT), _Handler._clear_faults),
    ("GET", re.compile(r"/api/trace/?"), _Handler._trace),
)
