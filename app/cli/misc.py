"""Small commands."""

from __future__ import annotations

import click

from fleetdeck._version import __version__


@click.command()
def version() -> None:
    """Print fleetdeck's version."""
    click.echo(f"fleetdeck {__version__}")
