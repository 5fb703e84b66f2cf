"""Where a command's output goes: a file it will not overwrite unless told, or standard output."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from jpki.durable import write_atomically

STDOUT = Path("-")
PUBLIC_FILE_MODE = 0o644  # signatures, certificates and CRLs are public


def check_output(output: Path, force: bool, *, not_over: Path | None = None) -> None:
    """Refuse, before any work is done, an output that would destroy a file."""
    if output == STDOUT or not output.exists():
        return
    if not_over is not None and os.path.samefile(output, not_over):
        raise click.BadParameter(f"{output} is the input file itself", param_hint="--output")
    if not force:
        raise click.BadParameter(
            f"{output} exists; give --force to overwrite it", param_hint="--output"
        )


def write_output(output: Path, data: bytes) -> None:
    """Write to `output` (whole or not at all), or to standard output for `-`."""
    if output == STDOUT:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        write_atomically(output, data, PUBLIC_FILE_MODE)


output_help = "Write here ('-' for standard output); an existing file needs --force."
force_option = click.option("--force", is_flag=True, help="Overwrite an existing output file.")
