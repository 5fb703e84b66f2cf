"""PC/SC: `jpki serve` puts virtual cards into vpcd reader slots, with faults and remote control
if asked; `jpki readers` lists readers."""

from __future__ import annotations

import json
import logging
import queue
import secrets
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import click

from card_emulator.errors import FaultSpecError
from card_emulator.faults import FAULT_HELP, Fault
from card_emulator.trace import Trace
from card_emulator.transports.control import ControlServer, Slots
from card_emulator.transports.vpcd import DEFAULT_HOST, DEFAULT_PORT, SocketTuning, first_port
from cli.control import BadUsage, ControlFiles, Failure
from cli.options import card_path
from jpki.client.connection import list_readers

SERVE_EPILOG = "\n\n".join(
    [
        "Faults (--fault SPEC, repeatable; each applies to every served card):",
        *("\b\n" + paragraph for paragraph in FAULT_HELP.strip().split("\n\n")),
        "\b\nServing with faults, the API and the panel:\n"
        "  jpki serve --fault sw=6A82,ins=B0,nth=2 --control\n"
        "  jpki serve --fault remove,during=2A --fault latency=50ms,jitter=10ms\n"
        "  jpki serve --panel        (then open the Panel: URL it prints)\n"
        "  jpki control fault add power-loss=after-counter-write",
        "With --control (or --panel) the API's bearer token is in $JPKI_HOME/control.token, "
        "and `jpki control` finds the server through $JPKI_HOME/control.json.",
    ]
)
STOP, REMOVE, INSERT = "stop", "remove", "insert"


def _parse_faults(
    ctx: click.Context, param: click.Parameter, specs: tuple[str, ...]
) -> tuple[Fault, ...]:
    """Every --fault, parsed before anything is served; a bad one is a one-line usage error."""
    faults = []
    for spec in specs:
        try:
            faults.append(Fault.parse(spec))
        except FaultSpecError as error:
            raise BadUsage(f"--fault: {error}") from None
    return tuple(faults)


REPORTED = ("fault", "removed", "inserted")  # the trace's events `jpki serve` prints
REPORT_WAIT = 60  # seconds; the reporting thread just waits again


@click.command(epilog=SERVE_EPILOG)
@click.option(
    "--card",
    "card_files",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Card file; repeat to serve several cards (default: the default card).",
)
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="Where vpcd listens.")
@click.option(
    "--port",
    "ports",
    multiple=True,
    type=click.IntRange(1, 65535),
    help=f"vpcd port per card (default: $JPKI_VPCD_PORT or {DEFAULT_PORT}, then the next ones).",
)
@click.option(
    "--fault",
    "faults",
    multiple=True,
    metavar="SPEC",
    callback=_parse_faults,
    help="Inject a fault into every served card, e.g. sw=6A82,ins=B0 (repeatable; see below).",
)
@click.option(
    "--control",
    is_flag=True,
    help="Serve the control API (HTTP and JSON on 127.0.0.1) that `jpki control` drives.",
)
@click.option(
    "--panel", is_flag=True, help="Serve the card panel in the browser too (implies --control)."
)
@click.option(
    "--control-port",
    type=click.IntRange(0, 65535),
    metavar="N",
    help="Port of the control API and panel (default: any free one; implies --control).",
)
@click.option(
    "--no-socket-tuning",
    is_flag=True,
    hidden=True,
    help="Leave Nagle and delayed ACKs on (only to measure what the tuning buys).",
)
def serve(
    card_files: tuple[Path, ...],
    host: str,
    ports: tuple[int, ...],
    faults: tuple[Fault, ...],
    control: bool,
    panel: bool,
    control_port: int | None,
    no_socket_tuning: bool,
) -> None:
    """Serve cards in vpcd reader slots. SIGUSR1 removes them, SIGUSR2 inserts them again.

    With --control, a loopback HTTP API inserts, removes and power-cycles the cards, reads
    their PIN counters, sets and clears faults and streams the APDU trace (PINs masked);
    --panel adds a page for the browser doing the same.
    """
    paths = list(card_files) or [card_path()]
    if ports and len(ports) != len(paths):
        raise click.UsageError("give one --port per --card")
    chosen = list(ports) or [first_port() + n for n in range(len(paths))]
    tuning = SocketTuning(nodelay=not no_socket_tuning, quickack=not no_socket_tuning)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    logging.getLogger("card_emulator.transports.vpcd").setLevel(logging.INFO)
    requests = _catch_signals()  # from here on, Ctrl-C and SIGTERM stop it cleanly
    files = ControlFiles() if control or panel or control_port is not None else None
    if files is not None:
        files.claim()  # before any card is locked: a second server is refused at once
    try:
        trace = Trace()
        slots = Slots(host, tuning, trace, faults)
        slots.open(paths, chosen)  # locks every file before serving any
        threading.Thread(target=_report, args=(trace,), name="report", daemon=True).start()
        try:
            server = _control_server(slots, files, panel, control_port or 0)
            _announce(slots, faults, server, panel)
            _serve_until_stopped(slots, server, requests)
        finally:
            slots.stop()
    finally:
        if files is not None:
            files.release()


def _control_server(
    slots: Slots, files: ControlFiles | None, panel: bool, port: int
) -> ControlServer | None:
    if files is None:
        return None
    token = secrets.token_urlsafe(32)
    try:
        server = ControlServer(slots, token, port, panel=panel, token_hint=str(files.token_path))
    except OSError as error:
        raise Failure(f"cannot listen on 127.0.0.1:{port}: {error.strerror or error}") from None
    files.publish(server.api_url, token)
    return server


def _announce(
    slots: Slots, faults: tuple[Fault, ...], server: ControlServer | None, panel: bool
) -> None:
    for slot in slots:
        click.echo(
            f"Serving {slot.card.path} in reader '{slot.reader}' (vpcd at {slots.host}:{slot.port})"
        )
    for fault in faults:
        click.echo(f"Fault in every card: {fault}")
    if server is not None:
        click.echo(f"Control: {server.api_url}")
        if panel:
            click.echo(f"Panel: {server.panel_url}")
    click.echo("SIGUSR1 removes the cards, SIGUSR2 inserts them, Ctrl-C stops.")


def _report(trace: Trace) -> None:
    """Say on stderr, one line each, when a fault fires and when a card leaves or comes back
    (the whole trace, APDUs too, is the control API's)."""
    seq = trace.last_seq
    while True:
        for event in trace.since(seq, wait=REPORT_WAIT):
            seq = event.seq
            if event.kind in REPORTED:
                click.echo(f"slot {event.slot}: {event.text}", err=True)


def _catch_signals() -> queue.SimpleQueue[str]:
    """SIGUSR1, SIGUSR2, SIGINT and SIGTERM as requests for the serving loop, in order."""
    requests: queue.SimpleQueue[str] = queue.SimpleQueue()  # put() is safe in a signal handler
    meaning = {signal.SIGUSR1: REMOVE, signal.SIGUSR2: INSERT}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        requests.put(meaning.get(signal.Signals(signum), STOP))

    for signum in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    return requests


def _serve_until_stopped(
    slots: Slots, server: ControlServer | None, requests: queue.SimpleQueue[str]
) -> None:
    """Serve every slot (and the control server) until SIGINT or SIGTERM."""
    control_thread = None
    if server is not None:
        control_thread = threading.Thread(target=server.serve_forever, name="control", daemon=True)
        control_thread.start()
    slots.start()
    try:
        while (request := requests.get()) != STOP:
            if request == REMOVE:
                slots.remove_all()
            else:
                slots.insert_all()
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def readers(as_json: bool) -> None:
    """List PC/SC readers and whether each holds a card."""
    found = list_readers()
    if as_json:
        click.echo(json.dumps([{"reader": name, "card": card} for name, card in found]))
        return
    if not found:
        click.echo("no readers")
    for name, card in found:
        click.echo(f"{name}\t{'card present' if card else 'empty'}")
