"""What the top-level `jpki` options leave for the subcommands."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click

from jpki.paths import default_card_path


@dataclass
class CliState:
    card_path: Path | None = None
    verbose: bool = False


def card_path(own: Path | None = None) -> Path:
    """The card file: the subcommand's `--card`, else the top-level one, else the default."""
    if own is not None:
        return own
    state = click.get_current_context().find_object(CliState)
    if state is not None and state.card_path is not None:
        return state.card_path
    return default_card_path()


card_option = click.option(
    "--card",
    "card_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Card file (default: the top-level --card, else $JPKI_HOME/card.json).",
)
