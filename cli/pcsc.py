"""PC/SC: `jpki serve` puts virtual cards into vpcd reader slots; `jpki readers` lists readers."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import click

from card_emulator.transports.memory import VirtualCard
from card_emulator.transports.vpcd import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    SocketTuning,
    VpcdLink,
    reader_name,
)
from cli.options import card_path
from jpki.client.connection import list_readers


@click.command()
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
    help=f"vpcd port per card (default: {DEFAULT_PORT}, {DEFAULT_PORT + 1}, …).",
)
@click.option(
    "--no-socket-tuning",
    is_flag=True,
    hidden=True,
    help="Leave Nagle and delayed ACKs on (only to measure what the tuning buys).",
)
def serve(
    card_files: tuple[Path, ...], host: str, ports: tuple[int, ...], no_socket_tuning: bool
) -> None:
    """Serve cards in vpcd reader slots. SIGUSR1 removes them, SIGUSR2 inserts them again."""
    paths = list(card_files) or [card_path()]
    if ports and len(ports) != len(paths):
        raise click.UsageError("give one --port per --card")
    chosen = list(ports) or [DEFAULT_PORT + n for n in range(len(paths))]
    tuning = SocketTuning(nodelay=not no_socket_tuning, quickack=not no_socket_tuning)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    logging.getLogger("card_emulator.transports.vpcd").setLevel(logging.INFO)
    cards = [VirtualCard.open(path) for path in paths]  # locks every file before serving any
    links = [VpcdLink(card, host, port, tuning) for card, port in zip(cards, chosen, strict=True)]
    for path, port in zip(paths, chosen, strict=True):
        click.echo(f"Serving {path} in reader '{reader_name(port)}' (vpcd at {host}:{port})")
    click.echo("SIGUSR1 removes the cards, SIGUSR2 inserts them, Ctrl-C stops.")

    def on_signal(signum: int, frame: FrameType | None) -> None:
        for link in links:
            if signum == signal.SIGUSR1:
                link.remove()
            elif signum == signal.SIGUSR2:
                link.insert()
            else:
                link.stop()

    for signum in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    threads = [threading.Thread(target=link.serve_forever, daemon=True) for link in links]
    for thread in threads:
        thread.start()
    try:
        while any(thread.is_alive() for thread in threads):
            for thread in threads:
                thread.join(timeout=0.5)
    finally:
        for card in cards:
            card.close()


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
